"""ExchangeService over gRPC: protobuf in, engine calls, protobuf out."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable

import grpc

import core_ext
from services.common import auth, convert
from services.common.errors import grpc_errors, item_error_proto
from services.common.observability.interceptors import note_order_id
from services.common.tokens import verify_or_raise
from services.domain import MarginMode, MarketType, Order, Side
from services.domain.errors import (
    DomainError,
    InvalidOrder,
    MalformedRequest,
    PreconditionFailed,
    in_request,
)
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2 as pb
from tessera.exchange.v1 import exchange_pb2_grpc

from .engine import ExchangeEngine
from .venue import OrderRef, VenueOrderState

#: At most this many orders per ExecuteOrders call (the OMS's SubmitOrders limit).
MAX_BATCH = 5000
#: The methods that receive the request's bytes as they arrived: the OMS's credential
#: binds the SHA-256 digest of those bytes (verified on them, before they are parsed;
#: ExecuteOrder and ExecuteOrders verify the risk tokens on them too).
RAW_REQUESTS = ("ExecuteOrder", "ExecuteOrders", "CancelOrder", "CancelAllOrders", "EmergencyCancelAll",
                "SetLeverage", "SetMarginMode", "QueryOrder", "StreamExecutionReports", "ListVenuePositions",
                "SetPositionMode", "ListVenueSettings")
_MODES = {"PAPER": common_pb.EXECUTION_MODE_PAPER, "SHADOW": common_pb.EXECUTION_MODE_SHADOW, "LIVE": common_pb.EXECUTION_MODE_LIVE}
_MARGIN_MODES = {common_pb.MARGIN_MODE_ISOLATED: MarginMode.ISOLATED, common_pb.MARGIN_MODE_CROSSED: MarginMode.CROSSED}
_MARGIN_MODES_PB = {mode: value for value, mode in _MARGIN_MODES.items()}


def venue_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`grpc_errors` for a call that reaches the venue: the venue's refusals answer
    with their reason's code (a rate limit RESOURCE_EXHAUSTED with its RetryInfo), and
    an invalid order names its fields by their path in the request (``order.quantity``)."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except InvalidOrder as error:
            if method.__name__ == "ExecuteOrder":
                raise error.prefixed("order") from None
            raise

    return grpc_errors(wrapper)


def _parse(message_type: Any, raw: bytes) -> Any:
    try:
        return message_type.FromString(raw)
    except Exception:  # noqa: BLE001 - DecodeError, or anything a hostile payload makes the parser raise
        raise MalformedRequest(message_type.DESCRIPTOR.name) from None


def _received(request: Any, message_type: Any) -> tuple[bytes, Any]:
    """The request's bytes and its message. Over gRPC the bytes arrive as sent (see
    RAW_REQUESTS); called in-process with a message, its serialization."""
    if isinstance(request, bytes):
        return request, None
    return request.SerializeToString(), request


def _authorized(engine: ExchangeEngine, request: Any, context: Any, method: str, message_type: Any) -> Any:
    """The request's message, once the OMS's credential verified on its bytes."""
    raw, message = _received(request, message_type)
    engine.authorize(context.invocation_metadata(), method, raw)
    return message if message is not None else _parse(message_type, raw)


def _symbol(value: str) -> str:
    symbol = convert.check_text(value, convert.SYMBOL_PATTERN, "symbol")
    assert symbol is not None
    return symbol


def _market_type(value: int) -> MarketType | None:
    return convert.enum_from_proto(MarketType, value, "market_type", required=False)


def _account(value: str) -> str | None:
    return convert.check_text(value, convert.ACCOUNT_PATTERN, "account", required=False) or None


def _for(account: str | None) -> dict[str, str]:
    """The account keyword for a provider's setting call (none: the single account)."""
    return {"account": account} if account else {}


def query_order_response(state: VenueOrderState, mode: int) -> pb.QueryOrderResponse:
    """The answer of QueryOrder: the venue's view of one order, in execution mode ``mode``."""
    return pb.QueryOrderResponse(
        found=state.found,
        venue_status=convert.enum_to_proto(state.status),
        executed_quantity=convert.format_decimal(state.executed_quantity) if state.found else "",
        original_quantity=convert.format_decimal(state.original_quantity),
        remote_order_id=state.remote_order_id or "",
        fills=[convert.report_to_proto(r) for r in state.fills],
        mode=mode,
    )


