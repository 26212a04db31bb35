"""ExchangeService over gRPC: protobuf in, engine calls, protobuf out."""

from __future__ import annotations

import grpc

from services.common import convert
from services.common.errors import grpc_errors
from services.domain.errors import InvalidOrder
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2 as pb
from tessera.exchange.v1 import exchange_pb2_grpc

from .engine import ExchangeEngine

_MODES = {"PAPER": common_pb.EXECUTION_MODE_PAPER, "SHADOW": common_pb.EXECUTION_MODE_SHADOW, "LIVE": common_pb.EXECUTION_MODE_LIVE}


def _symbol(value: str) -> str:
    symbol = convert.check_text(value, convert.SYMBOL_PATTERN, "symbol")
    assert symbol is not None
    return symbol


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, engine: ExchangeEngine) -> None:
        self.engine = engine
        self.leverage: dict[str, str] = {}
        self.margin_modes: dict[str, int] = {}

    @grpc_errors
    async def ExecuteOrder(self, request: pb.ExecuteOrderRequest, context: grpc.aio.ServicerContext):
        if not request.HasField("order"):
            raise InvalidOrder("order", "required")
        order = convert.order_from_proto(request.order)
        reports = await self.engine.execute(order, request.risk_token, context.invocation_metadata())
        return pb.ExecuteOrderResponse(
            remote_order_id=order.remote_order_id or "",
            mode=_MODES[self.engine.provider.mode],
            reports=[convert.report_to_proto(r) for r in reports],
        )

    @grpc_errors
    async def CancelOrder(self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "CancelOrder")
        order_id = convert.check_text(request.order_id, convert.ORDER_ID_PATTERN, "order_id")
        report = await self.engine.cancel(order_id)
        return pb.CancelOrderResponse(report=convert.report_to_proto(report))

    @grpc_errors
    async def CancelAllOrders(self, request: pb.CancelAllOrdersRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "CancelAllOrders")
        reports = await self.engine.cancel_all(_symbol(request.symbol))
        return pb.CancelAllOrdersResponse(reports=[convert.report_to_proto(r) for r in reports])

    @grpc_errors
    async def EmergencyCancelAll(self, request: pb.EmergencyCancelAllRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "EmergencyCancelAll")
        reports = []
        if request.symbols:
            for symbol in request.symbols:
                reports += await self.engine.cancel_all(_symbol(symbol))
        else:
            reports = await self.engine.cancel_all(None)
        return pb.EmergencyCancelAllResponse(reports=[convert.report_to_proto(r) for r in reports])

    @grpc_errors
    async def SetLeverage(self, request: pb.SetLeverageRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "SetLeverage")
        symbol = _symbol(request.symbol)
        leverage = convert.parse_decimal(request.leverage, "leverage")
        assert leverage is not None
        if leverage != leverage.to_integral_value() or leverage > convert.MAX_LEVERAGE:
            raise InvalidOrder("leverage", f"must be a whole number from 1 to {convert.MAX_LEVERAGE}")
        self.leverage[symbol] = convert.format_decimal(leverage)
        return pb.SetLeverageResponse(symbol=symbol, leverage=self.leverage[symbol])

    @grpc_errors
    async def SetMarginMode(self, request: pb.SetMarginModeRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "SetMarginMode")
        symbol = _symbol(request.symbol)
        if request.margin_mode not in (common_pb.MARGIN_MODE_ISOLATED, common_pb.MARGIN_MODE_CROSSED):
            raise InvalidOrder("margin_mode", "required: ISOLATED or CROSSED")
        self.margin_modes[symbol] = request.margin_mode
        return pb.SetMarginModeResponse(symbol=symbol, margin_mode=request.margin_mode)

    @grpc_errors
    async def GetTicker(self, request: pb.GetTickerRequest, context: grpc.aio.ServicerContext):
        symbol = _symbol(request.symbol)
        price = convert.format_decimal(self.engine.provider.price(symbol))
        return pb.GetTickerResponse(symbol=symbol, price=price, bid_price=price, ask_price=price)

    @grpc_errors
    async def StreamExecutionReports(self, request: pb.StreamExecutionReportsRequest, context: grpc.aio.ServicerContext):
        self.engine.authorize(context.invocation_metadata(), "StreamExecutionReports")
        if request.after_sequence < 0:
            raise InvalidOrder("after_sequence", "must not be negative")
        async for report in self.engine.reports.follow(request.after_sequence):
            yield pb.StreamExecutionReportsResponse(report=convert.report_to_proto(report))
