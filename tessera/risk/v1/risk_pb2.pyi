import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateOrderRequest(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.OrderIntent
    def __init__(self, order: _Optional[_Union[_types_pb2.OrderIntent, _Mapping]] = ...) -> None: ...

class ValidateOrderResponse(_message.Message):
    __slots__ = ("order", "risk_token", "violations")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    violations: _containers.RepeatedCompositeFieldContainer[_types_pb2.RiskViolation]
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_types_pb2.RiskViolation, _Mapping]]] = ...) -> None: ...

class ValidateOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.OrderIntent]
    def __init__(self, orders: _Optional[_Iterable[_Union[_types_pb2.OrderIntent, _Mapping]]] = ...) -> None: ...

class ValidateOrdersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ValidateOrderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ValidateOrderResult, _Mapping]]] = ...) -> None: ...

class ValidateOrderResult(_message.Message):
    __slots__ = ("order", "risk_token", "violations", "error")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    violations: _containers.RepeatedCompositeFieldContainer[_types_pb2.RiskViolation]
    error: _types_pb2.ItemError
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_types_pb2.RiskViolation, _Mapping]]] = ..., error: _Optional[_Union[_types_pb2.ItemError, _Mapping]] = ...) -> None: ...

class GetTradingStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTradingStateResponse(_message.Message):
    __slots__ = ("state", "reason", "operator", "updated_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.TradingState
    reason: str
    operator: str
    updated_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[_types_pb2.TradingState, str]] = ..., reason: _Optional[str] = ..., operator: _Optional[str] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetTradingStateRequest(_message.Message):
    __slots__ = ("state", "operator", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.TradingState
    operator: str
    reason: str
    def __init__(self, state: _Optional[_Union[_types_pb2.TradingState, str]] = ..., operator: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetTradingStateResponse(_message.Message):
    __slots__ = ("state", "previous_state")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.TradingState
    previous_state: _types_pb2.TradingState
    def __init__(self, state: _Optional[_Union[_types_pb2.TradingState, str]] = ..., previous_state: _Optional[_Union[_types_pb2.TradingState, str]] = ...) -> None: ...

class GetLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLimitsResponse(_message.Message):
    __slots__ = ("limits",)
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: _containers.RepeatedCompositeFieldContainer[Limit]
    def __init__(self, limits: _Optional[_Iterable[_Union[Limit, _Mapping]]] = ...) -> None: ...

class Limit(_message.Message):
    __slots__ = ("name", "value", "violation_code")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_CODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    violation_code: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., violation_code: _Optional[str] = ...) -> None: ...

class ListPositionsRequest(_message.Message):
    __slots__ = ("account", "market_type", "symbol", "open_only", "page_size", "page_token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: str
    market_type: _types_pb2.MarketType
    symbol: str
    open_only: bool
    page_size: int
    page_token: str
    def __init__(self, account: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., symbol: _Optional[str] = ..., open_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPositionsResponse(_message.Message):
    __slots__ = ("positions", "next_page_token")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    next_page_token: str
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetPositionRequest(_message.Message):
    __slots__ = ("account", "market_type", "symbol")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    account: str
    market_type: _types_pb2.MarketType
    symbol: str
    def __init__(self, account: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., symbol: _Optional[str] = ...) -> None: ...

class GetPositionResponse(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: Position
    def __init__(self, position: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("account", "market_type", "symbol", "quantity", "average_entry_price", "cost_basis", "realised_pnl", "commission", "net_realised_pnl", "mark_price", "unrealised_pnl", "fees", "updated_time")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_ENTRY_PRICE_FIELD_NUMBER: _ClassVar[int]
    COST_BASIS_FIELD_NUMBER: _ClassVar[int]
    REALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    NET_REALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNREALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    account: str
    market_type: _types_pb2.MarketType
    symbol: str
    quantity: str
    average_entry_price: str
    cost_basis: str
    realised_pnl: str
    commission: str
    net_realised_pnl: str
    mark_price: str
    unrealised_pnl: str
    fees: _containers.RepeatedCompositeFieldContainer[Fee]
    updated_time: _timestamp_pb2.Timestamp
    def __init__(self, account: _Optional[str] = ..., market_type: _Optional[_Union[_types_pb2.MarketType, str]] = ..., symbol: _Optional[str] = ..., quantity: _Optional[str] = ..., average_entry_price: _Optional[str] = ..., cost_basis: _Optional[str] = ..., realised_pnl: _Optional[str] = ..., commission: _Optional[str] = ..., net_realised_pnl: _Optional[str] = ..., mark_price: _Optional[str] = ..., unrealised_pnl: _Optional[str] = ..., fees: _Optional[_Iterable[_Union[Fee, _Mapping]]] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Fee(_message.Message):
    __slots__ = ("asset", "amount")
    ASSET_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    asset: str
    amount: str
    def __init__(self, asset: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class ValidateReplacementRequest(_message.Message):
    __slots__ = ("order_id", "quantity", "price", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    quantity: str
    price: str
    client_order_id: str
    def __init__(self, order_id: _Optional[str] = ..., quantity: _Optional[str] = ..., price: _Optional[str] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class ValidateReplacementResponse(_message.Message):
    __slots__ = ("order", "risk_token", "violations")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RISK_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    order: _types_pb2.Order
    risk_token: str
    violations: _containers.RepeatedCompositeFieldContainer[_types_pb2.RiskViolation]
    def __init__(self, order: _Optional[_Union[_types_pb2.Order, _Mapping]] = ..., risk_token: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_types_pb2.RiskViolation, _Mapping]]] = ...) -> None: ...
