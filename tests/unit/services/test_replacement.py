"""A replacement (ReplaceOrder's first step) as Risk builds it, and how Risk's book measures it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.domain import OrderStatus, OrderType, Side, TradingState
from services.domain.errors import InvalidOrder, PreconditionFailed
from services.risk.book import Book, symbol_scope
from services.risk.limits import RiskLimits
from services.risk.prices import StaticPrices
from services.risk.replacement import replacement_order

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
S = OrderStatus


def replace(order, **changes):
    fields = {"quantity": None, "price": None, **changes}
    return replacement_order(order, order_id="r-1", client_order_id="amend-1", now=NOW, **fields)


def test_the_replacement_keeps_the_orders_fields_and_works_the_new_total_less_the_filled(order_in):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("10"), price=Decimal("100"), leverage=Decimal("5"))
    order.filled_quantity, order.average_fill_price, order.remote_order_id = Decimal("4"), Decimal("100"), "v-1"

    new = replace(order, quantity=Decimal("8"), price=Decimal("99"))

    assert (new.order_id, new.client_order_id, new.replaces_order_id) == ("r-1", "amend-1", order.order_id)
    assert (new.quantity, new.price) == (Decimal("4"), Decimal("99"))
    assert (new.account, new.symbol, new.side, new.order_type, new.leverage, new.time_in_force) == (
        order.account, order.symbol, order.side, order.order_type, order.leverage, order.time_in_force)
    assert (new.status, new.filled_quantity, new.average_fill_price, new.remote_order_id) == (S.PENDING, 0, None, None)
    assert (new.version, new.last_sequence, new.new_events, new.order_time) == (0, 0, [], NOW)
    assert order.status is S.PARTIALLY_FILLED and order.quantity == Decimal("10")  # the original is untouched


def test_an_unchanged_value_is_the_orders_own(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("2"), price=Decimal("100"))

    assert (replace(order, price=Decimal("101")).quantity, replace(order, quantity=Decimal("3")).price) == (
        Decimal("2"), Decimal("100"))


def test_every_problem_with_the_new_values_is_reported_at_once(order_in):
    order = order_in(S.PARTIALLY_FILLED, order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("90"),
                     quantity=Decimal("10"))
    order.filled_quantity = Decimal("4")

    with pytest.raises(InvalidOrder) as raised:
        replace(order, quantity=Decimal("4"), price=Decimal("95"))

    assert [(v.field, v.reason) for v in raised.value.violations] == [("price", "NOT_ALLOWED"),
                                                                     ("quantity", "OUT_OF_RANGE")]


def test_a_replacement_that_changes_nothing_is_refused(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("2"), price=Decimal("100"))

    with pytest.raises(InvalidOrder) as raised:
        replace(order, quantity=Decimal("2"), price=Decimal("100"))

    assert [(v.field, v.reason) for v in raised.value.violations] == [("quantity", "NO_CHANGE")]


@pytest.mark.parametrize(("status", "reason"), [
    (S.APPROVED, "ORDER_NOT_WORKING"), (S.SUBMITTED, "ORDER_NOT_WORKING"), (S.PENDING_CANCEL, "ORDER_NOT_WORKING"),
    (S.FILLED, "ORDER_NOT_OPEN"), (S.CANCELLED, "ORDER_NOT_OPEN"),
])
def test_only_an_order_working_at_the_venue_can_be_replaced(order_in, status, reason):
    order = order_in(status)

    with pytest.raises(PreconditionFailed) as raised:
        replace(order, price=Decimal("1"))

    assert raised.value.reason == reason
    assert dict(raised.value.metadata) == {"order_id": order.order_id, "status": status.value}


# -- the book ----------------------------------------------------------------------------------------
LIMITS = RiskLimits(allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=None, max_quantity_per_order=None,
                    max_price=None, reference_prices={})


def book_with_working(order) -> Book:
    book = Book(LIMITS, clock=lambda: NOW)
    book.submitted(order.order_id, order.account, order.symbol, order.side, order.quantity - order.filled_quantity,
                   order.market_type)
    return book


def test_the_book_measures_a_replacement_without_the_order_it_replaces(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("3"))
    book = book_with_working(order)
    book.set_trading({symbol_scope(order.symbol): TradingState.REDUCING})
    other = order_in(S.PENDING, quantity=Decimal("1"))
    new = replace(order, quantity=Decimal("5"))

    as_new_order = book.context(other, StaticPrices({}), NOW)
    as_replacement = book.context(new, StaticPrices({}), NOW)

    assert (as_new_order.open_orders, as_new_order.working_same_side) == (1, Decimal("3"))
    assert (as_replacement.open_orders, as_replacement.working_same_side) == (0, Decimal("0"))


def test_the_replaced_orders_working_quantity_is_released_when_it_ends_not_before(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("3"))
    book = book_with_working(order)
    new = replace(order, quantity=Decimal("5"))
    new.order_time = NOW
    new.transition(S.APPROVED)
    book.record(new)
    account = book.accounts[order.account]

    assert account.working_quantity(order.symbol, Side.BUY, 0, order.market_type) == Decimal("8")  # both, until it ends
    book.ended(order.order_id, order.account)
    assert account.working_quantity(order.symbol, Side.BUY, 0, order.market_type) == Decimal("5")
    assert set(account.working) == {new.order_id}
