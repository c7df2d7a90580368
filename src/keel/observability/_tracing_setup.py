"""Setting tracing up: whether the standard ``OTEL_*`` variables ask for it, the exporter and
provider they describe, and the one liberty Keel takes with the SDK's tracer (ids chosen for
the run-level span, so that every process names it alike).

Only :func:`require_otel` and the functions that build things import OpenTelemetry; the
decision whether to trace reads the environment alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

__all__ = [
    "ExportConfig",
    "export_config",
    "forced_ids",
    "install_forced_ids",
    "owned_provider",
    "require_otel",
]

_log = logging.getLogger("keel.observability")

EXTRA_HINT = "install Keel's otel extra: pip install 'keel-runtime[otel]'"
_TRUE = ("true", "1", "yes", "on")


def require_otel() -> None:
    """Import the OpenTelemetry SDK, or raise ``ImportError`` naming the extra to install."""
    try:
        import opentelemetry.sdk.trace
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"keel.observability.Tracing needs OpenTelemetry: {EXTRA_HINT}") from exc


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """What the environment asks for: where to send spans, as whom, and with content."""

    endpoint: str
    service_name: str | None
    capture_content: bool


def _get(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or "").strip()


def export_config(environ: Mapping[str, str]) -> ExportConfig | None:
    """The OTLP/HTTP export ``environ`` configures, or ``None`` when it configures none (no
    endpoint, ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER=none``, or a protocol other than
    ``http/protobuf``, which the otel extra does not bring)."""
    if _get(environ, "OTEL_SDK_DISABLED").lower() in _TRUE:
        return None
    exporters = {e.strip().lower() for e in _get(environ, "OTEL_TRACES_EXPORTER").split(",")}
    if exporters & {"none"} or (exporters - {"", "otlp"}):
        return None
    endpoint = _get(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint:
        base = _get(environ, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if not base:
            return None
        endpoint = f"{base.rstrip('/')}/v1/traces"
    protocol = (
        _get(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _get(environ, "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        _log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s: Keel exports traces over http/protobuf only; "
            "no traces are exported (point it at the collector's OTLP/HTTP port, usually 4318)",
            protocol,
        )
        return None
    capture = _get(environ, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT").lower()
    return ExportConfig(
        endpoint=endpoint,
        service_name=_get(environ, "OTEL_SERVICE_NAME") or None,
        capture_content=capture in _TRUE,
    )


def owned_provider(config: ExportConfig, environ: Mapping[str, str]) -> TracerProvider:
    """A tracer provider of Keel's own exporting to ``config.endpoint`` in the background
    (a batch span processor; its ``OTEL_BSP_*`` settings, the exporter's headers, timeout,
    compression and certificates come from the process environment, as the SDK reads them)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, Any] = {}
    if config.service_name:
        attributes["service.name"] = config.service_name
    elif "service.name=" not in _get(environ, "OTEL_RESOURCE_ATTRIBUTES"):
        attributes["service.name"] = "keel"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint)))
    return provider


# -- ids chosen for a span ------------------------------------------------------------------------

_FORCED: ContextVar[tuple[int | None, int] | None] = ContextVar("keel_forced_ids", default=None)
"""The (trace id, span id) the next span started in this context gets (see below)."""


def _forcing_generator(inner: Any) -> Any:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class ForcedIds(IdGenerator):
        """The SDK's ids, except while :func:`forced_ids` says otherwise."""

        keel_forced = True

        def __init__(self, inner: IdGenerator) -> None:
            self.inner = inner

        def generate_span_id(self) -> int:
            forced = _FORCED.get()
            return forced[1] if forced is not None else self.inner.generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _FORCED.get()
            if forced is not None and forced[0] is not None:
                return forced[0]
            return self.inner.generate_trace_id()

        def is_trace_id_random(self) -> bool:
            forced = _FORCED.get()
            if forced is not None and forced[0] is not None:
                return False
            return self.inner.is_trace_id_random()

    return ForcedIds(inner)


def install_forced_ids(tracer: Tracer) -> bool:
    """Let :func:`forced_ids` choose the ids of spans ``tracer`` starts; ``False`` when the
    tracer is not the SDK's (then the run-level span gets ids of its own in each process)."""
    generator = getattr(tracer, "id_generator", None)
    if generator is None:
        return False
    if not getattr(generator, "keel_forced", False):
        tracer.id_generator = _forcing_generator(generator)  # type: ignore[attr-defined]
    return True


@contextmanager
def forced_ids(trace_id: int | None, span_id: int) -> Iterator[None]:
    """The span started inside gets ``span_id`` (and ``trace_id`` when it is a root span).

    A run-level span is exported once, by the process that sees the run end, but its
    children are made earlier and elsewhere: every process derives its ids from the run,
    and the one that ends it starts it with those ids. Only Keel's own tracer is changed,
    and only for the duration of this block, in this context.
    """
    token = _FORCED.set((trace_id, span_id))
    try:
        yield
    finally:
        _FORCED.reset(token)
