"""Each execution report reaches the order path once: in the ExecuteOrder answer, not
again on the report stream; and a report applied a second time (a reconciler, another
replica, a late duplicate) changes nothing."""

from __future__ import annotations

import asyncio

from services.oms.engine import OrderManagement
from svc_harness import S, approved, as_sent


def _answered(exchange, order_id: str):
    return [r for r in exchange.answered if r.order_id == order_id]


def test_an_answered_execution_puts_nothing_on_the_report_stream(risk, oms, exchange, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        return decision, submission

    decision, submission = asyncio.run(scenario())
    assert submission.order.status is S.FILLED and len(submission.trades) == 1
    assert _answered(exchange, decision.order.order_id)
    assert [r for r in exchange.engine.reports.after(0) if r.order_id == decision.order.order_id] == []


def test_reports_applied_again_change_nothing(risk, oms, exchange, db, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        again = await oms.apply_reports(decision.order.order_id, _answered(exchange, decision.order.order_id))
        return submission, again

    submission, again = asyncio.run(scenario())
    assert again.order.version == submission.order.version
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in submission.trades]


def test_a_replica_that_never_saw_the_reports_applies_them_once(risk, oms, exchange, db, keyring, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        other = OrderManagement(db, keyring, exchange)  # nothing in its memory: the store de-duplicates
        again = await other.apply_reports(decision.order.order_id, _answered(exchange, decision.order.order_id))
        return submission, again

    submission, again = asyncio.run(scenario())
    assert again.order.status is S.FILLED
    assert again.order.filled_quantity == submission.order.filled_quantity
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in submission.trades]
