"""Hypothesis strategies for hostile protobuf requests, built from the message descriptors.

Every field gets a mix of values: well-formed ones (so requests get past the first
check and reach deeper code: real symbols, uuids, decimal strings, valid enum values),
boundary ones (zero, negative, 10^40, 19 fractional digits, NaN, exponents, the largest
integers, timestamps at the ends of their range) and hostile ones (any unicode, NUL,
control and combining characters, right-to-left marks, surrogate-free astral planes,
very long strings, enum numbers the schema does not know). Repeated fields get a few
items, nested messages a bounded depth, ``google.protobuf.Struct`` arbitrary JSON.
"""

from __future__ import annotations

import string
import time
import uuid
from typing import Any

from google.protobuf import descriptor as d
from google.protobuf import message_factory, struct_pb2, timestamp_pb2
from hypothesis import strategies as st

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "btcusdt", "BTC-USDT", "BTCUSDT ", "X" * 129]
DECIMALS = ["0", "1", "0.01", "0.5", "1.5", "-1", "-0", "0.000000000000000001", "0.0000000000000000001",
            "1e3", "1E+2", "NaN", "Infinity", "-Infinity", "sNaN", "1" * 40, "9" * 21, "65000", "65000.5",
            "3200.01", "150", " 1", "1 ", "1,5", "0x10", "١٢٣", "1_000", "+1", ".5", "5.", "", "1e-400",
            "1e400", "99999999999999999999.999999999999999999"]
IDENTIFIERS = ["acct-1", "e2e-fuzz", "a", "-", "_", "a" * 128, "a" * 129, "acct 1", "acct/1", "acct\x00", "ACCT",
               "tsr-123", "operator", "risk", "reconciler"]
HOSTILE = ["", " ", "\x00", "\x00" * 10, "\u202e", "\ufeff", "\u0301" * 50, "\U0001f4a5", "'; DROP TABLE orders_ts;--",
           "%s%s%s%n", "{}", "[]", "null", "\\", "../../etc/passwd", "\r\n", "v1.k.1.n.d.s", "a" * 5000,
           "v1." + "a" * 5000]
INT32 = [0, 1, -1, 2**31 - 1, -(2**31), 100, 1000, 1001, 5000]
INT64 = [0, 1, -1, 2**63 - 1, -(2**63), 2**53, 10**12]
UINT = [0, 1, 2**32 - 1]
UINT64 = [0, 1, 2**64 - 1]
MAX_TIMESTAMP, MIN_TIMESTAMP = 253402300799, -62135596800


def _good_values(name: str) -> list[Any]:
    """Well-formed values for a string field, by its name: most requests pass the first checks."""
    if name in ("order_id", "remote_order_id"):
        return [str(uuid.UUID(int=0x1234)), str(uuid.uuid4())]
    if name == "client_order_id":
        return ["cid-1", "tsr-" + "a" * 28, "fuzz-" + uuid.uuid4().hex[:8]]
    if name in ("symbol", "symbols"):
        return ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    if name in ("quantity", "filled_quantity", "executed_quantity", "original_quantity"):
        return ["0.01", "0.5", "1", "0.001", "3"]
    if name in ("price", "stop_price", "average_fill_price"):
        return ["", "65000", "64000.5", "3200", "150.25", "3150"]
    if name == "leverage":
        return ["", "1", "3", "10"]
    if name == "activation_price":
        return ["", "65000", "3150"]
    if name == "callback_rate":
        return ["", "0.1", "1", "5"]
    if name == "quote_order_qty":
        return ["", "10", "100.5"]
    if name == "venue":
        return ["aster"]
    if name in ("account", "target_account_uid"):
        return ["fuzz-acct-1", "fuzz-acct-2"]
    if name == "operator":
        return ["alice", "fuzzer"]
    if name == "reason":
        return ["incident", "fuzzing"]
    if name in ("unique_identifier",):
        return ["batch-1", "batch-" + uuid.uuid4().hex[:6]]
    if name in ("order_manager_id", "page_token", "risk_token", "status", "commission_asset"):
        return [""]
    return []


