"""The position ledger's accounting: increase, reduce, close, flip, commissions, exactness."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from decimal import Context, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain import Side
from services.domain.ledger import Position, apply_fill, fee_in_quote, only_reduces, quote_asset

D = Decimal
T1 = dt.datetime(2025, 3, 4, 10, 0, tzinfo=dt.timezone.utc)
BUY, SELL = Side.BUY, Side.SELL


def fills(*steps: tuple[Side, str, str], commission: str = "0") -> tuple[Position, list[Decimal]]:
    """Apply (side, quantity, price) steps from flat; the final position and each step's realised PnL."""
    position, realised = Position("acct-1", "BTCUSDT"), []
    for side, quantity, price in steps:
        update = apply_fill(position, side, D(quantity), D(price), D(commission))
        position = update.position
        realised.append(update.realised_pnl)
    return position, realised


def test_a_fill_from_flat_opens_a_position_at_the_fill_price():
    update = apply_fill(Position("acct-1", "BTCUSDT"), BUY, D("0.5"), D("65000"), D("13"), at=T1)

    p = update.position
    assert (p.quantity, p.cost_basis, p.average_entry_price) == (D("0.5"), D("32500"), D("65000"))
    assert (p.realised_pnl, p.commission, p.updated_time) == (0, D("13"), T1)
    assert (update.realised_pnl, update.commission) == (0, D("13"))


def test_increasing_averages_the_entry_price_by_quantity():
    p, realised = fills((BUY, "1", "100"), (BUY, "3", "104"))

    assert (p.quantity, p.cost_basis, p.average_entry_price) == (D("4"), D("412"), D("103"))
    assert realised == [0, 0]


def test_reducing_a_long_realises_the_reduced_part_and_keeps_the_entry_price():
    p, realised = fills((BUY, "4", "100"), (SELL, "1", "110"))

    assert (p.quantity, p.average_entry_price, p.cost_basis) == (D("3"), D("100"), D("300"))
    assert realised == [0, D("10")]
    assert p.realised_pnl == D("10")


def test_reducing_a_short_realises_profit_when_the_price_fell():
    p, realised = fills((SELL, "2", "100"), (SELL, "2", "90"), (BUY, "1", "80"))

    assert (p.quantity, p.average_entry_price) == (D("-3"), D("95"))
    assert realised == [0, 0, D("15")]


def test_closing_exactly_leaves_a_flat_position_without_entry_price():
    p, realised = fills((BUY, "1.5", "100"), (SELL, "1.5", "90"))

    assert p.is_flat and p.quantity == 0
    assert (p.cost_basis, p.average_entry_price) == (0, None)
    assert realised[-1] == D("-15")


@pytest.mark.parametrize(
    ("first", "second", "quantity", "entry", "realised"),
    [
        ((BUY, "1", "100"), (SELL, "3", "120"), D("-2"), D("120"), D("20")),  # long 1 -> short 2
        ((SELL, "2", "100"), (BUY, "5", "90"), D("3"), D("90"), D("20")),  # short 2 -> long 3
    ],
    ids=["long-to-short", "short-to-long"],
)
def test_a_fill_larger_than_the_position_flips_it_at_the_fill_price(first, second, quantity, entry, realised):
    p, steps = fills(first, second)

    assert (p.quantity, p.average_entry_price, p.cost_basis) == (quantity, entry, abs(quantity) * entry)
    assert steps[-1] == realised == p.realised_pnl


def test_commissions_add_up_and_net_realised_subtracts_them():
    p, _ = fills((BUY, "1", "100"), (SELL, "1", "103"), commission="0.04")

    assert (p.realised_pnl, p.commission, p.net_realised_pnl) == (D("3"), D("0.08"), D("2.92"))


