"""Submissions while the Exchange service restarts: the OMS waits for it within the
caller's deadline before it claims an order, so a restart delays orders instead of
leaving them in doubt (and later REJECTED ``NOT_AT_VENUE``); when the Exchange does not
come back in time, nothing is claimed or sent, the order stays APPROVED and the same
submission goes through once it is back.

The channel is a stand-in with the two methods the gateway uses (``get_state`` and
``channel_ready``); the last test runs the gateway's wait against a real
``grpc.aio`` channel and a server that starts late.
"""

from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from services.common import convert
from services.common.errors import describe
from services.domain.errors import ExchangeUnavailable
from services.oms.engine import OrderManagement
from services.oms.gateway import ExchangeGateway
from tessera.oms.v1 import oms_pb2

from svc_harness import S, approved, details


class RestartingChannel:
    """A channel to an Exchange that is down until :meth:`come_back`."""

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.state_asked = 0

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        self.state_asked += 1
        return grpc.ChannelConnectivity.READY if self.up.is_set() else grpc.ChannelConnectivity.TRANSIENT_FAILURE

    async def channel_ready(self) -> None:
        await self.up.wait()

    def come_back(self) -> None:
        self.up.set()


@pytest.fixture
def channel() -> RestartingChannel:
    return RestartingChannel()


@pytest.fixture
def oms(db, keyring, exchange, channel) -> OrderManagement:
    return OrderManagement(db, keyring, exchange, ttl_seconds=300, exchange_timeout=2.0, exchange_channel=channel)


def _request(decision) -> bytes:
    return oms_pb2.SubmitOrderRequest(order=convert.order_to_proto(decision.order),
                                      risk_token=decision.token).SerializeToString()


def test_a_submission_waits_for_a_restarting_exchange_and_is_sent_once_it_is_back(risk, oms, exchange, channel,
                                                                                   make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        submitting = asyncio.create_task(oms.submit_wire(_request(decision), remaining=5.0))
        await asyncio.sleep(0.3)
        waiting = not submitting.done()
        sent_while_down = len(exchange.execute_requests)
        stored_while_down, _, _ = await details(oms, decision.order.order_id)
        channel.come_back()
        submission = await submitting
        stored, events, _ = await details(oms, decision.order.order_id)
        return waiting, sent_while_down, stored_while_down, submission, stored, events

    waiting, sent_while_down, stored_while_down, submission, stored, events = asyncio.run(scenario())

    assert waiting and sent_while_down == 0
    assert stored_while_down.status is S.APPROVED  # not claimed while the Exchange was down: not in doubt
    assert len(exchange.execute_requests) == 1  # sent once, when it came back
    assert submission.order.status is not S.SUBMITTED and not submission.replayed
    assert stored.status is submission.order.status
    assert [e.to_status for e in events].count(S.SUBMITTED) == 1


def test_an_exchange_that_does_not_come_back_within_the_deadline_gets_nothing_and_the_order_stays_approved(
        risk, oms, exchange, channel, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        raw = _request(decision)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ExchangeUnavailable) as refused:
            await oms.submit_wire(raw, remaining=0.4)
        waited = asyncio.get_running_loop().time() - started
        after_refusal, events_after_refusal, _ = await details(oms, decision.order.order_id)
        channel.come_back()
        retried = await oms.submit_wire(raw, remaining=5.0)  # the same submission, retried
        return refused.value, waited, after_refusal, events_after_refusal, retried

    error, waited, after_refusal, events_after_refusal, retried = asyncio.run(scenario())

    code, reason, _ = describe(error)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "EXCHANGE_UNAVAILABLE")
    assert error.metadata["order_id"] == after_refusal.order_id
    assert 0.3 <= waited < 2.0  # waited within the caller's deadline, not the gateway's timeout
    assert after_refusal.status is S.APPROVED and S.SUBMITTED not in [e.to_status for e in events_after_refusal]
    assert len(exchange.execute_requests) == 1  # only the retry was sent
    assert not retried.replayed and retried.order.status is not S.SUBMITTED


def test_a_batch_while_the_exchange_stays_down_claims_none_of_its_orders(risk, oms, exchange, channel, make_order):
    async def scenario():
        decisions = [await approved(risk, make_order()) for _ in range(3)]
        batch = oms_pb2.SubmitOrdersRequest(orders=[
            oms_pb2.SubmitOrderRequest(order=convert.order_to_proto(d.order), risk_token=d.token)
            for d in decisions])
        outcomes = await oms.submit_wire_many(batch.SerializeToString(), remaining=0.3)
        stored = [(await details(oms, d.order.order_id))[0] for d in decisions]
        return outcomes, stored

    outcomes, stored = asyncio.run(scenario())

    assert [type(o) for o in outcomes] == [ExchangeUnavailable] * 3
    assert [o.status for o in stored] == [S.APPROVED] * 3
    assert exchange.execute_requests == []


def test_a_retry_of_a_submitted_order_while_the_exchange_is_down_gets_its_answer_not_exchange_unavailable(
        risk, oms, exchange, channel, make_order):
    channel.come_back()

    async def scenario():
        decision = await approved(risk, make_order())
        other = await approved(risk, make_order())
        raw = _request(decision)
        first = await oms.submit_wire(raw, remaining=5.0)
        channel.up.clear()  # the Exchange restarts; the first answer was lost, the client retries
        again = await oms.submit_wire(raw, remaining=0.3)
        batch = oms_pb2.SubmitOrdersRequest(orders=[
            oms_pb2.SubmitOrderRequest(order=convert.order_to_proto(d.order), risk_token=d.token)
            for d in (decision, other)])
        outcomes = await oms.submit_wire_many(batch.SerializeToString(), remaining=0.3)
        return first, again, outcomes, (await details(oms, other.order.order_id))[0]

    first, again, (retried, unsent), other = asyncio.run(scenario())

    assert first.order.status is S.FILLED and not first.replayed
    # The order was sent and filled: the retry says so, never "not sent, still APPROVED".
    assert (again.order.status, again.replayed, again.trades) == (S.FILLED, True, first.trades)
    assert (retried.order.status, retried.replayed) == (S.FILLED, True)
    assert isinstance(unsent, ExchangeUnavailable) and other.status is S.APPROVED
    assert len(exchange.execute_requests) == 1


def test_a_connected_exchange_is_not_waited_for(risk, oms, exchange, channel, make_order):
    channel.come_back()

    async def scenario():
        decision = await approved(risk, make_order())
        return await oms.submit_wire(_request(decision), remaining=None)

    submission = asyncio.run(scenario())

    assert channel.state_asked == 1 and len(exchange.execute_requests) == 1
    assert submission.order.status is not S.SUBMITTED


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_gateway_waits_on_a_real_channel_for_a_server_that_starts_late(keyring):
    port = _free_port()

    async def scenario():
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 200)])
        gateway = ExchangeGateway(object(), keyring, timeout=2.0, channel=channel)
        server = grpc.aio.server()
        try:
            down = await gateway.ready(0.3)  # nothing listens yet

            async def start_late():
                await asyncio.sleep(0.3)
                server.add_insecure_port(f"127.0.0.1:{port}")
                await server.start()

            starting = asyncio.create_task(start_late())
            back = await gateway.ready(5.0)
            await starting
            return down, back, channel.get_state()
        finally:
            await server.stop(None)
            await channel.close()

    down, back, state = asyncio.run(scenario())

    assert down is False
    assert back is True and state is grpc.ChannelConnectivity.READY