def _bad_values(name: str) -> list[str]:
    bad = {
        "order_id": ["not-a-uuid", str(uuid.uuid4()).upper(), "0" * 36],
        "client_order_id": ["c" * 37, "cid 1", "cid\n"],
        "symbol": SYMBOLS[3:],
        "quantity": DECIMALS, "price": DECIMALS, "stop_price": DECIMALS, "leverage": DECIMALS + ["126", "1.5"],
        "activation_price": DECIMALS, "callback_rate": DECIMALS + ["0.09", "5.01"], "quote_order_qty": DECIMALS,
        "page_token": ["eyJ0IjoiMjAyNSJ9", "!!!", "a" * 513, "MTIz"],
        "risk_token": ["v1.e2e-key-1.1700000000." + "a" * 32 + "." + "b" * 43 + "." + "c" * 43, "v1.....", "."],
    }.get(name, [])
    if name in ("account", "target_account_uid", "operator", "unique_identifier", "order_manager_id"):
        bad = IDENTIFIERS
    return bad + HOSTILE


def text_values(name: str) -> st.SearchStrategy[str]:
    good = _good_values(name)
    hostile = st.one_of(
        st.sampled_from(_bad_values(name)),
        st.text(max_size=40),
        st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=64),
        st.text(st.characters(codec="utf-8"), min_size=100, max_size=600),
    )
    if not good:
        return hostile
    return _mostly(st.sampled_from(good), hostile)


