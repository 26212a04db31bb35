"""The fake Exchange stub the services' integration tests put in front of a real paper engine.

Its ``ExecuteOrder`` / ``CancelOrder`` run the real :class:`ExchangeEngine` (token
verified again, paper fills) and turn domain errors into ``grpc.aio.AioRpcError`` the
way the servicer does; a test can make a call fail with any status code instead, and
counts the calls. :func:`exchange_server` is the real thing instead: an Exchange gRPC
server in the test's process, recording its executions in the test's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal
from typing import Any

import grpc
from sqlalchemy import func, select, text

import core_ext
from services.common import convert
from services.common.auth import Authorizer
from services.common.errors import describe, to_grpc_status
from services.common.server import add_service
from services.domain import Order, OrderStatus, Side
from services.domain.errors import (
    DomainError,
)
from services.exchange.engine import ExchangeEngine, StoreExecutions
from services.exchange.providers.paper import PaperProvider
from services.exchange.servicer import RAW_REQUESTS, ExchangeServicer, query_order_response
from services.exchange.venue import OrderRef
from services.oms.engine import OrderManagement
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.store.database import Database
from services.store.models import exchange_executions_table
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc

S = OrderStatus
MARKET_PRICE = Decimal("65000")
LIMITS = RiskLimits(
    allowed_symbols=frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT"}),
    max_notional_per_order=Decimal("250000"),
    max_quantity_per_order=Decimal("100"),
    max_price=Decimal("10000000"),
    reference_prices={"BTCUSDT": MARKET_PRICE, "ETHUSDT": Decimal("3200"), "SOLUSDT": Decimal("150")},
)


def rpc_error(code: grpc.StatusCode, details: str, trailing: tuple | None = None) -> grpc.aio.AioRpcError:
    """A failed call as a Tessera server fails it: ``details`` of the form ``"REASON: text"``
    also travel as a ``google.rpc.ErrorInfo`` in the trailers (what the OMS reads)."""
    if trailing is None:
        head, _, rest = details.partition(":")
        trailing = ()
        if rest and head.isupper() and " " not in head:
            trailing = tuple(to_grpc_status(code, head, details).trailing_metadata)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details)


class FakeStreamCall:
    """A server-streaming call over the engine's report log; ``drained`` is set once the
    consumer asks for more than the log holds (it has applied everything so far)."""

    def __init__(self, engine: ExchangeEngine, after: int, metadata: Any, request: Any = None) -> None:
        self._engine = engine
        self._request = request if request is not None else exchange_pb2.StreamExecutionReportsRequest(
            after_sequence=after)
        self._metadata = metadata
        self._reports = engine.reports.follow(after)
        self._delivered = after
        self.drained = asyncio.Event()
        self.cancelled = False

    def __aiter__(self) -> "FakeStreamCall":
        return self

    async def __anext__(self) -> exchange_pb2.StreamExecutionReportsResponse:
        if self._metadata is not None:  # checked once, when the stream starts
            metadata, self._metadata = self._metadata, None
            try:
                self._engine.authorize(metadata, "StreamExecutionReports", self._request)
            except DomainError as error:
                raise FakeExchange.as_rpc_error(error) from None
        if self._delivered >= self._engine.reports.last_sequence:
            self.drained.set()
        report = await self._reports.__anext__()
        self._delivered = report.sequence
        return exchange_pb2.StreamExecutionReportsResponse(report=convert.report_to_proto(report))

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeExchange:
    def __init__(self, keyring: "core_ext.KeyRing") -> None:
        self.provider = PaperProvider({"BTCUSDT": MARKET_PRICE, "ETHUSDT": Decimal("3200")})
        # Started at the beginning of this second: it accepts credentials signed from now on.
        self.engine = ExchangeEngine(keyring, self.provider, ttl_seconds=300, credentials_since=int(time.time()))
        self.execute_requests: list[exchange_pb2.ExecuteOrderRequest] = []
        #: The reports of every ExecuteOrder answer (the stream does not carry them).
        self.answered: list[Any] = []
        self.cancel_requests: list[exchange_pb2.CancelOrderRequest] = []
        self.streams: list[FakeStreamCall] = []
        self.execute_failure: grpc.aio.AioRpcError | None = None
        self.cancel_failure: grpc.aio.AioRpcError | None = None

    @staticmethod
    def as_rpc_error(error: Exception) -> grpc.aio.AioRpcError:
        """The error a client sees when the servicer raises ``error`` (see ``grpc_errors``)."""
        code, reason, message = describe(error)
        status = to_grpc_status(code, reason, message)
        return rpc_error(code, status.details, status.trailing_metadata)

    async def ExecuteOrder(self, request, timeout=None, metadata=None, wait_for_ready=None):
        self.execute_requests.append(request)
        await asyncio.sleep(0)  # a real call yields to the loop
        if self.execute_failure is not None:
            raise self.execute_failure
        try:
            order = convert.order_from_proto(request.order)
            reports = await self.engine.execute(order, request.risk_token, metadata, request)
        except (DomainError, core_ext.IllegalTransition) as error:
            raise self.as_rpc_error(error) from None
        self.answered += reports
        return exchange_pb2.ExecuteOrderResponse(
            remote_order_id=order.remote_order_id or "",
            mode=common_pb.EXECUTION_MODE_PAPER,
            reports=[convert.report_to_proto(r) for r in reports],
        )

    async def CancelOrder(self, request, timeout=None, metadata=None, wait_for_ready=None):
        self.cancel_requests.append(request)
        await asyncio.sleep(0)
        if self.cancel_failure is not None:
            raise self.cancel_failure
        try:
            self.engine.authorize(metadata, "CancelOrder", request)
            report = await self.engine.cancel(request.order_id)
        except DomainError as error:
            raise self.as_rpc_error(error) from None
        return exchange_pb2.CancelOrderResponse(report=convert.report_to_proto(report))

    async def QueryOrder(self, request, timeout=None, metadata=None, wait_for_ready=None):
        await asyncio.sleep(0)
        try:
            self.engine.authorize(metadata, "QueryOrder", request)
            state = await self.engine.query_order(OrderRef(
                order_id=request.order_id, client_order_id=request.client_order_id, account=request.account,
                venue=request.venue, symbol=request.symbol, side=Side.BUY))
        except DomainError as error:
            raise self.as_rpc_error(error) from None
        return query_order_response(state, common_pb.EXECUTION_MODE_PAPER)

    def StreamExecutionReports(self, request, timeout=None, metadata=None):
        call = FakeStreamCall(self.engine, request.after_sequence, metadata if metadata is not None else (), request)
        self.streams.append(call)
        return call


@contextlib.asynccontextmanager
async def exchange_server(keyring: "core_ext.KeyRing", store: Any, provider: Any = None, **options: Any):
    """An Exchange service in this process, recording executions in ``store``: yields its
    stub, its provider (a paper venue unless given) and its engine (``options``: the
    engine's keywords)."""
    db = Database(store, owns_store=False)
    provider = provider or PaperProvider({"BTCUSDT": MARKET_PRICE, "ETHUSDT": Decimal("3200")})
    engine = ExchangeEngine(keyring, provider, executions=StoreExecutions(db), **options)
    await engine.accepting_credentials()  # as the service does before it serves
    server = grpc.aio.server()
    add_service(server, ExchangeServicer(engine), exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
                raw_requests=RAW_REQUESTS, authorizer=Authorizer.disabled())  # callers' identities: not these tests'
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await engine.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield exchange_pb2_grpc.ExchangeServiceStub(channel), provider, engine
    finally:
        await channel.close()
        await server.stop(0)
        await engine.close()
        db.close()


def executions(store: Any, order_id: str) -> int:
    """How many times the Exchange recorded ``order_id`` as executed (0 or 1)."""
    with store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(exchange_executions_table)
                                  .where(exchange_executions_table.c.order_id == order_id)).scalar_one()


