"""RiskService over gRPC: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

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
        decision = await self.engine.validate(_intent_to_order(request.order))
        return pb.ValidateOrderResponse(**_decision_fields(decision))

    @grpc_errors
    async def ValidateOrders(self, request: pb.ValidateOrdersRequest, context: grpc.aio.ServicerContext):
        if len(request.orders) > MAX_BATCH:
            raise InvalidOrder("orders", f"at most {MAX_BATCH} orders per batch, got {len(request.orders)}")
        results = []
        for index, intent in enumerate(request.orders):
            try:
                decision = await self.engine.validate(_intent_to_order(intent))
            except DomainError as error:
                code, reason, message = item_error(error)
                results.append(
                    pb.ValidateOrderResult(
                        error=common_pb.ItemError(code=code, reason=reason, message=f"orders[{index}].{message}")
                    )
                )
            else:
                results.append(pb.ValidateOrderResult(**_decision_fields(decision)))
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
