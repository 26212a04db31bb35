"""SubmitOrders through the OMS engine (``submit_many``): claims together, one
ExecuteOrders call to the Exchange, every order's outcome as ``submit`` would give it."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import grpc
import pytest

from services.common import convert
from services.common.tokens import oms_call_metadata
from services.domain.errors import TokenRejected, TokenReplayed
from svc_harness import S, FakeExchange, approved, as_sent, rpc_error
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2


class BatchExchange(FakeExchange):
    """The fake Exchange with ExecuteOrders, as the servicer answers it."""

    def __init__(self, keyring) -> None:
        super().__init__(keyring)
        self.batches: list[exchange_pb2.ExecuteOrdersRequest] = []
        self.batch_failure: grpc.aio.AioRpcError | None = None
        #: When set, each ExecuteOrders call answers only once this event is set.
        self.answer_when: asyncio.Event | None = None

    async def ExecuteOrders(self, request, timeout=None, metadata=None, wait_for_ready=None):
        self.batches.append(request)
        await asyncio.sleep(0)
        if self.answer_when is not None:
            await self.answer_when.wait()
        if self.batch_failure is not None:
            raise self.batch_failure
        orders = [convert.order_from_proto(item.order) for item in request.orders]
        outcomes = await self.engine.execute_many(
            [(order, None, item.risk_token) for order, item in zip(orders, request.orders)], metadata, request
        )
        results = []
        for order, outcome in zip(orders, outcomes):
            if isinstance(outcome, Exception):
                code, reason, message = self.as_rpc_error(outcome).code().name, *_reason_and_message(outcome)
                results.append(exchange_pb2.ExecuteOrderResult(error=common_pb.ItemError(code=code, reason=reason, message=message)))
            else:
                results.append(exchange_pb2.ExecuteOrderResult(response=exchange_pb2.ExecuteOrderResponse(
                    remote_order_id=order.remote_order_id or "", reports=[convert.report_to_proto(r) for r in outcome])))
        return exchange_pb2.ExecuteOrdersResponse(results=results)


def _reason_and_message(error: Exception) -> tuple[str, str]:
    from services.common.errors import item_error

    _, reason, message = item_error(error)
    return reason, message


@pytest.fixture
def exchange(keyring) -> BatchExchange:
    return BatchExchange(keyring)


def _changed_token(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


def test_a_batch_goes_to_the_exchange_in_one_call_and_each_order_gets_its_outcome(risk, oms, exchange, make_order):
    async def scenario():
        decisions = [await approved(risk, make_order(quantity=Decimal("0.01"))) for _ in range(3)]
        items = [(as_sent(d.order), d.token) for d in decisions]
        items[1] = (items[1][0], _changed_token(items[1][1]))
        return decisions, await oms.submit_many(items)

    decisions, results = asyncio.run(scenario())
    assert [type(r).__name__ for r in results] == ["Submission", "TokenRejected", "Submission"]
    assert results[0].order.status is S.FILLED and results[2].order.status is S.FILLED
    assert results[0].order.order_id == decisions[0].order.order_id and len(results[0].trades) == 1
    assert len(exchange.batches) == 1 and len(exchange.batches[0].orders) == 2
    assert exchange.execute_requests == []


def sent_to_the_exchange(exchange: BatchExchange) -> list[str]:
    """The order ids of every execution the Exchange received, one call or a batch."""
    return [request.order.order_id for request in exchange.execute_requests] + [
        item.order.order_id for batch in exchange.batches for item in batch.orders]


def test_an_order_twice_in_a_batch_is_submitted_once_and_the_repeat_answers_as_the_first(
    risk, oms, exchange, make_order
):
    async def scenario():
        decision = await approved(risk, make_order())
        item = (as_sent(decision.order), decision.token)
        return await oms.submit_many([item, item])

    first, second = asyncio.run(scenario())
    assert first.order.status is S.FILLED and not first.replayed
    assert second.replayed and second.order.status is S.FILLED
    assert [t.trade_id for t in second.trades] == [t.trade_id for t in first.trades]
    assert sent_to_the_exchange(exchange) == [first.order.order_id]


def test_a_batch_sent_again_answers_every_order_replayed_and_sends_nothing(risk, oms, exchange, make_order):
    async def scenario():
        decisions = [await approved(risk, make_order()), await approved(risk, make_order(price=Decimal("60000")))]
        items = [(as_sent(d.order), d.token) for d in decisions]
        first = await oms.submit_many(items)
        again = await oms.submit_many(items)
        return first, again

    first, again = asyncio.run(scenario())

    assert [(r.order.status, r.replayed) for r in first] == [(S.FILLED, False), (S.ACCEPTED, False)]
    assert [(r.order.status, r.replayed) for r in again] == [(S.FILLED, True), (S.ACCEPTED, True)]
    assert [len(r.trades) for r in again] == [1, 0]
    assert [len(batch.orders) for batch in exchange.batches] == [2]  # the first time only


def test_a_batch_mixing_a_repeat_with_a_new_order_sends_only_the_new_one(risk, oms, exchange, make_order):
    async def scenario():
        old = await approved(risk, make_order())
        await oms.submit_many([(as_sent(old.order), old.token)])
        new = await approved(risk, make_order())
        return new, await oms.submit_many([(as_sent(old.order), old.token), (as_sent(new.order), new.token)])

    new, (repeat, fresh) = asyncio.run(scenario())

    assert (repeat.replayed, repeat.order.status) == (True, S.FILLED)
    assert (fresh.replayed, fresh.order.status) == (False, S.FILLED)
    assert sent_to_the_exchange(exchange) == [repeat.order.order_id, new.order.order_id]


def test_an_exchange_without_execute_orders_gets_one_call_per_order(risk, oms, exchange, make_order):
    exchange.batch_failure = rpc_error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    async def scenario():
        decisions = [await approved(risk, make_order()) for _ in range(2)]
        return await oms.submit_many([(as_sent(d.order), d.token) for d in decisions])

    results = asyncio.run(scenario())
    assert [r.order.status for r in results] == [S.FILLED, S.FILLED]
    assert len(exchange.execute_requests) == 2


def test_a_batch_call_without_an_answer_leaves_every_order_in_doubt(risk, oms, exchange, make_order):
    exchange.batch_failure = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    async def scenario():
        decisions = [await approved(risk, make_order()) for _ in range(2)]
        return await oms.submit_many([(as_sent(d.order), d.token) for d in decisions])

    results = asyncio.run(scenario())
    assert [r.order.status for r in results] == [S.SUBMITTED, S.SUBMITTED]


def test_a_batch_whose_caller_went_away_is_still_recorded_when_the_exchange_answers(risk, oms, exchange, db,
                                                                                     make_order):
    """The client of a SubmitOrders call goes away while the Exchange executes its batch:
    the answer, when it comes, is stored (the orders FILLED with their trades), not left
    SUBMITTED in doubt for the reconciler."""
    async def scenario():
        exchange.answer_when = asyncio.Event()
        decisions = [await approved(risk, make_order()) for _ in range(2)]
        caller = asyncio.ensure_future(oms.submit_many([(as_sent(d.order), d.token) for d in decisions]))
        while not exchange.batches:
            await asyncio.sleep(0.01)
        caller.cancel()
        await asyncio.sleep(0.05)
        exchange.answer_when.set()
        await asyncio.gather(*oms.submitter.running)
        return caller.cancelled(), [d.order.order_id for d in decisions]

    cancelled, order_ids = asyncio.run(scenario())

    assert cancelled
    with db.store.uow(read_only=True) as uow:
        assert [uow.orders.get(order_id).status for order_id in order_ids] == [S.FILLED, S.FILLED]
        assert [len(uow.trades.for_order(order_id)) for order_id in order_ids] == [1, 1]


def test_a_batch_the_exchange_refuses_outright_rejects_its_orders(risk, oms, exchange, make_order):
    exchange.batch_failure = rpc_error(grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS: only the OMS may call")

    async def scenario():
        decisions = [await approved(risk, make_order()) for _ in range(2)]
        return await oms.submit_many([(as_sent(d.order), d.token) for d in decisions])

    results = asyncio.run(scenario())
    assert [r.order.status for r in results] == [S.REJECTED, S.REJECTED]
    assert [r.order.reject_reasons for r in results] == [["CALLER_NOT_OMS"], ["CALLER_NOT_OMS"]]


def test_the_exchange_refuses_a_batch_the_oms_did_not_sign_for_these_orders(risk, exchange, keyring, make_order):
    def request_of(items):
        return exchange_pb2.ExecuteOrdersRequest(orders=[
            exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=token)
            for order, _, token in items])

    async def scenario():
        decisions = [await approved(risk, make_order()) for _ in range(2)]
        items = [(as_sent(d.order), None, d.token) for d in decisions]
        # Signed for the first order alone: replaying the credential with another batch fails.
        metadata = oms_call_metadata(keyring, "ExecuteOrders", request_of(items[:1]))
        with pytest.raises(TokenRejected) as refused:
            await exchange.engine.execute_many(items, metadata, request_of(items))
        request = request_of(items)
        good = oms_call_metadata(keyring, "ExecuteOrders", request)
        outcomes = await exchange.engine.execute_many(items, good, request)
        with pytest.raises(TokenRejected) as replayed:  # the same call again: its credential is spent
            await exchange.engine.execute_many(items, good, request)
        return refused.value, outcomes, replayed.value

    refused, outcomes, replayed = asyncio.run(scenario())
    assert refused.reason == "SERVICE_CREDENTIAL_MISMATCH"
    assert all(isinstance(o, list) and o for o in outcomes)
    assert replayed.reason == "SERVICE_CREDENTIAL_REPLAYED"
