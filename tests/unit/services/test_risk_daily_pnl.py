"""Today's realised PnL in Risk's book (the daily loss limit's): the fills traded since
the last daily reset (UTC), by their trade time, whenever they are recorded."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.domain import MarketType, Side
from services.risk.book import Book
from services.risk.limits import RiskLimits

D = Decimal
UTC = dt.timezone.utc
MIDNIGHT = dt.datetime(2030, 1, 8, tzinfo=UTC)
TICK = dt.timedelta(microseconds=1)
LIMITS = RiskLimits(allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None, max_quantity_per_order=None,
                    max_price=None, reference_prices={"BTCUSDT": D("100")})


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def fill(book: Book, trade_id: str, side: Side, price: str, at: dt.datetime, commission: str = "0") -> None:
    book.fill(order_id=f"o-{trade_id}", account="acct-1", symbol="BTCUSDT", side=side, venue="aster",
              trade_id=trade_id, quantity=D("1"), price=D(price), commission=D(commission), trade_time=at,
              final=True, market_type=MarketType.FUTURES, commission_asset="USDT")


def today(book: Book, clock: Clock) -> Decimal:
    return book.accounts["acct-1"].realised_since(book.daily_reset.at(clock()))


def test_a_fill_exactly_at_the_reset_counts_on_the_new_day_and_one_a_microsecond_before_does_not():
    clock = Clock(MIDNIGHT + dt.timedelta(seconds=5))
    book = Book(LIMITS, clock=clock)
    fill(book, "t1", Side.BUY, "100", MIDNIGHT - dt.timedelta(hours=1))
    fill(book, "t2", Side.SELL, "90", MIDNIGHT - TICK)  # -10, yesterday (recorded today)
    fill(book, "t3", Side.BUY, "100", MIDNIGHT - TICK)
    fill(book, "t4", Side.SELL, "80", MIDNIGHT, commission="1")  # -20 and its fee, today

    assert today(book, clock) == D("-21")


def test_a_fill_traded_after_the_next_reset_counts_on_the_day_it_was_traded():
    """The venue's clock ahead of Risk's: a fill traded at 00:00:00.1 is recorded at
    23:59:59.9 by Risk's clock. It is not today's for the day ending, and it is the new
    day's once Risk's clock reaches the reset (as the ledger in the store says)."""
    clock = Clock(MIDNIGHT - dt.timedelta(milliseconds=100))
    book = Book(LIMITS, clock=clock)
    fill(book, "t1", Side.BUY, "100", MIDNIGHT - dt.timedelta(hours=1))
    fill(book, "t2", Side.SELL, "60", MIDNIGHT + dt.timedelta(milliseconds=100), commission="0.5")

    before = today(book, clock)
    clock.now = MIDNIGHT
    after = today(book, clock)
    clock.now = MIDNIGHT + dt.timedelta(days=1)
    next_day = today(book, clock)

    assert (before, after, next_day) == (D("0"), D("-40.5"), D("0"))
