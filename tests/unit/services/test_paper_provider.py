"""The paper venue: marketability, fill price and fee, resting orders, cancels."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from services.domain import LiquiditySide, OrderStatus, OrderType, Side, TimeInForce
from services.domain.errors import InvalidOrder, OrderNotFound
from services.exchange.providers.paper import (
    PaperFees,
    PaperProvider,
    is_marketable,
    quote_asset,
    simulate_paper_fill,
)

MARKET = Decimal("100")


def run(awaitable):
    """The provider interface is asynchronous; these tests drive it one call at a time."""
    return asyncio.run(awaitable)


FEES = PaperFees(maker=Decimal("0.0002"), taker=Decimal("0.0004"))


@pytest.fixture
def provider() -> PaperProvider:
    return PaperProvider({"BTCUSDT": MARKET, "ETHUSDT": Decimal("3200"), "ETHBTC": Decimal("0.05")}, FEES)


def market(make_order, side=Side.BUY, **overrides):
    return make_order(order_type=OrderType.MARKET, price=None, side=side, **overrides)


def limit(make_order, side, price, **overrides):
    return make_order(order_type=OrderType.LIMIT, side=side, price=Decimal(price), **overrides)


def stop(make_order, side, stop_price, price=None, **overrides):
    order_type = OrderType.STOP_MARKET if price is None else OrderType.STOP_LIMIT
    return make_order(
        order_type=order_type,
        side=side,
        stop_price=Decimal(stop_price),
        price=None if price is None else Decimal(price),
        **overrides,
    )


# -- fills ---------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_market_order_fills_fully_at_the_price_with_the_taker_fee_in_the_quote_asset(provider, make_order, side):
    order = market(make_order, side, quantity=Decimal("2.5"))

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.FILLED
    fill = report.fill
    assert (fill.quantity, fill.price) == (Decimal("2.5"), MARKET)
    # 2.5 * 100 * 0.0004
    assert fill.commission == Decimal("0.1")
    assert fill.commission_asset == "USDT"
    assert fill.liquidity_side is LiquiditySide.TAKER
    assert report.cumulative_quantity == Decimal("2.5")
    assert (report.order_id, report.client_order_id, report.side) == (order.order_id, order.client_order_id, side)


def test_commission_is_the_taker_fee_on_the_notional_rounded_to_eight_places(make_order):
    order = market(make_order, quantity=Decimal("0.123"), symbol="ETHUSDT")

    fill = simulate_paper_fill(order, Decimal("3210.77"), PaperFees(taker=Decimal("0.00075")))

    # 0.123 * 3210.77 * 0.00075 = 0.29619353250 -> 0.29619353
    assert fill.commission == Decimal("0.29619353")


@pytest.mark.parametrize(
    ("symbol", "asset"),
    [("BTCUSDT", "USDT"), ("ETHUSDC", "USDC"), ("ETHBTC", "BTC"), ("SOLETH", "ETH"), ("BTCUSD", "USD"), ("XYZ", "USDT")],
)
def test_commission_asset_is_the_symbols_quote_asset(symbol, asset):
    assert quote_asset(symbol) == asset


def test_fill_trade_ids_are_unique(make_order):
    order = market(make_order)

    ids = {simulate_paper_fill(order, MARKET).trade_id for _ in range(50)}

    assert len(ids) == 50


@pytest.mark.parametrize(
    ("side", "limit_price"),
    [(Side.BUY, "105"), (Side.BUY, "100"), (Side.SELL, "95"), (Side.SELL, "100")],
)
def test_marketable_limit_order_fills_at_the_market_never_worse_than_its_limit(provider, make_order, side, limit_price):
    order = limit(make_order, side, limit_price)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.FILLED
    assert report.fill.price == MARKET
    if side is Side.BUY:
        assert report.fill.price <= order.price
    else:
        assert report.fill.price >= order.price


@pytest.mark.parametrize(("side", "limit_price"), [(Side.BUY, "99.99"), (Side.SELL, "100.01")])
def test_limit_order_away_from_the_market_rests_accepted(provider, make_order, side, limit_price):
    order = limit(make_order, side, limit_price)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.ACCEPTED
    assert report.fill is None
    assert report.cumulative_quantity == 0
    assert report.remote_order_id == order.remote_order_id is not None
    assert run(provider.cancel(order.order_id)).order_status is OrderStatus.CANCELLED  # it was resting


def test_simulate_paper_fill_fills_only_the_remaining_quantity(make_order):
    order = market(make_order, quantity=Decimal("3"), filled_quantity=Decimal("1.25"))

    fill = simulate_paper_fill(order, MARKET, FEES)

    assert fill.quantity == Decimal("1.75")


def test_simulate_paper_fill_gives_nothing_for_a_fully_filled_order(make_order):
    order = market(make_order, quantity=Decimal("3"), filled_quantity=Decimal("3"))

    assert simulate_paper_fill(order, MARKET, FEES) is None


# -- stops -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("side", "stop_price", "market_price", "triggered"),
    [
        (Side.BUY, "105", "100", False),
        (Side.BUY, "105", "104.99", False),
        (Side.BUY, "105", "105", True),
        (Side.BUY, "105", "110", True),
        (Side.SELL, "95", "100", False),
        (Side.SELL, "95", "95.01", False),
        (Side.SELL, "95", "95", True),
        (Side.SELL, "95", "90", True),
    ],
)
def test_stop_market_order_is_marketable_only_once_the_market_crosses_its_stop(
    make_order, side, stop_price, market_price, triggered
):
    order = stop(make_order, side, stop_price)

    assert is_marketable(order, Decimal(market_price)) is triggered
    fill = simulate_paper_fill(order, Decimal(market_price), FEES)
    assert (fill is not None) is triggered


@pytest.mark.parametrize(
    ("side", "stop_price", "limit_price", "market_price", "marketable"),
    [
        (Side.BUY, "105", "107", "100", False),  # not triggered
        (Side.BUY, "105", "107", "106", True),  # triggered, within the limit
        (Side.BUY, "105", "107", "108", False),  # triggered, but through the limit
        (Side.SELL, "95", "93", "100", False),
        (Side.SELL, "95", "93", "94", True),
        (Side.SELL, "95", "93", "92", False),
    ],
)
def test_stop_limit_order_needs_the_stop_crossed_and_the_limit_respected(
    make_order, side, stop_price, limit_price, market_price, marketable
):
    order = stop(make_order, side, stop_price, limit_price)

    assert is_marketable(order, Decimal(market_price)) is marketable


def test_untriggered_stop_order_rests_accepted(provider, make_order):
    order = stop(make_order, Side.BUY, "105")

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.ACCEPTED
    assert report.fill is None


def test_triggered_stop_order_fills_at_the_market(make_order):
    order = stop(make_order, Side.SELL, "101")
    venue = PaperProvider({"BTCUSDT": MARKET}, FEES)

    (report,) = run(venue.execute(order))

    assert report.order_status is OrderStatus.FILLED
    assert report.fill.price == MARKET


# -- time in force, post-only ------------------------------------------------------------------
@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_immediate_order_that_is_not_marketable_expires_and_does_not_rest(provider, make_order, tif):
    order = limit(make_order, Side.BUY, "90", time_in_force=tif)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.EXPIRED
    assert report.reason == f"{tif.value}_NOT_MARKETABLE"
    assert report.fill is None
    with pytest.raises(OrderNotFound):
        run(provider.cancel(order.order_id))


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_immediate_order_that_is_marketable_fills(provider, make_order, tif):
    order = limit(make_order, Side.BUY, "110", time_in_force=tif)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.FILLED


@pytest.mark.parametrize(("side", "limit_price"), [(Side.BUY, "100"), (Side.SELL, "99")])
def test_post_only_order_that_would_take_liquidity_is_rejected_without_a_fill(provider, make_order, side, limit_price):
    order = limit(make_order, side, limit_price, post_only=True)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.REJECTED
    assert report.reason == "POST_ONLY_WOULD_TAKE"
    assert report.fill is None
    with pytest.raises(OrderNotFound):
        run(provider.cancel(order.order_id))


def test_post_only_order_away_from_the_market_rests(provider, make_order):
    order = limit(make_order, Side.BUY, "99", post_only=True)

    (report,) = run(provider.execute(order))

    assert report.order_status is OrderStatus.ACCEPTED


# -- reduce-only (futures) ---------------------------------------------------------------------
# As the venue refuses it (-2022 "ReduceOnly Order is rejected", -4118 "check your existing
# position and open orders"): a reduce-only order must trade against the account's position,
# and with the reduce-only orders already open on its side, no more than that position.
def position(provider, order) -> Decimal:
    return provider.positions.get((order.account, order.market_type, order.symbol), Decimal(0))


def hold(provider, make_order, quantity: str) -> None:
    """Build a position of ``quantity`` (negative: short) with a market order."""
    amount = Decimal(quantity)
    side = Side.BUY if amount > 0 else Side.SELL
    (report,) = run(provider.execute(market(make_order, side, quantity=abs(amount))))
    assert report.order_status is OrderStatus.FILLED


def test_reduce_only_order_without_a_position_is_rejected_without_a_fill(provider, make_order):
    order = market(make_order, Side.SELL, quantity=Decimal("1"), reduce_only=True)

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.reason, report.fill) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED", None)
    assert position(provider, order) == 0


@pytest.mark.parametrize(("held", "side"), [("2", Side.BUY), ("-2", Side.SELL)])
def test_reduce_only_order_that_would_increase_the_position_is_rejected(provider, make_order, held, side):
    hold(provider, make_order, held)
    order = market(make_order, side, quantity=Decimal("1"), reduce_only=True)

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.reason, report.fill) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED", None)
    assert position(provider, order) == Decimal(held)


@pytest.mark.parametrize(("held", "side"), [("1", Side.SELL), ("-1", Side.BUY)])
def test_reduce_only_order_larger_than_the_position_is_rejected_rather_than_flip_it(provider, make_order, held,
                                                                                    side):
    hold(provider, make_order, held)
    order = market(make_order, side, quantity=Decimal("1.5"), reduce_only=True)

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.reason, report.fill) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED", None)
    assert position(provider, order) == Decimal(held)


@pytest.mark.parametrize(("held", "side", "left"), [("2", Side.SELL, "0.5"), ("-2", Side.BUY, "-0.5"),
                                                    ("1.5", Side.SELL, "0")])
def test_reduce_only_order_within_the_position_fills_and_reduces_it(provider, make_order, held, side, left):
    hold(provider, make_order, held)
    order = market(make_order, side, quantity=Decimal("1.5"), reduce_only=True)

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.fill.quantity) == (OrderStatus.FILLED, Decimal("1.5"))
    assert position(provider, order) == Decimal(left)


def test_reduce_only_orders_open_on_the_same_side_count_against_the_position(provider, make_order):
    hold(provider, make_order, "1")
    resting = limit(make_order, Side.SELL, "110", quantity=Decimal("0.6"), reduce_only=True)
    (accepted,) = run(provider.execute(resting))
    assert accepted.order_status is OrderStatus.ACCEPTED

    (refused,) = run(provider.execute(market(make_order, Side.SELL, quantity=Decimal("0.5"), reduce_only=True)))
    (filled,) = run(provider.execute(market(make_order, Side.SELL, quantity=Decimal("0.4"), reduce_only=True)))

    assert (refused.order_status, refused.reason) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED")
    assert (filled.order_status, filled.fill.quantity) == (OrderStatus.FILLED, Decimal("0.4"))
    assert position(provider, resting) == Decimal("0.6")


def test_reduce_only_order_reduces_a_position_held_before_this_venue_started(provider, make_order):
    order = market(make_order, Side.BUY, quantity=Decimal("1"), reduce_only=True)
    provider.hold({(order.account, order.market_type, order.symbol): Decimal("-1")})  # the ledger's, at start

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.fill.quantity) == (OrderStatus.FILLED, Decimal("1"))
    assert position(provider, order) == 0


def test_reduce_only_stop_order_without_a_position_is_rejected_on_arrival(provider, make_order):
    order = stop(make_order, Side.SELL, "90", quantity=Decimal("1"), reduce_only=True)

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.reason) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED")
    with pytest.raises(OrderNotFound):  # nothing rests to trigger later
        run(provider.cancel(order.order_id))


def test_reduce_only_is_per_account(provider, make_order):
    hold(provider, make_order, "1")  # acct-1's
    order = market(make_order, Side.SELL, quantity=Decimal("1"), reduce_only=True, account="acct-2")

    (report,) = run(provider.execute(order))

    assert (report.order_status, report.reason) == (OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED")


def move(provider, price: str) -> list:
    """The market moves to ``price``: the resting orders meet the new book."""
    provider.source.set("BTCUSDT", Decimal(price))
    return run(provider.match_resting())


def test_a_resting_reduce_only_order_fills_no_more_than_the_position_left_and_the_rest_expires(provider,
                                                                                               make_order):
    """Placed within the position; the position shrank before the book reached it: it
    reduces what is left to zero, never past it (the rest expires, as the venue's does)."""
    hold(provider, make_order, "1")
    resting = limit(make_order, Side.SELL, "110", quantity=Decimal("0.8"), reduce_only=True)
    (accepted,) = run(provider.execute(resting))
    assert accepted.order_status is OrderStatus.ACCEPTED
    run(provider.execute(market(make_order, Side.SELL, quantity=Decimal("0.5"))))  # not reduce-only

    filled, expired = move(provider, "111")

    assert (filled.order_status, filled.fill.quantity) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.5"))
    assert (expired.order_status, expired.reason) == (OrderStatus.EXPIRED, "REDUCE_ONLY_EXPIRED")
    assert position(provider, resting) == 0
    assert move(provider, "112") == []  # nothing of it rests


def test_a_resting_reduce_only_order_whose_position_is_gone_expires_without_a_fill(provider, make_order):
    hold(provider, make_order, "1")
    resting = stop(make_order, Side.SELL, "90", quantity=Decimal("1"), reduce_only=True)
    run(provider.execute(resting))
    run(provider.execute(market(make_order, Side.SELL, quantity=Decimal("1"))))  # closed by another order

    (report,) = move(provider, "89")

    assert (report.order_status, report.reason, report.fill) == (OrderStatus.EXPIRED, "REDUCE_ONLY_EXPIRED", None)
    assert position(provider, resting) == 0


# -- cancels -----------------------------------------------------------------------------------
def test_cancel_of_a_resting_order_reports_cancelled_once(provider, make_order):
    order = limit(make_order, Side.BUY, "90")
    run(provider.execute(order))

    report = run(provider.cancel(order.order_id))

    assert report.order_status is OrderStatus.CANCELLED
    assert report.order_id == order.order_id
    assert report.remote_order_id == order.remote_order_id
    assert report.fill is None
    with pytest.raises(OrderNotFound):
        run(provider.cancel(order.order_id))


def test_cancel_of_an_unknown_order_raises_order_not_found(provider):
    with pytest.raises(OrderNotFound) as raised:
        run(provider.cancel("00000000-0000-4000-8000-000000000000"))

    assert raised.value.reason == "UNKNOWN_ORDER"


def test_cancel_of_a_filled_order_raises_order_not_found(provider, make_order):
    order = market(make_order)
    run(provider.execute(order))

    with pytest.raises(OrderNotFound):
        run(provider.cancel(order.order_id))


def test_cancel_all_cancels_only_the_symbols_resting_orders(provider, make_order):
    btc = [limit(make_order, Side.BUY, "90") for _ in range(2)]
    eth = limit(make_order, Side.BUY, "3000", symbol="ETHUSDT")
    for order in [*btc, eth]:
        run(provider.execute(order))

    reports = run(provider.cancel_all("BTCUSDT"))

    assert sorted(r.order_id for r in reports) == sorted(o.order_id for o in btc)
    assert all(r.order_status is OrderStatus.CANCELLED for r in reports)
    assert [r.order_id for r in run(provider.cancel_all(None))] == [eth.order_id]
    assert run(provider.cancel_all(None)) == []


# -- symbols, remote ids -----------------------------------------------------------------------
def test_unknown_symbol_raises_invalid_order_naming_symbol(provider, make_order):
    order = market(make_order, symbol="DOGEUSDT")

    with pytest.raises(InvalidOrder) as raised:
        run(provider.execute(order))

    assert raised.value.field == "symbol"
    assert "DOGEUSDT" in str(raised.value)
    with pytest.raises(InvalidOrder):
        run(provider.price("DOGEUSDT"))


def test_each_execution_gets_a_new_remote_order_id(provider, make_order):
    orders = [market(make_order) for _ in range(3)]

    remote_ids = [run(provider.execute(order))[0].remote_order_id for order in orders]

    assert len(set(remote_ids)) == 3
    assert all(rid.startswith("paper-") for rid in remote_ids)
