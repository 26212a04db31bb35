"""One bootstrap for every Tessera gRPC server.

Binds (port 0 picks a free one; TLS when ``TESSERA_TLS_*`` say so, see
:mod:`services.common.tls`), registers ``grpc.health.v1`` and server reflection,
serves Prometheus metrics on ``/metrics`` on a port of its own (and, when
``TESSERA_<NAME>_HEALTH_PORT`` is set, health checks alone in plaintext on another, for
probes that cannot present a client certificate), prints one
``<name> listening on <host>:<port>`` line and then one ``<name> metrics on
<host>:<port>`` line (tests and ``tessera up`` read them), and on SIGTERM or SIGINT
marks every service NOT_SERVING, then stops with a grace period so in-flight calls
finish.

:func:`run` sets up the process first: JSON logs on stderr with secrets redacted, and
trace export when an OTLP endpoint is configured (:mod:`services.common.observability`).
Every call of a service registered with :func:`add_service` is observed (request id,
trace context, RPC metrics, access log) and decoded safely, by its handler wrapped once
at registration.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Any, Awaitable, Callable, Iterable, Mapping

import grpc
from google.protobuf import message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import auth, tls
from services.common.config import ConfigError, env_int, exit_on_config_error
from services.common.observability import metrics
from services.common.observability.interceptors import observe_handler
from services.common.observability.logs import setup_logging
from services.common.observability.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)

#: Default ``/metrics`` ports; ``TESSERA_<NAME>_METRICS_PORT`` (else ``TESSERA_METRICS_PORT``)
#: overrides them: ``0`` picks a free port, ``off`` serves no metrics.
DEFAULT_METRICS_PORTS = {"risk": 9101, "oms": 9102, "exchange": 9103}

Registrar = Callable[[grpc.aio.Server], Iterable[str]]


def add_service(server: grpc.aio.Server, servicer: object, service: Any, *, raw_requests: Iterable[str] = (),
                observe: bool = True, authorizer: auth.Authorizer | None = None) -> str:
    """Register ``servicer``'s methods for ``service`` (a ``ServiceDescriptor``), as the
    generated ``add_*Servicer_to_server`` does, with two differences:

    * each handler is wrapped once, here, with what every call gets (request ids, trace
      context, metrics, the access log; :func:`observe_handler`), the wrapper decoding
      the request and answering undecodable bytes INVALID_ARGUMENT (as
      :func:`services.common.decoding.decode_safely` does), instead of server
      interceptors that would run again for every call (``observe=False``: bare
      handlers, for the benchmark's floor);
    * the methods named in ``raw_requests`` receive the request's bytes as they arrived:
      they verify the risk token on the wire (see :func:`core_ext.verify_order_request`)
      and parse the message themselves.

    Returns the service's full name."""
    raw = frozenset(raw_requests)
    if observe and authorizer is None:
        authorizer = auth.process_authorizer()
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        behavior = getattr(servicer, method.name)
        deserializer = None if method.name in raw else request.FromString
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handler = make(behavior, request_deserializer=deserializer, response_serializer=response.SerializeToString)
        if observe:
            full = f"/{service.full_name}/{method.name}"
            guard = authorizer.guard(full, request) if authorizer is not None else None
            handler = observe_handler(full, handler, guard, decode=True)
        handlers[method.name] = handler
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
    return service.full_name


SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


def metrics_port(name: str, environ: Mapping[str, str] = os.environ) -> tuple[str, int | None]:
    """(the variable that decided, the port) for ``name``'s metrics; port None: off.

    Raises
    ------
    ConfigError
        The value is neither ``off`` nor a port number.
    """
    for variable in (f"TESSERA_{name.upper()}_METRICS_PORT", "TESSERA_METRICS_PORT"):
        raw = environ.get(variable, "").strip()
        if raw:
            if raw.lower() in ("off", "false", "none", "disabled"):
                return variable, None
            port = env_int({variable: raw}, variable, 0)
            if port > 65535:
                raise ConfigError(f"{variable} must be a port number (0 = any free port) or off, got {raw!r}")
            return variable, port
    return f"TESSERA_{name.upper()}_METRICS_PORT", DEFAULT_METRICS_PORTS.get(name, 0)


def _start_metrics(name: str, host: str, environ: Mapping[str, str]) -> metrics.MetricsServer | None:
    try:
        variable, port = metrics_port(name, environ)
    except ConfigError as error:
        exit_on_config_error(name, error)
    if port is None:
        return None
    metrics_host = environ.get("TESSERA_METRICS_HOST", "").strip() or host
    try:
        return metrics.MetricsServer(metrics_host, port)
    except OSError as error:
        print(f"tessera-{name}: cannot serve metrics on {metrics_host}:{port} ({error.strerror or error}); "
              f"set {variable} to a free port, 0 for any, or off", file=sys.stderr)
        raise SystemExit(2) from None


async def _start_health_port(
    name: str, host: str, health_servicer: health.aio.HealthServicer, environ: Mapping[str, str]
) -> tuple[grpc.aio.Server | None, int]:
    """``TESSERA_<NAME>_HEALTH_PORT`` (else ``TESSERA_HEALTH_PORT``): ``grpc.health.v1``
    alone, in plaintext, on a port of its own, for the kubelet's gRPC probes (which
    present no client certificate) when the main port requires mutual TLS."""
    variable = f"TESSERA_{name.upper()}_HEALTH_PORT"
    if not environ.get(variable, "").strip():
        variable = "TESSERA_HEALTH_PORT"
    if not environ.get(variable, "").strip():
        return None, 0
    try:
        port = env_int(environ, variable, 0)
    except ConfigError as error:
        exit_on_config_error(name, error)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        print(f"tessera-{name}: cannot bind {host}:{port} for {variable}", file=sys.stderr)
        raise SystemExit(2)
    await server.start()
    return server, bound


async def serve(
    name: str,
    register: Registrar,
    *,
    host: str,
    port: int,
    grace_seconds: float = 5.0,
    on_started: Callable[[], Awaitable[None]] | None = None,
    on_stopping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a server until SIGTERM/SIGINT, then drain and stop it."""
    metrics.SERVICE["name"] = name
    try:
        credentials = tls.server_credentials(os.environ)
        authorizer = auth.configure(os.environ)
    except ConfigError as error:
        exit_on_config_error(name, error)
    if authorizer.enabled:
        log.info("%s: %s", name, authorizer.describe())
    else:  # said at start, and by every access log line (auth=none)
        log.warning("%s: %s", name, authorizer.describe())
    # No interceptors: add_service wraps each method's handler once (observe_handler, which decodes too).
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service_names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    try:
        if credentials is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        print(f"tessera-{name}: cannot bind {host}:{port} (in use, or not an address of this host)", file=sys.stderr)
        raise SystemExit(2)
    metrics_server = _start_metrics(name, host, os.environ)
    health_server, health_port = await _start_health_port(name, host, health_servicer, os.environ)
    await server.start()
    if on_started is not None:
        await on_started()
    # What was loaded to start (a Risk replica's books, caches, modules) lives as long as the
    # process: kept out of the collector's scans, which otherwise walk it on every full pass.
    gc.collect()
    gc.freeze()
    for service in ["", *service_names]:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{name} listening on {host}:{bound}", flush=True)
    if metrics_server is not None:
        print(f"{name} metrics on {metrics_server.host}:{metrics_server.port}", flush=True)
    if health_server is not None:
        print(f"{name} health on {host}:{health_port}", flush=True)
    log.info(
        "%s serving %s on %s:%d (%s)%s", name, ", ".join(service_names), host, bound,
        "plaintext" if credentials is None else "TLS",
        f", metrics on {metrics_server.host}:{metrics_server.port}" if metrics_server is not None else "",
    )

    await stop.wait()
    log.info("%s stopping: draining in-flight calls for up to %.1fs", name, grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    if on_stopping is not None:
        await on_stopping()
    await server.stop(grace_seconds)
    if health_server is not None:
        await health_server.stop(0)
    if metrics_server is not None:
        metrics_server.close()
    shutdown_tracing()
    print(f"{name} stopped", flush=True)


def service_name(main: Callable[..., object]) -> str:
    """``risk`` for ``services.risk.__main__.main`` (``tessera`` for anything else)."""
    module = getattr(main, "__module__", "") or ""
    spec = getattr(sys.modules.get(module), "__spec__", None)  # run as -m: __main__ is services.risk.__main__
    parts = (spec.name if spec is not None else module).split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" else "tessera"


GC_THRESHOLDS = (50_000, 20, 100)


def run(main: Callable[[], Awaitable[None]], name: str | None = None) -> None:
    """Entry point helper for ``python -m services.<name>``: logs, tracing, then ``main``."""
    name = name or service_name(main)
    metrics.SERVICE["name"] = name
    setup_logging(name, os.environ)
    try:
        setup_tracing(name, os.environ)
    except Exception as error:  # noqa: BLE001 - tracing is optional: run without it, say why
        log.warning("tracing disabled: the OTLP exporter could not be set up (%s)", type(error).__name__)
    try:
        gc.set_threshold(*gc_thresholds(os.environ))
        loop = install_event_loop(os.environ)
    except ConfigError as error:
        exit_on_config_error(name, error)
    log.debug("%s runs on the %s event loop", name, loop)
    asyncio.run(main())


EVENT_LOOPS = ("uvloop", "asyncio")


def install_event_loop(environ: Mapping[str, str]) -> str:
    """Make new event loops uvloop's (``TESSERA_EVENT_LOOP=uvloop``, the default where
    uvloop is installed) or asyncio's own (``asyncio``); returns which.

    grpc.aio runs on any asyncio loop; uvloop's takes about a sixth less CPU per order
    through the three services (docs/benchmarks.md), the bare chain's as much.

    Raises
    ------
    ConfigError
        An unknown value, or ``uvloop`` asked for by name and not installed.
    """
    asked = (environ.get("TESSERA_EVENT_LOOP", "") or "").strip().lower()
    if asked and asked not in EVENT_LOOPS:
        raise ConfigError(f"TESSERA_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)} (got {asked!r})")
    if asked == "asyncio":
        asyncio.set_event_loop_policy(None)
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if asked == "uvloop":
            raise ConfigError("TESSERA_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def gc_thresholds(environ: Mapping[str, str]) -> tuple[int, int, int]:
    """The cyclic collector's thresholds: ``TESSERA_GC_THRESHOLDS`` (three integers).

    Python's default (700 allocations) runs a young collection several times per batch
    of orders, each walking every order of the batch still alive: a tenth of a service's
    CPU in batches of 1,000. The order path makes few reference cycles, so the default
    here is 50,000: a few collections per hundred thousand orders.
    """
    raw = environ.get("TESSERA_GC_THRESHOLDS", "").strip()
    if not raw:
        return GC_THRESHOLDS
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or values[0] <= 0 or min(values) < 0:
        raise ConfigError(f"TESSERA_GC_THRESHOLDS must be three integers like 50000,20,100 (got {raw!r})")
    return values  # type: ignore[return-value]
