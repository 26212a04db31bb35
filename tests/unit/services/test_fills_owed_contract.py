"""What a client sees of the fills a closed order still owes: ``Order.venue_executed_quantity``
on the wire (set only while fills are owed), refused on a submission, shown by
``tessera order``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.cli import output
from services.common import convert
from services.domain import OrderStatus
from services.domain.errors import InvalidOrder


def test_an_order_owing_fills_carries_the_venues_executed_quantity_and_one_owing_nothing_leaves_it_empty(order_in):
    owing = order_in(OrderStatus.ACCEPTED)
    owing.close_at_venue(OrderStatus.CANCELLED, venue_executed=Decimal("0.5"))
    settled = order_in(OrderStatus.ACCEPTED)
    settled.close_at_venue(OrderStatus.CANCELLED, venue_executed=Decimal("0"))

    assert convert.order_to_proto(owing).venue_executed_quantity == "0.5"
    assert convert.order_to_proto(settled).venue_executed_quantity == ""


def test_a_submitted_order_naming_a_venue_executed_quantity_is_refused(order_in):
    message = convert.order_to_proto(order_in(OrderStatus.APPROVED))
    message.venue_executed_quantity = "0.5"

    with pytest.raises(InvalidOrder) as refused:
        convert.check_output_fields_as_approved(message)

    assert [(v.field, v.reason) for v in refused.value.violations] == [("venue_executed_quantity",
                                                                        "DIFFERS_FROM_APPROVED")]


def test_the_order_details_show_what_is_still_owed_only_when_something_is(order_in):
    owing = order_in(OrderStatus.ACCEPTED, quantity=Decimal("1"))
    owing.apply_fill(Decimal("0.2"), Decimal("50000"))
    owing.close_at_venue(OrderStatus.CANCELLED, venue_executed=Decimal("0.5"))

    shown = output.order_details(convert.order_to_proto(owing))
    settled = output.order_details(convert.order_to_proto(order_in(OrderStatus.FILLED)))

    assert "fills_owed:" in shown and "0.3 (the venue executed 0.5)" in shown
    assert "fills_owed" not in settled
