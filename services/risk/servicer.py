"""RiskService over gRPC: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

import asyncio

import grpc

from services.common import convert
from services.common.errors import grpc_errors, item_error
from services.domain import TradingState, new_id
from services.domain.errors import DomainError, InvalidOrder
from tessera.common.v1 import types_pb2 as common_pb
from tessera.risk.v1 import risk_pb2 as pb
from tessera.risk.v1 import risk_pb2_grpc

from .engine import Decision, RiskEngine, new_client_order_id

MAX_BATCH = 5000
#: Orders of one ValidateOrders request decided concurrently: they queue for the
#: database together and share its transactions (group commit), in the request's order.
BATCH_WINDOW = 256
_STATES = {
    common_pb.TRADING_STATE_ACTIVE: TradingState.ACTIVE,
    common_pb.TRADING_STATE_REDUCING: TradingState.REDUCING,
    common_pb.TRADING_STATE_HALTED: TradingState.HALTED,
}


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


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, engine: RiskEngine) -> None:
        self.engine = engine

    @grpc_errors
    async def ValidateOrder(self, request: pb.ValidateOrderRequest, context: grpc.aio.ServicerContext):
        if not request.HasField("order"):
            raise InvalidOrder("order", "required")
        decision = await self.engine.validate(
            _intent_to_order(request.order), fresh_client_order_id=not request.order.client_order_id
        )
        return pb.ValidateOrderResponse(**_decision_fields(decision))

    @grpc_errors
    async def ValidateOrders(self, request: pb.ValidateOrdersRequest, context: grpc.aio.ServicerContext):
        if len(request.orders) > MAX_BATCH:
            raise InvalidOrder("orders", f"at most {MAX_BATCH} orders per batch, got {len(request.orders)}")

        async def one(index: int, intent: common_pb.OrderIntent) -> pb.ValidateOrderResult:
            try:
                decision = await self.engine.validate(
                    _intent_to_order(intent), fresh_client_order_id=not intent.client_order_id
                )
            except DomainError as error:
                code, reason, message = item_error(error)
                return pb.ValidateOrderResult(
                    error=common_pb.ItemError(code=code, reason=reason, message=f"orders[{index}].{message}")
                )
            return pb.ValidateOrderResult(**_decision_fields(decision))

        # Started in the request's order, so they reach the database in it: each order's
        # checks see the orders before it in the batch.
        results: list[pb.ValidateOrderResult] = []
        orders = list(request.orders)
        for start in range(0, len(orders), BATCH_WINDOW):
            window = orders[start:start + BATCH_WINDOW]
            # Every order of the window runs to its end before an unexpected error
            # (the store down) fails the request: none is left running unanswered.
            outcomes = await asyncio.gather(*(one(start + i, intent) for i, intent in enumerate(window)), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            results += outcomes  # type: ignore[arg-type]
        return pb.ValidateOrdersResponse(results=results)

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
        state = _STATES.get(request.state)
        if state is None:
            raise InvalidOrder("state", "required: ACTIVE, REDUCING or HALTED")
        convert.check_text(request.operator.strip(), convert.IDENTIFIER_PATTERN, "operator")
        if not request.reason.strip():
            raise InvalidOrder("reason", "required")
        if len(request.reason) > 500:
            raise InvalidOrder("reason", "longer than 500 characters")
        previous = await self.engine.set_trading_state(state, request.operator.strip(), request.reason.strip())
        return pb.SetTradingStateResponse(state=state_to_proto(state), previous_state=state_to_proto(previous))

    @grpc_errors
    async def GetLimits(self, request: pb.GetLimitsRequest, context: grpc.aio.ServicerContext):
        return pb.GetLimitsResponse(
            limits=[pb.Limit(name=n, value=v, violation_code=c) for n, v, c in self.engine.limits.describe()]
        )
