"""The check from the wire against protobuf, on requests rewritten the ways the wire format allows.

The OMS and the Exchange verify the risk token on the request's bytes
(``verify_order_request``, which reads the order's bound fields in place) and then act
on the order as protobuf parses those bytes. The two readers must agree on every bound
field for every byte string the check accepts, or a token signed for one order moves
another. Each case here starts from validly signed requests, re-encodes them
(duplicated and merged fields, the order in several parts, unknown and unbound fields
of every wire type, groups, wrong wire types, packed values, non-minimal varints,
explicit defaults, enum and bool values past 32 bits, invalid UTF-8, decimals spelled
otherwise, zero-length parts, another token before or after) and checks:

* the compiled core and the pure-Python twin give the same verdict;
* when the check accepts, protobuf parses the bytes (as ``SubmitOrderRequest`` and as
  ``ExecuteOrderRequest``), its token is the verified one, and its order's bound fields
  (as the services read them) encode to the very body that token signed.

Deterministic: a fixed hypothesis seed (derandomized) and a bounded number of examples.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core_ext
from core_ext import token_format as fmt
from services.common import convert
from services.domain.errors import DomainError
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2

SECRET = b"wire-differential-secret-0123456789abcdef"
ISSUED_AT = 1_700_000_000
NOW = float(ISSUED_AT + 1)

TEXT, NUMBER = 0, 1
BOUND = {fmt.WIRE_FIELD_NUMBERS[name]: name for name in fmt.ORDER_FIELDS}
NUMBER_FIELDS = {fmt.WIRE_FIELD_NUMBERS[name] for name in fmt.ORDER_FIELDS
                 if name in fmt.WIRE_ENUMS or name in fmt.BOOL_FIELDS}
ENUM_FIELDS = {fmt.WIRE_FIELD_NUMBERS[name] for name in fmt.WIRE_ENUMS}
#: Order fields the token does not bind (the schema's 16 to 28 and 35) and numbers past it.
UNBOUND = [16, 18, 19, 20, 21, 24, 25, 26, 27, 28, 35, 36, 47, 48, 99, 1000, 2**29 - 1]
TIMESTAMPS = [17, 22, 23]


def _order(**changes: Any) -> pb.Order:
    order = pb.Order(
        order_id="0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22", client_order_id="tsr-0001", account="acct-1",
        venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT", side=pb.SIDE_SELL,
        order_type=pb.ORDER_TYPE_STOP_LIMIT, quantity="0.015", price="64000", stop_price="64100.5",
        time_in_force=pb.TIME_IN_FORCE_IOC, reduce_only=True, leverage="3",
    )
    for name, value in changes.items():
        setattr(order, name, value)
    return order


#: Signed orders that differ in every bound field from one another somewhere: a value
#: of one is what an attacker would slip into a request carrying another's token.
ORDERS = [
    _order(),
    _order(order_id="11111111-2222-4333-8444-555555555555", client_order_id="tsr-0002", account="acct-2",
           venue="other", market_type=pb.MARKET_TYPE_SPOT, symbol="ETHUSDT", side=pb.SIDE_BUY,
           order_type=pb.ORDER_TYPE_LIMIT, quantity="250", price="1.5", stop_price="", post_only=True,
           time_in_force=pb.TIME_IN_FORCE_GTC, reduce_only=False, leverage=""),
    _order(order_type=pb.ORDER_TYPE_TRAILING_STOP_MARKET, price="", stop_price="", reduce_only=False,
           working_type=pb.WORKING_TYPE_MARK_PRICE, activation_price="66000", callback_rate="0.5"),
    _order(order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, quantity="", price="", reduce_only=False,
           close_position=True, price_protect=True, working_type=pb.WORKING_TYPE_CONTRACT_PRICE,
           time_in_force=pb.TIME_IN_FORCE_FOK),
    _order(market_type=pb.MARKET_TYPE_SPOT, side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="",
           price="", stop_price="", time_in_force=0, reduce_only=False, leverage="", quote_order_qty="250"),
]


def _fields(order: pb.Order) -> dict[str, Any]:
    """The bound fields as the services read them off a parsed order."""
    fields: dict[str, Any] = {}
    for name in fmt.ORDER_FIELDS:
        value = getattr(order, name)
        fields[name] = fmt.WIRE_ENUMS[name].get(value) if name in fmt.WIRE_ENUMS else value
    return fields


def _python() -> Any:
    return core_ext.load_implementation("python")


# -- the wire format, written by hand -----------------------------------------------------------
def _varint(value: int, pad: int = 0) -> bytes:
    """``value`` (unsigned, < 2**64) as a varint, with ``pad`` redundant continuation
    bytes (a non-minimal encoding; at most 10 bytes in all)."""
    out = bytearray()
    while True:
        out.append(value & 0x7F)
        value >>= 7
        if not value:
            break
        out[-1] |= 0x80
    pad = max(0, min(pad, 10 - len(out)))
    if pad:
        out[-1] |= 0x80
        out += b"\x80" * (pad - 1) + b"\x00"
    return bytes(out)


class Field:
    """One field as it goes on the wire: number, wire type, payload (an int for varints,
    bytes for length-delimited and fixed-width ones, a list of fields for a group)."""

    def __init__(self, number: int, wire: int, value: Any, tag_pad: int = 0, pad: int = 0) -> None:
        self.number, self.wire, self.value, self.tag_pad, self.pad = number, wire, value, tag_pad, pad

    def encode(self) -> bytes:
        tag = _varint(self.number << 3 | self.wire, self.tag_pad)
        if self.wire == 0:
            return tag + _varint(self.value, self.pad)
        if self.wire == 2:
            return tag + _varint(len(self.value), self.pad) + self.value
        if self.wire == 3:
            return tag + b"".join(f.encode() for f in self.value) + _varint(self.number << 3 | 4)
        return tag + self.value  # 1, 5: 8 or 4 bytes (or a stray end-group: empty)


def _order_fields(order: pb.Order) -> list[Field]:
    """The order's bound fields as protobuf writes them (defaults left out)."""
    fields = []
    for number, name in sorted(BOUND.items()):
        value = getattr(order, name)
        if number in NUMBER_FIELDS:
            if value:
                fields.append(Field(number, 0, int(value) & 0xFFFFFFFFFFFFFFFF))
        elif value:
            fields.append(Field(number, 2, value.encode()))
    return fields


