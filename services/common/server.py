"""One bootstrap for every Tessera gRPC server.

Binds (port 0 picks a free one), registers ``grpc.health.v1`` and server reflection,
prints one ``<name> listening on <host>:<port>`` line (tests and ``tessera up`` read
it), and on SIGTERM or SIGINT marks every service NOT_SERVING, then stops with a grace
period so in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], Iterable[str]]

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]


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
    server = grpc.aio.server(options=SERVER_OPTIONS)
    service_names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        print(f"tessera-{name}: cannot bind {host}:{port} (in use, or not an address of this host)", file=sys.stderr)
        raise SystemExit(2)
    await server.start()
    if on_started is not None:
        await on_started()
    for service in ["", *service_names]:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{name} listening on {host}:{bound}", flush=True)
    log.info("%s serving %s on %s:%d", name, ", ".join(service_names), host, bound)

    await stop.wait()
    log.info("%s stopping: draining in-flight calls for up to %.1fs", name, grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    if on_stopping is not None:
        await on_stopping()
    await server.stop(grace_seconds)
    print(f"{name} stopped", flush=True)


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Entry point helper for ``python -m services.<name>``."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    asyncio.run(main())
