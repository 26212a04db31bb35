"""RiskService over gRPC: protobuf in, domain calls, protobuf out.

An order is decided by the replica that owns its account (:mod:`services.risk.sharding`);
one that reaches another replica is forwarded to the owner, or refused with
``FAILED_PRECONDITION`` ``NOT_ACCOUNT_OWNER`` naming it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any

import grpc
from google.rpc import error_details_pb2

from services.common import auth, convert, tls
from services.common.errors import STATUS_DETAILS_KEY, grpc_errors, item_error_proto, status_details
from services.domain import MarketType, TradingState, new_id
from services.domain.errors import DomainError, InvalidOrder, PreconditionFailed, ReplicaUnavailable
from tessera.common.v1 import types_pb2 as common_pb
from tessera.risk.v1 import risk_pb2 as pb
from tessera.risk.v1 import risk_pb2_grpc

from . import positions
from .engine import Decision, RiskEngine, new_client_order_id
from .replacement import replacement_order
from .sharding import FORWARDED_METADATA, Sharding

log = logging.getLogger(__name__)
MAX_BATCH = 5000
#: How long a forward to the account's owner may take when the caller set no deadline.
FORWARD_TIMEOUT_SECONDS = 10.0
_STATES = {
    common_pb.TRADING_STATE_ACTIVE: TradingState.ACTIVE,
    common_pb.TRADING_STATE_REDUCING: TradingState.REDUCING,
    common_pb.TRADING_STATE_HALTED: TradingState.HALTED,
}
#: What an owner answers when it refuses the forwarding replica's own identity.
_IDENTITY_REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
#: An item's position in the path of its error's fields ("orders[3].quantity: required").
_ITEM_INDEX = re.compile(r"(?<![A-Za-z0-9_.])orders\[\d+\]")


def renumber(error: common_pb.ItemError, index: int) -> None:
    """Give a forwarded item's error its position in this batch: in its message and in
    each field violation's path (the owner numbered it in the batch it was sent)."""
    here = f"orders[{index}]"
    error.message = _ITEM_INDEX.sub(here, error.message)
    for violation in error.field_violations:
        violation.field = _ITEM_INDEX.sub(here, violation.field, count=1)


def _owner_failed(index: int, error: grpc.aio.AioRpcError) -> pb.ValidateOrderResult:
    """The result of item ``index`` of a batch whose owner answered its whole part with
    ``error``: that status as the item's error (code, ErrorInfo reason and metadata, retry
    delay), its message prefixed with the item's position, as :func:`item_error_proto`
    prefixes the errors decided here."""
    code = error.code()
    item = common_pb.ItemError(code=code.name, reason=code.name, message=f"orders[{index}].{error.details() or ''}",
                               status_code=code.value[0])
    for detail in status_details(error):
        info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            item.reason = info.reason or item.reason
            item.metadata.update(info.metadata)
        elif detail.Unpack(retry):
            item.retry_delay.CopyFrom(retry.retry_delay)
    return pb.ValidateOrderResult(error=item)


def _decision_fields(decision: Decision) -> dict:
    return {
        "order": convert.order_to_proto(decision.order),
        "risk_token": decision.token,
        "violations": [common_pb.RiskViolation(code=v.code, message=v.message) for v in decision.violations],
    }


def _intent_to_order(intent: common_pb.OrderIntent):  # type: ignore[no-untyped-def]
    return convert.order_from_intent(intent, order_id=new_id(), client_order_id=new_client_order_id())


def state_to_proto(state: TradingState) -> int:
    return common_pb.TradingState.Value("TRADING_STATE_" + state.value)


