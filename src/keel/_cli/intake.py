"""``keel intake``: take runs from a RabbitMQ queue or a NATS JetStream subject until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from keel._cli._common import DbOption, app_of, fail, guarded, make_runtime, stderr
from keel._cli.loader import load_app
from keel._redact import redact_url
from keel.intake import IntakeCounts

__all__ = ["intake"]


def intake(
    app_target: Annotated[
        str | None,
        typer.Argument(
            metavar="APP",
            help="The agents messages may name: a Python file or module (every agent it "
            "defines), or file.py:attribute [default: $KEEL_APP].",
        ),
    ] = None,
    *,
    rabbitmq: Annotated[
        str | None,
        typer.Option(
            "--rabbitmq",
            envvar="KEEL_INTAKE_RABBITMQ_URL",
            help="Take runs from RabbitMQ at this URL, e.g. amqp://guest:guest@127.0.0.1/.",
        ),
    ] = None,
    queue: Annotated[
        str, typer.Option("--queue", help="The RabbitMQ queue messages arrive on.")
    ] = "keel.runs",
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats",
            envvar="KEEL_INTAKE_NATS_URL",
            help="Take runs from NATS JetStream at this URL, e.g. nats://127.0.0.1:4222.",
        ),
    ] = None,
    subject: Annotated[
        str, typer.Option("--subject", help="The NATS subject messages arrive on.")
    ] = "keel.runs",
    stream: Annotated[
        str, typer.Option("--stream", help="The JetStream stream of the subject.")
    ] = "KEEL_RUNS",
    durable: Annotated[
        str, typer.Option("--durable", help="The durable consumer's name (shared by intakes).")
    ] = "keel-intake",
    dead_letter: Annotated[
        str | None,
        typer.Option(
            "--dead-letter",
            help="Where messages that cannot become runs go [default: QUEUE.dead / SUBJECT.dead].",
        ),
    ] = None,
    prefetch: Annotated[
        int, typer.Option("--prefetch", min=1, help="Most messages held unacknowledged.")
    ] = 16,
    max_deliveries: Annotated[
        int,
        typer.Option("--max-deliveries", min=1, help="Tries before a failing message is dead."),
    ] = 5,
    drive: Annotated[
        bool,
        typer.Option(
            "--drive/--no-drive",
            help="Also drive the accepted runs here, or leave them to keel worker processes.",
        ),
    ] = True,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Runs driven here at once.")
    ] = 8,
    db: DbOption = None,
) -> None:
    """Take runs from a queue until Ctrl-C or SIGTERM: each message
    {"agent": ..., "input": ...} becomes a durable run, a reply (if asked) follows when it
    stops, and messages that cannot become runs go to the dead letters."""
    if (rabbitmq is None) == (nats is None):
        fail("say where runs come from: --rabbitmq amqp://... or --nats nats://... (one of them)")
    chosen = app_of(app_target)
    if chosen is None:
        fail("say which agents messages may name: keel intake path/to/file.py (or KEEL_APP)")
    agents = guarded(lambda: load_app(chosen))

    async def main() -> IntakeCounts:
        from keel.intake import NatsIntake, RabbitMQIntake

        async with make_runtime(db) as runtime:
            for agent in agents.values():
                runtime.register(agent)
            served: RabbitMQIntake | NatsIntake
            if rabbitmq is not None:
                served = RabbitMQIntake(
                    runtime,
                    url=rabbitmq,
                    queue=queue,
                    dead_letter_queue=dead_letter,
                    prefetch=prefetch,
                    max_deliveries=max_deliveries,
                    drive=drive,
                    concurrency=concurrency,
                )
                source = f"RabbitMQ {redact_url(rabbitmq)} queue {queue}"
            else:
                assert nats is not None
                served = NatsIntake(
                    runtime,
                    url=nats,
                    stream=stream,
                    subject=subject,
                    durable=durable,
                    dead_letter_subject=dead_letter,
                    prefetch=prefetch,
                    max_deliveries=max_deliveries,
                    drive=drive,
                    concurrency=concurrency,
                )
                source = f"NATS {redact_url(nats)} subject {subject} (stream {stream})"
            await served.start()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, served.stop_soon)
            driving = "driving them here" if drive else "keel worker processes drive them"
            stderr().print(
                f"intake: runs of {', '.join(sorted(agents))} from {source}; {driving}; "
                "Ctrl-C to stop",
                markup=False,
                style="dim",
            )
            await served.run()
            return served.counts

    counts = guarded(lambda: asyncio.run(main()))
    stderr().print(
        f"intake stopped: {counts.accepted} accepted, {counts.dead_lettered} dead-lettered, "
        f"{counts.retried} retried, {counts.replied} replied",
        markup=False,
        style="dim",
    )
