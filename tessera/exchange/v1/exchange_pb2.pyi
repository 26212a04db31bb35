from google.api import field_behavior_pb2 as _field_behavior_pb2
from tessera.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecuteOrderRequest(_message.Message):
    __slots__ = ("order", "risk_token")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ...) -> None: ...

class ExecuteOrderResponse(_message.Message):
    __slots__ = ("remote_order_id", "mode", "reports")
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    remote_order_id: str
    mode: _types_pb2.ExecutionMode
    reports: _containers.RepeatedCompositeFieldContainer[_types_pb2.ExecutionReport]
    def __init__(self, remote_order_id: _Optional[str] = ..., mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., reports: _Optional[_Iterable[_Union[_types_pb2.ExecutionReport, _Mapping]]] = ...) -> None: ...

class ExecuteOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[ExecuteOrderRequest]
    def __init__(self, orders: _Optional[_Iterable[_Union[ExecuteOrderRequest, _Mapping]]] = ...) -> None: ...

class ExecuteOrdersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ExecuteOrderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ExecuteOrderResult, _Mapping]]] = ...) -> None: ...

class ExecuteOrderResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: ExecuteOrderResponse
    error: _types_pb2.ItemError
    def __init__(self, response: _Optional[_Union[ExecuteOrderResponse, _Mapping]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id", "remote_order_id", "symbol", "market_type", "account")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    remote_order_id: str
    symbol: str
    market_type: _types_pb2.MarketType
    account: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., remote_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., account: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _types_pb2.ExecutionReport
    def __init__(self, report: _Optional[_Union[_types_pb2.ExecutionReport, _Mapping]] = ...) -> None: ...

class CancelAllOrdersRequest(_message.Message):
    __slots__ = ("symbol", "market_type")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    market_type: _types_pb2.MarketType
    def __init__(self, symbol: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ...) -> None: ...

class CancelAllOrdersResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_types_pb2.ExecutionReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[_types_pb2.ExecutionReport, _Mapping]]] = ...) -> None: ...

class EmergencyCancelAllRequest(_message.Message):
    __slots__ = ("symbols", "market_type")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    market_type: _types_pb2.MarketType
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ...) -> None: ...

class SetPositionModeRequest(_message.Message):
    __slots__ = ("account", "hedge_mode")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HEDGE_MODE_FIELD_NUMBER: _ClassVar[int]
    account: str
    hedge_mode: bool
    def __init__(self, account: _Optional[str] = ..., hedge_mode: _Optional[bool] = ...) -> None: ...

class SetPositionModeResponse(_message.Message):
    __slots__ = ("account", "hedge_mode")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HEDGE_MODE_FIELD_NUMBER: _ClassVar[int]
    account: str
    hedge_mode: bool
    def __init__(self, account: _Optional[str] = ..., hedge_mode: _Optional[bool] = ...) -> None: ...

class ListVenueSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVenueSettingsResponse(_message.Message):
    __slots__ = ("mode", "accounts")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    mode: _types_pb2.ExecutionMode
    accounts: _containers.RepeatedCompositeFieldContainer[VenueAccountSettings]
    def __init__(self, mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., accounts: _Optional[_Iterable[_Union[VenueAccountSettings, _Mapping]]] = ...) -> None: ...

class VenueAccountSettings(_message.Message):
    __slots__ = ("account", "hedge_mode", "symbols")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    HEDGE_MODE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    account: str
    hedge_mode: bool
    symbols: _containers.RepeatedCompositeFieldContainer[VenueSymbolSettings]
    def __init__(self, account: _Optional[str] = ..., hedge_mode: _Optional[bool] = ..., symbols: _Optional[_Iterable[_Union[VenueSymbolSettings, _Mapping]]] = ...) -> None: ...

class VenueSymbolSettings(_message.Message):
    __slots__ = ("symbol", "leverage", "margin_mode")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    leverage: str
    margin_mode: _types_pb2.MarginMode
    def __init__(self, symbol: _Optional[str] = ..., leverage: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ...) -> None: ...

