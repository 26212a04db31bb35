"""The reference price a decision measures an order at comes from a price source
(:mod:`services.risk.prices`): an answer that is not a usable price (zero, negative, not
a finite number, a binary float) is no price at all, so the order is refused with
NO_REFERENCE_PRICE rather than approved at an invented one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.domain import OrderType, Side
from services.domain.ledger import Position
from services.risk.book import Book
from services.risk.checks import check_order
from services.risk.limits import RiskLimits
from services.risk.prices import reference_prices

NOW = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)
LIMITS = RiskLimits(allowed_symbols=frozenset({"BTCUSDT", "ETHUSDT"}), max_notional_per_order=Decimal("250000"),
                    max_quantity_per_order=Decimal("1000"), max_price=None, reference_prices={})


class Answering:
    """A price source (a live feed, say) answering ``answer`` for BTCUSDT."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def reference_price(self, symbol: str):
        return self.answer if symbol == "BTCUSDT" else Decimal("3000")


UNUSABLE = [Decimal("0"), Decimal("-65000"), Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), 65000.0, "65000"]
IDS = ["zero", "negative", "nan", "snan", "infinity", "float", "text"]


@pytest.mark.parametrize("answer", UNUSABLE, ids=IDS)
def test_a_market_order_whose_price_source_answers_no_usable_price_is_refused_with_no_reference_price(
        make_order, answer):
    order = make_order(order_type=OrderType.MARKET, price=None, side=Side.BUY, quantity=Decimal("100"))
    book = Book(LIMITS, clock=lambda: NOW)

    violations = check_order(order, LIMITS, book.context(order, Answering(answer), NOW))

    assert [v.code for v in violations] == ["NO_REFERENCE_PRICE"]


@pytest.mark.parametrize("answer", UNUSABLE, ids=IDS)
def test_an_unusable_price_is_left_out_of_the_reference_prices(answer):
    assert reference_prices(Answering(answer), ["BTCUSDT", "ETHUSDT"]) == {"ETHUSDT": Decimal("3000")}


def test_a_position_whose_price_source_answers_zero_is_valued_at_its_entry_price(make_order):
    book = Book(LIMITS, clock=lambda: NOW)
    book.load_positions([Position("acct-1", "BTCUSDT", Decimal("2"), Decimal("120000"))])
    order = make_order(symbol="ETHUSDT", quantity=Decimal("1"), price=Decimal("3000"))

    context = book.context(order, Answering(Decimal("0")), NOW)

    assert context.gross_exposure() == Decimal("120000")  # 2 at the entry price of 60,000, not 2 x 0