def test_a_fee_in_another_asset_than_the_quote_is_listed_by_asset_but_not_counted_against_pnl():
    position = Position("acct-1", "ASTERUSDT")
    charged = [(BUY, "100", "1.5", "0.06", "USDT"), (SELL, "100", "1.6", "0.002", "BNB"),
               (BUY, "10", "1.6", "0.004", "ASTER"), (SELL, "10", "1.7", "0.007", "")]
    counted = []
    for side, quantity, price, fee, asset in charged:
        update = apply_fill(position, side, D(quantity), D(price), D(fee), commission_asset=asset)
        position = update.position
        counted.append(update.commission)

    assert counted == [D("0.06"), 0, 0, D("0.007")]  # USDT and "the venue did not say" count
    assert position.realised_pnl == D("11")  # 100 x 0.1 + 10 x 0.1
    assert (position.commission, position.net_realised_pnl) == (D("0.067"), D("10.933"))
    assert dict(position.fees) == {"": D("0.007"), "ASTER": D("0.004"), "BNB": D("0.002"), "USDT": D("0.06")}


@pytest.mark.parametrize(
    ("symbol", "asset", "counted"),
    [("BTCUSDT", "USDT", True), ("BTCUSDT", "", True), ("BTCUSDT", None, True),
     ("ETHBTC", "BTC", True), ("BTCUSD1", "USD1", True),  # a quote asset read from the name
     ("BTCUSDT", "BTC", False),  # a spot buy's base asset
     ("BTCUSDT", "BNB", False), ("ASTERUSDT", "ASTER", False),  # fee tokens
     ("BTCUSDT", "USD", False), ("ETHBTC", "ETH", False), ("BTCUSDT", "BTCUSDT", False)],
)
def test_a_fee_counts_when_its_asset_is_the_symbols_quote_or_unknown(symbol, asset, counted):
    assert fee_in_quote(symbol, asset) is counted


def test_the_paper_venues_fee_asset_always_counts():
    for symbol in ("BTCUSDT", "ETHBTC", "SOLBUSD", "XYZ"):  # "XYZ": no quote in its name, USDT
        assert fee_in_quote(symbol, quote_asset(symbol))


def test_a_round_trip_realises_exactly_even_when_the_average_does_not_terminate():
    # Cost 302 for 3: the average 100.666... cannot be written exactly; the round trip can.
    p, realised = fills((BUY, "1", "100"), (BUY, "2", "101"), (SELL, "1", "110"), (SELL, "2", "90"))

    assert p.average_entry_price is None
    assert p.realised_pnl == D("-12")  # 110 + 180 - 302
    assert realised[2] == D("9.333333333333333333")  # the partial step's share is rounded at 18 places


def test_any_sequence_of_fills_back_to_flat_realises_the_exact_cash_difference():
    rng = random.Random(20250304)
    with localcontext(Context(prec=100)):  # the test's own sums must not round either
        run_random_round_trips(rng)


def run_random_round_trips(rng: random.Random) -> None:
    for _ in range(200):
        position, cash = Position("acct-1", "ETHUSDT"), D(0)
        for _ in range(rng.randint(1, 12)):
            side = rng.choice([BUY, SELL])
            quantity = D(rng.randint(1, 10**6)).scaleb(-rng.randint(0, 8))
            price = D(rng.randint(1, 10**9)).scaleb(-rng.randint(0, 6))
            position = apply_fill(position, side, quantity, price).position
            cash += quantity * price * (-1 if side is BUY else 1)
        if not position.is_flat:
            side = SELL if position.quantity > 0 else BUY
            price = D(rng.randint(1, 10**9)).scaleb(-4)
            cash += abs(position.quantity) * price * (-1 if side is BUY else 1)
            position = apply_fill(position, side, abs(position.quantity), price).position
        assert position.is_flat and position.realised_pnl == cash


def test_unrealised_pnl_of_long_short_and_flat_positions():
    long_, _ = fills((BUY, "2", "100"))
    short, _ = fills((SELL, "2", "100"))

    assert long_.unrealised_pnl(D("90")) == D("-20")
    assert short.unrealised_pnl(D("90")) == D("20")
    assert Position("acct-1", "BTCUSDT").unrealised_pnl(D("90")) == 0


