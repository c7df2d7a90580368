"""The webhook outbox: ``keel webhooks list`` and ``keel webhooks retry``.

The endpoints (URLs, secrets) are configured in the app or server, not here: these commands
read and change the outbox beside the runs; the deliverer of a running app sends what they
make pending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, TypeVar

import typer

from keel._cli._common import DbOption, JsonOption, dumps, fail, guarded, stdout
from keel._cli.timeline import format_time
from keel._settings import KeelSettings
from keel.webhooks import Delivery, Outbox, open_outbox

__all__ = ["webhooks_app"]

T = TypeVar("T")

webhooks_app = typer.Typer(
    help="Webhook deliveries: list them (pending, delivered, dead) and retry dead ones.",
    no_args_is_help=True,
)

_STATUSES = ("pending", "delivered", "dead")


def _with_outbox(db: str | None, work: Callable[[Outbox], Awaitable[T]]) -> T:
    settings = KeelSettings.from_environ()
    target = db if db is not None else settings.db

    async def main() -> T:
        outbox = open_outbox(target, schema=settings.db_schema)
        try:
            return await work(outbox)
        finally:
            await outbox.aclose()

    return guarded(lambda: asyncio.run(main()))


def _line(d: Delivery) -> str:
    if d.status == "pending":
        state = f"pending, next attempt {format_time(d.next_attempt_at)}"
    elif d.status == "delivered":
        state = f"delivered {format_time(d.delivered_at or d.updated_at)}"
    else:
        state = "dead"
    why = f": {d.last_error}" if d.last_error and d.status != "delivered" else ""
    return (
        f"{d.id}  {d.event_type} of run {d.run_id} to {d.endpoint}  {state} "
        f"({d.attempts} attempt{'' if d.attempts == 1 else 's'}){why}"
    )


@webhooks_app.command("list")
def list_deliveries(
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only pending, delivered or dead deliveries."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many, latest first.")] = 50,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliveries, latest first."""
    if status is not None and status not in _STATUSES:
        fail(f"--status must be one of {', '.join(_STATUSES)}, got '{status}'")
    found = _with_outbox(
        db,
        lambda o: o.deliveries(status=status, limit=limit),  # type: ignore[arg-type]
    )
    out = stdout()
    if as_json:
        out.print(dumps([asdict(d) for d in found]), markup=False)
        return
    if not found:
        out.print("no webhook deliveries" + ("" if status is None else f" {status}"))
    for delivery in found:
        out.print(_line(delivery), markup=False)


@webhooks_app.command("retry")
def retry(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery (msg_...).")],
    db: DbOption = None,
) -> None:
    """Send a dead delivery again: it becomes pending, due now, with a fresh count of
    attempts; a running deliverer sends it."""
    again = _with_outbox(db, lambda o: o.retry(delivery_id, now=time.time()))
    if again is None:
        fail(f"there is no webhook delivery {delivery_id!r}; list them with keel webhooks list")
    if again.status == "delivered":
        fail(f"webhook delivery {delivery_id} was delivered already; nothing to retry")
    stdout().print(f"{delivery_id} is pending again: a running deliverer sends it", markup=False)
