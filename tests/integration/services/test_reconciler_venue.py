"""The reconciler settles open orders on the venue's word (QueryOrder), through the OMS
engine on a real store, the Exchange a paper engine: an order in doubt that the venue
filled, and a resting order the venue cancelled after a partial fill, both without a
report reaching the OMS."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from services.oms.engine import OrderManagement
from services.oms.reconciler import Reconciler
from svc_harness import S, answer_lost, approved, as_sent, details, statuses, venue_fills, working


def test_an_order_in_doubt_that_the_venue_filled_is_recorded_filled_with_the_fills_it_gives(
    risk, oms, exchange, db, keyring, make_order
):
    async def scenario():
        decision = await approved(risk, make_order(price=Decimal("65100")))  # marketable: fills at once
        answer_lost(exchange, "ExecuteOrder")
        in_doubt = await oms.submit(as_sent(decision.order), decision.token)
        summary = await Reconciler(db, keyring, exchange, grace_seconds=0).reconcile_once()
        return in_doubt, summary, await details(oms, decision.order.order_id)

    in_doubt, summary, (stored, events, trades) = asyncio.run(scenario())

    assert in_doubt.order.status is S.SUBMITTED
    assert (summary.checked, summary.resolved) == (1, 1)
    assert (stored.status, stored.filled_quantity, len(trades)) == (S.FILLED, Decimal("0.01"), 1)
    assert statuses(events)[-2:] == [S.SUBMITTED, S.FILLED]


def test_an_order_the_venue_cancelled_after_a_partial_fill_is_recorded_cancelled_with_its_fill(
    risk, db, keyring, shallow_exchange, make_order
):
    exchange = shallow_exchange  # a resting 0.01 fills 0.004 when the market crosses it
    oms = OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0)

    async def scenario():
        order = await working(risk, oms, make_order(price=Decimal("60000")))
        await venue_fills(exchange, Decimal("59000"), published=False)  # the OMS never hears of it
        await exchange.engine.cancel(order.order_id)  # nor of this
        summary = await Reconciler(db, keyring, exchange, grace_seconds=0).reconcile_once()
        return summary, await details(oms, order.order_id)

    summary, (stored, events, trades) = asyncio.run(scenario())

    assert summary.resolved == 1
    assert (stored.status, stored.filled_quantity, stored.venue_executed_quantity) == (S.CANCELLED, Decimal("0.004"),
                                                                                       None)
    assert len(trades) == 1 and statuses(events)[-3:] == [S.ACCEPTED, S.PARTIALLY_FILLED, S.CANCELLED]