def _with_default(number: int) -> Field:
    return Field(number, 0, 0) if number in NUMBER_FIELDS else Field(number, 2, b"")


def _bound_value(number: int, source: pb.Order) -> Field:
    """Field ``number`` with the value another signed order has (written even when default)."""
    value = getattr(source, BOUND[number])
    if number in NUMBER_FIELDS:
        return Field(number, 0, int(value) & 0xFFFFFFFFFFFFFFFF)
    return Field(number, 2, value.encode())


@st.composite
def _unknown(draw: Any, numbers: list[int]) -> Field:
    number = draw(st.sampled_from(numbers))
    wire = draw(st.sampled_from([0, 1, 2, 3, 5]))
    if wire == 0:
        return Field(number, 0, draw(st.sampled_from([0, 1, 2, 2**31, 2**32 + 1, 2**63, 2**64 - 1])))
    if wire == 1:
        return Field(number, 1, draw(st.binary(min_size=8, max_size=8)))
    if wire == 5:
        return Field(number, 5, draw(st.binary(min_size=4, max_size=4)))
    if wire == 3:
        return Field(number, 3, [Field(draw(st.integers(1, 40)), 0, 1)])
    return Field(number, 2, draw(st.binary(max_size=6)))


@st.composite
def _odd_value(draw: Any, number: int, original: Field | None) -> Field:
    """A re-encoding of bound field ``number`` that protobuf may read otherwise."""
    kind = draw(st.sampled_from(["wrong_wire", "packed", "high_bits", "utf8", "decimal", "empty", "group"]))
    if kind == "wrong_wire":
        wire = draw(st.sampled_from([0, 1, 2, 5]))
        if wire == 0:
            return Field(number, 0, draw(st.sampled_from([0, 1, 2, 3, 5, 2**32 + 2])))
        if wire == 1:
            return Field(number, 1, bytes([draw(st.integers(0, 7))]) + b"\0" * 7)
        if wire == 5:
            return Field(number, 5, bytes([draw(st.integers(0, 7))]) + b"\0" * 3)
        return Field(number, 2, draw(st.sampled_from([b"\x01", b"\x02", b"BUY", b"", b"\x01\x02"])))
    if kind == "packed":  # a scalar's value(s) as one length-delimited run
        values = draw(st.lists(st.integers(0, 7), min_size=1, max_size=3))
        return Field(number, 2, b"".join(_varint(v) for v in values))
    if kind == "high_bits" and number in NUMBER_FIELDS:
        low = draw(st.sampled_from([0, 1, 2, 3, 7]))
        high = draw(st.sampled_from([1 << 32, 1 << 35, 1 << 63, 0xFFFFFFFF00000000]))
        return Field(number, 0, (low | high) & 0xFFFFFFFFFFFFFFFF)
    if kind == "utf8" and number not in NUMBER_FIELDS:
        base = original.value if original is not None and original.wire == 2 else b"x"
        bad = draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x00", b"\x7f"]))
        at = draw(st.integers(0, len(base)))
        return Field(number, 2, base[:at] + bad + base[at:])
    if kind == "decimal" and number not in NUMBER_FIELDS:
        base = original.value.decode() if original is not None and original.wire == 2 else "1"
        spelled = draw(st.sampled_from(["0{}", "{}0", "+{}", "{}.", " {}", "{}e0", "{}\u0660", "-{}"]))
        return Field(number, 2, spelled.format(base).encode())
    if kind == "group":
        return Field(number, 3, [])
    return _with_default(number)


