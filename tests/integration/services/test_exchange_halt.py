"""Nothing reaches a venue once trading is HALTED, whatever the OMS claimed before the halt.

The Exchange writes its record of an execution (``exchange_executions``) only while
neither the global trading state nor the order's symbol's is HALTED, in the very
statement that records it: an order refused so is not recorded, never reaches the
provider, and is answered FAILED_PRECONDITION ``TRADING_HALTED``, which the OMS stores
as the order's rejection. An order recorded just before the halt is at the venue's door:
the venue-wide cancel of the kill switch waits for its placement, then cancels it.

On SQLite and PostgreSQL (the ``store`` fixture), through a real Exchange gRPC server in
this process (:func:`svc_harness.exchange_server`) and, for the OMS, its real gateway.
"""

from __future__ import annotations

import asyncio
import collections
from decimal import Decimal
from typing import Any

import grpc
import pytest
from fakes import HeldPaperVenue, first_of, sweep_waiting

from services.common import convert
from services.common.tokens import oms_call_metadata
from services.domain import OrderStatus, TradingState, utcnow
from services.domain.errors import PreconditionFailed
from services.exchange.venue import OrderRef
from services.oms.engine import OrderManagement
from services.oms.gateway import reason_of
from services.store.executions import EXECUTIONS, Execution
from services.store.trading_state import GLOBAL_SCOPE, symbol_scope
from svc_harness import approved, as_sent, exchange_server, executions
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2

ETH = {"symbol": "ETHUSDT", "price": Decimal("3200"), "quantity": Decimal("0.1")}


async def set_state(db: Any, state: TradingState, scope: str = GLOBAL_SCOPE) -> None:
    await db.run(lambda uow: uow.trading_state.set(state, "ops", f"{state.value} for the test", scope))


def execute_request(decision: Any) -> exchange_pb2.ExecuteOrderRequest:
    """The ExecuteOrderRequest the OMS sends for an order Risk approved (and the OMS claimed)."""
    order = as_sent(decision.order)
    order.status = OrderStatus.SUBMITTED
    return exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=decision.token)


# -- the Exchange alone -------------------------------------------------------------------------
@pytest.mark.parametrize("scope", ["global", "symbol"])
def test_an_execute_order_after_the_halt_is_refused_trading_halted_reaches_no_venue_and_is_not_recorded(
        db, store, risk, keyring, make_order, scope):
    async def scenario():
        decision = await approved(risk, make_order())
        await set_state(db, TradingState.HALTED, GLOBAL_SCOPE if scope == "global" else symbol_scope("BTCUSDT"))
        request = execute_request(decision)
        async with exchange_server(keyring, store) as (exchange, venue, _):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await exchange.ExecuteOrder(request, metadata=oms_call_metadata(keyring, "ExecuteOrder", request))
        return decision.order, refused.value, venue

    order, refused, venue = asyncio.run(scenario())

    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(refused) == "TRADING_HALTED"
    assert venue._orders == {}  # the paper venue never saw it
    assert executions(store, order.order_id) == 0


def test_an_execute_orders_batch_under_a_symbols_halt_refuses_that_symbols_orders_alone(
        db, store, risk, keyring, make_order):
    async def scenario():
        btc, eth = await approved(risk, make_order()), await approved(risk, make_order(**ETH))
        await set_state(db, TradingState.HALTED, symbol_scope("BTCUSDT"))
        batch = exchange_pb2.ExecuteOrdersRequest(orders=[execute_request(btc), execute_request(eth)])
        async with exchange_server(keyring, store) as (exchange, venue, _):
            answer = await exchange.ExecuteOrders(batch, metadata=oms_call_metadata(keyring, "ExecuteOrders", batch))
        return btc.order, eth.order, answer, venue

    btc, eth, answer, venue = asyncio.run(scenario())

    refused, executed = answer.results
    assert (refused.error.code, refused.error.reason) == ("FAILED_PRECONDITION", "TRADING_HALTED")
    assert refused.error.metadata["symbol"] == "BTCUSDT"
    assert [r.order_status for r in executed.response.reports] == [common_pb.ORDER_STATUS_FILLED]
    assert set(venue._orders) == {eth.order_id}
    assert (executions(store, btc.order_id), executions(store, eth.order_id)) == (0, 1)


