"""RiskService's ValidateOrders across Risk replicas: a batch is split by owner, and each
item is answered as ValidateOrder would answer it (docs/risk-sharding.md)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc

from services.domain import OrderStatus
from services.risk.engine import RiskEngine
from services.risk.servicer import RiskServicer
from services.risk.sharding import Sharding
from svc_harness import LIMITS
from tessera.common.v1 import types_pb2 as pb
from tessera.risk.v1 import risk_pb2


class Aborted(Exception):
    pass


class Context:
    """What the servicer asks of a call's context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float:
        return 5.0

    async def abort(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        raise Aborted(code, details)


class AbortedCall(grpc.aio.AbortError):
    """What AbortingContext.abort raises: (code, details, reason)."""


class AbortingContext(Context):
    """A context whose abort ends the call as grpc's does, saying (code, details, the
    ErrorInfo's reason)."""

    async def abort(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        from google.rpc import error_details_pb2, status_pb2

        from services.common.errors import STATUS_DETAILS_KEY

        reason = ""
        for key, value in trailing or ():
            if key == STATUS_DETAILS_KEY:
                for detail in status_pb2.Status.FromString(value).details:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        reason = info.reason
        raise AbortedCall(code, details, reason)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def intent(account: str) -> pb.OrderIntent:
    return pb.OrderIntent(account=account, venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT",
                          side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="0.001",
                          time_in_force=pb.TIME_IN_FORCE_GTC)


def test_a_batch_answers_the_down_owners_items_unavailable_and_the_others_as_decided(db, keyring):
    sharding = Sharding(0, 2, ("127.0.0.1:1", f"127.0.0.1:{closed_port()}"))  # replica 1 is down
    mine, theirs = (next(a for a in (f"acct-{n}" for n in range(100)) if sharding.owner(a) == owner)
                    for owner in (0, 1))
    risk = RiskEngine(db, keyring, LIMITS, sharding=sharding)
    servicer = RiskServicer(risk, sharding)

    async def scenario():
        try:
            return await servicer.ValidateOrders(
                risk_pb2.ValidateOrdersRequest(orders=[intent(mine), intent(theirs), intent(mine)]), Context())
        finally:
            await servicer.close()

    answer = asyncio.run(scenario())

    approved, unavailable, also_approved = answer.results
    assert approved.order.status == pb.ORDER_STATUS_APPROVED and approved.risk_token
    assert also_approved.order.status == pb.ORDER_STATUS_APPROVED and also_approved.risk_token
    assert (unavailable.error.code, unavailable.error.reason) == ("UNAVAILABLE", "REPLICA_UNAVAILABLE")
    assert unavailable.error.message.startswith("orders[1]")
    assert f"which decides account {theirs!r}" in unavailable.error.message
    with db.store.uow(read_only=True) as uow:  # the answered approvals are the stored ones
        assert uow.orders.get(approved.order.order_id).status is OrderStatus.APPROVED


def test_a_batch_answers_an_owners_own_error_as_its_items_errors_and_the_others_as_decided(db, keyring):
    """The owner reached answers its whole part with an error (its store failing, say):
    its items carry that status (code, reason, metadata, retry delay); the orders decided
    here keep their stored approvals and their tokens reach the caller."""
    from services.common.errors import to_grpc_status

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        status = to_grpc_status(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", "the store is unavailable",
                                metadata={"replica": "1"}, retry_seconds=0.5)
        await context.abort(status.code, status.details, status.trailing_metadata)

    async def scenario():
        peer = grpc.aio.server()
        peer.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("tessera.risk.v1.RiskService", {
            "ValidateOrders": grpc.unary_unary_rpc_method_handler(
                refuse, request_deserializer=risk_pb2.ValidateOrdersRequest.FromString,
                response_serializer=risk_pb2.ValidateOrdersResponse.SerializeToString)})])
        port = peer.add_insecure_port("127.0.0.1:0")
        await peer.start()
        sharding = Sharding(0, 2, ("127.0.0.1:1", f"127.0.0.1:{port}"))
        mine, theirs = (next(a for a in (f"acct-{n}" for n in range(100)) if sharding.owner(a) == owner)
                        for owner in (0, 1))
        servicer = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=sharding), sharding)
        try:
            return await servicer.ValidateOrders(
                risk_pb2.ValidateOrdersRequest(orders=[intent(theirs), intent(mine)]), Context())
        finally:
            await servicer.close()
            await peer.stop(0)

    refused, approved = asyncio.run(scenario()).results

    assert approved.order.status == pb.ORDER_STATUS_APPROVED and approved.risk_token
    with db.store.uow(read_only=True) as uow:
        assert uow.orders.get(approved.order.order_id).status is OrderStatus.APPROVED
    error = refused.error
    assert (error.code, error.reason, error.status_code) == ("UNAVAILABLE", "STORE_UNAVAILABLE", 14)
    assert error.message.startswith("orders[0].") and "the store is unavailable" in error.message
    assert dict(error.metadata) == {"replica": "1"}
    assert error.retry_delay.nanos == 500_000_000