def _signed_requests() -> list[tuple[pb.Order, bytes, str]]:
    python = _python()
    ring = python.KeyRing("k1", SECRET)
    signed = []
    for index, order in enumerate(ORDERS):
        body = python.canonical_order_body(_fields(order))
        signed.append((order, body, python.sign_token(ring, body, ISSUED_AT, f"{index:032x}")))
    return signed


SIGNED = _signed_requests()
BODY_BY_NONCE = {token.split(".")[3]: body for _, body, token in SIGNED}


@st.composite
def mutated_requests(draw: Any) -> bytes:
    """A signed request, rewritten (see the module docstring)."""
    which = draw(st.integers(0, len(SIGNED) - 1))
    order, _, token = SIGNED[which]
    inner = _order_fields(order)
    tokens = [Field(2, 2, token.encode())]
    for _ in range(draw(st.integers(1, 5))):
        action = draw(st.sampled_from(["duplicate", "odd", "unknown", "default", "timestamp", "move", "drop",
                                       "pad", "token"]))
        at = draw(st.integers(0, len(inner)))
        if action == "duplicate":  # another signed order's value of a bound field, before or after
            other = SIGNED[draw(st.integers(0, len(SIGNED) - 1))][0]
            inner.insert(at, _bound_value(draw(st.sampled_from(sorted(BOUND))), other))
        elif action == "odd":
            number = draw(st.sampled_from(sorted(BOUND)))
            original = next((f for f in inner if f.number == number), None)
            inner.insert(at, draw(_odd_value(number, original)))
        elif action == "unknown":
            inner.insert(at, draw(_unknown(UNBOUND)))
        elif action == "default":
            inner.insert(at, _with_default(draw(st.sampled_from(sorted(BOUND)))))
        elif action == "timestamp":
            seconds = draw(st.sampled_from([0, 1, ISSUED_AT, 2**63 - 1, 2**64 - 1, 253402300800]))
            nanos = draw(st.sampled_from([0, 1, 999_999_999, 10**9, 2**32 - 1]))
            payload = Field(1, 0, seconds).encode() + Field(2, 0, nanos).encode()
            inner.insert(at, Field(draw(st.sampled_from(TIMESTAMPS)), 2, payload))
        elif action == "move" and inner:
            inner.insert(at, inner.pop(draw(st.integers(0, len(inner) - 1))))
        elif action == "drop" and inner:
            inner.pop(draw(st.integers(0, len(inner) - 1)))
        elif action == "pad" and inner:
            field = inner[draw(st.integers(0, len(inner) - 1))]
            field.tag_pad, field.pad = draw(st.sampled_from([0, 0, 0, 1, 4])), draw(st.integers(0, 9))
        elif action == "token":  # another token (another order's, or not one), before or after
            other = draw(st.sampled_from([SIGNED[draw(st.integers(0, len(SIGNED) - 1))][2], "", "v2.x"]))
            field = Field(2, 2, other.encode()) if draw(st.integers(0, 3)) else Field(2, 0, 1)
            tokens.insert(draw(st.integers(0, len(tokens))), field)
    # The order in one or more parts (a part may be empty), the tokens and unknown
    # top-level fields around them.
    cuts = sorted(draw(st.lists(st.integers(0, len(inner)), max_size=3)))
    parts = [inner[a:b] for a, b in zip([0, *cuts], [*cuts, len(inner)])]
    top: list[Field] = [Field(1, 2, b"".join(f.encode() for f in part), draw(st.sampled_from([0, 0, 0, 0, 1])),
                              draw(st.sampled_from([0, 0, 3]))) for part in parts]
    for field in tokens:
        top.insert(draw(st.integers(0, len(top))), field)
    for _ in range(draw(st.integers(0, 2))):
        top.insert(draw(st.integers(0, len(top))), draw(_unknown([1, 2, 3, 99])))
    return b"".join(f.encode() for f in top)


