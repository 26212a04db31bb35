"""A replacement of a working order (ReplaceOrder's first step): the new order Risk decides.

Amending a working order is a cancel-replace (docs/replace.md): the replacement is an
order of its own (its own id, client order id, risk token and fills) that carries the
old order's fields but the new price and quantity, and names the order it replaces.
Quantities are totals, as a venue's own modify counts them: the client asks for the
order's new total quantity, what the old order filled counts towards it, and the
replacement works the rest (``quantity - filled``). Risk checks the replacement as any
order, without the order it replaces (which it supersedes, see :meth:`Book.context`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from services.domain import Order, OrderStatus
from services.domain.errors import InvalidOrder, PreconditionFailed

#: The statuses of an order working at a venue: the ones that can be replaced.
WORKING = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


def check_replaceable(order: Order) -> None:
    """Refuse an order that is not working at a venue.

    Raises
    ------
    PreconditionFailed
        ``ORDER_NOT_OPEN`` for a terminal order, ``ORDER_NOT_WORKING`` for one not yet
        acknowledged by the venue (APPROVED, SUBMITTED in doubt) or with a cancel or a
        replace under way.
    """
    metadata = {"order_id": order.order_id, "status": order.status.value}
    if order.status.is_terminal:
        raise PreconditionFailed(f"order {order.order_id} is {order.status.value}: nothing to replace",
                                 reason="ORDER_NOT_OPEN", metadata=metadata)
    if order.status not in WORKING:
        raise PreconditionFailed(
            f"order {order.order_id} is {order.status.value}: only an order working at the venue "
            "(ACCEPTED or PARTIALLY_FILLED) can be replaced", reason="ORDER_NOT_WORKING", metadata=metadata)


def replacement_order(replaced: Order, *, order_id: str, client_order_id: str, quantity: Decimal | None,
                      price: Decimal | None, now: dt.datetime) -> Order:
    """The PENDING replacement of ``replaced`` with the new total ``quantity`` and ``price``
    (None: unchanged).

    Raises
    ------
    PreconditionFailed
        ``replaced`` is not working (see :func:`check_replaceable`).
    InvalidOrder
        Every problem with the new values: a price on an order type without one, a total
        quantity not above what is filled, nothing changed.
    """
    check_replaceable(replaced)
    problems: list[InvalidOrder] = []
    if price is not None and not replaced.order_type.needs_price:
        problems.append(InvalidOrder("price", f"must be empty: a {replaced.order_type.value} order has no price",
                                     violation="NOT_ALLOWED"))
    total = replaced.quantity if quantity is None else quantity
    if replaced.quantity is None:
        if quantity is not None:
            problems.append(InvalidOrder("quantity", "must be empty: the venue decides this order's quantity "
                                                     "(close_position)", violation="NOT_ALLOWED"))
    elif total <= replaced.filled_quantity:
        problems.append(InvalidOrder(
            "quantity", f"the new total quantity {total} must exceed the {replaced.filled_quantity} already filled",
            violation="OUT_OF_RANGE"))
    new_price = replaced.price if price is None else price
    if not problems and total == replaced.quantity and new_price == replaced.price:
        problems.append(InvalidOrder("quantity", "the replacement changes neither the quantity nor the price",
                                     violation="NO_CHANGE"))
    if problems:
        raise InvalidOrder.of(problems)
    return dataclasses.replace(
        replaced,
        order_id=order_id,
        client_order_id=client_order_id,
        quantity=None if total is None else total - replaced.filled_quantity,
        price=new_price,
        status=OrderStatus.PENDING,
        previous_status=None,
        filled_quantity=Decimal(0),
        average_fill_price=None,
        remote_order_id=None,
        order_time=now,
        updated_time=now,
        reject_reasons=[],
        token_nonce=None,
        raw_venue_payload=None,
        version=0,
        last_sequence=0,
        last_event_hash=None,
        new_events=[],
        replaces_order_id=replaced.order_id,
        replaced_by_order_id=None,
    )


__all__ = ["WORKING", "check_replaceable", "replacement_order"]
