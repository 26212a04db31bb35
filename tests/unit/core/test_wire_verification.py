"""Token verification from the wire: ``verify_order_request`` on the serialized request.

Both twins, against the vectors in ``docs/token-vectors.json``, against requests the
protobuf library serializes, and against each other on mutated and random bytes.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core_ext import token_format, vectors
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2

VECTORS = json.loads(vectors.DEFAULT_PATH.read_text(encoding="utf-8"))
SECRET = b"wire-test-secret-0123456789abcdef-01"
ISSUED_AT = 1_700_000_000
NOW = float(ISSUED_AT + 1)


def _vector_ring(impl):
    config = VECTORS["verification_key_ring"]
    return impl.KeyRing(
        config["current"]["key_id"], bytes.fromhex(config["current"]["secret_hex"]),
        [(k["key_id"], bytes.fromhex(k["secret_hex"])) for k in config["previous"]],
    )


@pytest.mark.parametrize("case", VECTORS["wire_vectors"], ids=lambda c: c["name"])
def test_wire_vectors(impl, case):
    result = impl.verify_order_request(_vector_ring(impl), bytes.fromhex(case["request_hex"]), case["now"],
                                       case["ttl_seconds"], case["skew_seconds"])
    assert result.reason == case["expected_reason"]
    assert result.ok is (case["expected_reason"] == "OK")


@pytest.mark.parametrize("case", [c for c in VECTORS["wire_vectors"] if c["expected_reason"] != "REQUEST_INVALID"],
                         ids=lambda c: c["name"])
def test_wire_vectors_are_requests_protobuf_parses(case):
    request = oms_pb2.SubmitOrderRequest.FromString(bytes.fromhex(case["request_hex"]))
    assert request.order.account in ("acct-main", "acct-other")
    assert request.order.symbol == "BTCUSDT"


def test_the_wire_enum_tables_match_the_contract():
    enums = {"market_type": pb.MarketType, "side": pb.Side, "order_type": pb.OrderType,
             "time_in_force": pb.TimeInForce, "working_type": pb.WorkingType}
    for field, enum in enums.items():
        prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
        declared = {v.number: v.name.removeprefix(prefix) for v in enum.DESCRIPTOR.values if v.number}
        table = {number: name for number, name in token_format.WIRE_ENUMS[field].items() if number}
        assert table == declared
    assert token_format.WIRE_ENUMS["time_in_force"][0] == "GTC"
    assert token_format.WIRE_ENUMS["working_type"][0] == ""     # unspecified: nothing sent, its own value


def test_the_bound_fields_are_numbered_as_the_contract_numbers_them():
    numbers = {f.name: f.number for f in pb.Order.DESCRIPTOR.fields}
    assert {name: numbers[name] for name in token_format.ORDER_FIELDS} == token_format.WIRE_FIELD_NUMBERS
    # Format v1's fields are 1 to 15; v2's, appended to the body, are the Order's fields 29 to 34.
    assert [token_format.WIRE_FIELD_NUMBERS[name] for name in token_format.ORDER_FIELDS] == [*range(1, 16),
                                                                                          *range(29, 35)]
    for message in (oms_pb2.SubmitOrderRequest, exchange_pb2.ExecuteOrderRequest):
        fields = message.DESCRIPTOR.fields_by_name
        assert fields["order"].number == token_format.WIRE_ORDER_FIELD
        assert fields["risk_token"].number == token_format.WIRE_TOKEN_FIELD


def _order(**changes) -> pb.Order:
    order = pb.Order(
        order_id="0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22", client_order_id="tsr-0001", account="acct-1",
        venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT", side=pb.SIDE_SELL,
        order_type=pb.ORDER_TYPE_STOP_LIMIT, quantity="0.015", price="64000", stop_price="64100.5",
        time_in_force=pb.TIME_IN_FORCE_IOC, reduce_only=True, leverage="3",
        status=pb.ORDER_STATUS_APPROVED, filled_quantity="0", version=1,
    )
    for name, value in changes.items():
        setattr(order, name, value)
    return order


def _fields(order: pb.Order) -> dict[str, object]:
    """The bound fields as the OMS's field-by-field path reads them."""
    fields: dict[str, object] = {}
    for name in token_format.ORDER_FIELDS:
        value = getattr(order, name)
        if name in token_format.WIRE_ENUMS:
            value = token_format.WIRE_ENUMS[name][value]
        fields[name] = value
    return fields


