"""``python -m services.oms``: the order management service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Awaitable, Callable

from services.common import tls
from services.common.config import (
    ConfigError,
    ServerConfig,
    env_decimal,
    env_int,
    exit_on_config_error,
    load_keyring,
)
from services.common.observability import metrics
from services.common.server import add_service, run, serve
from services.store import database_url
from services.store.database import Database
from tessera.exchange.v1 import exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2

from .cancels import KILL_SWITCH_ATTEMPTS
from .engine import OrderManagement
from .reconciler import Reconciler
from .servicer import RAW_REQUESTS, OrderManagementServicer

log = logging.getLogger(__name__)
EXCHANGE_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


async def every(seconds: float, stop: asyncio.Event, job: Callable[[], Awaitable[object]]) -> None:
    """Run ``job`` every ``seconds`` until ``stop``; a failing run is logged, not fatal."""
    while not stop.is_set():
        try:
            await job()
        except Exception:  # noqa: BLE001 - the next run may succeed (store back, venue back)
            log.exception("periodic %s failed", getattr(job, "__name__", "job"))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        ttl = env_int(os.environ, "TESSERA_TOKEN_TTL_SECONDS", 300, minimum=1)
        expiry_interval = env_int(os.environ, "TESSERA_EXPIRY_INTERVAL_SECONDS", 1, minimum=1)
        exchange_timeout = float(env_decimal(os.environ, "TESSERA_EXCHANGE_TIMEOUT_SECONDS", "10"))
        if exchange_timeout <= 0:
            raise ConfigError("TESSERA_EXCHANGE_TIMEOUT_SECONDS must be positive")
        kill_switch_attempts = env_int(os.environ, "TESSERA_KILL_SWITCH_ATTEMPTS", KILL_SWITCH_ATTEMPTS, minimum=1)
        reconcile_every = float(env_decimal(os.environ, "TESSERA_RECONCILE_INTERVAL_SECONDS", "10"))
        reconcile_grace = float(env_decimal(os.environ, "TESSERA_RECONCILE_GRACE_SECONDS", "30"))
        fills_owed_after = float(env_decimal(os.environ, "TESSERA_RECONCILE_FILLS_OWED_SECONDS", "120"))
        server_config = ServerConfig.from_env("oms")
        exchange_address = os.environ.get("TESSERA_EXCHANGE_ADDRESS", "") or "127.0.0.1:50053"
        # TLS when TESSERA_EXCHANGE_TLS_* (or TESSERA_TLS_*) say so; the gateway sends the trace
        # context and request id along with every call.
        # Reconnect within a second of an Exchange restart (gRPC's default backoff grows to
        # minutes, and every submission meanwhile fails before it is sent: in doubt, then
        # rejected NOT_AT_VENUE).
        channel = tls.client_channel(exchange_address, os.environ, options=EXCHANGE_CHANNEL_OPTIONS)
    except ConfigError as error:
        exit_on_config_error("oms", error)
    if reconcile_grace <= exchange_timeout:
        log.warning("TESSERA_RECONCILE_GRACE_SECONDS (%s) should exceed TESSERA_EXCHANGE_TIMEOUT_SECONDS (%s): an "
                    "order still on its way to the venue could be judged not at venue", reconcile_grace, exchange_timeout)
    db = Database.from_url(database_url(), on_events=metrics.events_committed,
                            on_commit=metrics.store_committed)
    metrics.watch_trading_state(db.store)
    oms = OrderManagement(
        db, keyring, exchange_pb2_grpc.ExchangeServiceStub(channel), ttl_seconds=ttl, exchange_timeout=exchange_timeout,
        exchange_channel=channel,  # submissions wait for a restarting Exchange before they claim an order
        kill_switch_attempts=kill_switch_attempts,
    )
    reconciler = Reconciler(db, keyring, exchange_pb2_grpc.ExchangeServiceStub(channel), grace_seconds=reconcile_grace,
                            fills_owed_seconds=fills_owed_after)
    stop = asyncio.Event()

    def register(server):  # type: ignore[no-untyped-def]
        service = oms_pb2.DESCRIPTOR.services_by_name["OrderManagementService"]
        return [add_service(server, OrderManagementServicer(oms), service, raw_requests=RAW_REQUESTS)]

    background: list[asyncio.Task[None]] = []

    async def started() -> None:
        background.append(asyncio.create_task(oms.follow_exchange_reports(stop), name="execution-reports"))
        background.append(asyncio.create_task(every(expiry_interval, stop, oms.expire_due), name="expiry"))
        # Every non-terminal order against the venue at start, then periodically (0: at start only).
        background.append(asyncio.create_task(reconciler.run_forever(stop, reconcile_every), name="reconciler"))

    async def stopping() -> None:
        stop.set()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        await serve("oms", register, host=server_config.host, port=server_config.port,
                    on_started=started, on_stopping=stopping)
    finally:
        await channel.close()
        db.close()


if __name__ == "__main__":
    run(main)