class EmergencyCancelAllResponse(_message.Message):
    __slots__ = ("reports", "failures")
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_types_pb2.ExecutionReport]
    failures: _containers.RepeatedCompositeFieldContainer[_types_pb2.VenueCancelFailure]
    def __init__(self, reports: _Optional[_Iterable[_Union[_types_pb2.ExecutionReport, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[_types_pb2.VenueCancelFailure, _Mapping]]] = ...) -> None: ...

class SetLeverageRequest(_message.Message):
    __slots__ = ("symbol", "leverage", "account")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    leverage: str
    account: str
    def __init__(self, symbol: _Optional[str] = ..., leverage: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class SetLeverageResponse(_message.Message):
    __slots__ = ("symbol", "leverage")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    leverage: str
    def __init__(self, symbol: _Optional[str] = ..., leverage: _Optional[str] = ...) -> None: ...

class SetMarginModeRequest(_message.Message):
    __slots__ = ("symbol", "margin_mode", "account")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    margin_mode: _types_pb2.MarginMode
    account: str
    def __init__(self, symbol: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ..., account: _Optional[str] = ...) -> None: ...

class SetMarginModeResponse(_message.Message):
    __slots__ = ("symbol", "margin_mode")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARGIN_MODE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    margin_mode: _types_pb2.MarginMode
    def __init__(self, symbol: _Optional[str] = ..., margin_mode: _Optional[_Union[_types_pb2.MarginMode, str]] = ...) -> None: ...

class GetTickerRequest(_message.Message):
    __slots__ = ("symbol", "market_type")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    market_type: _types_pb2.MarketType
    def __init__(self, symbol: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ...) -> None: ...

class GetTickerResponse(_message.Message):
    __slots__ = ("symbol", "price", "bid_price", "ask_price")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_PRICE_FIELD_NUMBER: _ClassVar[int]
    ASK_PRICE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    price: str
    bid_price: str
    ask_price: str
    def __init__(self, symbol: _Optional[str] = ..., price: _Optional[str] = ..., bid_price: _Optional[str] = ..., ask_price: _Optional[str] = ...) -> None: ...

class StreamExecutionReportsRequest(_message.Message):
    __slots__ = ("after_sequence",)
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    def __init__(self, after_sequence: _Optional[int] = ...) -> None: ...

class StreamExecutionReportsResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _types_pb2.ExecutionReport
    def __init__(self, report: _Optional[_Union[_types_pb2.ExecutionReport, _Mapping]] = ...) -> None: ...

class QueryOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id", "remote_order_id", "symbol", "market_type", "account", "venue", "side")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    remote_order_id: str
    symbol: str
    market_type: _types_pb2.MarketType
    account: str
    venue: str
    side: _types_pb2.Side
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., remote_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., account: _Optional[str] = ..., venue: _Optional[str] = ..., side: _Optional[_Union[_types_pb2.Side, str]] = ...) -> None: ...

class QueryOrderResponse(_message.Message):
    __slots__ = ("found", "venue_status", "executed_quantity", "original_quantity", "remote_order_id", "fills", "mode")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VENUE_STATUS_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    venue_status: _types_pb2.OrderStatus
    executed_quantity: str
    original_quantity: str
    remote_order_id: str
    fills: _containers.RepeatedCompositeFieldContainer[_types_pb2.ExecutionReport]
    mode: _types_pb2.ExecutionMode
    def __init__(self, found: _Optional[bool] = ..., venue_status: _Optional[_Union[_types_pb2.OrderStatus, str]] = ..., executed_quantity: _Optional[str] = ..., original_quantity: _Optional[str] = ..., remote_order_id: _Optional[str] = ..., fills: _Optional[_Iterable[_Union[_types_pb2.ExecutionReport, _Mapping]]] = ..., mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ...) -> None: ...

class ListVenuePositionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVenuePositionsResponse(_message.Message):
    __slots__ = ("mode", "positions", "accounts")
    MODE_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    mode: _types_pb2.ExecutionMode
    positions: _containers.RepeatedCompositeFieldContainer[VenuePosition]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., positions: _Optional[_Iterable[_Union[VenuePosition, _Mapping]]] = ..., accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class VenuePosition(_message.Message):
    __slots__ = ("symbol", "market_type", "quantity", "account")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    market_type: _types_pb2.MarketType
    quantity: str
    account: str
    def __init__(self, symbol: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., quantity: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...
