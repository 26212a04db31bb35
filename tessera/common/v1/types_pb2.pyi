import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING: _ClassVar[OrderStatus]
    ORDER_STATUS_APPROVED: _ClassVar[OrderStatus]
    ORDER_STATUS_REJECTED: _ClassVar[OrderStatus]
    ORDER_STATUS_SUBMITTED: _ClassVar[OrderStatus]
    ORDER_STATUS_ACCEPTED: _ClassVar[OrderStatus]
    ORDER_STATUS_PARTIALLY_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING_CANCEL: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_EXPIRED: _ClassVar[OrderStatus]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_STOP_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_STOP_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_TAKE_PROFIT: _ClassVar[OrderType]
    ORDER_TYPE_TAKE_PROFIT_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_TRAILING_STOP_MARKET: _ClassVar[OrderType]

class WorkingType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKING_TYPE_UNSPECIFIED: _ClassVar[WorkingType]
    WORKING_TYPE_MARK_PRICE: _ClassVar[WorkingType]
    WORKING_TYPE_CONTRACT_PRICE: _ClassVar[WorkingType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTD: _ClassVar[TimeInForce]

class MarketType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARKET_TYPE_UNSPECIFIED: _ClassVar[MarketType]
    MARKET_TYPE_FUTURES: _ClassVar[MarketType]
    MARKET_TYPE_SPOT: _ClassVar[MarketType]

class MarginMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MARGIN_MODE_UNSPECIFIED: _ClassVar[MarginMode]
    MARGIN_MODE_ISOLATED: _ClassVar[MarginMode]
    MARGIN_MODE_CROSSED: _ClassVar[MarginMode]

class ExecutionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_MODE_UNSPECIFIED: _ClassVar[ExecutionMode]
    EXECUTION_MODE_PAPER: _ClassVar[ExecutionMode]
    EXECUTION_MODE_SHADOW: _ClassVar[ExecutionMode]
    EXECUTION_MODE_LIVE: _ClassVar[ExecutionMode]

class TradingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADING_STATE_UNSPECIFIED: _ClassVar[TradingState]
    TRADING_STATE_ACTIVE: _ClassVar[TradingState]
    TRADING_STATE_REDUCING: _ClassVar[TradingState]
    TRADING_STATE_HALTED: _ClassVar[TradingState]

class LiquiditySide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIQUIDITY_SIDE_UNSPECIFIED: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_MAKER: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_TAKER: _ClassVar[LiquiditySide]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_CANCELLED: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_FAILED_PRECONDITION: _ClassVar[ErrorCode]
    ERROR_CODE_ABORTED: _ClassVar[ErrorCode]
    ERROR_CODE_OUT_OF_RANGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNIMPLEMENTED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_DATA_LOSS: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_PENDING: OrderStatus
ORDER_STATUS_APPROVED: OrderStatus
ORDER_STATUS_REJECTED: OrderStatus
ORDER_STATUS_SUBMITTED: OrderStatus
ORDER_STATUS_ACCEPTED: OrderStatus
ORDER_STATUS_PARTIALLY_FILLED: OrderStatus
ORDER_STATUS_FILLED: OrderStatus
ORDER_STATUS_PENDING_CANCEL: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_EXPIRED: OrderStatus
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_MARKET: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_STOP_MARKET: OrderType
ORDER_TYPE_STOP_LIMIT: OrderType
ORDER_TYPE_TAKE_PROFIT: OrderType
ORDER_TYPE_TAKE_PROFIT_MARKET: OrderType
ORDER_TYPE_TRAILING_STOP_MARKET: OrderType
WORKING_TYPE_UNSPECIFIED: WorkingType
WORKING_TYPE_MARK_PRICE: WorkingType
WORKING_TYPE_CONTRACT_PRICE: WorkingType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
TIME_IN_FORCE_GTD: TimeInForce
MARKET_TYPE_UNSPECIFIED: MarketType
MARKET_TYPE_FUTURES: MarketType
MARKET_TYPE_SPOT: MarketType
MARGIN_MODE_UNSPECIFIED: MarginMode
MARGIN_MODE_ISOLATED: MarginMode
MARGIN_MODE_CROSSED: MarginMode
EXECUTION_MODE_UNSPECIFIED: ExecutionMode
EXECUTION_MODE_PAPER: ExecutionMode
EXECUTION_MODE_SHADOW: ExecutionMode
EXECUTION_MODE_LIVE: ExecutionMode
TRADING_STATE_UNSPECIFIED: TradingState
TRADING_STATE_ACTIVE: TradingState
TRADING_STATE_REDUCING: TradingState
TRADING_STATE_HALTED: TradingState
LIQUIDITY_SIDE_UNSPECIFIED: LiquiditySide
LIQUIDITY_SIDE_MAKER: LiquiditySide
LIQUIDITY_SIDE_TAKER: LiquiditySide
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_UNKNOWN: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_ALREADY_EXISTS: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_FAILED_PRECONDITION: ErrorCode
ERROR_CODE_ABORTED: ErrorCode
ERROR_CODE_OUT_OF_RANGE: ErrorCode
ERROR_CODE_UNIMPLEMENTED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_DATA_LOSS: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode

class OrderIntent(_message.Message):
    __slots__ = ("client_order_id", "account", "venue", "market_type", "symbol", "side", "order_type", "quantity", "price", "stop_price", "time_in_force", "reduce_only", "post_only", "leverage", "order_manager_id", "expire_time", "close_position", "working_type", "price_protect", "activation_price", "callback_rate", "quote_order_qty")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_MANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLOSE_POSITION_FIELD_NUMBER: _ClassVar[int]
    WORKING_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_PROTECT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_PRICE_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_RATE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ORDER_QTY_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    account: str
    venue: str
    market_type: MarketType
    symbol: str
    side: Side
    order_type: OrderType
    quantity: str
    price: str
    stop_price: str
    time_in_force: TimeInForce
    reduce_only: bool
    post_only: bool
    leverage: str
    order_manager_id: str
    expire_time: _timestamp_pb2.Timestamp
    close_position: bool
    working_type: WorkingType
    price_protect: bool
    activation_price: str
    callback_rate: str
    quote_order_qty: str
    def __init__(self, client_order_id: _Optional[str] = ..., account: _Optional[str] = ..., venue: _Optional[str] = ..., market_type: _Optional[_Union[MarketType, str]] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., quantity: _Optional[str] = ..., price: _Optional[str] = ..., stop_price: _Optional[str] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., reduce_only: _Optional[bool] = ..., post_only: _Optional[bool] = ..., leverage: _Optional[str] = ..., order_manager_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., close_position: _Optional[bool] = ..., working_type: _Optional[_Union[WorkingType, str]] = ..., price_protect: _Optional[bool] = ..., activation_price: _Optional[str] = ..., callback_rate: _Optional[str] = ..., quote_order_qty: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "account", "venue", "market_type", "symbol", "side", "order_type", "quantity", "price", "stop_price", "time_in_force", "reduce_only", "post_only", "leverage", "order_manager_id", "expire_time", "status", "filled_quantity", "average_fill_price", "remote_order_id", "order_time", "updated_time", "reject_reasons", "version", "replaces_order_id", "raw_venue_json", "replaced_by_order_id", "close_position", "working_type", "price_protect", "activation_price", "callback_rate", "quote_order_qty", "venue_executed_quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    ORDER_MANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_FILL_PRICE_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLACES_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_VENUE_JSON_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSE_POSITION_FIELD_NUMBER: _ClassVar[int]
    WORKING_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_PROTECT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_PRICE_FIELD_NUMBER: _ClassVar[int]
    CALLBACK_RATE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_ORDER_QTY_FIELD_NUMBER: _ClassVar[int]
    VENUE_EXECUTED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    client_order_id: str
    account: str
    venue: str
    market_type: MarketType
    symbol: str
    side: Side
    order_type: OrderType
    quantity: str
    price: str
    stop_price: str
    time_in_force: TimeInForce
    reduce_only: bool
    post_only: bool
    leverage: str
    order_manager_id: str
    expire_time: _timestamp_pb2.Timestamp
    status: OrderStatus
    filled_quantity: str
    average_fill_price: str
    remote_order_id: str
    order_time: _timestamp_pb2.Timestamp
    updated_time: _timestamp_pb2.Timestamp
    reject_reasons: _containers.RepeatedScalarFieldContainer[str]
    version: int
    replaces_order_id: str
    raw_venue_json: str
    replaced_by_order_id: str
    close_position: bool
    working_type: WorkingType
    price_protect: bool
    activation_price: str
    callback_rate: str
    quote_order_qty: str
    venue_executed_quantity: str
    def __init__(self, order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account: _Optional[str] = ..., venue: _Optional[str] = ..., market_type: _Optional[_Union[MarketType, str]] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., quantity: _Optional[str] = ..., price: _Optional[str] = ..., stop_price: _Optional[str] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., reduce_only: _Optional[bool] = ..., post_only: _Optional[bool] = ..., leverage: _Optional[str] = ..., order_manager_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., filled_quantity: _Optional[str] = ..., average_fill_price: _Optional[str] = ..., remote_order_id: _Optional[str] = ..., order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reject_reasons: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., replaces_order_id: _Optional[str] = ..., raw_venue_json: _Optional[str] = ..., replaced_by_order_id: _Optional[str] = ..., close_position: _Optional[bool] = ..., working_type: _Optional[_Union[WorkingType, str]] = ..., price_protect: _Optional[bool] = ..., activation_price: _Optional[str] = ..., callback_rate: _Optional[str] = ..., quote_order_qty: _Optional[str] = ..., venue_executed_quantity: _Optional[str] = ...) -> None: ...

class OrderEvent(_message.Message):
    __slots__ = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload", "cursor", "account", "symbol", "raw_venue_json")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    RAW_VENUE_JSON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    sequence: int
    event_time: _timestamp_pb2.Timestamp
    from_status: OrderStatus
    to_status: OrderStatus
    reason: str
    payload: _struct_pb2.Struct
    cursor: int
    account: str
    symbol: str
    raw_venue_json: str
    def __init__(self, order_id: _Optional[str] = ..., sequence: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., from_status: _Optional[_Union[OrderStatus, str]] = ..., to_status: _Optional[_Union[OrderStatus, str]] = ..., reason: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cursor: _Optional[int] = ..., account: _Optional[str] = ..., symbol: _Optional[str] = ..., raw_venue_json: _Optional[str] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("trade_id", "venue", "order_id", "client_order_id", "account", "symbol", "side", "quantity", "price", "commission", "commission_asset", "liquidity_side", "trade_time", "raw_payload", "raw_venue_json")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    TRADE_TIME_FIELD_NUMBER: _ClassVar[int]
    RAW_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RAW_VENUE_JSON_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    venue: str
    order_id: str
    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: str
    price: str
    commission: str
    commission_asset: str
    liquidity_side: LiquiditySide
    trade_time: _timestamp_pb2.Timestamp
    raw_payload: _struct_pb2.Struct
    raw_venue_json: str
    def __init__(self, trade_id: _Optional[str] = ..., venue: _Optional[str] = ..., order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., account: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., quantity: _Optional[str] = ..., price: _Optional[str] = ..., commission: _Optional[str] = ..., commission_asset: _Optional[str] = ..., liquidity_side: _Optional[_Union[LiquiditySide, str]] = ..., trade_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., raw_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., raw_venue_json: _Optional[str] = ...) -> None: ...

class RiskViolation(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "reason", "message", "status_code", "metadata", "field_violations", "retry_delay")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    message: str
    status_code: ErrorCode
    metadata: _containers.ScalarMap[str, str]
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    retry_delay: _duration_pb2.Duration
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., status_code: _Optional[_Union[ErrorCode, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("sequence", "order_id", "client_order_id", "remote_order_id", "venue", "account", "symbol", "order_status", "trade_id", "last_quantity", "last_price", "commission", "commission_asset", "liquidity_side", "cumulative_quantity", "transact_time", "reason", "side", "raw_payload", "raw_venue_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_ASSET_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TRANSACT_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    RAW_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RAW_VENUE_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    order_id: str
    client_order_id: str
    remote_order_id: str
    venue: str
    account: str
    symbol: str
    order_status: OrderStatus
    trade_id: str
    last_quantity: str
    last_price: str
    commission: str
    commission_asset: str
    liquidity_side: LiquiditySide
    cumulative_quantity: str
    transact_time: _timestamp_pb2.Timestamp
    reason: str
    side: Side
    raw_payload: _struct_pb2.Struct
    raw_venue_json: str
    def __init__(self, sequence: _Optional[int] = ..., order_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., remote_order_id: _Optional[str] = ..., venue: _Optional[str] = ..., account: _Optional[str] = ..., symbol: _Optional[str] = ..., order_status: _Optional[_Union[OrderStatus, str]] = ..., trade_id: _Optional[str] = ..., last_quantity: _Optional[str] = ..., last_price: _Optional[str] = ..., commission: _Optional[str] = ..., commission_asset: _Optional[str] = ..., liquidity_side: _Optional[_Union[LiquiditySide, str]] = ..., cumulative_quantity: _Optional[str] = ..., transact_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., raw_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., raw_venue_json: _Optional[str] = ...) -> None: ...

class OrderManager(_message.Message):
    __slots__ = ("id", "unique_identifier", "target_account_uid", "target_time", "order_received_time", "execution_end", "status", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    UNIQUE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCOUNT_UID_FIELD_NUMBER: _ClassVar[int]
    TARGET_TIME_FIELD_NUMBER: _ClassVar[int]
    ORDER_RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    unique_identifier: str
    target_account_uid: str
    target_time: _timestamp_pb2.Timestamp
    order_received_time: _timestamp_pb2.Timestamp
    execution_end: _timestamp_pb2.Timestamp
    status: str
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., unique_identifier: _Optional[str] = ..., target_account_uid: _Optional[str] = ..., target_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., execution_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "reason", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    description: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class VenueCancelFailure(_message.Message):
    __slots__ = ("account", "market_type", "symbol", "reason", "message")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MARKET_TYPE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    account: str
    market_type: MarketType
    symbol: str
    reason: str
    message: str
    def __init__(self, account: _Optional[str] = ..., market_type: _Optional[_Union[MarketType, str]] = ..., symbol: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