# -- the oracle ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twins(implementations) -> tuple[Any, Any, Any, Any]:
    compiled, python = implementations
    return compiled, compiled.KeyRing("k1", SECRET), python, python.KeyRing("k1", SECRET)


def _answer(verdict: Any) -> tuple[Any, ...]:
    return (verdict.reason, verdict.key_id, verdict.issued_at, verdict.nonce)


def _acted_on_as_signed(verdict: Any, request: Any, data: bytes) -> None:
    """An OK ``verdict``'s request, as protobuf parsed it, carries the verified token and
    the order that token signed (its bound fields as the services read them)."""
    signed_body = BODY_BY_NONCE[verdict.nonce]
    assert request.risk_token.split(".")[3] == verdict.nonce, data.hex()
    assert _python().canonical_order_body(_fields(request.order)) == signed_body, data.hex()
    # What the Exchange executes after an OK verdict: the signed fields as parsed.
    try:
        acted = convert.order_from_signed_proto(request.order)
    except DomainError:  # an unsigned field the services refuse (an expiry out of range)
        return
    expected = convert.order_from_signed_proto(next(o for o, body, _ in SIGNED if body == signed_body))
    for name in fmt.ORDER_FIELDS:
        assert getattr(acted, name) == getattr(expected, name), (name, data.hex())


def check_request(twins: tuple[Any, Any, Any, Any], data: bytes) -> str:
    """Both twins' verdict on ``data`` (they must agree); when it is OK, what protobuf
    parses is the order the verified token signed. Returns the reason."""
    compiled, ring_c, python, ring_p = twins
    a = compiled.verify_order_request(ring_c, data, NOW)
    b = python.verify_order_request(ring_p, data, NOW)
    assert _answer(a) == _answer(b), data.hex()
    if not a.ok:
        return a.reason
    for request_type in (oms_pb2.SubmitOrderRequest, exchange_pb2.ExecuteOrderRequest):
        try:
            request = request_type.FromString(data)
        except Exception:  # noqa: BLE001 - refused as malformed, as the services do (parse_request)
            continue
        _acted_on_as_signed(a, request, data)
    return a.reason


def check_batch(twins: tuple[Any, Any, Any, Any], data: bytes) -> None:
    """A batch: both twins give the same verdicts (or both refuse it); when protobuf
    parses it, the services pair verdict i with its item i (``zip``): there are as many
    of each, and an OK verdict's item is the order its token signed."""
    compiled, ring_c, python, ring_p = twins
    answers = []
    for impl, ring in ((compiled, ring_c), (python, ring_p)):
        try:
            answers.append([_answer(v) for v in impl.verify_order_requests(ring, data, NOW)])
        except ValueError:
            answers.append(None)
    assert answers[0] == answers[1], data.hex()
    if answers[0] is None:
        return
    verdicts = compiled.verify_order_requests(ring_c, data, NOW)
    for batch_type in (oms_pb2.SubmitOrdersRequest, exchange_pb2.ExecuteOrdersRequest):
        try:
            batch = batch_type.FromString(data)
        except Exception:  # noqa: BLE001 - as above
            continue
        assert len(batch.orders) == len(verdicts), data.hex()
        for verdict, item in zip(verdicts, batch.orders):
            if verdict.ok:
                _acted_on_as_signed(verdict, item, data)


