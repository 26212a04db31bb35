"""``python -m services.oms``: the order management service."""

from __future__ import annotations

import asyncio
import contextlib
import os

import grpc

from services.common.config import ConfigError, ServerConfig, env_int, exit_on_config_error, load_keyring
from services.common.db import Database
from services.common.server import run, serve
from services.store import database_url
from tessera.exchange.v1 import exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc

from .engine import OrderManagement
from .servicer import OrderManagementServicer


async def main() -> None:
    try:
        keyring = load_keyring(os.environ)
        ttl = env_int(os.environ, "TESSERA_TOKEN_TTL_SECONDS", 300, minimum=1)
        server_config = ServerConfig.from_env("oms")
    except ConfigError as error:
        exit_on_config_error("oms", error)
    exchange_address = os.environ.get("TESSERA_EXCHANGE_ADDRESS", "") or "127.0.0.1:50053"
    db = Database.from_url(database_url())
    channel = grpc.aio.insecure_channel(exchange_address)
    oms = OrderManagement(db, keyring, exchange_pb2_grpc.ExchangeServiceStub(channel), ttl_seconds=ttl)
    stop = asyncio.Event()
    follower: asyncio.Task[None] | None = None

    def register(server):  # type: ignore[no-untyped-def]
        oms_pb2_grpc.add_OrderManagementServiceServicer_to_server(OrderManagementServicer(oms), server)
        return [oms_pb2.DESCRIPTOR.services_by_name["OrderManagementService"].full_name]

    async def started() -> None:
        nonlocal follower
        follower = asyncio.create_task(oms.follow_exchange_reports(stop), name="execution-reports")

    async def stopping() -> None:
        stop.set()
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    try:
        await serve("oms", register, host=server_config.host, port=server_config.port,
                    on_started=started, on_stopping=stopping)
    finally:
        await channel.close()
        db.close()


if __name__ == "__main__":
    run(main)