def _item_error(index: int, error: BaseException) -> pb.ExecuteOrderResult:
    """One order's refusal, as ExecuteOrder would have returned it."""
    return pb.ExecuteOrderResult(error=item_error_proto(in_request(error, "order"), index))


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self, engine: ExchangeEngine) -> None:
        self.engine = engine

    @property
    def mode(self) -> int:
        return _MODES[self.engine.provider.mode]

    # ExecuteOrder and ExecuteOrders receive the request's bytes (see RAW_REQUESTS): the
    # risk token is verified on them, then the message is parsed.
    def _order(self, verdict: "core_ext.VerifyResult", request: pb.ExecuteOrderRequest
               ) -> tuple[Order, "core_ext.VerifyResult"]:
        """The order to execute and its token's verdict; a verdict that is not OK is
        explained field by field (an invalid field, then the token's reason)."""
        if verdict.ok:
            return convert.order_from_signed_proto(request.order), verdict
        if not request.HasField("order"):
            raise InvalidOrder("order", "required", violation="REQUIRED")
        order = convert.order_from_proto(request.order)
        return order, verify_or_raise(self.engine.keyring, request.risk_token, order,
                                      ttl_seconds=self.engine.ttl_seconds, now=self.engine.wall())

    def _response(self, order: Order, reports: list[Any]) -> pb.ExecuteOrderResponse:
        return pb.ExecuteOrderResponse(remote_order_id=order.remote_order_id or "", mode=self.mode,
                                       reports=[convert.report_to_proto(r) for r in reports])

    def _unless_answered(self, context: grpc.aio.ServicerContext, reports: list[Any]) -> None:
        """Put ``reports`` on the report log should the call end without its answer."""
        if not reports:
            return

        def done(_context: Any) -> None:
            if context.cancelled():
                asyncio.ensure_future(self.engine.unanswered(reports))

        context.add_done_callback(done)

    @venue_errors
    async def ExecuteOrder(self, request: bytes, context: grpc.aio.ServicerContext):
        verdict = core_ext.verify_order_request(self.engine.keyring, request, self.engine.wall(), self.engine.ttl_seconds)
        message = _parse(pb.ExecuteOrderRequest, request)
        note_order_id(message.order.order_id)
        order, verified = self._order(verdict, message)
        reports = await self.engine.execute_verified(order, verified, message.risk_token,
                                                     context.invocation_metadata(), request)
        self._unless_answered(context, reports)
        return self._response(order, reports)

    @venue_errors
    async def ExecuteOrders(self, request: bytes, context: grpc.aio.ServicerContext):
        try:
            verdicts = core_ext.verify_order_requests(self.engine.keyring, request, self.engine.wall(),
                                                      self.engine.ttl_seconds)
        except ValueError:
            raise MalformedRequest("ExecuteOrdersRequest") from None
        if len(verdicts) > MAX_BATCH:
            raise InvalidOrder("orders", f"at most {MAX_BATCH} orders per batch, got {len(verdicts)}",
                               violation="TOO_MANY_ITEMS")
        batch = _parse(pb.ExecuteOrdersRequest, request)
        items: list[Any] = []
        for verdict, item in zip(verdicts, batch.orders):
            try:
                order, verified = self._order(verdict, item)
            except DomainError as error:
                items.append((error, None, item.risk_token))
                continue
            items.append((order, verified, item.risk_token))
        outcomes = await self.engine.execute_many(items, context.invocation_metadata(), request)
        results: list[pb.ExecuteOrderResult] = []
        answered: list[Any] = []
        for index, ((order, _, _), outcome) in enumerate(zip(items, outcomes)):
            if isinstance(outcome, Exception):
                results.append(_item_error(index, outcome))
            else:
                answered += outcome
                results.append(pb.ExecuteOrderResult(response=self._response(order, outcome)))
        self._unless_answered(context, answered)
        return pb.ExecuteOrdersResponse(results=results)

    @venue_errors
    async def CancelOrder(self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "CancelOrder", pb.CancelOrderRequest)
        order_id = convert.check_text(request.order_id, convert.ORDER_ID_PATTERN, "order_id")
        report = await self.engine.cancel(
            order_id,
            symbol=convert.check_text(request.symbol, convert.SYMBOL_PATTERN, "symbol", required=False),
            client_order_id=convert.check_text(
                request.client_order_id, convert.CLIENT_ORDER_ID_PATTERN, "client_order_id", required=False
            ),
            market_type=_market_type(request.market_type),
            account=_account(request.account),
        )
        return pb.CancelOrderResponse(report=convert.report_to_proto(report))

    @venue_errors
    async def CancelAllOrders(self, request: pb.CancelAllOrdersRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "CancelAllOrders", pb.CancelAllOrdersRequest)
        reports = await self.engine.cancel_all(_symbol(request.symbol), _market_type(request.market_type))
        return pb.CancelAllOrdersResponse(reports=[convert.report_to_proto(r) for r in reports])

    @venue_errors
    async def EmergencyCancelAll(self, request: pb.EmergencyCancelAllRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "EmergencyCancelAll", pb.EmergencyCancelAllRequest)
        market_type = _market_type(request.market_type)
        symbols: list[str | None] = sorted({_symbol(s) for s in request.symbols}) if request.symbols else [None]
        # The placements in progress first (at most the engine's placement_wait), then each
        # symbol; one symbol's (or account's) failure stops none of the others.
        reports, failures = await self.engine.emergency_cancel_all(symbols, market_type)
        return pb.EmergencyCancelAllResponse(reports=[convert.report_to_proto(r) for r in reports],
                                             failures=[convert.cancel_failure_to_proto(f) for f in failures])

    @venue_errors
    async def SetLeverage(self, request: pb.SetLeverageRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "SetLeverage", pb.SetLeverageRequest)
        symbol = _symbol(request.symbol)
        leverage = convert.parse_decimal(request.leverage, "leverage")
        assert leverage is not None
        if leverage != leverage.to_integral_value() or leverage > convert.MAX_LEVERAGE:
            raise InvalidOrder("leverage", f"must be a whole number from 1 to {convert.MAX_LEVERAGE}",
                               violation="OUT_OF_RANGE")
        account = _account(request.account)
        auth.record_privileged("SetLeverage", account=account, symbol=symbol, leverage=str(leverage))
        applied = await self.engine.provider.set_leverage(symbol, int(leverage), **_for(account))
        return pb.SetLeverageResponse(symbol=symbol, leverage=str(applied))

    @venue_errors
    async def SetMarginMode(self, request: pb.SetMarginModeRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "SetMarginMode", pb.SetMarginModeRequest)
        symbol = _symbol(request.symbol)
        if request.margin_mode == common_pb.MARGIN_MODE_UNSPECIFIED:
            mode = MarginMode.ISOLATED  # the safe default: a position cannot draw on the whole account
        elif request.margin_mode in _MARGIN_MODES:
            mode = _MARGIN_MODES[request.margin_mode]
        else:
            raise InvalidOrder("margin_mode", "ISOLATED or CROSSED", violation="UNKNOWN_VALUE")
        account = _account(request.account)
        auth.record_privileged("SetMarginMode", account=account, symbol=symbol, margin_mode=mode.value)
        applied = await self.engine.provider.set_margin_mode(symbol, mode, **_for(account))
        return pb.SetMarginModeResponse(symbol=symbol, margin_mode=_MARGIN_MODES_PB[applied])

    @venue_errors
    async def GetTicker(self, request: pb.GetTickerRequest, context: grpc.aio.ServicerContext):
        symbol = _symbol(request.symbol)
        quote = await self.engine.provider.quote(symbol, _market_type(request.market_type) or MarketType.FUTURES)
        return pb.GetTickerResponse(
            symbol=symbol,
            price=convert.format_decimal(quote.price),
            bid_price=convert.format_decimal(quote.bid),
            ask_price=convert.format_decimal(quote.ask),
        )

    @venue_errors
    async def QueryOrder(self, request: pb.QueryOrderRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "QueryOrder", pb.QueryOrderRequest)
        ref = OrderRef(
            order_id=convert.check_text(request.order_id, convert.ORDER_ID_PATTERN, "order_id") or "",
            client_order_id=convert.check_text(
                request.client_order_id, convert.CLIENT_ORDER_ID_PATTERN, "client_order_id"
            )
            or "",
            account=convert.check_text(request.account, convert.ACCOUNT_PATTERN, "account", required=False) or "",
            venue=request.venue,
            symbol=_symbol(request.symbol),
            side=convert.enum_from_proto(Side, request.side, "side", required=False) or Side.BUY,
            market_type=_market_type(request.market_type) or MarketType.FUTURES,
            remote_order_id=request.remote_order_id or None,
        )
        return query_order_response(await self.engine.query_order(ref), self.mode)

    @grpc_errors
    async def StreamExecutionReports(self, request: pb.StreamExecutionReportsRequest, context: grpc.aio.ServicerContext):
        request = _authorized(self.engine, request, context, "StreamExecutionReports", pb.StreamExecutionReportsRequest)
        if request.after_sequence < 0:
            raise InvalidOrder("after_sequence", "must not be negative", violation="OUT_OF_RANGE")
        async for report in self.engine.reports.follow(request.after_sequence):
            yield pb.StreamExecutionReportsResponse(report=convert.report_to_proto(report))

    @venue_errors
    async def ListVenuePositions(self, request: pb.ListVenuePositionsRequest, context: grpc.aio.ServicerContext):
        """The venue account's futures positions (live mode only; see the contract)."""
        request = _authorized(self.engine, request, context, "ListVenuePositions", pb.ListVenuePositionsRequest)
        read = getattr(self.engine.provider, "venue_positions", None)
        if self.engine.provider.mode != "LIVE" or read is None:
            return pb.ListVenuePositionsResponse(mode=self.mode)
        registry = getattr(self.engine.provider, "accounts", None)
        if registry is None:
            held = await read()
            return pb.ListVenuePositionsResponse(mode=self.mode, positions=[
                pb.VenuePosition(symbol=symbol, market_type=common_pb.MARKET_TYPE_FUTURES,
                                 quantity=convert.format_decimal(quantity))
                for symbol, quantity in held.items()])
        accounts = sorted(name for name, found in registry.accounts.items() if MarketType.FUTURES in found.market_types)
        positions = []
        for account in accounts:  # each venue account's own positions
            for symbol, quantity in (await read(account=account)).items():
                positions.append(pb.VenuePosition(symbol=symbol, market_type=common_pb.MARKET_TYPE_FUTURES,
                                                  quantity=convert.format_decimal(quantity), account=account))
        return pb.ListVenuePositionsResponse(mode=self.mode, positions=positions, accounts=accounts)

    @venue_errors
    async def SetPositionMode(self, request: pb.SetPositionModeRequest, context: grpc.aio.ServicerContext):
        """An account's position mode at the venue (live mode only)."""
        request = _authorized(self.engine, request, context, "SetPositionMode", pb.SetPositionModeRequest)
        account = _account(request.account)
        setter = getattr(self.engine.provider, "set_position_mode", None)
        if self.engine.provider.mode != "LIVE" or setter is None:
            raise PreconditionFailed("position modes exist at a venue: live mode only", reason="FAILED_PRECONDITION")
        auth.record_privileged("SetPositionMode", account=account, hedge_mode=request.hedge_mode)
        applied = await setter(request.hedge_mode, **_for(account))
        return pb.SetPositionModeResponse(account=account or "", hedge_mode=applied)

    @venue_errors
    async def ListVenueSettings(self, request: pb.ListVenueSettingsRequest, context: grpc.aio.ServicerContext):
        """The settings this service holds per account (live mode; see the contract)."""
        request = _authorized(self.engine, request, context, "ListVenueSettings", pb.ListVenueSettingsRequest)
        read = getattr(self.engine.provider, "venue_settings", None)
        if self.engine.provider.mode != "LIVE" or read is None:
            return pb.ListVenueSettingsResponse(mode=self.mode)
        accounts = []
        for account, settings in read().items():
            accounts.append(pb.VenueAccountSettings(
                account=account or "", hedge_mode=settings.hedge_mode,
                symbols=[pb.VenueSymbolSettings(symbol=symbol, leverage=str(settings.leverage[symbol]),
                                                margin_mode=_MARGIN_MODES_PB[settings.margin_modes[symbol]])
                         for symbol in sorted(set(settings.leverage) & set(settings.margin_modes))]))
        return pb.ListVenueSettingsResponse(mode=self.mode, accounts=accounts)