def _mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about six times in seven: a request is hostile in one field or two, not all."""
    return st.integers(0, 6).flatmap(lambda roll: bad if roll == 0 else good)


def _scalar(field: d.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return text_values(field.name)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return _mostly(st.integers(0, 200), st.one_of(st.sampled_from(INT32), st.integers(-(2**31), 2**31 - 1)))
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64, d.FieldDescriptor.TYPE_SFIXED64):
        return _mostly(st.integers(0, 1000), st.one_of(st.sampled_from(INT64), st.integers(-(2**63), 2**63 - 1)))
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return st.sampled_from(UINT)
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return st.sampled_from(UINT64)
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == d.FieldDescriptor.TYPE_FLOAT else 64)
    if t == d.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        good = [n for n in known if n != 0] or known
        return _mostly(st.sampled_from(good), st.one_of(st.just(0), st.integers(-3, max(known) + 3)))  # open enums
    raise NotImplementedError(f"field {field.full_name} of type {t}")


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)


def _special(descriptor: d.Descriptor) -> st.SearchStrategy[Any] | None:
    if descriptor.full_name == "google.protobuf.Timestamp":
        soon = st.integers(0, 86_400).map(lambda ahead: timestamp_pb2.Timestamp(seconds=int(time.time()) + 60 + ahead))
        return _mostly(soon, st.builds(
            lambda seconds, nanos: timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
            st.one_of(st.sampled_from([0, 1, -1, MAX_TIMESTAMP, MIN_TIMESTAMP, MAX_TIMESTAMP + 1, 1_700_000_000,
                                       4_102_444_800]),
                      st.integers(MIN_TIMESTAMP - 10, MAX_TIMESTAMP + 10)),
            st.one_of(st.just(0), st.integers(-1, 10**9)),
        ))
    if descriptor.full_name == "google.protobuf.Struct":
        def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
            struct = struct_pb2.Struct()
            struct.update(value)
            return struct
        return st.dictionaries(st.text(max_size=12), _JSON, max_size=4).map(to_struct)
    return None


def _field_strategy(field: d.FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if field.type == d.FieldDescriptor.TYPE_MESSAGE:
        if depth >= 3:
            return None
        value = message(field.message_type, depth + 1)
    else:
        value = _scalar(field)
    if field.is_repeated:
        return st.lists(value, max_size=3 if depth else 4)
    return _mostly(value, st.none())  # mostly set: unset is one more hostile value


def _assign(instance: Any, field: d.FieldDescriptor, value: Any) -> None:
    if value is None:
        instance.ClearField(field.name)
        return
    try:
        if field.is_repeated:
            del getattr(instance, field.name)[:]
            getattr(instance, field.name).extend(value)
        elif field.type == d.FieldDescriptor.TYPE_MESSAGE:
            getattr(instance, field.name).CopyFrom(value)
        else:
            setattr(instance, field.name, value)
    except (ValueError, TypeError):
        pass  # a value the protobuf runtime itself refuses (e.g. a float for a float32 overflow)


PRICES = {"BTCUSDT": 65000, "ETHUSDT": 3200, "SOLUSDT": 150}
_ORDERS = ("tessera.common.v1.OrderIntent", "tessera.common.v1.Order")


@st.composite
def _valid_then_mutated(draw: st.DrawFn, descriptor: d.Descriptor, depth: int) -> Any:
    """A well-formed order (market, limit, IOC, GTD or stop, within Risk's price band),
    then up to two of its fields replaced by hostile values: deep paths, hostile edges."""
    from tessera.common.v1 import types_pb2 as pb

    symbol = draw(st.sampled_from(sorted(PRICES)))
    kind = draw(st.sampled_from(["market", "limit", "ioc", "gtd", "stop", "take_profit", "trailing", "close",
                                 "quote"]))
    fields: dict[str, Any] = dict(
        client_order_id="fuzz-" + uuid.uuid4().hex[:12], account=draw(st.sampled_from(["fuzz-acct-1", "fuzz-acct-2"])),
        venue="aster", market_type=draw(st.sampled_from([pb.MARKET_TYPE_FUTURES, pb.MARKET_TYPE_SPOT])), symbol=symbol,
        side=draw(st.sampled_from([pb.SIDE_BUY, pb.SIDE_SELL])),
        quantity=draw(st.sampled_from(["0.001", "0.01", "0.1", "1"] if symbol != "BTCUSDT" else ["0.001", "0.01"])),
        order_type=pb.ORDER_TYPE_MARKET, time_in_force=pb.TIME_IN_FORCE_GTC,
    )
    offset = draw(st.integers(-400, 400)) / 10_000
    price = f"{PRICES[symbol] * (1 + offset):.2f}"
    if kind in ("limit", "ioc", "gtd"):
        fields.update(order_type=pb.ORDER_TYPE_LIMIT, price=price)
    if kind == "ioc":
        fields["time_in_force"] = pb.TIME_IN_FORCE_IOC
    if kind == "stop":
        fields.update(order_type=pb.ORDER_TYPE_STOP_MARKET, stop_price=price)
    if kind == "take_profit":
        fields.update(order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, stop_price=price)
    if kind == "trailing":
        fields.update(order_type=pb.ORDER_TYPE_TRAILING_STOP_MARKET, market_type=pb.MARKET_TYPE_FUTURES,
                      callback_rate=draw(st.sampled_from(["0.1", "1", "5"])),
                      working_type=draw(st.sampled_from([0, pb.WORKING_TYPE_MARK_PRICE])))
    if kind == "close":
        fields.update(order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, market_type=pb.MARKET_TYPE_FUTURES, stop_price=price,
                      quantity="", close_position=True)
    if kind == "quote":
        fields.update(market_type=pb.MARKET_TYPE_SPOT, side=pb.SIDE_BUY, quantity="", quote_order_qty="25")
    if descriptor.full_name == "tessera.common.v1.Order":
        fields.update(order_id=str(uuid.uuid4()), status=pb.ORDER_STATUS_APPROVED)
    instance = message_factory.GetMessageClass(descriptor)(**fields)
    if kind == "gtd":
        instance.time_in_force = pb.TIME_IN_FORCE_GTD
        instance.expire_time.FromSeconds(int(time.time()) + 3600)
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.sampled_from(list(descriptor.fields)))
        strategy = _field_strategy(field, depth)
        if strategy is not None:
            _assign(instance, field, draw(strategy))
    return instance


def message(descriptor: d.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Random instances of the message ``descriptor`` (fields set or left unset at random)."""
    special = _special(descriptor)
    if special is not None:
        return special
    cls = message_factory.GetMessageClass(descriptor)
    parts = {field.name: strategy for field in descriptor.fields
             if (strategy := _field_strategy(field, depth)) is not None}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        instance = cls()
        for name, strategy in parts.items():
            value = draw(strategy)
            if value is not None:
                _assign(instance, descriptor.fields_by_name[name], value)
        return instance

    if descriptor.full_name in _ORDERS:
        return st.integers(0, 3).flatmap(lambda roll: build() if roll == 0 else _valid_then_mutated(descriptor, depth))
    return build()
