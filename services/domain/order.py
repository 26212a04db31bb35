"""The order aggregate: its fields, its status transitions and its fills.

The order knows nothing of gRPC or SQLAlchemy. Every status change goes through
:meth:`Order.transition`, which asks the state machine of :mod:`core_ext` (one table,
compiled or pure Python) and appends an :class:`OrderEvent` only after the transition
succeeded; the repository writes the events in the same transaction as the status.

One event records a fill without a status change: a fill the venue reports for an order
already CANCELLED or EXPIRED (:meth:`Order.apply_fill_after_close`). The venue filled
part of the order before the cancel (or expiry) took effect there, and its report of
the fill reached Tessera after the close (a cancel's answer can overtake a stream's
fill). The order stays closed, with the fill added: its event goes from the closed
status to the same one, reason :data:`FILL_AFTER_CLOSE_REASON`, the fill as payload
(:func:`is_fill_after_close` tells such an event apart).

A close whose venue answer says more was executed than the order has filled leaves the
order owing fills: :attr:`Order.venue_executed_quantity` holds the venue's executed
quantity until the fills after close make it up (:meth:`Order.close_at_venue`); the
OMS's reconciler asks the venue for the fills of such orders.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
import time
from decimal import Decimal
from typing import Any

import core_ext

from .enums import MarketType, OrderStatus, OrderType, Side, TimeInForce, WorkingType
from .errors import OverfillError


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


_random = bytearray()
_random_lock = threading.Lock()
os.register_at_fork(after_in_child=_random.clear)  # a forked child never reuses the parent's bytes


def random_bytes(count: int) -> bytearray:
    """``count`` bytes of the OS's CSPRNG, read 4 KiB at a time rather than a system
    call per id (which also hands the GIL to another thread for each)."""
    with _random_lock:
        if len(_random) < count:
            _random.extend(os.urandom(max(4096, count)))
        raw = _random[-count:]
        del _random[-count:]
    return raw


def new_id() -> str:
    """A time-ordered (version 7, RFC 9562) UUID as text, without the ``uuid.UUID`` object:
    the Unix time in milliseconds in its first 48 bits, then 74 random bits.

    The ids of orders made one after the other sort one after the other, so the store's
    keys on them (the order's primary key, its events' (order id, sequence), its trades'
    order id; a client order id Risk makes from one) grow at their right edge: a commit
    of a group of orders dirties one leaf page per index instead of one per order, and
    the pages a writer touches stay the recent ones however large the tables grow (a
    random id lands each order on a random page). Within one millisecond the order is
    random, which is all the locality needs.
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big")) + random_bytes(10)
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclasses.dataclass
class OrderEvent:
    """One status transition of one order; ``sequence`` is per order, from 1. Some go
    from a status to the same one without a transition: a note (a quarantine), a fill
    after close (:func:`is_fill_after_close`)."""

    order_id: str
    sequence: int
    event_time: dt.datetime
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str = ""
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The venue payload that made this change, as its exact JSON text (not hashed: the
    #: chain covers the fields above).
    raw_venue_json: str | None = None


#: The reason of Risk's PENDING -> APPROVED event.
APPROVAL_REASON = "risk: approved"
#: The reason of the event of a fill recorded on a closed order (see the module docstring).
FILL_AFTER_CLOSE_REASON = "fill after close"
#: The closed statuses a late fill is still recorded on: the venue ended the order
#: (a cancel, an expiry) and may have filled part of it first. Not REJECTED (the venue
#: never worked the order) nor FILLED (a fill more would overfill it).
CLOSED_FILLABLE = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED})
_CLOSED_FILLABLE_NAMES = frozenset(status.value for status in CLOSED_FILLABLE)
#: What the order metrics count a fill after close as (it enters no status).
FILL_AFTER_CLOSE = "FILL_AFTER_CLOSE"


