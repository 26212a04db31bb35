"""Live mode: the fill a cancel crossed, lost with the Exchange that owed it, brought in
by the OMS's reconciler from the venue.

The live provider against the venue simulator (real HTTP on loopback), a real store
(SQLite): a resting buy of 0.8 fills 0.5 at the venue before the provider hears of it;
the cancel's answer (CANCELLED, 0.5 executed) closes the order owing 0.5; then the
Exchange crashes before it reads that trade from the venue (the provider is closed: what
it owed is gone, and its report stream never carries the fill). The restarted Exchange
(a fresh provider) answers the reconciler's QueryOrder with the venue's trades: the fill
is recorded on the CANCELLED order, once however often the reconciler runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from services.common import convert
from services.domain import MarketType, OrderStatus, OrderType, Side, utcnow
from services.exchange.servicer import query_order_response
from services.exchange.venue import OrderRef
from services.oms.fill_tracker import apply_report
from services.oms.reconciler import Reconciler
from tessera.common.v1 import types_pb2 as common_pb

from venue_sim_support import running_venue
from test_live_provider import ready
from test_reconciler import KEYRING, db  # noqa: F401 - the store fixture


class ExchangeOverProvider:
    """The Exchange service's QueryOrder over one live provider, answered as the servicer does."""

    def __init__(self, provider) -> None:
        self.provider = provider

    async def QueryOrder(self, request, timeout=None, metadata=None):
        ref = OrderRef(order_id=request.order_id, client_order_id=request.client_order_id, account=request.account,
                       venue=request.venue, symbol=request.symbol,
                       side=convert.enum_from_proto(Side, request.side, "side"),
                       market_type=convert.enum_from_proto(MarketType, request.market_type, "market_type"),
                       remote_order_id=request.remote_order_id or None)
        return query_order_response(await self.provider.query_order(ref), common_pb.EXECUTION_MODE_LIVE)


def test_the_fill_an_exchange_crash_lost_after_a_cancel_is_read_from_the_venue_once(db, make_order):
    order = make_order(order_type=OrderType.LIMIT, price=Decimal("64000"), quantity=Decimal("0.8"))
    order.record_creation()
    for status in (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED):
        order.transition(status, at=utcnow() - dt.timedelta(seconds=5))
    db.run_sync(lambda uow: uow.orders.add(order))

    async def scenario():
        async with running_venue() as venue:
            crashed = await ready(venue)
            await crashed.execute(order)
            venue.sim.state.set_price(None, "BTCUSDT", Decimal("63990"))  # the venue fills 0.5 of it
            answer = await crashed.cancel(order.order_id)
            await db.run(apply_report, answer)  # the OMS could not ask the venue for the fill before the close
            owing = await db.run(lambda uow: uow.orders.get(order.order_id))
            await crashed.close()  # the Exchange crashes before it read the trade from the venue
            restarted = await ready(venue)
            reconciler = Reconciler(db, KEYRING, ExchangeOverProvider(restarted), fills_owed_seconds=0)
            summaries = [await reconciler.reconcile_once(), await reconciler.reconcile_once()]
            await restarted.close()
            return answer, owing, summaries

    answer, owing, summaries = asyncio.run(scenario())

    assert (answer.order_status, answer.cumulative_quantity) == (OrderStatus.CANCELLED, Decimal("0.5"))
    assert (owing.status, owing.filled_quantity, owing.fills_owed) == (OrderStatus.CANCELLED, 0, Decimal("0.5"))
    assert [(s.owing, s.owed_in, s.fills_owed) for s in summaries] == [(1, 1, 0), (0, 0, 0)]
    ended, trades, anomalies = db.run_sync(lambda uow: (uow.orders.get(order.order_id),
                                                        uow.trades.for_order(order.order_id), uow.anomalies.list()))
    assert (ended.status, ended.filled_quantity, ended.average_fill_price) == (OrderStatus.CANCELLED, Decimal("0.5"),
                                                                               Decimal("64000"))
    assert ended.venue_executed_quantity is None
    assert [(t.quantity, t.price) for t in trades] == [(Decimal("0.5"), Decimal("64000"))] and anomalies == []