def as_sent(order: Order) -> Order:
    """The order as the OMS servicer rebuilds it from a client's ``pb.Order``."""
    return convert.order_from_proto(convert.order_to_proto(order))


async def details(oms: OrderManagement, order_id: str):
    return await oms.order_details(order_id)


async def approved(risk: RiskEngine, order: Order):
    decision = await risk.validate(order)
    assert decision.order.status is S.APPROVED, decision.violations
    assert decision.token
    return decision


def statuses(events) -> list[OrderStatus]:
    return [e.to_status for e in events]


async def working(risk: RiskEngine, oms: OrderManagement, order: Order) -> Order:
    """``order`` approved by Risk and submitted through the OMS, as the OMS answered it."""
    decision = await approved(risk, order)
    submission = await oms.submit(as_sent(decision.order), decision.token)
    return submission.order


async def venue_fills(exchange: FakeExchange, price: Decimal, *, published: bool = True) -> list[Any]:
    """Move the paper market to ``price`` and let resting orders meet it; their fills go to
    the report stream (the OMS learns them later), as on a venue. ``published=False``:
    the stream never carries them (an Exchange that crashed before it published them);
    the venue still has them (``QueryOrder``)."""
    exchange.provider.source.set("BTCUSDT", price)
    reports = await exchange.provider.match_resting()
    if published:
        await exchange.engine.reports.append(reports)
    return reports


