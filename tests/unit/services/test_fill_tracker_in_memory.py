"""The fill tracker in memory (:func:`services.oms.fill_tracker.apply_to_order`): a fill the
venue reports for an order it already closed is recorded on the order, which stays closed;
a fill for an order that never worked at the venue, or that would overfill, is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.domain import LiquiditySide, OrderStatus
from services.domain.execution import Fill
from services.exchange.venue import OrderRef, make_report
from services.oms.fill_tracker import apply_to_order

S = OrderStatus


def fill(trade_id: str, quantity: str, price: str = "100") -> Fill:
    return Fill(trade_id, Decimal(quantity), Decimal(price), Decimal("0.01"), "USDT", LiquiditySide.MAKER)


def closed(order_in, status, filled="0.4"):
    """An order of 1 that filled ``filled`` at 100, then closed (``status``)."""
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity, order.average_fill_price = Decimal(filled), Decimal("100")
    order.transition(status, reason="venue: cancelled")
    order.new_events.clear()
    return order


@pytest.mark.parametrize("status", [S.CANCELLED, S.EXPIRED])
def test_a_fill_for_a_closed_order_that_reached_the_venue_is_recorded_and_the_order_stays_closed(order_in, status):
    order = closed(order_in, status)
    report = make_report(OrderRef.of(order), S.PARTIALLY_FILLED, fill=fill("t-late", "0.2", "103"),
                         cumulative=Decimal("0.6"))

    applied = apply_to_order(order, report, frozenset({"t-early"}), lambda: True)

    assert applied.anomaly is None and applied.changed
    assert (applied.trade.trade_id, applied.trade.quantity, applied.trade.price) == ("t-late", Decimal("0.2"),
                                                                                  Decimal("103"))
    assert (order.status, order.filled_quantity, order.average_fill_price) == (status, Decimal("0.6"), Decimal("101"))
    (event,) = order.new_events
    assert (event.from_status, event.to_status, event.reason) == (status, status, "fill after close")
    assert event.payload == {"trade_id": "t-late", "quantity": "0.2", "price": "103", "commission": "0.01",
                             "commission_asset": "USDT"}


def test_a_fill_for_a_closed_order_already_recorded_changes_nothing(order_in):
    order = closed(order_in, S.CANCELLED)

    applied = apply_to_order(order, make_report(OrderRef.of(order), S.PARTIALLY_FILLED, fill=fill("t-late", "0.2")),
                             frozenset({"t-late"}), lambda: True)

    assert (applied.changed, applied.trade, applied.anomaly, order.new_events) == (False, None, None, [])
    assert order.filled_quantity == Decimal("0.4")


def test_a_fill_for_a_closed_order_that_never_reached_the_venue_is_an_anomaly(order_in):
    order = order_in(S.APPROVED)
    order.transition(S.CANCELLED, reason="cancel requested before submission")
    order.new_events.clear()
    asked = []

    applied = apply_to_order(order, make_report(OrderRef.of(order), S.FILLED, fill=fill("t-1", "0.1")),
                             reached_venue=lambda: asked.append(True) or False)

    assert asked == [True]
    assert applied.trade is None and applied.anomaly[0] == "FILL_ON_CLOSED_ORDER"
    assert (order.status, order.filled_quantity, order.new_events) == (S.CANCELLED, Decimal(0), [])


def test_a_fill_for_a_rejected_order_is_an_anomaly_without_asking_whether_it_was_sent(order_in):
    order = order_in(S.SUBMITTED)
    order.transition(S.REJECTED, reason="exchange: MARGIN_INSUFFICIENT")
    order.new_events.clear()

    applied = apply_to_order(order, make_report(OrderRef.of(order), S.FILLED, fill=fill("t-1", "0.1")),
                             reached_venue=lambda: pytest.fail("not asked for a REJECTED order"))

    assert applied.trade is None and applied.anomaly[0] == "FILL_ON_CLOSED_ORDER"
    assert (order.status, order.filled_quantity, order.new_events) == (S.REJECTED, Decimal(0), [])


def test_a_fill_after_close_that_would_overfill_is_an_overfill(order_in):
    order = closed(order_in, S.CANCELLED, filled="0.9")

    applied = apply_to_order(order, make_report(OrderRef.of(order), S.FILLED, fill=fill("t-2", "0.2")),
                             reached_venue=lambda: True)

    assert applied.trade is None and applied.anomaly[0] == "OVERFILL"
    assert (order.status, order.filled_quantity, order.new_events) == (S.CANCELLED, Decimal("0.9"), [])


@pytest.mark.parametrize("status", [S.CANCELLED, S.EXPIRED])
def test_a_close_the_venue_reports_with_more_executed_than_filled_says_so_on_its_event(order_in, status):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity = Decimal("0.4")
    order.new_events.clear()

    apply_to_order(order, make_report(OrderRef.of(order), status, cumulative=Decimal("0.6"), reason="cancelled"))

    (event,) = order.new_events
    assert (event.to_status, event.payload) == (status, {"venue_executed_quantity": "0.6"})
    assert order.filled_quantity == Decimal("0.4")  # the missing fill is recorded when it arrives
    assert (order.venue_executed_quantity, order.fills_owed) == (Decimal("0.6"), Decimal("0.2"))  # owed till then


@pytest.mark.parametrize("cumulative", [None, "0.4"])
def test_a_close_with_every_fill_recorded_adds_nothing_to_its_event(order_in, cumulative):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity = Decimal("0.4")
    order.new_events.clear()

    apply_to_order(order, make_report(OrderRef.of(order), S.CANCELLED,
                                      cumulative=None if cumulative is None else Decimal(cumulative)))

    (event,) = order.new_events
    assert (event.to_status, event.payload) == (S.CANCELLED, {})
    assert order.venue_executed_quantity is None


def test_a_rejection_by_the_venue_names_its_reason_on_the_order(order_in):
    """The order a client reads back says why the venue refused it, as an order the
    Exchange refused outright does (``reject_reasons``), not only its event."""
    order = order_in(S.SUBMITTED, quantity=Decimal("1"))
    order.new_events.clear()

    applied = apply_to_order(order, make_report(OrderRef.of(order), S.REJECTED, reason="POST_ONLY_WOULD_TAKE"))

    assert applied.changed and order.status is S.REJECTED
    assert order.reject_reasons == ["POST_ONLY_WOULD_TAKE"]
    (event,) = order.new_events
    assert event.reason == "POST_ONLY_WOULD_TAKE"