def _signed(impl, order: pb.Order):
    ring = impl.KeyRing("k1", SECRET)
    return ring, impl.sign_token(ring, impl.canonical_order_body(_fields(order)), ISSUED_AT)


@pytest.mark.parametrize("request_type", [oms_pb2.SubmitOrderRequest, exchange_pb2.ExecuteOrderRequest])
def test_a_request_protobuf_serializes_verifies_as_its_fields_do(impl, request_type):
    order = _order()
    ring, token = _signed(impl, order)
    data = request_type(order=order, risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, data, NOW).ok
    assert impl.verify_order_request(ring, data, NOW).nonce == token.split(".")[3]


@pytest.mark.parametrize(
    "name, value",
    [("order_id", "0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e23"), ("client_order_id", "tsr-0002"), ("account", "acct-2"),
     ("venue", "other"), ("market_type", pb.MARKET_TYPE_SPOT), ("symbol", "ETHUSDT"), ("side", pb.SIDE_BUY),
     ("order_type", pb.ORDER_TYPE_LIMIT), ("quantity", "0.016"), ("price", "64000.1"), ("stop_price", ""),
     ("time_in_force", pb.TIME_IN_FORCE_GTC), ("reduce_only", False), ("post_only", True), ("leverage", "")],
)
def test_every_bound_field_changed_on_the_wire_is_refused(impl, name, value):
    ring, token = _signed(impl, _order())
    data = oms_pb2.SubmitOrderRequest(order=_order(**{name: value}), risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, data, NOW).reason == "TOKEN_FIELDS_CHANGED"


def _trailing(**changes) -> pb.Order:
    """A futures trailing stop with the fields of format v2 it takes set."""
    return _order(**{"order_type": pb.ORDER_TYPE_TRAILING_STOP_MARKET, "price": "", "stop_price": "",
                     "reduce_only": False, "working_type": pb.WORKING_TYPE_MARK_PRICE, "activation_price": "66000",
                     "callback_rate": "0.5", **changes})


def _closing(**changes) -> pb.Order:
    return _order(**{"order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET, "quantity": "", "price": "",
                     "reduce_only": False, "close_position": True, "price_protect": True, **changes})


def _quoted(**changes) -> pb.Order:
    return _order(**{"market_type": pb.MARKET_TYPE_SPOT, "side": pb.SIDE_BUY, "order_type": pb.ORDER_TYPE_MARKET,
                     "quantity": "", "price": "", "stop_price": "", "time_in_force": pb.TIME_IN_FORCE_GTC,
                     "reduce_only": False, "leverage": "", "quote_order_qty": "250", **changes})


@pytest.mark.parametrize(
    "make, name, value",
    [(_trailing, "working_type", pb.WORKING_TYPE_CONTRACT_PRICE), (_trailing, "working_type", 0),
     (_trailing, "activation_price", "66000.1"), (_trailing, "activation_price", ""),
     (_trailing, "callback_rate", "0.6"), (_trailing, "callback_rate", ""), (_trailing, "close_position", True),
     (_closing, "close_position", False), (_closing, "price_protect", False), (_closing, "quantity", "0.015"),
     (_quoted, "quote_order_qty", "2500"), (_quoted, "quote_order_qty", ""), (_quoted, "quantity", "0.004")],
)
def test_every_field_of_format_v2_changed_on_the_wire_is_refused(impl, make, name, value):
    order = make()
    ring, token = _signed(impl, order)
    assert impl.verify_order_request(ring, oms_pb2.SubmitOrderRequest(order=order, risk_token=token)
                                     .SerializeToString(), NOW).ok
    changed = make()
    setattr(changed, name, value)
    data = oms_pb2.SubmitOrderRequest(order=changed, risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, data, NOW).reason == "TOKEN_FIELDS_CHANGED"


def test_an_unknown_working_type_on_the_wire_has_no_canonical_body(impl):
    ring, token = _signed(impl, _trailing())
    data = oms_pb2.SubmitOrderRequest(order=_trailing(working_type=3), risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, data, NOW).reason == "REQUEST_INVALID"


