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


def test_an_execution_whose_submitter_went_away_is_recorded_from_its_answer(risk, oms, exchange, db, make_order):
    """The client's deadline passed while the Exchange executed: the OMS's handler is
    cancelled, but the call is not, and the fills its answer carries are stored all the
    same (they are not put on the report stream: the call was answered)."""

    async def scenario():
        decision = await approved(risk, make_order())
        order_id = decision.order.order_id
        entered, release = asyncio.Event(), asyncio.Event()
        execute = exchange.ExecuteOrder

        async def slow(request, **options):
            entered.set()
            await release.wait()
            return await execute(request, **options)

        exchange.ExecuteOrder = slow
        submitting = asyncio.ensure_future(oms.submit(as_sent(decision.order), decision.token))
        await entered.wait()
        submitting.cancel()
        release.set()
        for _ in range(500):
            stored = await db.read(lambda uow: (uow.orders.get(order_id), uow.trades.for_order(order_id)))
            if stored[0].status is S.FILLED:
                break
            await asyncio.sleep(0.01)
        return order_id, submitting.cancelled(), stored

    order_id, cancelled, (order, trades) = asyncio.run(scenario())
    assert cancelled
    assert order.status is S.FILLED and len(trades) == 1
    assert [r for r in exchange.engine.reports.after(0) if r.order_id == order_id] == []