def execution(order_id: str, symbol: str = "BTCUSDT") -> Execution:
    return Execution(order_id, f"cid-{order_id}", "acct", "aster", symbol, "PAPER", utcnow())


@pytest.mark.parametrize("together", [False, True], ids=["a-row-a-statement", "rows-in-one-statement"])
def test_the_execution_record_refuses_exactly_the_orders_of_a_halted_scope(db, store, together):
    """REDUCING records (the OMS's claim judged it); HALTED, global or the symbol's, does
    not; an order recorded before the halt is answered as executed already (it may be
    at the venue), not as refused. PostgreSQL binds one row as values, several as arrays."""
    btc = [execution(f"btc-{n}") for n in range(3)]
    eth = [execution(f"eth-{n}", "ETHUSDT") for n in range(3)]

    async def record(items: list[Execution]) -> list[Any]:
        if together:
            return await db.write_many(EXECUTIONS, items)
        return [outcome for item in items for outcome in await db.write_many(EXECUTIONS, [item])]

    async def scenario():
        outcomes = {}
        await set_state(db, TradingState.REDUCING)
        outcomes["reducing"] = await record(btc[:1])
        await set_state(db, TradingState.ACTIVE)
        await set_state(db, TradingState.HALTED, symbol_scope("BTCUSDT"))
        outcomes["symbol halted"] = await record([*btc, *eth])
        await set_state(db, TradingState.ACTIVE, symbol_scope("BTCUSDT"))
        await set_state(db, TradingState.HALTED)
        outcomes["halted"] = await record([*btc, execution("new-eth", "ETHUSDT")])
        return outcomes

    outcomes = asyncio.run(scenario())

    assert outcomes["reducing"] == [True]
    halted_btc = ("TRADING_HALTED", "BTCUSDT")
    # btc-0, recorded while REDUCING: executed already, whatever the state now; ETHUSDT's own state is ACTIVE.
    assert [refusal(o) for o in outcomes["symbol halted"]] == [False, halted_btc, halted_btc, True, True, True]
    assert [refusal(o) for o in outcomes["halted"]] == [False, halted_btc, halted_btc, ("TRADING_HALTED", "ETHUSDT")]
    assert "HALTED for the test" in str(outcomes["halted"][-1])  # the halt's reason, as the claim gives it
    assert [executions(store, e.order_id) for e in btc] == [1, 0, 0]
    assert [executions(store, e.order_id) for e in eth] == [1, 1, 1]
    assert executions(store, "new-eth") == 0


def refusal(outcome: Any) -> Any:
    """A refused execution as (reason, symbol); any other outcome as it is."""
    if isinstance(outcome, PreconditionFailed):
        return outcome.reason, outcome.metadata["symbol"]
    return outcome


# -- through the OMS ----------------------------------------------------------------------------
class Counted:
    """The Exchange's stub, counting the calls the OMS makes through it, by method."""

    def __init__(self, stub: Any) -> None:
        self.stub = stub
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.stub, name)


class HaltedOnTheWay:
    """The Exchange's stub, with trading halted (``scope``) after the OMS claimed the
    orders and before the Exchange records them: the kill switch tripped while their
    execution was on its way."""

    def __init__(self, stub: Any, db: Any, scope: str) -> None:
        self.stub = stub
        self.db = db
        self.scope = scope

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub, name)

    async def ExecuteOrder(self, request: Any, **options: Any) -> Any:
        await set_state(self.db, TradingState.HALTED, self.scope)
        return await self.stub.ExecuteOrder(request, **options)

    async def ExecuteOrders(self, request: Any, **options: Any) -> Any:
        await set_state(self.db, TradingState.HALTED, self.scope)
        return await self.stub.ExecuteOrders(request, **options)