@pytest.mark.parametrize(("quantity", "price"), [("0", "100"), ("-1", "100"), ("1", "0"), ("NaN", "1"), ("1", "Infinity")])
def test_a_fill_without_positive_quantity_and_price_is_refused(quantity, price):
    with pytest.raises(ValueError):
        apply_fill(Position("acct-1", "BTCUSDT"), BUY, D(quantity), D(price))


@pytest.mark.parametrize(
    ("held", "side", "quantity", "expected"),
    [
        ("0", SELL, "1", False),  # opens from flat
        ("2", BUY, "1", False),  # adds to a long
        ("2", SELL, "1", True),
        ("2", SELL, "2", True),  # to flat
        ("2", SELL, "2.01", False),  # flips
        ("-2", BUY, "2", True),
        ("-2", SELL, "0.1", False),
    ],
)
def test_only_reduces(held, side, quantity, expected):
    assert only_reduces(D(held), side, D(quantity)) is expected


def test_a_position_carries_no_instance_dict():
    # A Risk replica holds one Position per position of every account it owns: slotted,
    # it costs 96 bytes instead of about 150 with a __dict__ (docs/benchmarks.md).
    position = Position("acct-1", "BTCUSDT", D("1.5"))
    assert not hasattr(position, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        position.quantity = D("2")  # type: ignore[misc]
    assert dataclasses.replace(position, quantity=D("2")).quantity == D("2")


def _exact_reference(steps: list[tuple[Side, Decimal, Decimal]]) -> list[tuple[object, object, object]]:
    """Average-cost accounting in exact fractions, written apart from apply_fill: after
    each fill the quantity, the cost of what is open and the realised PnL so far."""
    from fractions import Fraction

    held, cost, realised, states = Fraction(0), Fraction(0), Fraction(0), []
    for side, quantity, price in steps:
        signed, price_ = Fraction(quantity) * (1 if side is BUY else -1), Fraction(price)
        if held == 0 or (held > 0) == (signed > 0):
            cost += abs(signed) * price_
        else:
            closed = min(abs(signed), abs(held))
            share = cost * closed / abs(held)
            realised += (closed * price_ - share) if held > 0 else (share - closed * price_)
            cost -= share
            if abs(signed) > abs(held):  # flipped: the rest opens at the fill price
                cost = (abs(signed) - abs(held)) * price_
        held += signed
        states.append((held, cost if held else Fraction(0), realised))
    return states


_quantities = st.decimals(min_value=D("0.00000001"), max_value=D("50"), places=8)
_prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([BUY, SELL]), _quantities, _prices), min_size=1, max_size=30))
def test_every_fill_agrees_with_exact_average_cost_accounting_to_the_documented_rounding(steps):
    """Increase, partial reduce, close, flip and shorts, against exact fractions: the
    quantity is exact, the cost and realised PnL differ only by the partial steps'
    rounding at 18 places (at most half a unit of the 18th place each), and the average
    entry price by that per unit held."""
    from fractions import Fraction

    position, tolerance = Position("acct-1", "BTCUSDT"), Fraction(len(steps), 10**18)
    for (side, quantity, price), (held, cost, realised) in zip(steps, _exact_reference(steps)):
        position = apply_fill(position, side, quantity, price).position
        assert Fraction(position.quantity) == held
        assert abs(Fraction(position.cost_basis) - cost) <= tolerance
        assert abs(Fraction(position.realised_pnl) - realised) <= tolerance
        if held:  # the cost's rounding, per unit held, and the average's own at 18 places
            assert abs(Fraction(position.average_entry_price) - cost / abs(held)) <= (
                tolerance / abs(held) + Fraction(1, 10**18))
        else:
            assert (position.cost_basis, position.average_entry_price) == (0, None)
