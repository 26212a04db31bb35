"""The OMS skips an execution report it has applied already (the ExecuteOrder answer
and the report stream bring each one twice) without writing, and the answer to a
submission never depends on which path, or which replica, applied a report first."""

from __future__ import annotations

import asyncio

from services.oms.engine import OrderManagement, report_key
from svc_harness import S, approved, as_sent


def _reports_of(exchange, order_id: str):
    return [r for r in exchange.engine.reports.after(0) if r.order_id == order_id]


def test_reports_applied_from_the_answer_are_skipped_when_the_stream_brings_them(risk, oms, exchange, db, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        streamed = _reports_of(exchange, decision.order.order_id)
        calls = db.calls
        again = await oms.apply_reports(decision.order.order_id, streamed)
        return submission, again, db.calls - calls, streamed

    submission, again, calls, streamed = asyncio.run(scenario())
    assert submission.order.status is S.FILLED and len(submission.trades) == 1
    assert streamed and all(report_key(r) in oms._applied for r in streamed)
    assert oms._unapplied(streamed) == []
    # Nothing applied again: the order is the same version, and one unit of work read it.
    assert again.order.version == submission.order.version
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in submission.trades]
    assert calls == 1


def test_a_replica_that_never_saw_the_reports_applies_them_once(risk, oms, exchange, db, keyring, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submission = await oms.submit(as_sent(decision.order), decision.token)
        other = OrderManagement(db, keyring, exchange)  # its memory is empty: the store de-duplicates
        again = await other.apply_reports(decision.order.order_id, _reports_of(exchange, decision.order.order_id))
        return submission, again

    submission, again = asyncio.run(scenario())
    assert again.order.status is S.FILLED
    assert again.order.filled_quantity == submission.order.filled_quantity
    assert [t.trade_id for t in again.trades] == [t.trade_id for t in submission.trades]