def test_an_order_the_oms_claimed_before_the_halt_ends_rejected_trading_halted_and_never_reaches_the_venue(
        db, store, risk, keyring, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        async with exchange_server(keyring, store) as (exchange, venue, _):
            oms = OrderManagement(db, keyring, HaltedOnTheWay(exchange, db, GLOBAL_SCOPE), ttl_seconds=300,
                                  exchange_timeout=30)
            submission = await oms.submit(as_sent(decision.order), decision.token)
        stored = await db.read(lambda uow: uow.orders.get(decision.order.order_id))
        return submission.order, stored, venue

    answered, stored, venue = asyncio.run(scenario())

    for order in (answered, stored):
        assert order.status is OrderStatus.REJECTED
        assert order.reject_reasons == ["TRADING_HALTED"]
    assert venue._orders == {}
    assert executions(store, stored.order_id) == 0


def test_a_batch_the_oms_claimed_before_a_symbols_halt_rejects_that_symbols_orders_and_executes_the_others(
        db, store, risk, keyring, make_order):
    async def scenario():
        btc, eth = await approved(risk, make_order()), await approved(risk, make_order(**ETH))
        async with exchange_server(keyring, store) as (exchange, venue, _):
            oms = OrderManagement(db, keyring, HaltedOnTheWay(exchange, db, symbol_scope("BTCUSDT")),
                                  ttl_seconds=300, exchange_timeout=30)
            submissions = await oms.submit_many([(as_sent(btc.order), btc.token), (as_sent(eth.order), eth.token)])
        return [s.order for s in submissions], venue  # type: ignore[union-attr]

    (btc, eth), venue = asyncio.run(scenario())

    assert (btc.status, btc.reject_reasons) == (OrderStatus.REJECTED, ["TRADING_HALTED"])
    assert eth.status is OrderStatus.FILLED
    assert set(venue._orders) == {eth.order_id}
    assert (executions(store, btc.order_id), executions(store, eth.order_id)) == (0, 1)


def test_an_order_being_placed_when_the_kill_switch_trips_ends_cancelled_by_its_sweep(
        db, store, risk, keyring, make_order):
    """Recorded at the Exchange before the halt, its placement still in progress when the
    OMS's EmergencyCancelAll runs: the OMS's own cancel of it finds nothing at the venue,
    the venue-wide sweep waits for the placement, then cancels the order."""
    venue = HeldPaperVenue()

    async def scenario():
        decision = await approved(risk, make_order(price=Decimal("60000")))  # rests: below the market
        async with exchange_server(keyring, store, venue, placement_wait=60) as (exchange, _, engine):
            counted = Counted(exchange)
            oms = OrderManagement(db, keyring, counted, ttl_seconds=300, exchange_timeout=60)
            waiting = sweep_waiting(engine)
            submitting = asyncio.create_task(oms.submit(as_sent(decision.order), decision.token))
            await venue.placing.wait()  # recorded, at the venue's door
            tripping = asyncio.create_task(oms.emergency_cancel_all("ops", "runaway strategy"))
            await first_of(tripping, waiting)  # a sweep that does not wait has listed the venue's orders by now
            venue.release.set()
            await submitting
            tripped = await tripping
        stored = await db.read(lambda uow: uow.orders.get(decision.order.order_id))
        return stored, tripped, await venue.query_order(OrderRef.of(stored)), counted.calls

    stored, tripped, at_venue, calls = asyncio.run(scenario())

    assert at_venue.status is OrderStatus.CANCELLED  # nothing left working at the venue
    assert stored.status is OrderStatus.CANCELLED
    assert [(o.order_id, o.status) for o in tripped.orders] == [(stored.order_id, OrderStatus.CANCELLED)]
    assert tripped.failures == []
    assert calls["EmergencyCancelAll"] == 1  # the first sweep waited for the placement: none sent again
    assert executions(store, stored.order_id) == 1