def cannot_query(exchange: FakeExchange) -> None:
    """The Exchange does not answer QueryOrder (the OMS cannot read the fills it owes)
    until :func:`can_query`."""

    async def unavailable(request, timeout=None, metadata=None, wait_for_ready=None):
        raise rpc_error(grpc.StatusCode.UNAVAILABLE, "EXCHANGE_UNAVAILABLE: not now")

    exchange.QueryOrder = unavailable


def can_query(exchange: FakeExchange) -> None:
    """The Exchange answers QueryOrder again."""
    exchange.__dict__.pop("QueryOrder", None)


def answer_lost(exchange: FakeExchange, method: str) -> None:
    """The Exchange carries out ``method`` (``CancelOrder``, ``ExecuteOrder``) and its
    answer never reaches the OMS (UNAVAILABLE), until :func:`answers_arrive`."""
    carried_out = getattr(exchange, method)

    async def lost(request, timeout=None, metadata=None, wait_for_ready=None):
        await carried_out(request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready)
        raise rpc_error(grpc.StatusCode.UNAVAILABLE, "EXCHANGE_UNAVAILABLE: the connection dropped")

    setattr(exchange, method, lost)


def answers_arrive(exchange: FakeExchange, method: str) -> None:
    """``method``'s answers reach the OMS again."""
    exchange.__dict__.pop(method, None)


async def long_then_resting_sell(risk: RiskEngine, oms: OrderManagement, exchange: FakeExchange, make_order: Any,
                                 *, published: bool = True) -> Order:
    """Buy 0.004 at 65000 (filled at once), then a sell of 0.01 at 66000 that rests (returned);
    the market moves to 67000 and the venue fills 0.004 of the sell, at 66000, without the
    OMS hearing of it yet (``published=False``: nor will the report stream ever tell it)."""
    bought = await working(risk, oms, make_order(quantity=Decimal("0.004"), price=MARKET_PRICE))
    assert bought.status is S.FILLED
    sell = await working(risk, oms, make_order(side=Side.SELL, price=Decimal("66000")))
    assert sell.status is S.ACCEPTED
    (fill,) = await venue_fills(exchange, Decimal("67000"), published=published)
    assert (fill.fill.quantity, fill.fill.price) == (Decimal("0.004"), Decimal("66000"))
    return sell


async def follow_until_drained(oms: OrderManagement, exchange: FakeExchange) -> None:
    """Let the OMS apply the report stream until it has applied everything in it."""
    follower = asyncio.create_task(oms.follow_exchange_reports(asyncio.Event()))
    try:
        for _ in range(500):
            if exchange.streams and exchange.streams[-1].drained.is_set():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the report follower never caught up")
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def anomalies(db: Any) -> list[str]:
    """The kinds of the execution anomalies stored, oldest first."""
    return await db.read(lambda uow: uow.session.execute(
        text("SELECT kind FROM execution_anomalies ORDER BY id")).scalars().all())
