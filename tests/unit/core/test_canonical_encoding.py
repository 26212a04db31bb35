"""Canonical decimals and the canonical order body (the bytes the token signs)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core_ext import OPTIONAL_FIELDS, ORDER_FIELDS, CanonicalEncodingError


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1.50", "1.5"), ("001.0", "1"), (".5", "0.5"), ("5.", "5"), ("100", "100"),
        ("-0.0", "0"), ("-0", "0"), ("-.000", "0"), ("-2.50", "-2.5"), ("+7", "7"), ("0", "0"),
        ("000", "0"), ("0.000100", "0.0001"), ("-.5", "-0.5"), ("10.010", "10.01"),
        ("1" * 40, "1" * 40), ("0." + "1" * 40, "0." + "1" * 40), ("0" * 100 + "1", "1"),
        ("1." + "0" * 100, "1"),
    ],
)
def test_canonical_decimal_normalises(impl, text, canonical):
    assert impl.canonical_decimal(text) == canonical


@pytest.mark.parametrize(
    "text",
    ["", ".", "-", "+", "+-1", "--1", "1e5", "1E-7", " 1", "1 ", "1\n", "NaN", "nan", "Infinity",
     "inf", "1.2.3", "0x10", "1_000", "1,5", "٣", "１", "1" * 41, "1" * 20 + "." + "1" * 21],
)
def test_canonical_decimal_rejects_non_plain_notation(impl, text):
    with pytest.raises(CanonicalEncodingError) as caught:
        impl.canonical_decimal(text)
    assert caught.value.field is None


def test_canonical_decimal_requires_a_str(impl):
    with pytest.raises(CanonicalEncodingError, match="must be a str, got int"):
        impl.canonical_decimal(5)


def _netstrings(body: bytes) -> list[bytes]:
    """Split a canonical body into its values, checking the netstring framing."""
    assert body.startswith(b"tessera.order.v2")
    rest = body[len(b"tessera.order.v2"):]
    values = []
    while rest:
        length, _, rest = rest.partition(b":")
        size = int(length)
        assert length == str(size).encode()
        values.append(rest[:size])
        assert rest[size:size + 1] == b","
        rest = rest[size + 1:]
    return values


def test_body_is_prefix_then_one_netstring_per_field_in_order(impl, order):
    body = impl.canonical_order_body(order)
    assert body == (
        b"tessera.order.v2" b"5:ord-1," b"5:cli-1," b"6:acct-1," b"5:ASTER," b"7:FUTURES,"
        b"7:BTCUSDT," b"3:BUY," b"5:LIMIT," b"5:0.015," b"7:64250.5," b"0:," b"3:GTC,"
        b"5:false," b"4:true," b"1:5,"
        b"5:false," b"0:," b"5:false," b"0:," b"0:," b"0:,"
    )


def test_a_trailing_stop_binds_its_fields_after_those_of_format_v1(impl, make_order):
    body = impl.canonical_order_body(make_order(
        order_type="TRAILING_STOP_MARKET", price=None, post_only=False, working_type="MARK_PRICE",
        activation_price="66000.0", callback_rate="0.50", quantity=""))
    assert body.endswith(b"5:false," b"10:MARK_PRICE," b"5:false," b"5:66000," b"3:0.5," b"0:,")
    assert b"20:TRAILING_STOP_MARKET," b"0:," in body       # the empty quantity follows the type
    assert len(_netstrings(body)) == len(ORDER_FIELDS)


def test_body_ignores_mapping_order_and_extra_keys(impl, order):
    shuffled = dict(reversed(list(order.items())), note="not bound", status="PENDING")
    assert impl.canonical_order_body(shuffled) == impl.canonical_order_body(order)


def test_equal_decimals_give_the_same_body(impl, make_order):
    a = impl.canonical_order_body(make_order(quantity="1.50", price="100", leverage="5"))
    b = impl.canonical_order_body(make_order(quantity="1.5", price=Decimal("100.000"), leverage=5))
    c = impl.canonical_order_body(make_order(quantity=Decimal("1.5E0"), price="0100.", leverage="5.0"))
    assert a == b == c


def test_any_changed_field_changes_the_body(impl, order):
    body = impl.canonical_order_body(order)
    changed = {"quantity": "0.016", "price": "64250.4", "side": "SELL", "reduce_only": True,
               "post_only": False, "leverage": "6", "stop_price": "1", "symbol": "ETHUSDT",
               "close_position": True, "working_type": "MARK_PRICE", "price_protect": True,
               "activation_price": "1", "callback_rate": "1", "quote_order_qty": "1"}
    for name, value in changed.items():
        assert impl.canonical_order_body({**order, name: value}) != body, name


def test_values_cannot_shift_between_fields(impl, make_order):
    a = impl.canonical_order_body(make_order(order_id="ab", client_order_id="c"))
    b = impl.canonical_order_body(make_order(order_id="a", client_order_id="bc"))
    assert a != b


def test_utf8_lengths_are_counted_in_bytes(impl, make_order):
    values = _netstrings(impl.canonical_order_body(make_order(account="zürich-€")))
    assert values[2] == "zürich-€".encode()
    assert b",11:" + "zürich-€".encode() + b"," in impl.canonical_order_body(make_order(account="zürich-€"))


def test_optional_prices_may_be_absent_none_or_empty(impl, order):
    absent = {k: v for k, v in order.items() if k not in ("price", "stop_price")}
    expected = impl.canonical_order_body({**order, "price": None, "stop_price": None})
    assert impl.canonical_order_body(absent) == expected
    assert impl.canonical_order_body({**order, "price": "", "stop_price": ""}) == expected


@pytest.mark.parametrize("field", [f for f in ORDER_FIELDS if f not in OPTIONAL_FIELDS])
def test_missing_required_field_is_named(impl, order, field):
    del order[field]
    with pytest.raises(CanonicalEncodingError) as caught:
        impl.canonical_order_body(order)
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("field", ["order_id", "symbol", "side", "account", "time_in_force"])
@pytest.mark.parametrize("bad", ["a\x00b", "line\n", "\x1f", "del\x7f", "\t"])
def test_control_characters_are_rejected_naming_the_field(impl, order, field, bad):
    with pytest.raises(CanonicalEncodingError, match="control character") as caught:
        impl.canonical_order_body({**order, field: bad})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", "1e3"), ("price", "abc"), ("leverage", 2.5), ("quantity", True),
     ("stop_price", Decimal("NaN")), ("price", "1" * 41), ("symbol", 5), ("side", None),
     ("reduce_only", "yes"), ("post_only", 1), ("reduce_only", None), ("order_id", "\ud800")],
)
def test_wrong_types_and_values_are_rejected_naming_the_field(impl, order, field, value):
    with pytest.raises(CanonicalEncodingError) as caught:
        impl.canonical_order_body({**order, field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(f"field {field!r}: ")


def test_bool_fields_accept_bools_and_their_strings(impl, make_order):
    as_bools = impl.canonical_order_body(make_order(reduce_only=True, post_only=False))
    as_strings = impl.canonical_order_body(make_order(reduce_only="true", post_only="false"))
    assert as_bools == as_strings
    assert b"4:true,5:false," in as_bools


def test_any_mapping_is_accepted(impl, order):
    from types import MappingProxyType

    assert impl.canonical_order_body(MappingProxyType(order)) == impl.canonical_order_body(order)
