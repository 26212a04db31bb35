"""Pre-trade controls measured against the market and the account: price band, position,
gross exposure, leverage, open orders, order rate, daily loss (pass and fail edges)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from services.domain import OrderType, Side, TradingState
from services.domain.ledger import Position
from services.risk.checks import RiskContext, check_order
from services.risk.context import last_reset
from services.risk.limits import RiskLimits

PRICES = {"BTCUSDT": Decimal("50000"), "ETHUSDT": Decimal("2000")}
LIMITS = RiskLimits(
    allowed_symbols=frozenset(PRICES),
    max_notional_per_order=Decimal("1000000"),
    max_quantity_per_order=Decimal("100"),
    max_price=Decimal("10000000"),
    reference_prices=PRICES,
    price_band=Decimal("0.05"),
    max_position_notional=Decimal("100000"),  # 2 BTC
    max_gross_exposure=Decimal("150000"),
    max_leverage=Decimal("3"),
    account_equity=Decimal("50000"),  # 3 x 50,000 = 150,000: leverage binds with the exposure
    max_open_orders=3,
    order_rate_limit=5,
    daily_loss_limit=Decimal("1000"),
)


def position(symbol: str, quantity: str, entry: str, realised: str = "0", commission: str = "0") -> Position:
    q = Decimal(quantity)
    return Position("acct-1", symbol, q, abs(q) * Decimal(entry), Decimal(realised), Decimal(commission))


def context(*positions: Position, **fields) -> RiskContext:
    fields.setdefault("reference_prices", PRICES)
    return RiskContext(positions={p.key: p for p in positions}, **fields)


def codes(order, ctx: RiskContext | None = None, limits: RiskLimits = LIMITS) -> list[str]:
    return [v.code for v in check_order(order, limits, ctx or context())]


def market(make_order, side: Side = Side.BUY, quantity: str = "1", symbol: str = "BTCUSDT", **fields):
    return make_order(order_type=OrderType.MARKET, price=None, side=side, quantity=Decimal(quantity),
                      symbol=symbol, **fields)


# -- price band ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"price": Decimal("52500")}, []),  # exactly +5 %
        ({"price": Decimal("47500")}, []),  # exactly -5 %
        ({"price": Decimal("52500.01")}, ["PRICE_BAND_EXCEEDED"]),
        ({"price": Decimal("5000"), "quantity": Decimal("1")}, ["PRICE_BAND_EXCEEDED"]),  # a zero too few
        ({"order_type": OrderType.STOP_MARKET, "price": None, "stop_price": Decimal("60000")}, ["PRICE_BAND_EXCEEDED"]),
        ({"order_type": OrderType.STOP_LIMIT, "price": Decimal("51000"), "stop_price": Decimal("51500")}, []),
        ({"order_type": OrderType.MARKET, "price": None}, []),  # trades at the reference
    ],
    ids=["at-upper-edge", "at-lower-edge", "beyond", "fat-finger", "stop-beyond", "stop-limit-within", "market"],
)
def test_price_band_measures_limit_and_stop_prices_against_the_reference(make_order, fields, expected):
    order = make_order(**{"quantity": Decimal("0.5"), **fields})

    assert codes(order) == expected


def test_price_band_message_says_how_far_and_off_disables_it(make_order):
    order = make_order(price=Decimal("5000"), quantity=Decimal("1"))

    (violation,) = check_order(order, LIMITS, context())

    assert "90% from the reference 50000" in violation.message and "band of 5%" in violation.message
    assert codes(order, limits=dataclasses.replace(LIMITS, price_band=None)) == []



def test_a_price_far_beyond_the_band_of_a_tiny_reference_price_is_refused_not_an_error(make_order):
    # 10^20 against a reference of 0.00001 is 10^27 % away: the message rounds that to
    # 2 places without running out of digits, and every violation is reported.
    limits = dataclasses.replace(LIMITS, allowed_symbols=frozenset({"PEPEUSDT"}), max_notional_per_order=None)
    order = make_order(symbol="PEPEUSDT", quantity=Decimal("1"), price=Decimal("100000000000000000000"))

    violations = check_order(order, limits, context(reference_prices={"PEPEUSDT": Decimal("0.00001")}))

    assert [v.code for v in violations][:2] == ["PRICE_OUT_OF_RANGE", "PRICE_BAND_EXCEEDED"]
    assert "is 999999999999999999999999900% from the reference 0.00001" in violations[1].message

# -- max position per symbol ---------------------------------------------------------------------------
def test_max_position_counts_the_ledger_position_plus_the_order(make_order):
    held = context(position("BTCUSDT", "1.5", "50000"))

    assert codes(market(make_order, quantity="0.5"), held) == []  # 2 BTC = 100,000: at the limit
    assert codes(market(make_order, quantity="0.6"), held) == ["MAX_POSITION_EXCEEDED"]
    assert codes(market(make_order, quantity="2.1")) == ["MAX_POSITION_EXCEEDED"]  # from flat: 105,000


def test_max_position_counts_what_the_orders_working_on_the_same_side_may_still_fill(make_order):
    held = context(position("BTCUSDT", "0.5", "50000"), working_same_side=Decimal("1"))

    assert codes(market(make_order, quantity="0.5"), held) == []  # 0.5 + 1 + 0.5 = 2 BTC: at the limit
    (violation,) = check_order(market(make_order, quantity="0.6"), LIMITS, held)
    assert violation.code == "MAX_POSITION_EXCEEDED"
    assert "would be 2.1 with 1 already working on its side" in violation.message


def test_max_position_applies_to_shorts_and_to_flips(make_order):
    short = context(position("BTCUSDT", "-1.5", "50000"))
    long_ = context(position("BTCUSDT", "1", "50000"))

    assert codes(market(make_order, Side.SELL, "0.6"), short) == ["MAX_POSITION_EXCEEDED"]
    assert codes(market(make_order, Side.SELL, "3"), long_) == []  # long 1 -> short 2: at the limit
    assert codes(market(make_order, Side.SELL, "3.1"), long_) == ["MAX_POSITION_EXCEEDED"]


def test_an_order_reducing_a_position_over_the_limit_passes(make_order):
    over = context(position("BTCUSDT", "3", "30000"))  # 150,000 at the reference: over 100,000

    assert codes(market(make_order, Side.SELL, "0.5"), over) == []
    assert codes(market(make_order, Side.BUY, "0.1"), over) == ["MAX_POSITION_EXCEEDED", "MAX_GROSS_EXPOSURE_EXCEEDED"]


# -- max gross exposure --------------------------------------------------------------------------------
def test_gross_exposure_sums_every_position_at_its_reference_price(make_order):
    limits = dataclasses.replace(LIMITS, max_leverage=None)
    held = context(position("BTCUSDT", "2", "40000"), position("ETHUSDT", "-25", "2100"))  # 100,000 + 50,000

    assert codes(market(make_order, Side.SELL, "0.0001"), held, limits) == []  # reduces BTC
    assert codes(market(make_order, Side.BUY, "0.0001", "ETHUSDT"), held, limits) == []  # reduces the ETH short
    assert codes(market(make_order, Side.SELL, "0.0001", "ETHUSDT"), held, limits) == ["MAX_GROSS_EXPOSURE_EXCEEDED"]


def test_a_position_without_reference_price_is_valued_at_its_entry_price(make_order):
    limits = dataclasses.replace(LIMITS, max_leverage=None)
    held = context(position("BTCUSDT", "1", "50000"), position("DOGEUSDT", "1000000", "0.1"))  # 50,000 + 100,000

    assert codes(market(make_order, quantity="0.0001"), held, limits) == ["MAX_GROSS_EXPOSURE_EXCEEDED"]
    assert codes(market(make_order, Side.SELL, "0.5"), held, limits) == []


# -- max leverage ---------------------------------------------------------------------------------------
def test_an_order_asking_for_more_leverage_than_the_max_is_refused(make_order):
    assert codes(market(make_order, quantity="0.1", leverage=Decimal("3"))) == []
    assert codes(market(make_order, quantity="0.1", leverage=Decimal("3.5"))) == ["MAX_LEVERAGE_EXCEEDED"]


def test_account_leverage_is_gross_exposure_over_equity_including_pnl(make_order):
    limits = dataclasses.replace(LIMITS, max_gross_exposure=None, max_position_notional=None)
    flat = context()
    # Equity 50,000 - 10,000 realised loss - 1,000 commission + 0 unrealised = 39,000: 3 x = 117,000.
    losing = context(position("ETHUSDT", "0", "0", realised="-10000", commission="1000"))
    # A 2 BTC long bought at 45,000 is worth 100,000: 10,000 unrealised profit, equity 60,000.
    winning = context(position("BTCUSDT", "2", "45000"))

    assert codes(market(make_order, quantity="3"), flat, limits) == []  # 150,000 / 50,000 = 3
    assert codes(market(make_order, quantity="3.0001"), flat, limits) == ["MAX_LEVERAGE_EXCEEDED"]
    assert codes(market(make_order, quantity="2.34"), losing, limits) == []
    assert codes(market(make_order, quantity="2.35"), losing, limits) == ["MAX_LEVERAGE_EXCEEDED"]
    assert codes(market(make_order, quantity="1.6"), winning, limits) == []  # 180,000 / 60,000
    (violation,) = check_order(market(make_order, quantity="1.7"), limits, winning)
    assert "account leverage would be 3.0833 (gross exposure 185000 / equity 60000)" in violation.message


def test_an_account_without_positive_equity_cannot_add_exposure_but_can_reduce_it(make_order):
    limits = dataclasses.replace(LIMITS, max_gross_exposure=None, max_position_notional=None, daily_loss_limit=None)
    broke = context(position("BTCUSDT", "1", "100000"))  # 50,000 unrealised loss: equity 0

    assert codes(market(make_order, quantity="0.1"), broke, limits) == ["MAX_LEVERAGE_EXCEEDED"]
    assert codes(market(make_order, Side.SELL, "0.5"), broke, limits) == []



def test_a_leverage_beyond_the_digits_of_the_default_context_is_refused_not_an_error(make_order):
    # Losses have left 10^-18 of equity: 100 BTC is 5 x 10^24 times that, a leverage the
    # message rounds to 4 places without running out of digits.
    limits = dataclasses.replace(LIMITS, max_gross_exposure=None, max_position_notional=None, daily_loss_limit=None,
                                 max_notional_per_order=None)
    nearly_broke = context(position("ETHUSDT", "0", "0", realised="-49999.999999999999999999"))

    (violation,) = check_order(market(make_order, quantity="100"), limits, nearly_broke)

    assert violation.code == "MAX_LEVERAGE_EXCEEDED"
    assert ("account leverage would be 5000000000000000000000000 (gross exposure 5000000 / equity "
            "0.000000000000000001)") in violation.message

# -- open orders and the order-rate throttle ---------------------------------------------------------------
def test_max_open_orders_counts_the_working_orders(make_order):
    assert codes(market(make_order, quantity="0.1"), context(open_orders=2)) == []
    assert codes(market(make_order, quantity="0.1"), context(open_orders=3)) == ["MAX_OPEN_ORDERS_EXCEEDED"]


def test_order_rate_throttle_counts_the_orders_in_the_window(make_order):
    assert codes(market(make_order, quantity="0.1"), context(recent_orders=4)) == []
    (violation,) = check_order(market(make_order, quantity="0.1"), LIMITS, context(recent_orders=5))
    assert violation.code == "ORDER_RATE_EXCEEDED"
    assert "5 orders approved in the last 60 s" in violation.message


# -- daily loss -------------------------------------------------------------------------------------------------
def test_daily_loss_is_realised_since_the_reset_plus_unrealised(make_order):
    order = market(make_order, quantity="0.1")
    down_600 = position("BTCUSDT", "1", "50600")  # 600 unrealised loss

    assert codes(order, context(down_600, realised_today=Decimal("-400"))) == []  # exactly 1,000
    assert codes(order, context(down_600, realised_today=Decimal("-400.01"))) == ["DAILY_LOSS_LIMIT"]
    assert codes(order, context(realised_today=Decimal("-1000.01"))) == ["DAILY_LOSS_LIMIT"]
    assert codes(order, context(down_600, realised_today=Decimal("5000"))) == []  # a good day
    assert codes(order, context(realised_today=Decimal("-5000")), dataclasses.replace(LIMITS, daily_loss_limit=None)) == []


def test_after_a_daily_loss_breach_reducing_orders_pass_only_in_reducing(make_order):
    down = position("BTCUSDT", "1", "52000")  # 2,000 unrealised loss
    sell = market(make_order, Side.SELL, "0.5")

    assert codes(sell, context(down)) == ["DAILY_LOSS_LIMIT"]
    assert codes(sell, context(down, trading_state=TradingState.REDUCING)) == []
    assert codes(market(make_order, quantity="0.1"), context(down, trading_state=TradingState.REDUCING)) == [
        "REDUCING_ONLY", "DAILY_LOSS_LIMIT"
    ]


@pytest.mark.parametrize(
    ("now", "reset", "expected"),
    [
        ("2025-03-04T10:00:00", "00:00", "2025-03-04T00:00:00"),
        ("2025-03-04T00:00:00", "00:00", "2025-03-04T00:00:00"),
        ("2025-03-04T21:59:59", "22:00", "2025-03-03T22:00:00"),
        ("2025-03-04T22:00:00", "22:00", "2025-03-04T22:00:00"),
        ("2025-03-01T05:00:00", "22:30", "2025-02-28T22:30:00"),
    ],
)
def test_the_daily_loss_resets_at_the_configured_utc_time(now, reset, expected):
    utc = dt.timezone.utc
    reset_time = dt.time.fromisoformat(reset).replace(tzinfo=utc)

    assert last_reset(dt.datetime.fromisoformat(now).replace(tzinfo=utc), reset_time) == (
        dt.datetime.fromisoformat(expected).replace(tzinfo=utc)
    )


# -- everything at once ----------------------------------------------------------------------------------------
def test_every_violation_of_one_order_is_reported_together_each_with_its_own_code(make_order):
    order = make_order(quantity=Decimal("120"), price=Decimal("60000"), leverage=Decimal("20"))
    ctx = context(
        position("ETHUSDT", "10", "2000"),
        trading_state=TradingState.HALTED,
        open_orders=3,
        recent_orders=5,
        realised_today=Decimal("-2000"),
    )

    violations = check_order(order, LIMITS, ctx)

    assert [v.code for v in violations] == [
        "TRADING_HALTED",
        "MAX_QUANTITY_EXCEEDED",
        "MAX_NOTIONAL_EXCEEDED",
        "PRICE_BAND_EXCEEDED",
        "MAX_POSITION_EXCEEDED",
        "MAX_GROSS_EXPOSURE_EXCEEDED",
        "MAX_LEVERAGE_EXCEEDED",
        "MAX_OPEN_ORDERS_EXCEEDED",
        "ORDER_RATE_EXCEEDED",
        "DAILY_LOSS_LIMIT",
    ]
    assert len({v.message for v in violations}) == len(violations)
    assert all("E+" not in v.message for v in violations)


def test_the_equity_adds_the_realised_pnl_of_every_position_exactly():
    """The sum is as exact as the ledger (100 significant digits), not rounded to the
    default context's 28: here 29 digits."""
    context = RiskContext(positions={
        ("FUTURES", "BTCUSDT"): position("BTCUSDT", "0", "0", realised="10000000000.000000000000000001"),
        ("FUTURES", "ETHUSDT"): position("ETHUSDT", "0", "0", realised="0.000000000000000001"),
    })

    assert context.equity(Decimal("0")) == Decimal("10000000000.000000000000000002")