def test_unbound_fields_may_differ(impl):
    ring, token = _signed(impl, _order())
    other = _order(status=pb.ORDER_STATUS_FILLED, filled_quantity="0.015", order_manager_id="batch-1", version=9)
    assert impl.verify_order_request(ring, oms_pb2.SubmitOrderRequest(order=other, risk_token=token)
                                     .SerializeToString(), NOW).ok


def test_the_token_verdicts_are_verify_tokens(impl):
    order = _order()
    ring, token = _signed(impl, order)
    body = impl.canonical_order_body(_fields(order))
    for candidate, now in [("", NOW), (token[:-1] + ("A" if token[-1] != "A" else "B"), NOW), (token, NOW + 3600),
                           (token, float(ISSUED_AT - 60)), ("v1.nope", NOW)]:
        data = oms_pb2.SubmitOrderRequest(order=order, risk_token=candidate).SerializeToString()
        assert impl.verify_order_request(ring, data, now) == impl.verify_token(ring, candidate, body, now)


def _with_token_bytes(order: pb.Order, token: bytes) -> bytes:
    """A SubmitOrderRequest whose token field holds these bytes (UTF-8 or not)."""
    length, prefix = len(token), bytearray()
    while length >= 0x80:
        prefix.append(length & 0x7F | 0x80)
        length >>= 7
    prefix.append(length)
    return oms_pb2.SubmitOrderRequest(order=order).SerializeToString() + b"\x12" + bytes(prefix) + token


@pytest.mark.parametrize("replacement", [b"\x80", b"\xff", "\u00e9".encode(), "\u20ac".encode()])
def test_a_token_with_a_byte_outside_ascii_is_malformed_wherever_it_is(impl, replacement):
    order = _order()
    ring, token = _signed(impl, order)
    raw = token.encode()
    assert impl.verify_order_request(ring, _with_token_bytes(order, raw), NOW).ok
    for index in range(len(raw)):
        data = _with_token_bytes(order, raw[:index] + replacement + raw[index + 1:])
        verdict = impl.verify_order_request(ring, data, NOW)
        assert (verdict.reason, verdict.key_id, verdict.issued_at, verdict.nonce) == (
            "TOKEN_MALFORMED", None, None, None), index


def test_a_verdicts_token_values_read_the_same_every_time(impl):
    """The compiled verdict makes issued_at, the nonce and an unknown key id on first
    read; every read, equality, hashing and pickling see the token's values."""
    import pickle

    order = _order()
    ring, token = _signed(impl, order)
    _, key_id, issued_at, nonce, _, _ = token.split(".")
    data = oms_pb2.SubmitOrderRequest(order=order, risk_token=token).SerializeToString()
    first, second = impl.verify_order_request(ring, data, NOW), impl.verify_order_request(ring, data, NOW)
    assert hash(first) == hash(second) and first == second
    assert [(v.key_id, v.issued_at, v.nonce) for v in (first, first)] == [(key_id, int(issued_at), nonce)] * 2
    assert pickle.loads(pickle.dumps(second)) == first
    assert repr(second) == repr(first) == (f"VerifyResult(ok=True, reason='OK', key_id={key_id!r}, "
                                           f"issued_at={issued_at}, nonce={nonce!r})")
    stranger = impl.KeyRing("someone-else", SECRET)
    unknown = impl.verify_order_request(stranger, data, NOW)
    assert (unknown.reason, unknown.key_id, unknown.issued_at, unknown.nonce) == (
        "TOKEN_UNKNOWN_KEY", key_id, int(issued_at), nonce)
    assert unknown == impl.VerifyResult("TOKEN_UNKNOWN_KEY", key_id, int(issued_at), nonce)


