"""Pre-trade checks of the order itself (each control, its own code, all at once) and REDUCING."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.domain import OrderType, Side, TradingState
from services.domain.ledger import Position
from services.risk.checks import RiskContext, check_order, notional_price
from services.risk.limits import RiskLimits

LIMITS = RiskLimits(
    allowed_symbols=frozenset({"BTCUSDT", "ETHUSDT"}),
    max_notional_per_order=Decimal("100000"),
    max_quantity_per_order=Decimal("10"),
    max_price=Decimal("1000000"),
    reference_prices={"BTCUSDT": Decimal("50000")},
    price_band=None,  # off: these tests price orders far from the market on purpose
)
ACTIVE = TradingState.ACTIVE


def in_state(state: TradingState, **fields) -> RiskContext:
    """A context in ``state`` with the unit LIMITS' reference prices."""
    fields.setdefault("reference_prices", LIMITS.reference_prices)
    return RiskContext(trading_state=state, **fields)


def codes(order, state=ACTIVE, limits=LIMITS, **context) -> list[str]:
    return [v.code for v in check_order(order, limits, in_state(state, **context))]


def test_an_order_within_every_limit_has_no_violation(make_order):
    # 1.5 @ 50000 = 75000 notional
    assert check_order(make_order(), LIMITS, in_state(ACTIVE)) == []


# (id, order overrides, trading state, the one expected code)
SINGLE_VIOLATIONS = [
    ("halted", {}, TradingState.HALTED, "TRADING_HALTED"),
    ("symbol", {"symbol": "DOGEUSDT", "price": Decimal("1")}, ACTIVE, "SYMBOL_NOT_ALLOWED"),
    ("quantity", {"quantity": Decimal("10.000001"), "price": Decimal("1")}, ACTIVE, "MAX_QUANTITY_EXCEEDED"),
    ("price", {"quantity": Decimal("0.00001"), "price": Decimal("1000000.01")}, ACTIVE, "PRICE_OUT_OF_RANGE"),
    (
        "stop-price",
        {"order_type": OrderType.STOP_MARKET, "price": None, "stop_price": Decimal("2000000"),
         "quantity": Decimal("0.00001")},
        ACTIVE,
        "PRICE_OUT_OF_RANGE",
    ),
    ("notional-limit", {"quantity": Decimal("2.0000001")}, ACTIVE, "MAX_NOTIONAL_EXCEEDED"),
    (
        "notional-market-at-reference",
        {"order_type": OrderType.MARKET, "price": None, "quantity": Decimal("2.1")},
        ACTIVE,
        "MAX_NOTIONAL_EXCEEDED",
    ),
    (
        "notional-stop-at-stop-price",
        {"order_type": OrderType.STOP_MARKET, "price": None, "stop_price": Decimal("60000"),
         "quantity": Decimal("1.7")},
        ACTIVE,
        "MAX_NOTIONAL_EXCEEDED",
    ),
    (
        "no-reference-price",
        {"order_type": OrderType.MARKET, "price": None, "symbol": "ETHUSDT"},
        ACTIVE,
        "NO_REFERENCE_PRICE",
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "state", "code"), SINGLE_VIOLATIONS, ids=[row[0] for row in SINGLE_VIOLATIONS]
)
def test_each_control_reports_its_own_code(make_order, case, overrides, state, code):
    violations = check_order(make_order(**overrides), LIMITS, in_state(state))

    assert [v.code for v in violations] == [code]
    assert violations[0].message


def test_limits_are_inclusive(make_order):
    # exactly 10 units, exactly 100000 notional, exactly the max price
    assert codes(make_order(quantity=Decimal("10"), price=Decimal("10000"))) == []
    assert codes(make_order(quantity=Decimal("2"), price=Decimal("50000"))) == []
    assert codes(make_order(quantity=Decimal("0.1"), price=Decimal("1000000"))) == []


