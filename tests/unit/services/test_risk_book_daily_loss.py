"""The book's realised PnL since the daily reset, for fills around the reset: a fill counts
in the daily period its trade time falls in, whenever the book learns of it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.domain import Side
from services.risk.book import Book
from services.risk.limits import RiskLimits

D = Decimal
UTC = dt.timezone.utc
RESET = dt.datetime(2030, 1, 8, tzinfo=UTC)  # 00:00 UTC, the default reset
MS = dt.timedelta(milliseconds=1)
LIMITS = RiskLimits(allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None, max_quantity_per_order=None,
                    max_price=None, reference_prices={})


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def fill(book: Book, trade_id: str, side: Side, price: str, at: dt.datetime) -> None:
    book.fill(order_id=f"o-{trade_id}", account="acct-1", symbol="BTCUSDT", side=side, venue="paper",
              trade_id=trade_id, quantity=D("1"), price=D(price), commission=D("0"), trade_time=at, final=True)


def realised_at(book: Book, now: dt.datetime) -> Decimal:
    return book.accounts["acct-1"].realised_since(book.daily_reset.at(now))


def test_a_fill_traded_after_the_reset_but_applied_before_this_replicas_clock_reaches_it_counts_in_the_new_day():
    # The OMS's clock is a few milliseconds ahead of this replica's: the closing fill is
    # dated just after midnight and reaches the book just before (its clock).
    clock = Clock(RESET - dt.timedelta(hours=1))
    book = Book(LIMITS, clock=clock)
    fill(book, "open", Side.BUY, "65000", clock.now)
    clock.now = RESET - 100 * MS
    fill(book, "close", Side.SELL, "63500", RESET + 5 * MS)  # realises -1500, traded on the 8th

    assert realised_at(book, RESET - 50 * MS) == 0  # the 7th's PnL: the fill is the 8th's
    clock.now = RESET + 10 * MS
    assert realised_at(book, clock.now) == D("-1500")


def test_a_fill_traded_before_the_reset_and_applied_after_it_counts_in_neither_day_now():
    clock = Clock(RESET - dt.timedelta(hours=1))
    book = Book(LIMITS, clock=clock)
    fill(book, "open", Side.BUY, "65000", clock.now)
    clock.now = RESET + 100 * MS
    fill(book, "close", Side.SELL, "63500", RESET - 5 * MS)  # the 7th's loss, learnt on the 8th

    assert realised_at(book, clock.now) == 0