class Deadline(Context):
    """A caller's context whose deadline runs out ``seconds`` after it is made."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def time_remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def owned(sharding: Sharding, owner: int) -> str:
    return next(a for a in (f"acct-{n}" for n in range(1000)) if sharding.owner(a) == owner)


def hung_owner(stuck: asyncio.Event) -> tuple[grpc.aio.Server, int]:
    """A replica that accepts ValidateOrders and answers only once ``stuck`` is set, and its port."""
    async def hang(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await stuck.wait()
        return risk_pb2.ValidateOrdersResponse()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("tessera.risk.v1.RiskService", {
        "ValidateOrders": grpc.unary_unary_rpc_method_handler(
            hang, request_deserializer=risk_pb2.ValidateOrdersRequest.FromString,
            response_serializer=risk_pb2.ValidateOrdersResponse.SerializeToString)})])
    return server, server.add_insecure_port("127.0.0.1:0")


def test_a_batch_decides_the_other_owners_items_while_one_owner_hangs(db, keyring):
    """Replica 1 accepts the call and never answers; replica 2 answers at once: its items
    are decided within the caller's deadline, not starved by replica 1's wait."""
    from services.common.server import add_service

    stuck = asyncio.Event()

    async def scenario():
        hung, hung_port = hung_owner(stuck)
        healthy = grpc.aio.server()
        healthy_port = healthy.add_insecure_port("127.0.0.1:0")
        peers = ("127.0.0.1:1", f"127.0.0.1:{hung_port}", f"127.0.0.1:{healthy_port}")
        owner_2 = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=Sharding(2, 3, peers)), Sharding(2, 3, peers))
        add_service(healthy, owner_2, risk_pb2.DESCRIPTOR.services_by_name["RiskService"], observe=False)
        await hung.start()
        await healthy.start()
        sharding = Sharding(0, 3, peers)
        servicer = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=sharding), sharding)
        accounts = [owned(sharding, owner) for owner in (1, 2, 0)]
        try:
            return accounts, await servicer.ValidateOrders(
                risk_pb2.ValidateOrdersRequest(orders=[intent(a) for a in accounts]), Deadline(1.5))
        finally:
            stuck.set()
            await servicer.close()
            await owner_2.close()
            await hung.stop(0)
            await healthy.stop(0)

    (on_1, on_2, on_0), answer = asyncio.run(scenario())

    waited, decided_by_2, decided_here = answer.results
    assert decided_by_2.order.status == pb.ORDER_STATUS_APPROVED and decided_by_2.order.account == on_2, decided_by_2
    assert decided_here.order.status == pb.ORDER_STATUS_APPROVED and decided_here.order.account == on_0
    assert waited.error.code == "DEADLINE_EXCEEDED" and waited.error.message.startswith("orders[0]"), waited


def test_a_batch_whose_own_part_cannot_be_stored_answers_its_items_so_and_the_forwarded_ones_as_decided(
        db, keyring):
    """The owner decides (and stores) its part while this replica's own write fails: the
    caller gets the owner's decisions, with their tokens, and the store's error for the
    items decided here, never a whole-call error that would lose the owner's approvals."""
    from sqlalchemy.exc import OperationalError

    from services.common.server import add_service

    async def scenario():
        owner = grpc.aio.server()
        port = owner.add_insecure_port("127.0.0.1:0")
        peers = ("127.0.0.1:1", f"127.0.0.1:{port}")
        owner_1 = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=Sharding(1, 2, peers)), Sharding(1, 2, peers))
        add_service(owner, owner_1, risk_pb2.DESCRIPTOR.services_by_name["RiskService"], observe=False)
        await owner.start()
        sharding = Sharding(0, 2, peers)
        engine = RiskEngine(db, keyring, LIMITS, sharding=sharding)

        async def store_down(items):
            raise OperationalError("INSERT", {}, Exception("connection refused"))

        engine.validate_many = store_down
        servicer = RiskServicer(engine, sharding)
        try:
            return await servicer.ValidateOrders(risk_pb2.ValidateOrdersRequest(
                orders=[intent(owned(sharding, 0)), intent(owned(sharding, 1))]), Context())
        finally:
            await servicer.close()
            await owner_1.close()
            await owner.stop(0)

    here, forwarded = asyncio.run(scenario()).results

    assert forwarded.order.status == pb.ORDER_STATUS_APPROVED and forwarded.risk_token
    assert (here.error.code, here.error.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")
    assert here.error.message.startswith("orders[0]")


def _refusing_owner(code: grpc.StatusCode, reason: str, message: str):
    """A replica 1 that refuses every forwarded call with ``code`` and ``reason``."""
    from services.common.errors import to_grpc_status

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        status = to_grpc_status(code, reason, message, metadata={"principal": "tessera-service"})
        await context.abort(status.code, status.details, status.trailing_metadata)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("tessera.risk.v1.RiskService", {
        name: grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=kind.FromString,
                                                  response_serializer=lambda message: b"")
        for name, kind in (("ValidateOrder", risk_pb2.ValidateOrderRequest),
                           ("ValidateOrders", risk_pb2.ValidateOrdersRequest))})])
    return server