EXAMPLES = int(os.environ.get("TESSERA_WIRE_EXAMPLES", "600"))
PROFILE = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])
BATCH_PROFILE = settings(PROFILE, max_examples=max(1, EXAMPLES // 3))


def test_the_signed_requests_verify_as_written(twins):
    for order, _, token in SIGNED:
        written = Field(1, 2, b"".join(f.encode() for f in _order_fields(order))).encode()
        assert written == oms_pb2.SubmitOrderRequest(order=order).SerializeToString()
        assert check_request(twins, written + Field(2, 2, token.encode()).encode()) == "OK"


@PROFILE
@given(mutated_requests())
def test_a_rewritten_request_verifies_only_as_the_order_protobuf_reads(twins, data):
    check_request(twins, data)


@BATCH_PROFILE
@given(st.lists(mutated_requests(), max_size=3), st.lists(_unknown([1, 2, 3, 99]), max_size=2), st.data())
def test_a_rewritten_batch_pairs_each_verdict_with_the_order_protobuf_reads(twins, items, noise, data):
    fields = [Field(1, 2, item) for item in items]
    for field in noise:
        fields.insert(data.draw(st.integers(0, len(fields))), field)
    check_batch(twins, b"".join(f.encode() for f in fields))


# -- a tag in a longer encoding than its shortest -----------------------------------------------
# protobuf's pure-Python runtime (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python, or wherever
# no upb wheel installs) finds a field by its tag's bytes: a tag written in more bytes than it
# needs ("\x8a\x00" for the order's "\x0a") is an unknown field there, while upb and the
# check's reader take it for the field it numbers. Behind such a tag, an order (or one field
# of it) is seen by the check and not by what the service then parses: the check refuses it.
def _long_tag(field: Field) -> bytes:
    return Field(field.number, field.wire, field.value, tag_pad=1).encode()


def _hidden_order_request() -> bytes:
    """Another order (ORDERS[1]), then the signed order ORDERS[0] behind a two-byte tag
    with every bound field written (so it overrides all of the first), and its token."""
    signed, _, token = SIGNED[0]
    every = b"".join(_bound_value(number, signed).encode() for number in sorted(BOUND))
    return (oms_pb2.SubmitOrderRequest(order=ORDERS[1]).SerializeToString() + _long_tag(Field(1, 2, every))
            + Field(2, 2, token.encode()).encode())


def _hidden_field_request() -> bytes:
    """The signed order with quantity 250, then its quantity 0.015 behind a two-byte tag."""
    signed, _, token = SIGNED[0]
    inner = [f if f.number != 9 else Field(9, 2, b"250") for f in _order_fields(signed)]
    order = b"".join(f.encode() for f in inner) + _long_tag(Field(9, 2, signed.quantity.encode()))
    return Field(1, 2, order).encode() + Field(2, 2, token.encode()).encode()


@pytest.mark.parametrize("make", [_hidden_order_request, _hidden_field_request])
def test_a_tag_longer_than_its_shortest_encoding_is_refused_on_the_wire(twins, make):
    data = make()
    # upb reads the hidden part as the check does (the signed order): it is the service's
    # field-by-field path, not the check from the wire, that decides then.
    assert check_request(twins, data) == "REQUEST_INVALID"


def test_a_batch_item_behind_a_longer_tag_is_refused_with_the_batch(twins):
    """Item 0 (the signed order, its token) behind a two-byte tag, item 1 another order
    with the same token: a reader that counted item 0 would pair its OK with item 1 where
    the pure-Python runtime sees item 1 alone."""
    signed, _, token = SIGNED[0]
    good = oms_pb2.SubmitOrderRequest(order=signed, risk_token=token).SerializeToString()
    other = oms_pb2.SubmitOrderRequest(order=ORDERS[1], risk_token=token).SerializeToString()
    data = _long_tag(Field(1, 2, good)) + Field(1, 2, other).encode()
    compiled, ring_c, python, ring_p = twins
    for impl, ring in ((compiled, ring_c), (python, ring_p)):
        with pytest.raises(ValueError, match="not a valid batch"):
            impl.verify_order_requests(ring, data, NOW)
    check_batch(twins, data)


@pytest.mark.skipif(os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") == "python",
                    reason="this is the run under the pure-Python runtime")
def test_the_check_agrees_with_protobufs_pure_python_runtime_too():
    """This file's properties again, with protobuf's pure-Python runtime parsing (a
    process of its own: the runtime is chosen at import)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python", "TESSERA_WIRE_EXAMPLES": "150",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