def test_market_order_is_measured_at_the_reference_price(make_order):
    order = make_order(order_type=OrderType.MARKET, price=None, quantity=Decimal("2"))

    assert notional_price(order, LIMITS.reference_prices["BTCUSDT"]) == Decimal("50000")
    assert codes(order) == []


def test_limit_order_is_measured_at_its_own_price_not_the_reference(make_order):
    order = make_order(price=Decimal("40000"), quantity=Decimal("2.5"))  # 100000 at its price, 125000 at the market

    assert notional_price(order, LIMITS.reference_prices["BTCUSDT"]) == Decimal("40000")
    assert codes(order) == []


@pytest.mark.parametrize(
    ("fields", "price", "expected"),
    [
        ({"price": Decimal("40000"), "quantity": Decimal("2.5")}, Decimal("50000"), ["MAX_NOTIONAL_EXCEEDED"]),
        ({"price": Decimal("52000"), "quantity": Decimal("1.9")}, Decimal("52000"), []),
        ({"order_type": OrderType.STOP_LIMIT, "stop_price": Decimal("45000"), "price": Decimal("40000"),
          "quantity": Decimal("2.4")}, Decimal("45000"), ["MAX_NOTIONAL_EXCEEDED"]),
        ({"order_type": OrderType.STOP_MARKET, "stop_price": Decimal("45000"), "price": None,
          "quantity": Decimal("2.2")}, Decimal("45000"), []),
    ],
    ids=["limit-below-the-market", "limit-above-the-market", "stop-limit-below-its-stop", "stop-market"],
)
def test_a_sell_is_measured_at_the_higher_of_its_price_and_the_market_it_meets(make_order, fields, price, expected):
    # A sell trades at its limit or better: a limit below the market sells at the market
    # (100,000 at its price, 125,000 where it trades); a stop-limit's limit below its
    # stop sells where the market meets the stop (96,000 at its limit, 108,000 at its stop).
    order = make_order(**{"side": Side.SELL, **fields})

    assert notional_price(order, LIMITS.reference_prices["BTCUSDT"]) == price
    assert codes(order) == expected


def test_a_buy_limit_above_the_market_is_measured_at_its_own_price(make_order):
    order = make_order(price=Decimal("55000"), quantity=Decimal("1.9"))  # 104,500 at its price, 95,000 at the market

    assert notional_price(order, LIMITS.reference_prices["BTCUSDT"]) == Decimal("55000")
    assert codes(order) == ["MAX_NOTIONAL_EXCEEDED"]


def test_several_violations_are_reported_together_each_with_its_code(make_order):
    order = make_order(symbol="DOGEUSDT", quantity=Decimal("20"), price=Decimal("2000000"))

    violations = check_order(order, LIMITS, in_state(TradingState.HALTED))

    assert [v.code for v in violations] == [
        "TRADING_HALTED",
        "SYMBOL_NOT_ALLOWED",
        "MAX_QUANTITY_EXCEEDED",
        "PRICE_OUT_OF_RANGE",
        "MAX_NOTIONAL_EXCEEDED",
    ]
    assert len({v.message for v in violations}) == len(violations)


def test_market_order_without_reference_price_still_reports_its_other_violations(make_order):
    order = make_order(order_type=OrderType.MARKET, price=None, symbol="ETHUSDT", quantity=Decimal("11"))

    assert codes(order, TradingState.HALTED) == ["TRADING_HALTED", "MAX_QUANTITY_EXCEEDED", "NO_REFERENCE_PRICE"]


def test_limit_order_on_an_allowed_symbol_without_reference_price_is_refused(make_order):
    # Its notional is measurable at its own price, but not the band, nor the position.
    assert codes(make_order(symbol="ETHUSDT", price=Decimal("3000"))) == ["NO_REFERENCE_PRICE"]


def test_a_symbol_that_is_not_allowed_skips_the_checks_that_need_its_market_price(make_order):
    order = make_order(order_type=OrderType.MARKET, price=None, symbol="SOLUSDT", quantity=Decimal("11"))

    assert codes(order) == ["SYMBOL_NOT_ALLOWED", "MAX_QUANTITY_EXCEEDED"]


