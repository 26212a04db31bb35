"""OrderManagementService over gRPC: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc

from services.common import auth, convert
from services.common.errors import grpc_errors, item_error_proto
from services.common.observability.interceptors import note_order_id
from services.domain import OrderStatus
from services.domain.errors import DomainError, InvalidOrder, in_request
from tessera.common.v1 import types_pb2 as common_pb
from tessera.oms.v1 import oms_pb2 as pb
from tessera.oms.v1 import oms_pb2_grpc

from .engine import OrderManagement, Submission
from .venue_settings import parse_request as parse_venue_setting

MAX_BATCH = 5000
MAX_PAGE = 1000
#: The methods that receive the request's bytes as they arrived.
RAW_REQUESTS = ("SubmitOrder", "SubmitOrders")


def _page_size(value: int, problems: convert.Problems) -> int:
    if value < 0:
        problems.append(InvalidOrder("page_size", "must not be negative", violation="OUT_OF_RANGE"))
    return min(value or 100, MAX_PAGE)


def _page_token(value: str, problems: convert.Problems) -> str | None:
    if len(value) > 512:
        problems.append(InvalidOrder("page_token", "longer than 512 characters", violation="TOO_LONG"))
    return value or None


def _optional(value: str, pattern: Any, field: str, problems: convert.Problems) -> str | None:
    return convert.check_text(value, pattern, field, required=False, problems=problems)


def _submission_fields(submission: Submission) -> dict[str, Any]:
    return {
        "order": convert.order_to_proto(submission.order),
        "trades": [convert.trade_to_proto(t) for t in submission.trades],
        "replayed": submission.replayed,
    }


class OrderManagementServicer(oms_pb2_grpc.OrderManagementServiceServicer):
    def __init__(self, oms: OrderManagement) -> None:
        self.oms = oms

    async def _order_id(self, request: Any) -> str:
        if request.order_id:
            order_id = convert.check_text(request.order_id, convert.ORDER_ID_PATTERN, "order_id")
            assert order_id is not None
            return order_id
        problems: convert.Problems = []
        account = convert.check_text(request.account, convert.ACCOUNT_PATTERN, "account", problems=problems)
        client_order_id = convert.check_text(
            request.client_order_id, convert.CLIENT_ORDER_ID_PATTERN, "client_order_id", problems=problems
        )
        convert.raise_problems(problems)
        assert account is not None and client_order_id is not None
        auth.check_account(account)  # before the lookup: another account's ids are not probed
        return await self.oms.find_order_id(account, client_order_id)

    # SubmitOrder and SubmitOrders receive the request's bytes (see RAW_REQUESTS): the
    # risk token is verified on them, then the message is parsed.
    @grpc_errors
    async def SubmitOrder(self, request: bytes, context: grpc.aio.ServicerContext):
        try:
            submission = await self.oms.submit_wire(request, remaining=context.time_remaining())
        except InvalidOrder as error:  # its fields are the order's: their paths in the request
            raise error.prefixed("order") from None
        return pb.SubmitOrderResponse(**_submission_fields(submission))

    @grpc_errors
    async def SubmitOrders(self, request: bytes, context: grpc.aio.ServicerContext):
        def failed(index: int, error: DomainError) -> pb.SubmitOrderResult:
            return pb.SubmitOrderResult(error=item_error_proto(in_request(error, "order"), index))

        outcomes = await self.oms.submit_wire_many(request, remaining=context.time_remaining(), max_items=MAX_BATCH)
        return pb.SubmitOrdersResponse(results=[
            failed(index, outcome) if isinstance(outcome, DomainError) else pb.SubmitOrderResult(**_submission_fields(outcome))
            for index, outcome in enumerate(outcomes)
        ])

    @grpc_errors
    async def ReplaceOrder(self, request: pb.ReplaceOrderRequest, context: grpc.aio.ServicerContext):
        if not request.HasField("order"):
            raise InvalidOrder("order", "required", violation="REQUIRED")
        note_order_id(request.order.order_id)
        try:
            replacement = await self.oms.replace(request.order, request.risk_token, remaining=context.time_remaining())
        except InvalidOrder as error:  # its fields are the replacement's: their paths in the request
            raise error.prefixed("order") from None
        return pb.ReplaceOrderResponse(
            order=convert.order_to_proto(replacement.order),
            trades=[convert.trade_to_proto(t) for t in replacement.trades],
            replaced_order=convert.order_to_proto(replacement.replaced),
            replayed=replacement.replayed,
        )

    @grpc_errors
    async def CancelOrder(self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext):
        order_id = await self._order_id(request)
        if auth.confined():  # a trader: the stored order's account first (one read by primary key)
            auth.check_account((await self.oms.get_order(order_id)).account)
        order = await self.oms.cancel(order_id)
        return pb.CancelOrderResponse(order=convert.order_to_proto(order))

    @grpc_errors
    async def CancelAllOrders(self, request: pb.CancelAllOrdersRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        symbol = convert.check_text(request.symbol, convert.SYMBOL_PATTERN, "symbol", problems=problems)
        account = _optional(request.account, convert.ACCOUNT_PATTERN, "account", problems)
        convert.raise_problems(problems)
        orders = await self.oms.cancel_all(symbol, account)  # type: ignore[arg-type]
        return pb.CancelAllOrdersResponse(orders=[convert.order_to_proto(o) for o in orders])

    @grpc_errors
    async def EmergencyCancelAll(self, request: pb.EmergencyCancelAllRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        comment = auth.comment_of(request.operator, problems)
        reason = convert.check_reason(request.reason, problems=problems)
        convert.raise_problems(problems)
        reason = auth.with_comment(reason, comment)
        auth.record_privileged("EmergencyCancelAll", reason=reason)
        done = await self.oms.emergency_cancel_all(auth.principal_for_record(), reason)
        return pb.EmergencyCancelAllResponse(
            state=common_pb.TRADING_STATE_HALTED, orders=[convert.order_to_proto(o) for o in done.orders],
            venue_failures=[convert.cancel_failure_to_proto(f) for f in done.failures],
        )

    @grpc_errors
    async def GetOrder(self, request: pb.GetOrderRequest, context: grpc.aio.ServicerContext):
        order, events, trades = await self.oms.order_details(await self._order_id(request))
        auth.check_account(order.account)
        return pb.GetOrderResponse(
            order=convert.order_to_proto(order),
            events=[convert.event_to_proto(e, account=order.account, symbol=order.symbol) for e in events],
            trades=[convert.trade_to_proto(t) for t in trades],
        )

    @grpc_errors
    async def ListOrders(self, request: pb.ListOrdersRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        statuses = [
            convert.enum_from_proto(OrderStatus, value, "statuses", problems=problems) for value in request.statuses
        ] or None
        filters = dict(
            account=_optional(request.account, convert.ACCOUNT_PATTERN, "account", problems),
            symbol=_optional(request.symbol, convert.SYMBOL_PATTERN, "symbol", problems),
            statuses=statuses,
            order_manager_id=_optional(request.order_manager_id, convert.IDENTIFIER_PATTERN, "order_manager_id",
                                       problems),
            limit=_page_size(request.page_size, problems),
            cursor=_page_token(request.page_token, problems),
        )
        convert.raise_problems(problems)
        orders, cursor = await self.oms.list_orders(**filters)
        return pb.ListOrdersResponse(orders=[convert.order_to_proto(o) for o in orders], next_page_token=cursor or "")

    @grpc_errors
    async def ListTrades(self, request: pb.ListTradesRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        filters = dict(
            order_id=_optional(request.order_id, convert.ORDER_ID_PATTERN, "order_id", problems),
            account=_optional(request.account, convert.ACCOUNT_PATTERN, "account", problems),
            symbol=_optional(request.symbol, convert.SYMBOL_PATTERN, "symbol", problems),
            limit=_page_size(request.page_size, problems),
            cursor=_page_token(request.page_token, problems),
        )
        convert.raise_problems(problems)
        trades, cursor = await self.oms.list_trades(**filters)
        return pb.ListTradesResponse(trades=[convert.trade_to_proto(t) for t in trades], next_page_token=cursor or "")

    @grpc_errors
    async def StreamOrderEvents(self, request: pb.StreamOrderEventsRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        if request.after_cursor < 0:
            problems.append(InvalidOrder("after_cursor", "must not be negative", violation="OUT_OF_RANGE"))
        order_id = _optional(request.order_id, convert.ORDER_ID_PATTERN, "order_id", problems)
        account = _optional(request.account, convert.ACCOUNT_PATTERN, "account", problems)
        convert.raise_problems(problems)
        async for cursor, event, order in self.oms.follow_events(
            order_id=order_id, account=account, after=request.after_cursor, history_only=request.history_only,
        ):
            yield pb.StreamOrderEventsResponse(
                event=convert.event_to_proto(event, cursor=cursor, account=order.account, symbol=order.symbol),
                order=convert.order_to_proto(order),
            )

    @grpc_errors
    async def CreateOrderManager(self, request: pb.CreateOrderManagerRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        unique_identifier = convert.check_text(request.unique_identifier, convert.IDENTIFIER_PATTERN,
                                               "unique_identifier", problems=problems)
        account = convert.check_text(request.target_account_uid, convert.ACCOUNT_PATTERN, "target_account_uid",
                                     problems=problems)
        target_time = (convert.timestamp_from_proto(request, "target_time", problems=problems)
                       or dt.datetime.now(dt.timezone.utc))
        status = request.status.strip() or "created"
        if len(status) > 32:
            problems.append(InvalidOrder("status", "longer than 32 characters", violation="TOO_LONG"))
        else:
            convert.check_storable(status, "status", problems=problems)
        metadata = convert.metadata_from_proto(request, "metadata", problems=problems)
        convert.raise_problems(problems)
        manager, created = await self.oms.create_order_manager(
            unique_identifier=unique_identifier,
            target_account_uid=account,
            target_time=target_time,
            status=status,
            metadata=metadata,
        )
        return pb.CreateOrderManagerResponse(order_manager=convert.order_manager_to_proto(manager), created=created)

    @grpc_errors
    async def GetOrderManager(self, request: pb.GetOrderManagerRequest, context: grpc.aio.ServicerContext):
        unique_identifier = convert.check_text(request.unique_identifier, convert.IDENTIFIER_PATTERN, "unique_identifier")
        manager, orders = await self.oms.get_order_manager(unique_identifier)  # type: ignore[arg-type]
        auth.check_account(manager.target_account_uid, "order manager")
        return pb.GetOrderManagerResponse(
            order_manager=convert.order_manager_to_proto(manager), orders=[convert.order_to_proto(o) for o in orders]
        )

    @grpc_errors
    async def SetVenueSetting(self, request: pb.SetVenueSettingRequest, context: grpc.aio.ServicerContext):
        fields = parse_venue_setting(request)
        comment = fields.pop("comment")
        auth.record_privileged("SetVenueSetting", **{k: str(v) for k, v in fields.items() if v not in (None, "")},
                               **({"comment": comment} if comment else {}))
        setting = await self.oms.set_venue_setting(**fields, comment=comment)
        return pb.SetVenueSettingResponse(setting=_setting_proto(setting))

    @grpc_errors
    async def ListVenueSettings(self, request: pb.ListVenueSettingsRequest, context: grpc.aio.ServicerContext):
        problems: convert.Problems = []
        account = _optional(request.account, convert.ACCOUNT_PATTERN, "account", problems)
        convert.raise_problems(problems)
        settings = await self.oms.list_venue_settings(account)
        changes = await self.oms.venue_setting_history(account) if request.history else []
        return pb.ListVenueSettingsResponse(settings=[_setting_proto(s) for s in settings],
                                            changes=[_change_proto(c) for c in changes])


_MARGIN_PB = {"ISOLATED": common_pb.MARGIN_MODE_ISOLATED, "CROSSED": common_pb.MARGIN_MODE_CROSSED}


def _setting_values(setting: Any) -> dict[str, Any]:
    """The fields a stored setting and a recorded change share."""
    return dict(account=setting.account, symbol=setting.symbol,
                leverage=str(setting.leverage) if setting.leverage is not None else "",
                margin_mode=_MARGIN_PB.get(setting.margin_mode or "", common_pb.MARGIN_MODE_UNSPECIFIED),
                position_mode=setting.position_mode or "")


def _setting_proto(setting: Any) -> pb.VenueSetting:
    return pb.VenueSetting(**_setting_values(setting), source=setting.source,
                           updated_time=convert.timestamp_to_proto(setting.updated_time))


def _change_proto(change: Any) -> pb.VenueSettingChange:
    return pb.VenueSettingChange(**_setting_values(change), principal=change.principal, comment=change.comment,
                                 changed_time=convert.timestamp_to_proto(change.changed_time))
