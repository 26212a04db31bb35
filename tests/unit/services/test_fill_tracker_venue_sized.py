"""The fill tracker on orders whose quantity the venue decides (close_position,
quote_order_qty): never an overfill, FILLED on the venue's word."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from services.domain import MarketType, OrderStatus, OrderType, Side
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_to_order

AT = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def report(order, status: OrderStatus, trade_id: str | None = None, quantity: str = "0") -> ExecutionReport:
    fill = None if trade_id is None else Fill(trade_id, Decimal(quantity), Decimal("100"), Decimal(0), "USDT", None)
    return ExecutionReport(order.order_id, order.client_order_id, order.venue, order.account, order.symbol,
                           order.side, status, AT, fill=fill)


def quoted(order_in):
    return order_in(OrderStatus.SUBMITTED, market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None,
                    leverage=None, quantity=None, quote_order_qty=Decimal("250"))


def test_the_fills_of_a_quote_amount_order_never_overfill_and_the_venues_filled_ends_it(order_in):
    order = quoted(order_in)

    first = apply_to_order(order, report(order, OrderStatus.PARTIALLY_FILLED, "t1", "1"))
    second = apply_to_order(order, report(order, OrderStatus.FILLED, "t2", "1.5"))

    assert first.anomaly is None and second.anomaly is None
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, Decimal("2.5"))


def test_a_filled_status_after_the_last_fill_ends_an_order_without_a_quantity(order_in):
    order = order_in(OrderStatus.ACCEPTED, order_type=OrderType.TAKE_PROFIT_MARKET, side=Side.SELL, price=None,
                     stop_price=Decimal("110"), quantity=None, close_position=True)
    apply_to_order(order, report(order, OrderStatus.PARTIALLY_FILLED, "t1", "2"))
    assert order.status is OrderStatus.PARTIALLY_FILLED

    applied = apply_to_order(order, report(order, OrderStatus.FILLED))

    assert applied.changed and order.status is OrderStatus.FILLED


def test_a_filled_status_without_a_fill_does_not_end_an_order_that_has_a_quantity(order_in):
    order = order_in(OrderStatus.PARTIALLY_FILLED)

    assert not apply_to_order(order, report(order, OrderStatus.FILLED)).changed
    assert order.status is OrderStatus.PARTIALLY_FILLED