def test_notional_violation_message_shows_the_notional_in_plain_notation(make_order):
    (violation,) = check_order(make_order(quantity=Decimal("3")), LIMITS, in_state(ACTIVE))

    assert "150000" in violation.message
    assert "E+" not in violation.message


# -- REDUCING ---------------------------------------------------------------------------------------
def holding(quantity: str, symbol: str = "BTCUSDT") -> dict:
    held = Position("acct-1", symbol, Decimal(quantity), abs(Decimal(quantity)) * 50000)
    return {held.key: held}


REDUCING = TradingState.REDUCING


@pytest.mark.parametrize(
    ("held", "side", "quantity"),
    [("2", Side.SELL, "1.5"), ("2", Side.SELL, "2"), ("-2", Side.BUY, "0.5"), ("-2", Side.BUY, "2")],
    ids=["long-partly", "long-to-flat", "short-partly", "short-to-flat"],
)
def test_reducing_state_accepts_an_order_that_only_reduces_the_position(make_order, held, side, quantity):
    order = make_order(side=side, quantity=Decimal(quantity))

    assert codes(order, REDUCING, positions=holding(held)) == []


@pytest.mark.parametrize(
    ("held", "side", "quantity", "words"),
    [
        (None, Side.BUY, "1", "holds no BTCUSDT position"),
        (None, Side.SELL, "1", "holds no BTCUSDT position"),
        ("2", Side.BUY, "1", "would add to the long BTCUSDT position of 2"),
        ("-2", Side.SELL, "1", "would add to the short BTCUSDT position of 2"),
        ("1", Side.SELL, "1.0001", "flip through zero"),
        ("-1", Side.BUY, "2", "flip through zero"),
    ],
    ids=["flat-buy", "flat-sell", "adds-to-long", "adds-to-short", "flips-long", "flips-short"],
)
def test_reducing_state_refuses_an_order_that_is_not_reduce_only(make_order, held, side, quantity, words):
    positions = {} if held is None else holding(held)
    # reduce_only is the venue-side flag; REDUCING judges what the order would do.
    order = make_order(side=side, quantity=Decimal(quantity), reduce_only=True)

    (violation,) = check_order(order, LIMITS, in_state(REDUCING, positions=positions))

    assert violation.code == "REDUCING_ONLY"
    assert words in violation.message


def test_reducing_state_counts_orders_already_working_on_the_same_side(make_order):
    # Long 2, sells of 1.5 already working: another sell of 1 would flip it together.
    order = make_order(side=Side.SELL, quantity=Decimal("1"))
    working = {"positions": holding("2"), "working_same_side": Decimal("1.5")}

    (violation,) = check_order(order, LIMITS, in_state(REDUCING, **working))

    assert violation.code == "REDUCING_ONLY"
    assert "SELL 1 plus 1.5 already working exceeds" in violation.message
    assert codes(make_order(side=Side.SELL, quantity=Decimal("0.5")), REDUCING, **working) == []


def test_reducing_is_reported_with_the_other_violations(make_order):
    order = make_order(quantity=Decimal("11"))

    assert codes(order, REDUCING) == ["REDUCING_ONLY", "MAX_QUANTITY_EXCEEDED", "MAX_NOTIONAL_EXCEEDED"]


def test_active_state_lets_an_order_open_flip_or_add(make_order):
    assert codes(make_order(side=Side.SELL, quantity=Decimal("1.5")), positions=holding("1")) == []
    assert codes(make_order(side=Side.BUY), positions=holding("1")) == []


def test_halted_state_refuses_even_a_reducing_order(make_order):
    order = make_order(side=Side.SELL, quantity=Decimal("1"))

    assert codes(order, TradingState.HALTED, positions=holding("2")) == ["TRADING_HALTED"]