def is_fill_after_close(from_status: Any, to_status: Any, payload: Any) -> bool:
    """Whether an event (its statuses as :class:`OrderStatus` or their names, its payload)
    records a fill on a closed order rather than a transition: the same closed status
    before and after, and a venue trade in the payload."""
    status = getattr(to_status, "value", to_status)
    return (status in _CLOSED_FILLABLE_NAMES and getattr(from_status, "value", from_status) == status
            and "trade_id" in (payload or {}))


def event_label(from_status: Any, to_status: Any, payload: Any) -> str:
    """What the order metrics count an event as: the status it entered, or
    :data:`FILL_AFTER_CLOSE` for a fill recorded on a closed order."""
    if is_fill_after_close(from_status, to_status, payload):
        return FILL_AFTER_CLOSE
    return str(getattr(to_status, "value", to_status))


@dataclasses.dataclass
class Order:
    """An order from risk approval to its terminal state."""

    order_id: str
    client_order_id: str
    account: str
    venue: str
    market_type: MarketType
    symbol: str
    side: Side
    order_type: OrderType
    #: The base quantity; None for an order whose quantity the venue decides
    #: (``close_position``: the position when it triggers; ``quote_order_qty``: what the
    #: quote amount buys).
    quantity: Decimal | None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    post_only: bool = False
    leverage: Decimal | None = None
    #: Close the whole position when triggered (futures STOP_MARKET / TAKE_PROFIT_MARKET).
    close_position: bool = False
    #: The price that triggers a futures conditional order; None: the venue's default.
    working_type: WorkingType | None = None
    price_protect: bool = False
    #: TRAILING_STOP_MARKET: where the trail starts (None: at once) and the callback in percent.
    activation_price: Decimal | None = None
    callback_rate: Decimal | None = None
    #: A spot MARKET BUY's amount of quote asset to spend (then ``quantity`` is None).
    quote_order_qty: Decimal | None = None
    order_manager_id: str | None = None
    expire_time: dt.datetime | None = None
    status: OrderStatus = OrderStatus.PENDING
    previous_status: OrderStatus | None = None
    filled_quantity: Decimal = Decimal(0)
    average_fill_price: Decimal | None = None
    remote_order_id: str | None = None
    order_time: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated_time: dt.datetime = dataclasses.field(default_factory=utcnow)
    reject_reasons: list[str] = dataclasses.field(default_factory=list)
    token_nonce: str | None = None
    raw_venue_payload: dict[str, Any] | None = None
    #: The venue's latest word on the order: the exact JSON text of what last changed it.
    raw_venue_json: str | None = None
    version: int = 0
    last_sequence: int = 0
    # The hash of the newest stored event (the store's tamper-evident chain of events).
    last_event_hash: str | None = None
    # A replacement (ReplaceOrder) names the working order it replaces, set by Risk when it
    # approves the replacement; the replaced order names its replacement once the OMS
    # starts the replace (see services.oms.replace).
    replaces_order_id: str | None = None
    replaced_by_order_id: str | None = None
    # The fills a closed order still owes: the venue's cumulative executed quantity in its
    # answer to the close (CANCELLED, EXPIRED) when it exceeded the filled quantity; None
    # again once the fills after close make it up (see close_at_venue, fills_owed).
    venue_executed_quantity: Decimal | None = None
    # Events produced since the order was loaded; the repository persists and clears them.
    new_events: list[OrderEvent] = dataclasses.field(default_factory=list, repr=False)

    # -- the risk token binding -------------------------------------------------------
    def token_fields(self) -> dict[str, Any]:
        """The economic fields the risk token signs (see ``docs/token.md``)."""
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "account": self.account,
            "venue": self.venue,
            "market_type": self.market_type.value,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "quantity": self.quantity,
            "price": self.price,
            "stop_price": self.stop_price,
            "time_in_force": self.time_in_force.value,
            "reduce_only": self.reduce_only,
            "post_only": self.post_only,
            "leverage": self.leverage,
            "close_position": self.close_position,
            "working_type": "" if self.working_type is None else self.working_type.value,
            "price_protect": self.price_protect,
            "activation_price": self.activation_price,
            "callback_rate": self.callback_rate,
            "quote_order_qty": self.quote_order_qty,
        }

    def token_body(self) -> bytes:
        return core_ext.canonical_order_body(self.token_fields())

    def same_economics(self, other: "Order") -> bool:
        """True when both orders would sign the same risk token body."""
        return self.token_body() == other.token_body()

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def remaining_quantity(self) -> Decimal | None:
        """What is left to fill; None when the venue decides the quantity."""
        return None if self.quantity is None else self.quantity - self.filled_quantity

    def quantity_at(self, held: Decimal, price: Decimal | None = None) -> Decimal | None:
        """The base quantity the order would trade now: its own; a close-position order's,
        the whole position ``held`` when the order's side is against it (else nothing: 0);
        a quote-amount order's, its amount at ``price`` (None without a price)."""
        if self.quantity is not None:
            return self.quantity
        if self.close_position:
            against = held != 0 and (held > 0) != (self.side is Side.BUY)
            return abs(held) if against else Decimal(0)
        if self.quote_order_qty is not None and price:
            return self.quote_order_qty / price
        return None

    @property
    def fills_owed(self) -> Decimal:
        """The quantity the venue executed and the order has not recorded yet (0: none
        owed): the fills of a close's answer still on their way."""
        if self.venue_executed_quantity is None:
            return Decimal(0)
        return max(Decimal(0), self.venue_executed_quantity - self.filled_quantity)

    @property
    def notional(self) -> Decimal | None:
        if self.quote_order_qty is not None:
            return self.quote_order_qty
        reference = self.price if self.price is not None else self.stop_price
        if reference is None:
            reference = self.activation_price
        return None if reference is None or self.quantity is None else self.quantity * reference

    def transition(
        self,
        target: OrderStatus,
        *,
        reason: str = "",
        at: dt.datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> OrderEvent:
        """Move to ``target`` or raise :class:`core_ext.IllegalTransition`.

        Leaving PENDING_CANCEL for the state before it (the venue refused the cancel)
        is legal only back to that exact state.
        """
        previous = self.previous_status if self.status is OrderStatus.PENDING_CANCEL else None
        core_ext.transition(self.status.value, target.value, previous.value if previous else None)
        at = at or utcnow()
        event = OrderEvent(
            order_id=self.order_id,
            sequence=self.last_sequence + 1,
            event_time=at,
            from_status=self.status,
            to_status=target,
            reason=reason,
            payload=payload or {},
        )
        if target is OrderStatus.PENDING_CANCEL:
            self.previous_status = self.status
        elif self.status is OrderStatus.PENDING_CANCEL:
            self.previous_status = None
        self.status = target
        self.updated_time = at
        self.last_sequence = event.sequence
        self.new_events.append(event)
        return event

    def close_at_venue(
        self,
        target: OrderStatus,
        *,
        reason: str = "",
        at: dt.datetime | None = None,
        venue_executed: Decimal | None = None,
    ) -> OrderEvent:
        """Move to CANCELLED or EXPIRED on the venue's word, which says it executed
        ``venue_executed`` of the order in all (None: it did not say). When that is more
        than the order has filled, the rest is owed: the event's payload records it
        (``venue_executed_quantity``), and so does :attr:`venue_executed_quantity` until the
        fills after close make it up.

        Raises
        ------
        core_ext.IllegalTransition
            As :meth:`transition`; nothing is changed.
        """
        if target not in CLOSED_FILLABLE:
            raise core_ext.IllegalTransition(self.status.value, target.value, "a venue's close is CANCELLED or EXPIRED")
        owed = venue_executed is not None and venue_executed > self.filled_quantity
        payload = {"venue_executed_quantity": str(venue_executed)} if owed else None
        event = self.transition(target, reason=reason, at=at, payload=payload)
        if owed:
            self.venue_executed_quantity = venue_executed
        return event

    def record_approval(self, at: dt.datetime) -> OrderEvent:
        """Risk's approval: the order's first two events, created (PENDING) then APPROVED,
        both at ``at``. They depend on the order's id and ``at`` alone, so the OMS's claim
        can recompute them (and the chain head Risk stored) from the signed request."""
        self.record_creation(at)
        return self.transition(OrderStatus.APPROVED, reason=APPROVAL_REASON, at=at)

    def record_creation(self, at: dt.datetime | None = None) -> OrderEvent:
        """The first event of every order: it enters PENDING."""
        at = at or self.order_time
        event = OrderEvent(self.order_id, 1, at, None, OrderStatus.PENDING, "created")
        self.last_sequence = 1
        self.new_events.append(event)
        return event

    def apply_fill(
        self,
        quantity: Decimal,
        price: Decimal,
        *,
        at: dt.datetime | None = None,
        payload: dict[str, Any] | None = None,
        complete: bool = False,
    ) -> OrderEvent:
        """Accumulate a fill (VWAP) and move to PARTIALLY_FILLED or FILLED.

        An order with a quantity is FILLED when its fills reach it; one whose quantity
        the venue decides (``quantity`` None) when the venue says so (``complete``: its
        report of this fill says FILLED).

        Raises
        ------
        OverfillError
            The fill would take the filled quantity past the order quantity; nothing
            is changed.
        core_ext.IllegalTransition
            The order cannot take fills in its current status (for a closed one, see
            :meth:`apply_fill_after_close`).
        """
        new_filled = self._checked_fill(quantity, price)
        done = complete if self.quantity is None else new_filled == self.quantity
        target = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        event = self.transition(target, reason="fill", at=at, payload=payload)
        self._add_fill(quantity, price, new_filled)
        return event

    def apply_fill_after_close(
        self,
        quantity: Decimal,
        price: Decimal,
        *,
        at: dt.datetime | None = None,
        payload: dict[str, Any] | None = None,
    ) -> OrderEvent:
        """Record a fill the venue made before the order closed (CANCELLED or EXPIRED)
        and reported after: the filled quantity and VWAP grow, the status stays, and the
        event goes from the status to itself (reason :data:`FILL_AFTER_CLOSE_REASON`).
        Only for an order that reached the venue: the caller knows that, the order does not.

        Raises
        ------
        OverfillError
            As :meth:`apply_fill`; nothing is changed.
        core_ext.IllegalTransition
            The order is not CANCELLED or EXPIRED; nothing is changed.
        """
        if self.status not in CLOSED_FILLABLE:
            raise core_ext.IllegalTransition(self.status.value, self.status.value,
                                             "a fill after close is recorded on a CANCELLED or EXPIRED order only")
        new_filled = self._checked_fill(quantity, price)
        at = at or utcnow()
        event = OrderEvent(self.order_id, self.last_sequence + 1, at, self.status, self.status,
                           FILL_AFTER_CLOSE_REASON, payload or {})
        self.updated_time = at
        self.last_sequence = event.sequence
        self.new_events.append(event)
        self._add_fill(quantity, price, new_filled)
        if self.venue_executed_quantity is not None and self.filled_quantity >= self.venue_executed_quantity:
            self.venue_executed_quantity = None  # every fill the close's answer announced is in
        return event

    def _checked_fill(self, quantity: Decimal, price: Decimal) -> Decimal:
        """The filled quantity after a fill of ``quantity`` at ``price``, or OverfillError."""
        if quantity <= 0 or price <= 0:
            raise OverfillError(f"fill quantity and price must be positive, got {quantity} @ {price}",
                                metadata={"order_id": self.order_id})
        new_filled = self.filled_quantity + quantity
        if self.quantity is not None and new_filled > self.quantity:  # None: the venue decides it
            raise OverfillError(
                f"fill of {quantity} would overfill order {self.order_id}: "
                f"filled {self.filled_quantity} of {self.quantity}", metadata={"order_id": self.order_id}
            )
        return new_filled

    def _add_fill(self, quantity: Decimal, price: Decimal, new_filled: Decimal) -> None:
        previous_value = (self.average_fill_price or Decimal(0)) * self.filled_quantity
        self.average_fill_price = (previous_value + quantity * price) / new_filled
        self.filled_quantity = new_filled
