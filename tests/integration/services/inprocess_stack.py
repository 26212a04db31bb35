"""Risk, the OMS and the Exchange as gRPC servers in the test's own process and event loop.

The same servicers, handlers (registered by :func:`services.common.server.add_service`,
raw request bytes included) and background loops as the three services' ``__main__``
modules run, on port 0, over one database URL: what a test needs to watch from inside
(the store's statements, say) while orders go through the real wire path. The three
services' databases share the test's store (and its engine): the Exchange records each
execution there, as its ``__main__`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc

import core_ext
from services.common.auth import Authorizer
from services.common.server import add_service
from services.exchange.engine import ExchangeEngine, StoreExecutions
from services.exchange.providers.paper import PaperProvider
from services.exchange.servicer import RAW_REQUESTS as EXCHANGE_RAW
from services.exchange.servicer import ExchangeServicer
from services.oms.__main__ import every
from services.oms.engine import OrderManagement
from services.oms.servicer import RAW_REQUESTS as OMS_RAW
from services.oms.servicer import OrderManagementServicer
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.risk.servicer import RiskServicer
from services.store import Store
from services.store.database import Database
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class InProcessStack:
    """The running stack: ``risk`` and ``oms`` stubs, Risk's engine, the two services' databases."""

    def __init__(self, risk_engine: RiskEngine, risk_db: Database[Any], oms_db: Database[Any],
                 risk: risk_pb2_grpc.RiskServiceStub, oms: oms_pb2_grpc.OrderManagementServiceStub) -> None:
        self.risk_engine = risk_engine
        self.risk_db = risk_db
        self.oms_db = oms_db
        self.risk = risk
        self.oms = oms


async def _server(register: Any) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=OPTIONS)
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


#: These tests are about the order path, not identities (tests/e2e/test_e2e_access.py): none, explicitly.
NO_IDENTITIES = Authorizer.disabled()


@contextlib.asynccontextmanager
async def inprocess_stack(store: Store, keyring: "core_ext.KeyRing", limits: RiskLimits,
                          prices: dict[str, Decimal]) -> AsyncIterator[InProcessStack]:
    risk_db, oms_db, exchange_db = Database(store), Database(store), Database(store, owns_store=False)
    stop = asyncio.Event()
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        engine = ExchangeEngine(keyring, PaperProvider(prices), executions=StoreExecutions(exchange_db))
        await engine.accepting_credentials()  # as the service does before it serves
        server, exchange_address = await _server(lambda s: add_service(
            s, ExchangeServicer(engine), exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
            raw_requests=EXCHANGE_RAW, authorizer=NO_IDENTITIES))
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(exchange_address, options=OPTIONS))
        oms = OrderManagement(oms_db, keyring, exchange_pb2_grpc.ExchangeServiceStub(channels[-1]))
        server, oms_address = await _server(lambda s: add_service(
            s, OrderManagementServicer(oms), oms_pb2.DESCRIPTOR.services_by_name["OrderManagementService"],
            raw_requests=OMS_RAW, authorizer=NO_IDENTITIES))
        servers.append(server)
        risk = RiskEngine(risk_db, keyring, limits)
        risk_servicer = RiskServicer(risk)
        server, risk_address = await _server(lambda s: add_service(
            s, risk_servicer, risk_pb2.DESCRIPTOR.services_by_name["RiskService"], authorizer=NO_IDENTITIES))
        servers.append(server)
        await risk.start()
        tasks += [asyncio.create_task(risk.follow(stop)), asyncio.create_task(oms.follow_exchange_reports(stop)),
                  asyncio.create_task(every(1, stop, oms.expire_due))]
        channels += [grpc.aio.insecure_channel(risk_address, options=OPTIONS),
                     grpc.aio.insecure_channel(oms_address, options=OPTIONS)]
        yield InProcessStack(risk, risk_db, oms_db, risk_pb2_grpc.RiskServiceStub(channels[-2]),
                             oms_pb2_grpc.OrderManagementServiceStub(channels[-1]))
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0)
        risk_db.close()
        oms_db.close()
        exchange_db.close()