@pytest.mark.parametrize("length", [100, 499, 500, 2000, 70_000])
def test_a_body_longer_than_the_stack_buffer_verifies(impl, length):
    """Long text fields (the body is written into a 1024-byte stack buffer until it does
    not fit) and a decimal with many leading zeros sign and verify as their fields do."""
    order = _order(order_id="o" * length, account="a" * (length // 2), quantity="0" * min(length, 1000) + ".015")
    ring, token = _signed(impl, order)
    data = oms_pb2.SubmitOrderRequest(order=order, risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, data, NOW).ok
    changed = oms_pb2.SubmitOrderRequest(order=_order(order_id="o" * length + "p", account="a" * (length // 2)),
                                         risk_token=token).SerializeToString()
    assert impl.verify_order_request(ring, changed, NOW).reason == "TOKEN_FIELDS_CHANGED"


def test_every_short_text_length_is_copied_whole(impl):
    """Text fields of every length up to past 32 bytes (the body's short-copy sizes): the
    request verifies, and changing the first or the last character is refused."""
    for length in range(0, 70):
        value = "".join(chr(48 + (i * 7) % 43) for i in range(length))
        order = _order(client_order_id=value, symbol=value[:20])
        ring, token = _signed(impl, order)
        assert impl.verify_order_request(ring, oms_pb2.SubmitOrderRequest(order=order, risk_token=token)
                                         .SerializeToString(), NOW).ok, length
        for changed in ({value[:-1] + "~"} | {"~" + value[1:]} if length else set()):
            data = oms_pb2.SubmitOrderRequest(order=_order(client_order_id=changed, symbol=value[:20]),
                                              risk_token=token).SerializeToString()
            assert impl.verify_order_request(ring, data, NOW).reason == "TOKEN_FIELDS_CHANGED", (length, changed)


def test_batches_are_verified_item_by_item_in_order(impl):
    order = _order()
    ring, token = _signed(impl, order)
    batch = oms_pb2.SubmitOrdersRequest(orders=[
        oms_pb2.SubmitOrderRequest(order=order, risk_token=token),
        oms_pb2.SubmitOrderRequest(order=_order(quantity="1"), risk_token=token),
        oms_pb2.SubmitOrderRequest(order=order),
    ]).SerializeToString()
    assert [r.reason for r in impl.verify_order_requests(ring, batch, NOW)] == ["OK", "TOKEN_FIELDS_CHANGED",
                                                                                "TOKEN_MISSING"]
    assert impl.verify_order_requests(ring, b"", NOW) == []
    with pytest.raises(ValueError, match="not a valid batch"):
        impl.verify_order_requests(ring, batch[:-3], NOW)


def test_caller_errors_raise_as_verify_token_does(impl):
    ring = impl.KeyRing("k1", SECRET)
    with pytest.raises(TypeError):
        impl.verify_order_request(ring, "not bytes", NOW)
    with pytest.raises(ValueError):
        impl.verify_order_request(ring, b"", float("nan"))


# -- the twins agree ----------------------------------------------------------------------------
PROFILE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def twins(implementations):
    compiled, python = implementations
    rings = tuple(m.KeyRing("k1", SECRET) for m in (compiled, python))
    valid = []
    for order in (_order(), _trailing(), _closing(), _quoted()):
        token = python.sign_token(rings[1], python.canonical_order_body(_fields(order)), ISSUED_AT)
        valid.append(oms_pb2.SubmitOrderRequest(order=order, risk_token=token).SerializeToString())
    return compiled, python, rings, valid


def _same(twins, data: bytes, now: float = NOW) -> None:
    compiled, python, (ring_c, ring_p), _ = twins
    a, b = compiled.verify_order_request(ring_c, data, now), python.verify_order_request(ring_p, data, now)
    assert (a.reason, a.key_id, a.issued_at, a.nonce) == (b.reason, b.key_id, b.issued_at, b.nonce)


@PROFILE
@given(data=st.data())
def test_twins_agree_on_mutated_requests(twins, data):
    request = bytearray(data.draw(st.sampled_from(twins[3])))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(request) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "insert"]))
        if action == "set":
            request[at] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del request[at]
        else:
            request.insert(at, data.draw(st.integers(0, 255)))
    _same(twins, bytes(request))


@PROFILE
@given(st.binary(max_size=400))
def test_twins_agree_on_random_bytes(twins, raw):
    _same(twins, raw)


def test_twins_agree_on_many_seeded_mutations(twins):
    generator = random.Random(7)
    for index in range(8000):
        valid = twins[3][index % len(twins[3])]
        request = bytearray(valid)
        for _ in range(generator.randint(1, 3)):
            request[generator.randrange(len(request))] = generator.randrange(256)
        _same(twins, bytes(request))
