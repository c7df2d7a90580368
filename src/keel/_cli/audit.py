"""``keel audit verify|export|head``: check the audit log's chain, write it out as JSON lines,
and print its head for anchoring elsewhere.

The log lives where runs are kept (``--db`` or ``KEEL_DB``; on PostgreSQL in
``KEEL_DB_SCHEMA``). ``verify`` exits 0 when the log is intact and 1 naming the first bad
record.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer

from keel._cli._common import EXIT_FAILED, DbOption, JsonOption, dumps, guarded, stderr, stdout
from keel._settings import KeelSettings
from keel.audit import AuditLog, open_audit_log

__all__ = ["audit_app"]

T = TypeVar("T")

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify its chain, export it, print its head.",
    no_args_is_help=True,
)

_PAGE = 1000


def _with_log(db: str | None, work: Callable[[AuditLog], Awaitable[T]]) -> T:
    """``work`` on the audit log beside the store ``db`` names (default: settings)."""
    settings = KeelSettings.from_environ()
    target = db if db is not None else settings.db

    async def main() -> T:
        async with open_audit_log(target, schema=settings.db_schema) as log:
            return await work(log)

    return guarded(lambda: asyncio.run(main()))


@audit_app.command("verify")
def verify(
    db: DbOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="A head kept outside the database (SEQ:HASH as keel audit head prints it, or "
            "HASH): the log must still hold that record, unchanged.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every record's hash and link, and the end of the chain; exit 1 naming the
    first bad record."""
    result = _with_log(db, lambda log: log.verify(expected_head=expect_head))
    if as_json:
        stdout().print(dumps(result.to_dict()), markup=False)
    elif result.ok:
        stdout().print(result.message, markup=False)
    if not result.ok:
        where = "" if result.first_bad_seq is None else f" at record {result.first_bad_seq}"
        stderr().print(
            f"error: the audit log is broken{where} ({result.problem}): {result.message}; "
            f"{result.checked} record(s) before it are intact",
            markup=False,
            style="red",
        )
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("export")
def export(
    db: DbOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout."),
    ] = None,
    since_seq: Annotated[
        int, typer.Option("--since-seq", min=0, help="Only records after this seq.")
    ] = 0,
) -> None:
    """Write the records as JSON lines, oldest first, each with its seq, prev_hash and hash
    (check a file later with keel.audit.verify_records)."""

    async def work(log: AuditLog, sink: TextIO) -> int:
        written, after = 0, since_seq
        while page := await log.records(since_seq=after, limit=_PAGE):
            for record in page:
                sink.write(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True))
                sink.write("\n")
            written, after = written + len(page), page[-1].seq
        return written

    if output is None:
        written = _with_log(db, lambda log: work(log, sys.stdout))
    else:
        with guarded(lambda: output.open("w", encoding="utf-8")) as sink:
            written = _with_log(db, lambda log: work(log, sink))
    stderr().print(
        f"exported {written} audit record(s){'' if output is None else f' to {output}'}",
        markup=False,
        style="dim",
    )


@audit_app.command("head")
def head(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Print the last record's seq and hash as SEQ:HASH. Keep it outside the database (a
    ticket, a log shipper, storage with retention) and pass it to verify --expect-head."""
    found = _with_log(db, lambda log: log.head())
    if as_json:
        stdout().print(dumps({"seq": found.seq, "hash": found.hash}), markup=False)
    else:
        stdout().print(str(found), markup=False)
