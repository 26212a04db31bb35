import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetVenueSettingRequest(_message.Message):
    __slots__ = ("account", "symbol", "leverage", "margin_mode", "position_mode", "operator")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    POSITION_MODE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    leverage: str
    margin_mode: _types_pb2.MarginMode
    position_mode: str
    operator: str
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., leverage: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ..., position_mode: _Optional[str] = ..., operator: _Optional[str] = ...) -> None: ...

class SetVenueSettingResponse(_message.Message):
    __slots__ = ("setting",)
    SETTING_FIELD_NUMBER: _ClassVar[int]
    setting: VenueSetting
    def __init__(self, setting: _Optional[_Union[VenueSetting, _Mapping]] = ...) -> None: ...

class ListVenueSettingsRequest(_message.Message):
    __slots__ = ("account", "history")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    account: str
    history: bool
    def __init__(self, account: _Optional[str] = ..., history: _Optional[bool] = ...) -> None: ...

class ListVenueSettingsResponse(_message.Message):
    __slots__ = ("settings", "changes")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[VenueSetting]
    changes: _containers.RepeatedCompositeFieldContainer[VenueSettingChange]
    def __init__(self, settings: _Optional[_Iterable[_Union[VenueSetting, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[VenueSettingChange, _Mapping]]] = ...) -> None: ...

class VenueSettingChange(_message.Message):
    __slots__ = ("account", "symbol", "leverage", "margin_mode", "position_mode", "principal", "comment", "changed_time")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    POSITION_MODE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_TIME_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    leverage: str
    margin_mode: _types_pb2.MarginMode
    position_mode: str
    principal: str
    comment: str
    changed_time: _timestamp_pb2.Timestamp
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., leverage: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ..., position_mode: _Optional[str] = ..., principal: _Optional[str] = ..., comment: _Optional[str] = ..., changed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VenueSetting(_message.Message):
    __slots__ = ("account", "symbol", "leverage", "margin_mode", "position_mode", "source", "updated_time")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    POSITION_MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    leverage: str
    margin_mode: _types_pb2.MarginMode
    position_mode: str
    source: str
    updated_time: _timestamp_pb2.Timestamp
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., leverage: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ..., position_mode: _Optional[str] = ..., source: _Optional[str] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitOrderRequest(_message.Message):
    __slots__ = ("order", "risk_token")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ...) -> None: ...

class SubmitOrderResponse(_message.Message):
    __slots__ = ("order", "trades", "replayed")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    trades: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trade]
    replayed: bool
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., trades: _Optional[_Iterable[_Union[_types_pb2.Trade, _Mapping]]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class SubmitOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[SubmitOrderRequest]
    def __init__(self, orders: _Optional[_Iterable[_Union[SubmitOrderRequest, _Mapping]]] = ...) -> None: ...

class SubmitOrdersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubmitOrderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SubmitOrderResult, _Mapping]]] = ...) -> None: ...

class SubmitOrderResult(_message.Message):
    __slots__ = ("order", "trades", "error", "replayed")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    trades: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trade]
    error: _types_pb2.ItemError
    replayed: bool
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., trades: _Optional[_Iterable[_Union[_types_pb2.Trade, _Mapping]]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "account", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ...) -> None: ...

class CancelAllOrdersRequest(_message.Message):
    __slots__ = ("symbol", "account")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    account: str
    def __init__(self, symbol: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class CancelAllOrdersResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[_types_pb2.Order, _Mapping]]] = ...) -> None: ...