def _forwarded(context: grpc.aio.ServicerContext) -> bool:
    return any(key == FORWARDED_METADATA for key, _ in context.invocation_metadata() or ())


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, engine: RiskEngine, sharding: Sharding | None = None, *,
                 forward_timeout_seconds: float = FORWARD_TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.sharding = sharding or Sharding()
        #: How long a forward to the owner may take when the caller set no deadline.
        self.forward_timeout_seconds = forward_timeout_seconds
        self._peers: dict[int, tuple[grpc.aio.Channel, risk_pb2_grpc.RiskServiceStub]] = {}

    # -- ownership --------------------------------------------------------------------------------
    def _forward_timeout(self, context: grpc.aio.ServicerContext) -> float:
        """The caller's remaining time, passed on; the forwarding bound when it set none."""
        remaining = context.time_remaining()
        return self.forward_timeout_seconds if remaining is None else remaining

    def _peer(self, shard: int, account: str, context: grpc.aio.ServicerContext) -> risk_pb2_grpc.RiskServiceStub:
        """The stub of the replica that owns ``account``; refused when it cannot be reached."""
        address = self.sharding.address(shard)
        if address is None or _forwarded(context):
            raise PreconditionFailed(
                f"account {account!r} is decided by risk replica {shard} of {self.sharding.shards} "
                f"(this is replica {self.sharding.shard}): send its orders there",
                reason="NOT_ACCOUNT_OWNER", metadata={"account": account, "owner_replica": shard},
            )
        peer = self._peers.get(shard)
        if peer is None:
            channel = tls.client_channel(address, os.environ)
            peer = self._peers[shard] = (channel, risk_pb2_grpc.RiskServiceStub(channel))
        return peer[1]

    @staticmethod
    def _metadata(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
        passed = tuple((k, v) for k, v in context.invocation_metadata() or () if k in ("x-request-id", "traceparent"))
        # The forwarding replica's own identity (its service token, else its client certificate).
        return (*passed, (FORWARDED_METADATA, "1"), *auth.service_metadata())

    def _unreachable(self, error: grpc.aio.AioRpcError, owner: int, account: str) -> ReplicaUnavailable | None:
        """UNAVAILABLE naming the owner when the call never reached it (no status of
        Tessera's in the trailers), or when the owner refused this replica's own identity;
        None when the owner answered the error itself."""
        trailing = tuple(error.trailing_metadata() or ())
        code = error.code()
        if code is grpc.StatusCode.UNAVAILABLE and not any(key == STATUS_DETAILS_KEY for key, _ in trailing):
            return ReplicaUnavailable(
                f"risk replica {owner} of {self.sharding.shards}, which decides account {account!r}, did not "
                f"answer ({error.details()}): retry", metadata={"account": account, "owner_replica": owner})
        if code in _IDENTITY_REFUSALS:
            # The forwarded call carries this replica's identity, not the caller's (whose
            # entitlement was checked here): a refusal of it is the replicas' fault.
            log.error("risk replica %d refused this replica's service identity: %s", owner, error.details())
            return ReplicaUnavailable(
                f"risk replica {owner} of {self.sharding.shards}, which decides account {account!r}, refused this "
                f"replica's identity ({error.details()}): the replicas' service identity needs the service role",
                metadata={"account": account, "owner_replica": owner})
        return None

    async def _pass_on(self, error: grpc.aio.AioRpcError, owner: int, account: str,
                       context: grpc.aio.ServicerContext) -> None:
        """The owner's error, passed on as it is (code, message, ErrorInfo); a call that
        never reached it is UNAVAILABLE naming it."""
        unreachable = self._unreachable(error, owner, account)
        if unreachable is not None:
            raise unreachable
        await context.abort(error.code(), error.details() or "", tuple(error.trailing_metadata() or ()))

    async def close(self) -> None:
        for channel, _ in self._peers.values():
            await channel.close()

    # -- decisions --------------------------------------------------------------------------------
    @grpc_errors
    async def ValidateOrder(self, request: pb.ValidateOrderRequest, context: grpc.aio.ServicerContext):
        if not request.HasField("order"):
            raise InvalidOrder("order", "required", violation="REQUIRED")
        try:
            order = _intent_to_order(request.order)
        except InvalidOrder as error:  # its fields are the order's: their paths in the request
            raise error.prefixed("order") from None
        owner = self.sharding.owner(order.account)
        if owner != self.sharding.shard:
            peer = self._peer(owner, order.account, context)
            try:
                return await peer.ValidateOrder(request, timeout=self._forward_timeout(context),
                                                metadata=self._metadata(context))
            except grpc.aio.AioRpcError as error:
                await self._pass_on(error, owner, order.account, context)
        try:
            decision = await self.engine.validate(order, fresh_client_order_id=not request.order.client_order_id)
        except InvalidOrder as error:
            raise error.prefixed("order") from None
        return pb.ValidateOrderResponse(**_decision_fields(decision))

    @grpc_errors
    async def ValidateOrders(self, request: pb.ValidateOrdersRequest, context: grpc.aio.ServicerContext):
        if len(request.orders) > MAX_BATCH:
            raise InvalidOrder("orders", f"at most {MAX_BATCH} orders per batch, got {len(request.orders)}",
                               violation="TOO_MANY_ITEMS")
        results: list[pb.ValidateOrderResult | None] = [None] * len(request.orders)
        local: list[tuple[int, Any, bool]] = []
        remote: dict[int, list[int]] = {}
        for index, intent in enumerate(request.orders):
            try:
                order = _intent_to_order(intent)
                owner = self.sharding.owner(order.account)
                if owner != self.sharding.shard:
                    self._peer(owner, order.account, context)  # refused here when it cannot be reached
                    remote.setdefault(owner, []).append(index)
                    continue
            except DomainError as error:
                results[index] = self._failed(index, error)
                continue
            local.append((index, order, not intent.client_order_id))
        # Decided in the request's order (each order's checks see the ones before it),
        # stored in one write; each other owner's part forwarded at the same time, in one
        # call per owner, so that an owner slow to answer costs its own items only.
        if not remote:
            await self._decide_here(local, results)  # a store failure fails the call
            return pb.ValidateOrdersResponse(results=results)
        here, *forwarded = await asyncio.gather(
            self._decide_here(local, results),
            *(self._forward_part(owner, indexes, request, results, context) for owner, indexes in remote.items()),
            return_exceptions=True)
        for failure in (*forwarded, here):
            if isinstance(failure, BaseException) and (failure is not here or not isinstance(here, Exception)):
                raise failure  # not expected: as if it had not been caught
        if isinstance(here, Exception):
            # The owners decided and stored their parts: their answers (and tokens) reach
            # the caller, and this replica's items carry its failure (nothing of it stored).
            for index, _, _ in local:
                results[index] = self._failed(index, here)
        return pb.ValidateOrdersResponse(results=results)

    async def _decide_here(self, local: list[tuple[int, Any, bool]], results: list[Any]) -> None:
        outcomes = await self.engine.validate_many([(order, fresh) for _, order, fresh in local])
        for (index, _, _), outcome in zip(local, outcomes):
            results[index] = (self._failed(index, outcome) if isinstance(outcome, DomainError)
                              else pb.ValidateOrderResult(**_decision_fields(outcome)))

    async def _forward_part(self, owner: int, indexes: list[int], request: pb.ValidateOrdersRequest,
                            results: list[Any], context: grpc.aio.ServicerContext) -> None:
        peer = self._peer(owner, request.orders[indexes[0]].account, context)
        try:
            answer = await peer.ValidateOrders(
                pb.ValidateOrdersRequest(orders=[request.orders[i] for i in indexes]),
                timeout=self._forward_timeout(context), metadata=self._metadata(context))
        except grpc.aio.AioRpcError as error:
            # The owner is down, or answered the whole of its part with an error: its
            # items fail with that (UNAVAILABLE naming it, or its own status), and the
            # others' answers stand (those decided here are stored already).
            for index in indexes:
                unreachable = self._unreachable(error, owner, request.orders[index].account)
                results[index] = (self._failed(index, unreachable) if unreachable is not None
                                  else _owner_failed(index, error))
            return
        for index, result in zip(indexes, answer.results):
            if result.HasField("error"):  # its index in the forwarded batch -> in this one
                renumber(result.error, index)
            results[index] = result

    @grpc_errors
    async def ValidateReplacement(self, request: pb.ValidateReplacementRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        order_id = convert.check_text(request.order_id, convert.ORDER_ID_PATTERN, "order_id", problems=problems)
        quantity = convert.parse_decimal(request.quantity, "quantity", required=False, problems=problems)
        price = convert.parse_decimal(request.price, "price", required=False, problems=problems)
        client_order_id = convert.check_text(request.client_order_id, convert.CLIENT_ORDER_ID_PATTERN,
                                             "client_order_id", required=False, problems=problems)
        convert.raise_problems(problems)
        assert order_id is not None
        replaced = await self.engine.stored_order(order_id)
        auth.check_account(replaced.account)
        owner = self.sharding.owner(replaced.account)
        if owner != self.sharding.shard:
            peer = self._peer(owner, replaced.account, context)
            try:
                return await peer.ValidateReplacement(request, timeout=self._forward_timeout(context),
                                                      metadata=self._metadata(context))
            except grpc.aio.AioRpcError as error:
                await self._pass_on(error, owner, replaced.account, context)
        replacement = replacement_order(replaced, order_id=new_id(),
                                        client_order_id=client_order_id or new_client_order_id(),
                                        quantity=quantity, price=price, now=self.engine.clock())
        decision = await self.engine.validate_replacement(replaced, replacement,
                                                          fresh_client_order_id=not client_order_id)
        return pb.ValidateReplacementResponse(**_decision_fields(decision))

    @staticmethod
    def _failed(index: int, error: BaseException) -> pb.ValidateOrderResult:
        return pb.ValidateOrderResult(error=item_error_proto(error, index, path_style=True))

    # -- the trading state and the limits --------------------------------------------------------------
    @grpc_errors
    async def GetTradingState(self, request: pb.GetTradingStateRequest, context: grpc.aio.ServicerContext):
        state, reason, operator, updated = await self.engine.trading_state()
        return pb.GetTradingStateResponse(
            state=state_to_proto(state),
            reason=reason or "",
            operator=operator or "",
            updated_time=convert.timestamp_to_proto(updated),
        )

    @grpc_errors
    async def SetTradingState(self, request: pb.SetTradingStateRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        state = _STATES.get(request.state)
        if state is None:
            problems.append(InvalidOrder("state", "required: ACTIVE, REDUCING or HALTED",
                                         violation="REQUIRED" if request.state == 0 else "UNKNOWN_VALUE"))
        comment = auth.comment_of(request.operator, problems)
        convert.check_reason(request.reason, problems=problems)
        convert.raise_problems(problems)
        assert state is not None
        reason = auth.with_comment(request.reason.strip(), comment)
        auth.record_privileged("SetTradingState", state=state.value, reason=reason)
        previous = await self.engine.set_trading_state(state, auth.principal_for_record(), reason)
        return pb.SetTradingStateResponse(state=state_to_proto(state), previous_state=state_to_proto(previous))

    @grpc_errors
    async def GetLimits(self, request: pb.GetLimitsRequest, context: grpc.aio.ServicerContext):
        return pb.GetLimitsResponse(
            limits=[pb.Limit(name=n, value=v, violation_code=c) for n, v, c in self.engine.limits.describe()]
        )

    # -- positions and PnL (the ledger, valued at the reference prices: see services.risk.positions) --
    @grpc_errors
    async def ListPositions(self, request: pb.ListPositionsRequest, context: grpc.aio.ServicerContext):
        limit = positions.page_size(request.page_size)
        found = await positions.list_positions(
            self.engine.db,
            account=convert.check_text(request.account, convert.ACCOUNT_PATTERN, "account", required=False),
            market_type=convert.enum_from_proto(MarketType, request.market_type, "market_type", required=False),
            symbol=convert.check_text(request.symbol, convert.SYMBOL_PATTERN, "symbol", required=False),
            open_only=request.open_only,
            after=positions.after_token(request.page_token),
            limit=limit + 1,
        )
        page, more = found[:limit], len(found) > limit
        return pb.ListPositionsResponse(
            positions=[positions.to_proto(v) for v in positions.value(page, self.engine.prices)],
            next_page_token=positions.page_token(page[-1]) if more else "",
        )

    @grpc_errors
    async def GetPosition(self, request: pb.GetPositionRequest, context: grpc.aio.ServicerContext):
        account = convert.check_text(request.account, convert.ACCOUNT_PATTERN, "account")
        market_type = convert.enum_from_proto(MarketType, request.market_type, "market_type")
        symbol = convert.check_text(request.symbol, convert.SYMBOL_PATTERN, "symbol")
        assert account is not None and market_type is not None and symbol is not None
        found = await positions.get_position(self.engine.db, account, market_type, symbol)
        (valued,) = positions.value([found], self.engine.prices)
        return pb.GetPositionResponse(position=positions.to_proto(valued))
