"""``keel keys``: the keys that encrypt what the store keeps (``generate``, ``rotate``), and
the API keys of ``keel serve`` (``create``, ``list``, ``revoke``: :mod:`keel._cli.api_keys`).

Rotating a key, with every process given the new keys first::

    KEEL_ENCRYPTION_KEYS=NEW,OLD   (everywhere; NEW encrypts, both decrypt)
    keel keys rotate               (re-encrypts everything with NEW)
    KEEL_ENCRYPTION_KEYS=NEW       (everywhere; OLD is no longer needed)
"""

from __future__ import annotations

import getpass
from dataclasses import asdict
from typing import Annotated

import typer

from keel._cli._common import DbOption, JsonOption, call, dumps, fail, guarded, plural, stdout
from keel._cli.api_keys import register_api_key_commands
from keel._runtime.runtime import Runtime
from keel.audit import AuditEntry
from keel.stores import Keyring, Rotation

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Keys: the encryption keys of what the store keeps, and the API keys of keel serve.",
    no_args_is_help=True,
)
register_api_key_commands(keys_app)


@keys_app.command("generate")
def generate() -> None:
    """Print a new random encryption key (Fernet), for KEEL_ENCRYPTION_KEYS."""
    stdout().print(guarded(Keyring.generate_key), markup=False)


@keys_app.command("rotate")
def rotate(
    *,
    encrypt_plain: Annotated[
        bool,
        typer.Option(
            "--encrypt-plain", help="Also encrypt what was written before a key was configured."
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows rewritten per transaction.")
    ] = 500,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-encrypt what the store keeps with the first key of KEEL_ENCRYPTION_KEYS (all of
    them decrypt). Safe to run again, and while runs are being written."""

    async def work(runtime: Runtime) -> Rotation:
        rotate_keys = getattr(runtime.store, "rotate_keys", None)
        if rotate_keys is None:
            name = type(runtime.store).__name__
            fail(f"{name} keeps nothing at rest: there is nothing to rotate")
        done: Rotation = await rotate_keys(encrypt_plain=encrypt_plain, batch_size=batch_size)
        log = runtime.audit_log
        if log is not None:
            await log.append(
                AuditEntry(
                    actor="cli",
                    action="keys.rotated",
                    subject="store",
                    user=getpass.getuser(),
                    details=asdict(done),
                )
            )
        return done

    done = call(db, work)
    out = stdout()
    if as_json:
        out.print(dumps(asdict(done)), markup=False)
        return
    out.print(
        f"re-encrypted {plural(done.rotated, 'value')} with the first key, encrypted "
        f"{plural(done.encrypted, 'plain value')}; {done.current:,} already current, "
        f"{done.plain:,} left plain",
        markup=False,
    )
    if done.changed:
        out.print(
            f"{plural(done.changed, 'value')} changed while being rotated and "
            f"{'was' if done.changed == 1 else 'were'} left to their writer; run keel keys "
            "rotate again once every process has the new keys",
            markup=False,
        )
