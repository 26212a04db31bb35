"""OpenTelemetry tracing: W3C trace context through Risk, the OMS and the Exchange.

Every service takes the caller's ``traceparent`` (and ``tracestate``, ``baggage``)
from the gRPC metadata and runs the call in that context; the OMS passes the context
on to the Exchange in the metadata of its own calls (see :mod:`.interceptors`). So a
client that sends a ``traceparent`` finds the same trace id in every service's log
lines (``trace_id``) and spans.

Spans are recorded and exported only when an OTLP endpoint is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, gRPC
protocol; the exporter's other ``OTEL_EXPORTER_OTLP_*`` variables apply, and
``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` turn it off). Without one
nothing is recorded, and an incoming context is still passed on unchanged.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping

from opentelemetry import propagate, trace

log = logging.getLogger(__name__)

TRACE_METADATA_KEYS = frozenset({"traceparent", "tracestate", "baggage"})
_state: dict[str, Any] = {"provider": None}


def exporting(environ: Mapping[str, str] = os.environ) -> bool:
    """True when spans should be recorded and exported over OTLP."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "otlp" not in exporters:
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK with an OTLP exporter when configured; return whether it is."""
    if not exporting(environ):
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or f"tessera-{service}"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    log.info("tracing: exporting spans over OTLP to %s", endpoint)
    return True


def use_provider(provider: Any) -> None:
    """Record spans with ``provider`` (None: stop); tests pass an SDK provider with an
    in-memory exporter. The global provider is left alone."""
    _state["provider"] = provider


def recording() -> bool:
    """Whether spans are recorded (an SDK provider is in use)."""
    return _state["provider"] is not None


def shutdown_tracing() -> None:
    """Flush and stop the exporter (at service stop)."""
    provider, _state["provider"] = _state["provider"], None
    if provider is not None:
        try:
            provider.shutdown()
        except Exception:  # noqa: BLE001 - stopping must go on
            log.warning("tracing: the exporter did not shut down cleanly", exc_info=True)


def tracer() -> trace.Tracer:
    provider = _state["provider"]
    return provider.get_tracer("tessera") if provider is not None else trace.get_tracer("tessera")


def extract(metadata: Iterable[tuple[str, Any]]) -> Any:
    """The trace context a caller sent in its gRPC metadata (None when it sent none)."""
    carrier = {key: value for key, value in metadata if key in TRACE_METADATA_KEYS and isinstance(value, str)}
    return propagate.extract(carrier) if carrier else None


def inject() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata entries (empty outside any trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


__all__ = ["exporting", "extract", "inject", "recording", "setup_tracing", "shutdown_tracing", "tracer", "use_provider"]