class EmergencyCancelAllRequest(_message.Message):
    __slots__ = ("operator", "reason")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    operator: str
    reason: str
    def __init__(self, operator: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EmergencyCancelAllResponse(_message.Message):
    __slots__ = ("state", "orders", "venue_failures")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    VENUE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.TradingState
    orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.Order]
    venue_failures: _containers.RepeatedCompositeFieldContainer[_types_pb2.VenueCancelFailure]
    def __init__(self, state: _Optional[_Union[_types_pb2.TradingState, str]] = ..., orders: _Optional[_Iterable[_Union[_types_pb2.Order, _Mapping]]] = ..., venue_failures: _Optional[_Iterable[_Union[_types_pb2.VenueCancelFailure, _Mapping]]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id", "account", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order", "events", "trades")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.OrderEvent]
    trades: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trade]
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., events: _Optional[_Iterable[_Union[_types_pb2.OrderEvent, _Mapping]]] = ..., trades: _Optional[_Iterable[_Union[_types_pb2.Trade, _Mapping]]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("account", "symbol", "statuses", "order_manager_id", "page_size", "page_token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    ORDER_MANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: str
    symbol: str
    statuses: _containers.RepeatedScalarFieldContainer[_types_pb2.OrderStatus]
    order_manager_id: str
    page_size: int
    page_token: str
    def __init__(self, account: _Optional[str] = ..., symbol: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_types_pb2.OrderStatus, str]]] = ..., order_manager_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[_types_pb2.Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTradesRequest(_message.Message):
    __slots__ = ("order_id", "account", "symbol", "page_size", "page_token")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    symbol: str
    page_size: int
    page_token: str
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., symbol: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTradesResponse(_message.Message):
    __slots__ = ("trades", "next_page_token")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trade]
    next_page_token: str
    def __init__(self, trades: _Optional[_Iterable[_Union[_types_pb2.Trade, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamOrderEventsRequest(_message.Message):
    __slots__ = ("order_id", "account", "after_cursor", "history_only")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    after_cursor: int
    history_only: bool
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., after_cursor: _Optional[int] = ..., history_only: _Optional[bool] = ...) -> None: ...

class StreamOrderEventsResponse(_message.Message):
    __slots__ = ("event", "order")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    event: _types_pb2.OrderEvent
    order: _types_pb2.Order
    def __init__(self, event: _Optional[_Union[_types_pb2.OrderEvent, _Mapping]] = ..., order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ...) -> None: ...

class CreateOrderManagerRequest(_message.Message):
    __slots__ = ("unique_identifier", "target_account_uid", "target_time", "status", "metadata")
    UNIQUE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCOUNT_UID_FIELD_NUMBER: _ClassVar[int]
    TARGET_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    unique_identifier: str
    target_account_uid: str
    target_time: _timestamp_pb2.Timestamp
    status: str
    metadata: _struct_pb2.Struct
    def __init__(self, unique_identifier: _Optional[str] = ..., target_account_uid: _Optional[str] = ..., target_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CreateOrderManagerResponse(_message.Message):
    __slots__ = ("order_manager", "created")
    ORDER_MANAGER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    order_manager: _types_pb2.OrderManager
    created: bool
    def __init__(self, order_manager: _Optional[_Union[_types_pb2.OrderManager, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetOrderManagerRequest(_message.Message):
    __slots__ = ("unique_identifier",)
    UNIQUE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    unique_identifier: str
    def __init__(self, unique_identifier: _Optional[str] = ...) -> None: ...

class GetOrderManagerResponse(_message.Message):
    __slots__ = ("order_manager", "orders")
    ORDER_MANAGER_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    order_manager: _types_pb2.OrderManager
    orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.Order]
    def __init__(self, order_manager: _Optional[_Union[_types_pb2.OrderManager, _Mapping]] = ..., orders: _Optional[_Iterable[_Union[_types_pb2.Order, _Mapping]]] = ...) -> None: ...

class ReplaceOrderRequest(_message.Message):
    __slots__ = ("order", "risk_token")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ...) -> None: ...

class ReplaceOrderResponse(_message.Message):
    __slots__ = ("order", "trades", "replaced_order", "replayed")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    REPLACED_ORDER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    trades: _containers.RepeatedCompositeFieldContainer[_types_pb2.Trade]
    replaced_order: _types_pb2.Order
    replayed: bool
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., trades: _Optional[_Iterable[_Union[_types_pb2.Trade, _Mapping]]] = ..., replaced_order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...