def test_the_owner_refusing_the_forwarding_replicas_identity_is_not_answered_as_the_callers_refusal(db, keyring):
    """The caller's entitlement was checked by the replica it called; the owner sees only
    that replica's service identity. The owner refusing it (the service role missing from
    its entitlements, a lapsed service token) says nothing about the caller: it is answered
    as the owner being unusable, naming it, never PERMISSION_DENIED NOT_ENTITLED about a
    principal the caller is not."""
    async def scenario():
        owner = _refusing_owner(grpc.StatusCode.PERMISSION_DENIED, "NOT_ENTITLED",
                                "ValidateOrder is not open to tessera-service (roles: trader)")
        port = owner.add_insecure_port("127.0.0.1:0")
        await owner.start()
        sharding = Sharding(0, 2, ("127.0.0.1:1", f"127.0.0.1:{port}"))
        servicer = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=sharding), sharding)
        theirs = owned(sharding, 1)
        try:
            try:
                await servicer.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent(theirs)), AbortingContext())
                single = None
            except AbortedCall as aborted:
                single = aborted.args
            batch = await servicer.ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=[intent(theirs)]), Context())
            return theirs, single, batch
        finally:
            await servicer.close()
            await owner.stop(0)

    theirs, single, batch = asyncio.run(scenario())

    code, details, reason = single
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "REPLICA_UNAVAILABLE"), single
    assert f"risk replica 1 of 2, which decides account {theirs!r}, refused this replica's identity" in details
    (item,) = batch.results
    assert (item.error.code, item.error.reason) == ("UNAVAILABLE", "REPLICA_UNAVAILABLE"), item
    assert "refused this replica's identity" in item.error.message


def test_a_call_without_a_deadline_is_forwarded_with_the_forwarding_bound_not_forever(db, keyring):
    """A caller that set no deadline: the forward to an owner that accepts the call and
    never answers ends after ``forward_timeout_seconds`` (its items DEADLINE_EXCEEDED),
    instead of holding the call, and the caller, for good."""
    stuck = asyncio.Event()

    async def scenario():
        hung, port = hung_owner(stuck)
        await hung.start()
        peers = ("127.0.0.1:1", f"127.0.0.1:{port}")
        sharding = Sharding(0, 2, peers)
        servicer = RiskServicer(RiskEngine(db, keyring, LIMITS, sharding=sharding), sharding,
                                forward_timeout_seconds=0.5)
        try:
            return await asyncio.wait_for(servicer.ValidateOrders(
                risk_pb2.ValidateOrdersRequest(orders=[intent(owned(sharding, 1))]), NoDeadline()), 10)
        finally:
            stuck.set()
            await servicer.close()
            await hung.stop(0)

    (waited,) = asyncio.run(scenario()).results
    assert waited.error.code == "DEADLINE_EXCEEDED", waited


class NoDeadline(Context):
    """A caller's context without a deadline (gRPC's time_remaining() is None then)."""

    def time_remaining(self) -> None:
        return None
