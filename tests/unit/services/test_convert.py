"""Protobuf <-> domain conversion: every validation rule names its field; round trips are exact."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from services.common import convert
from services.domain import (
    LiquiditySide,
    MarketType,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    WorkingType,
)
from services.domain.errors import InvalidOrder
from services.domain.execution import ExecutionReport, Fill
from tessera.common.v1 import types_pb2 as pb

ORDER_ID = "0f0e0d0c-0b0a-4908-8706-050403020100"
EXPIRY = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)


def intent(**overrides: Any) -> pb.OrderIntent:
    """A valid LIMIT BUY intent; ``overrides`` replace fields (``expire_time`` a datetime)."""
    fields: dict[str, Any] = dict(
        client_order_id="cid-1",
        account="acct-1",
        venue="paper",
        market_type=pb.MARKET_TYPE_FUTURES,
        symbol="BTCUSDT",
        side=pb.SIDE_BUY,
        order_type=pb.ORDER_TYPE_LIMIT,
        quantity="1.5",
        price="50000",
        time_in_force=pb.TIME_IN_FORCE_GTC,
    )
    fields.update(overrides)
    if isinstance(fields.get("expire_time"), dt.datetime):
        fields["expire_time"] = convert.timestamp_to_proto(fields["expire_time"])
    return pb.OrderIntent(**fields)


def order_message(**overrides: Any) -> pb.Order:
    """The same order as a ``pb.Order`` (with an order id), as presented for submission."""
    fields: dict[str, Any] = {"order_id": ORDER_ID}
    for descriptor in pb.OrderIntent.DESCRIPTOR.fields:
        if descriptor.name in ("expire_time",):
            continue
        fields[descriptor.name] = getattr(intent(), descriptor.name)
    fields.update(overrides)
    if isinstance(fields.get("expire_time"), dt.datetime):
        fields["expire_time"] = convert.timestamp_to_proto(fields["expire_time"])
    return pb.Order(**fields)


def from_intent(message: pb.OrderIntent):
    return convert.order_from_intent(message, order_id=ORDER_ID, client_order_id="generated-cid")


STOP_MARKET: dict[str, Any] = {"order_type": pb.ORDER_TYPE_STOP_MARKET, "price": "", "stop_price": "45000"}
TRAILING: dict[str, Any] = {"order_type": pb.ORDER_TYPE_TRAILING_STOP_MARKET, "price": "", "callback_rate": "1"}
CLOSING: dict[str, Any] = {"order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET, "side": pb.SIDE_SELL, "price": "",
                           "stop_price": "55000", "quantity": "", "close_position": True}
QUOTED: dict[str, Any] = {"market_type": pb.MARKET_TYPE_SPOT, "order_type": pb.ORDER_TYPE_MARKET, "price": "",
                          "quantity": "", "quote_order_qty": "100"}

# (id, overrides, field the error must name)
SHARED_RULES: list[tuple[str, dict[str, Any], str]] = [
    # quantity
    ("quantity-missing", {"quantity": ""}, "quantity"),
    ("quantity-negative", {"quantity": "-1"}, "quantity"),
    ("quantity-zero", {"quantity": "0"}, "quantity"),
    ("quantity-zero-fraction", {"quantity": "0.000"}, "quantity"),
    ("quantity-non-numeric", {"quantity": "abc"}, "quantity"),
    ("quantity-exponent", {"quantity": "1e5"}, "quantity"),
    ("quantity-exponent-upper", {"quantity": "1E-3"}, "quantity"),
    ("quantity-whitespace", {"quantity": " 1"}, "quantity"),
    ("quantity-nan", {"quantity": "NaN"}, "quantity"),
    ("quantity-infinity", {"quantity": "Infinity"}, "quantity"),
    ("quantity-comma", {"quantity": "1,5"}, "quantity"),
    ("quantity-too-long", {"quantity": "1" * 49}, "quantity"),
    ("quantity-too-long-zeros", {"quantity": "1." + "0" * 47}, "quantity"),
    # enums
    ("market-type-unknown", {"market_type": 99}, "market_type"),
    ("side-unknown", {"side": 99}, "side"),
    ("order-type-unknown", {"order_type": 99}, "order_type"),
    ("time-in-force-unknown", {"time_in_force": 99}, "time_in_force"),
    ("market-type-unspecified", {"market_type": pb.MARKET_TYPE_UNSPECIFIED}, "market_type"),
    ("side-unspecified", {"side": pb.SIDE_UNSPECIFIED}, "side"),
    ("order-type-unspecified", {"order_type": pb.ORDER_TYPE_UNSPECIFIED}, "order_type"),
    # identifiers
    ("symbol-missing", {"symbol": ""}, "symbol"),
    ("symbol-lowercase", {"symbol": "btcusdt"}, "symbol"),
    ("symbol-10000-chars", {"symbol": "B" * 10_000}, "symbol"),
    ("symbol-with-slash", {"symbol": "BTC/USDT"}, "symbol"),
    ("account-missing", {"account": ""}, "account"),
    ("account-space", {"account": "acct 1"}, "account"),
    ("venue-missing", {"venue": ""}, "venue"),
    ("venue-uppercase", {"venue": "PAPER"}, "venue"),
    ("order-manager-id-space", {"order_manager_id": "batch 1"}, "order_manager_id"),
    # prices by order type
    ("price-on-market", {"order_type": pb.ORDER_TYPE_MARKET, "price": "100"}, "price"),
    ("price-missing-on-limit", {"price": ""}, "price"),
    ("price-negative", {"price": "-100"}, "price"),
    ("price-missing-on-stop-limit", {"order_type": pb.ORDER_TYPE_STOP_LIMIT, "price": "", "stop_price": "49000"}, "price"),
    ("stop-price-missing-on-stop-market", {"order_type": pb.ORDER_TYPE_STOP_MARKET, "price": ""}, "stop_price"),
    ("stop-price-missing-on-stop-limit", {"order_type": pb.ORDER_TYPE_STOP_LIMIT}, "stop_price"),
    ("stop-price-on-limit", {"stop_price": "49000"}, "stop_price"),
    ("stop-price-on-market", {"order_type": pb.ORDER_TYPE_MARKET, "price": "", "stop_price": "49000"}, "stop_price"),
    ("stop-price-zero", {"order_type": pb.ORDER_TYPE_STOP_MARKET, "price": "", "stop_price": "0"}, "stop_price"),
    # flags
    ("post-only-on-market", {"order_type": pb.ORDER_TYPE_MARKET, "price": "", "post_only": True}, "post_only"),
    (
        "post-only-on-stop-limit",
        {"order_type": pb.ORDER_TYPE_STOP_LIMIT, "stop_price": "49000", "post_only": True},
        "post_only",
    ),
    ("leverage-on-spot", {"market_type": pb.MARKET_TYPE_SPOT, "leverage": "2"}, "leverage"),
    ("leverage-fractional", {"leverage": "2.5"}, "leverage"),
    ("leverage-above-125", {"leverage": "126"}, "leverage"),
    ("leverage-zero", {"leverage": "0"}, "leverage"),
    ("leverage-non-numeric", {"leverage": "x10"}, "leverage"),
    ("reduce-only-on-spot", {"market_type": pb.MARKET_TYPE_SPOT, "reduce_only": True}, "reduce_only"),
    # time in force
    ("gtd-without-expire-time", {"time_in_force": pb.TIME_IN_FORCE_GTD}, "expire_time"),
    ("expire-time-without-gtd", {"expire_time": EXPIRY}, "expire_time"),
    ("expire-time-with-ioc", {"time_in_force": pb.TIME_IN_FORCE_IOC, "expire_time": EXPIRY}, "expire_time"),
    # take-profit, trailing-stop, close-position and quote-amount orders (the venue's rules)
    ("stop-price-missing-on-take-profit", {"order_type": pb.ORDER_TYPE_TAKE_PROFIT}, "stop_price"),
    ("price-missing-on-take-profit", {"order_type": pb.ORDER_TYPE_TAKE_PROFIT, "price": "", "stop_price": "55000"},
     "price"),
    ("price-on-take-profit-market", {"order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET, "stop_price": "55000"}, "price"),
    ("stop-price-missing-on-take-profit-market", {"order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET, "price": ""},
     "stop_price"),
    ("callback-rate-missing-on-trailing", {**TRAILING, "callback_rate": ""}, "callback_rate"),
    ("callback-rate-below-0.1", {**TRAILING, "callback_rate": "0.09"}, "callback_rate"),
    ("callback-rate-above-5", {**TRAILING, "callback_rate": "5.01"}, "callback_rate"),
    ("callback-rate-zero", {**TRAILING, "callback_rate": "0"}, "callback_rate"),
    ("callback-rate-on-stop-market", {**STOP_MARKET, "callback_rate": "1"}, "callback_rate"),
    ("stop-price-on-trailing", {**TRAILING, "stop_price": "49000"}, "stop_price"),
    ("price-on-trailing", {**TRAILING, "price": "49000"}, "price"),
    ("trailing-on-spot", {**TRAILING, "market_type": pb.MARKET_TYPE_SPOT}, "order_type"),
    ("activation-price-negative", {**TRAILING, "activation_price": "-1"}, "activation_price"),
    ("activation-price-zero", {**TRAILING, "activation_price": "0"}, "activation_price"),
    ("activation-price-not-a-decimal", {**TRAILING, "activation_price": "1e3"}, "activation_price"),
    ("activation-price-on-limit", {"activation_price": "51000"}, "activation_price"),
    ("close-position-with-quantity", {**CLOSING, "quantity": "1"}, "quantity"),
    ("close-position-with-reduce-only", {**CLOSING, "reduce_only": True}, "reduce_only"),
    ("close-position-on-limit", {"close_position": True, "quantity": ""}, "close_position"),
    ("close-position-on-stop-limit", {**CLOSING, "order_type": pb.ORDER_TYPE_STOP_LIMIT, "price": "44000"},
     "close_position"),
    ("close-position-on-trailing", {**TRAILING, "close_position": True, "quantity": ""}, "close_position"),
    ("close-position-on-spot", {**CLOSING, "market_type": pb.MARKET_TYPE_SPOT}, "close_position"),
    ("working-type-on-limit", {"working_type": pb.WORKING_TYPE_MARK_PRICE}, "working_type"),
    ("working-type-on-spot-stop", {**STOP_MARKET, "market_type": pb.MARKET_TYPE_SPOT,
                                   "working_type": pb.WORKING_TYPE_MARK_PRICE}, "working_type"),
    ("working-type-unknown", {**STOP_MARKET, "working_type": 9}, "working_type"),
    ("price-protect-on-market", {"order_type": pb.ORDER_TYPE_MARKET, "price": "", "price_protect": True},
     "price_protect"),
    ("price-protect-on-trailing", {**TRAILING, "price_protect": True}, "price_protect"),
    ("price-protect-on-spot-stop", {**STOP_MARKET, "market_type": pb.MARKET_TYPE_SPOT, "price_protect": True},
     "price_protect"),
    ("quote-order-qty-with-quantity", {**QUOTED, "quantity": "0.01"}, "quantity"),
    ("quote-order-qty-on-futures", {**QUOTED, "market_type": pb.MARKET_TYPE_FUTURES}, "quote_order_qty"),
    ("quote-order-qty-on-spot-limit", {**QUOTED, "order_type": pb.ORDER_TYPE_LIMIT, "price": "50000"},
     "quote_order_qty"),
    ("quote-order-qty-on-a-sell", {**QUOTED, "side": pb.SIDE_SELL}, "quote_order_qty"),
    ("quote-order-qty-negative", {**QUOTED, "quote_order_qty": "-100"}, "quote_order_qty"),
    ("quote-order-qty-too-many-digits", {**QUOTED, "quote_order_qty": "1." + "1" * 19}, "quote_order_qty"),
]

INTENT_RULES: list[tuple[str, dict[str, Any], str]] = [
    ("client-order-id-too-long", {"client_order_id": "c" * 37}, "client_order_id"),
    ("client-order-id-space", {"client_order_id": "cid 1"}, "client_order_id"),
    ("client-order-id-unicode", {"client_order_id": "cid-é"}, "client_order_id"),
]

PROTO_RULES: list[tuple[str, dict[str, Any], str]] = [
    ("order-id-missing", {"order_id": ""}, "order_id"),
    ("order-id-not-a-uuid", {"order_id": "order-1"}, "order_id"),
    ("order-id-uppercase", {"order_id": ORDER_ID.upper()}, "order_id"),
    ("order-id-braced", {"order_id": "{" + ORDER_ID + "}"}, "order_id"),
    ("client-order-id-missing", {"client_order_id": ""}, "client_order_id"),
    *INTENT_RULES,
]


def assert_names_field(raised: pytest.ExceptionInfo[InvalidOrder], field: str) -> None:
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")
    assert raised.value.reason == "INVALID_ARGUMENT"


def _ids(rules):
    return [rule[0] for rule in rules]


@pytest.mark.parametrize(("case", "overrides", "field"), SHARED_RULES + INTENT_RULES, ids=_ids(SHARED_RULES + INTENT_RULES))
def test_order_from_intent_refuses_an_invalid_field_naming_it(case, overrides, field):
    with pytest.raises(InvalidOrder) as raised:
        from_intent(intent(**overrides))

    assert_names_field(raised, field)


@pytest.mark.parametrize(("case", "overrides", "field"), SHARED_RULES + PROTO_RULES, ids=_ids(SHARED_RULES + PROTO_RULES))
def test_order_from_proto_refuses_an_invalid_field_naming_it(case, overrides, field):
    with pytest.raises(InvalidOrder) as raised:
        convert.order_from_proto(order_message(**overrides))

    assert_names_field(raised, field)


def test_the_valid_baselines_convert():
    # The rule tables above change one thing of these; they must be valid themselves.
    assert from_intent(intent()).quantity == Decimal("1.5")
    assert convert.order_from_proto(order_message()).order_id == ORDER_ID


def test_unknown_enum_error_says_which_value():
    with pytest.raises(InvalidOrder, match=r"^side: unknown value 99$"):
        from_intent(intent(side=99))


def test_an_overlong_symbol_is_not_echoed_in_full():
    with pytest.raises(InvalidOrder) as raised:
        from_intent(intent(symbol="B" * 10_000))

    assert len(str(raised.value)) < 200


@pytest.mark.parametrize(
    ("overrides", "checks"),
    [
        ({"time_in_force": pb.TIME_IN_FORCE_UNSPECIFIED}, {"time_in_force": TimeInForce.GTC}),
        ({"leverage": "1"}, {"leverage": Decimal(1)}),
        ({"leverage": "125"}, {"leverage": Decimal(125)}),
        ({"leverage": "20.000"}, {"leverage": Decimal(20)}),
        ({"order_type": pb.ORDER_TYPE_MARKET, "price": ""}, {"order_type": OrderType.MARKET, "price": None}),
        (
            {"order_type": pb.ORDER_TYPE_STOP_MARKET, "price": "", "stop_price": "49000"},
            {"stop_price": Decimal(49000), "price": None},
        ),
        ({"market_type": pb.MARKET_TYPE_SPOT}, {"market_type": MarketType.SPOT, "leverage": None}),
        ({"post_only": True}, {"post_only": True}),
        ({"reduce_only": True}, {"reduce_only": True}),
        ({"time_in_force": pb.TIME_IN_FORCE_GTD, "expire_time": EXPIRY}, {"expire_time": EXPIRY}),
        ({"quantity": ".5"}, {"quantity": Decimal("0.5")}),
        ({"quantity": "+2"}, {"quantity": Decimal(2)}),
        ({"quantity": "0001.2500"}, {"quantity": Decimal("1.25")}),
        ({"order_manager_id": "rebalance/2025-01-02:1"}, {"order_manager_id": "rebalance/2025-01-02:1"}),
        ({"order_type": pb.ORDER_TYPE_TAKE_PROFIT, "stop_price": "55000", "time_in_force": pb.TIME_IN_FORCE_IOC},
         {"order_type": OrderType.TAKE_PROFIT, "price": Decimal(50000), "stop_price": Decimal(55000)}),
        ({**STOP_MARKET, "market_type": pb.MARKET_TYPE_SPOT, "order_type": pb.ORDER_TYPE_TAKE_PROFIT_MARKET},
         {"order_type": OrderType.TAKE_PROFIT_MARKET, "market_type": MarketType.SPOT}),
        ({**TRAILING, "callback_rate": "0.1", "activation_price": "49000.5", "working_type": pb.WORKING_TYPE_MARK_PRICE},
         {"callback_rate": Decimal("0.1"), "activation_price": Decimal("49000.5"),
          "working_type": WorkingType.MARK_PRICE, "price": None, "stop_price": None}),
        ({**TRAILING, "callback_rate": "5"}, {"callback_rate": Decimal(5), "activation_price": None,
                                             "working_type": None}),
        ({**CLOSING, "price_protect": True, "working_type": pb.WORKING_TYPE_CONTRACT_PRICE},
         {"quantity": None, "close_position": True, "price_protect": True,
          "working_type": WorkingType.CONTRACT_PRICE}),
        ({**STOP_MARKET, "close_position": True, "quantity": ""}, {"quantity": None, "close_position": True}),
        ({"order_type": pb.ORDER_TYPE_STOP_LIMIT, "stop_price": "49000", "price_protect": True},
         {"price_protect": True}),
        (QUOTED, {"quantity": None, "quote_order_qty": Decimal(100), "market_type": MarketType.SPOT}),
    ],
)
def test_valid_variants_are_accepted(overrides, checks):
    order = from_intent(intent(**overrides))

    assert {name: getattr(order, name) for name in checks} == checks


def test_intent_without_client_order_id_gets_the_generated_one():
    order = from_intent(intent(client_order_id=""))

    assert order.client_order_id == "generated-cid"
    assert order.order_id == ORDER_ID
    assert order.status is OrderStatus.PENDING


def test_intent_client_order_id_wins_over_the_generated_one():
    assert from_intent(intent(client_order_id="mine-1")).client_order_id == "mine-1"


def test_order_from_proto_does_not_trust_the_client_status():
    message = order_message(status=pb.ORDER_STATUS_FILLED, filled_quantity="1.5", version=9)

    order = convert.order_from_proto(message)

    assert (order.status, order.filled_quantity, order.version) == (OrderStatus.PENDING, Decimal(0), 0)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("quantity", "0." + "0" * 18 + "1"),  # 19 fractional digits
        ("quantity", "1" * 21),  # 21 integer digits
        ("price", "50000." + "1" * 19),
    ],
)
def test_decimals_the_store_cannot_hold_exactly_are_refused_naming_the_field(field, text):
    # The store keeps NUMERIC(38, 18): at most 20 integer and 18 fractional digits, and
    # refuses (with a non-domain ValueError) anything else. Input it cannot hold must be
    # an INVALID_ARGUMENT here, not an internal error at the first write.
    with pytest.raises(InvalidOrder) as raised:
        from_intent(intent(**{field: text}))

    assert_names_field(raised, field)


# -- round trips -------------------------------------------------------------------------
ROUND_TRIP_ORDERS = {
    "limit-futures-everything": dict(
        order_type=pb.ORDER_TYPE_LIMIT,
        quantity="0.123456789012345678",
        price="65432.10987654321",
        post_only=True,
        reduce_only=True,
        leverage="20",
        time_in_force=pb.TIME_IN_FORCE_GTD,
        expire_time=EXPIRY,
        order_manager_id="om-1",
        side=pb.SIDE_SELL,
    ),
    "stop-limit": dict(order_type=pb.ORDER_TYPE_STOP_LIMIT, price="101.5", stop_price="100.25",
                       time_in_force=pb.TIME_IN_FORCE_IOC),
    "stop-market-spot": dict(order_type=pb.ORDER_TYPE_STOP_MARKET, price="", stop_price="0.00000001",
                             market_type=pb.MARKET_TYPE_SPOT, time_in_force=pb.TIME_IN_FORCE_FOK),
    "market-big-quantity": dict(order_type=pb.ORDER_TYPE_MARKET, price="", quantity="12345678901234567890"),
    "take-profit": dict(order_type=pb.ORDER_TYPE_TAKE_PROFIT, price="50010.5", stop_price="50000", price_protect=True,
                        working_type=pb.WORKING_TYPE_MARK_PRICE, side=pb.SIDE_SELL),
    "trailing": dict(order_type=pb.ORDER_TYPE_TRAILING_STOP_MARKET, price="", activation_price="49000.50",
                     callback_rate="0.50", working_type=pb.WORKING_TYPE_CONTRACT_PRICE),
    "close-position": dict(order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, price="", stop_price="55000", quantity="",
                           close_position=True, side=pb.SIDE_SELL),
    "quote-order-qty": dict(market_type=pb.MARKET_TYPE_SPOT, order_type=pb.ORDER_TYPE_MARKET, price="", quantity="",
                            quote_order_qty="100.10"),
}


@pytest.mark.parametrize("overrides", ROUND_TRIP_ORDERS.values(), ids=ROUND_TRIP_ORDERS.keys())
def test_order_to_proto_and_back_keeps_every_economic_field_exactly(overrides):
    original = from_intent(intent(**overrides))

    back = convert.order_from_proto(convert.order_to_proto(original))

    assert back.token_fields() == original.token_fields()
    assert back.token_body() == original.token_body()
    for name in ("quantity", "price", "stop_price", "leverage", "activation_price", "callback_rate", "quote_order_qty"):
        before, after = getattr(original, name), getattr(back, name)
        assert (before is None) == (after is None)
        if before is not None:
            assert isinstance(after, Decimal)
            assert str(after) == str(before)  # same digits, not merely equal
    assert (back.expire_time, back.order_manager_id) == (original.expire_time, original.order_manager_id)
    signed = convert.order_from_signed_proto(convert.order_to_proto(original))
    assert signed.token_body() == original.token_body()


def test_every_problem_of_a_conditional_order_is_named_at_once():
    with pytest.raises(InvalidOrder) as raised:
        from_intent(intent(**{**CLOSING, "quantity": "1", "reduce_only": True, "callback_rate": "1",
                              "quote_order_qty": "5"}))

    assert {v.field: v.reason for v in raised.value.violations} == {
        "quantity": "NOT_ALLOWED", "reduce_only": "NOT_ALLOWED", "callback_rate": "NOT_ALLOWED",
        "quote_order_qty": "NOT_ALLOWED"}
    with pytest.raises(InvalidOrder) as raised:
        from_intent(intent(**{**TRAILING, "callback_rate": "7"}))
    assert [(v.field, v.reason) for v in raised.value.violations] == [("callback_rate", "OUT_OF_RANGE")]
    assert "from 0.1 to 5" in str(raised.value)


def test_order_to_proto_writes_decimals_in_canonical_plain_notation(make_order):
    order = make_order(quantity=Decimal("1.50"), price=Decimal("5E+4"), leverage=Decimal("10.0"))

    message = convert.order_to_proto(order)

    assert (message.quantity, message.price, message.leverage, message.stop_price) == ("1.5", "50000", "10", "")


def test_order_to_proto_carries_lifecycle_fields(make_order):
    order = make_order(
        status=OrderStatus.PARTIALLY_FILLED,
        filled_quantity=Decimal("0.5"),
        average_fill_price=Decimal("49999.5"),
        remote_order_id="paper-7",
        reject_reasons=[],
        version=4,
    )

    message = convert.order_to_proto(order)

    assert message.status == pb.ORDER_STATUS_PARTIALLY_FILLED
    assert (message.filled_quantity, message.average_fill_price, message.remote_order_id, message.version) == (
        "0.5",
        "49999.5",
        "paper-7",
        4,
    )


def test_expire_time_in_another_zone_comes_back_as_the_same_instant_in_utc():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2031, 5, 6, 9, 8, 9, 123456, tzinfo=plus_two)

    order = from_intent(intent(time_in_force=pb.TIME_IN_FORCE_GTD, expire_time=local))
    back = convert.order_from_proto(convert.order_to_proto(order))

    for value in (order.expire_time, back.expire_time):
        assert value == local
        assert value.utcoffset() == dt.timedelta(0)
        assert value.hour == 7


def test_timestamps_from_proto_are_utc_aware(make_order):
    message = convert.order_to_proto(make_order())

    for name in ("order_time", "updated_time"):
        value = convert.timestamp_from_proto(message, name)
        assert value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)
    assert convert.timestamp_from_proto(message, "expire_time") is None


@pytest.mark.parametrize(
    "member",
    [*Side, *OrderType, *TimeInForce, *MarketType, *OrderStatus, *LiquiditySide, *WorkingType],
    ids=lambda m: f"{type(m).__name__}.{m.value}",
)
def test_every_domain_enum_value_maps_to_proto_and_back(member):
    number = convert.enum_to_proto(member)

    assert number != 0
    assert convert.enum_from_proto(type(member), number, "field") is member


def report(**overrides: Any) -> ExecutionReport:
    fields: dict[str, Any] = dict(
        order_id=ORDER_ID,
        client_order_id="cid-1",
        venue="paper",
        account="acct-1",
        symbol="BTCUSDT",
        side=Side.SELL,
        order_status=OrderStatus.PARTIALLY_FILLED,
        transact_time=dt.datetime(2025, 6, 7, 8, 9, 10, 111213, tzinfo=dt.timezone.utc),
        remote_order_id="paper-42",
        fill=Fill(
            trade_id="paper-t-1",
            quantity=Decimal("0.000000000000000001"),
            price=Decimal("65000.123456789"),
            commission=Decimal("0.00000002"),
            commission_asset="USDT",
            liquidity_side=LiquiditySide.MAKER,
        ),
        cumulative_quantity=Decimal("0.500000000000000001"),
        reason="fill",
        raw_payload={"venue_status": "PARTIALLY_FILLED", "nested": {"k": "v"}},
        sequence=17,
    )
    fields.update(overrides)
    return ExecutionReport(**fields)


def test_report_with_a_fill_survives_the_proto_round_trip():
    original = report()

    back = convert.report_from_proto(convert.report_to_proto(original))

    assert back == original
    assert str(back.fill.quantity) == "1E-18" and back.fill.quantity == Decimal("0.000000000000000001")
    assert back.transact_time.utcoffset() == dt.timedelta(0)


def test_report_without_a_fill_survives_the_proto_round_trip():
    original = report(
        order_status=OrderStatus.ACCEPTED,
        fill=None,
        cumulative_quantity=None,
        remote_order_id=None,
        raw_payload=None,
        reason="",
    )

    message = convert.report_to_proto(original)
    back = convert.report_from_proto(message)

    assert (message.trade_id, message.last_quantity, message.last_price, message.commission) == ("", "", "", "")
    assert back == original
    assert back.fill is None


def test_report_fill_with_zero_commission_and_no_liquidity_side_round_trips():
    original = report(
        fill=Fill("t-2", Decimal("1"), Decimal("2"), Decimal("0"), None, None),  # type: ignore[arg-type]
    )

    back = convert.report_from_proto(convert.report_to_proto(original))

    assert back.fill == original.fill
    assert back.fill.commission == 0 and back.fill.liquidity_side is None


def test_report_from_proto_without_transact_time_uses_an_aware_now():
    message = convert.report_to_proto(report(fill=None))
    message.ClearField("transact_time")

    before = dt.datetime.now(dt.timezone.utc)
    back = convert.report_from_proto(message)

    assert back.transact_time.utcoffset() == dt.timedelta(0)
    assert back.transact_time >= before


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("last_quantity", "-1", "last_quantity"),
        ("last_price", "abc", "last_price"),
        ("commission", "1e-3", "commission"),
        ("order_status", 99, "order_status"),
        ("side", 0, "side"),
    ],
)
def test_report_from_proto_refuses_a_malformed_field_naming_it(field, value, named):
    message = convert.report_to_proto(report())
    setattr(message, field, value)

    with pytest.raises(InvalidOrder) as raised:
        convert.report_from_proto(message)

    assert_names_field(raised, named)
