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
