"""Replaying an order's events: the state they lead to, or why they cannot be replayed.

The OMS is the single writer of order state and writes each status change together
with its event (one transaction, compare-and-set). So the events alone must give the
stored order: folding them through the state machine (:mod:`core_ext`, the same table
the services use) yields the status, the status before a pending cancel, the filled
quantity, the volume-weighted average price and the fills a closed order still owes. A difference means the order row or
its history was changed outside that path.

Two kinds of event are no transition: a note (a quarantine: the same status before and
after, the payload naming the quarantine scope), and a fill after close (the same
CANCELLED or EXPIRED status before and after, the fill as payload: see
:mod:`services.domain.order`), which adds its fill to an order that was sent to a venue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import core_ext
from services.domain.order import CLOSED_FILLABLE, is_fill_after_close

#: An event that records something without a transition (the reconciler's quarantine
#: note): from and to status are equal and its payload names the quarantine scope.
NOTE_PAYLOAD_KEY = "quarantine_scope"
#: What a close (CANCELLED, EXPIRED) whose venue answer said more was executed than the
#: order had filled records in its payload: the fills still owed (see Order.close_at_venue).
CLOSE_PAYLOAD_KEY = "venue_executed_quantity"
CLOSED_FILLABLE_NAMES = frozenset(status.value for status in CLOSED_FILLABLE)


class ReplayError(ValueError):
    """The events cannot be replayed; ``kind`` says why, the message where."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass
class ReplayedOrder:
    status: str | None = None
    previous_status: str | None = None
    filled_quantity: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)  # sum of quantity x price over the fills
    last_sequence: int = 0
    submissions: int = 0
    fills: list[tuple[str, Decimal, Decimal]] = dataclasses.field(default_factory=list)  # trade id, qty, price
    token_nonces: list[str] = dataclasses.field(default_factory=list)
    #: What the venue said it executed in its answer to the close (the close event's
    #: ``venue_executed_quantity``), when that was more than the order had filled.
    venue_executed: Decimal | None = None

    @property
    def average_fill_price(self) -> Decimal | None:
        return self.notional / self.filled_quantity if self.filled_quantity else None

    @property
    def venue_executed_quantity(self) -> Decimal | None:
        """The order's ``venue_executed_quantity``: the venue's executed quantity while the
        fills fall short of it (fills owed), None otherwise."""
        owed = self.venue_executed is not None and self.venue_executed > self.filled_quantity
        return self.venue_executed if owed else None


def _name(value: Any) -> str | None:
    return None if value is None else getattr(value, "value", value)


def _decimal(payload: Mapping[str, Any], key: str, sequence: int, what: str = "fill") -> Decimal:
    kind = f"BAD_{what.upper()}_EVENT"
    try:
        value = Decimal(str(payload[key]))
    except (KeyError, InvalidOperation, TypeError):
        raise ReplayError(kind, f"event {sequence}: {what} without a decimal {key!r}") from None
    if not value.is_finite() or value <= 0:
        raise ReplayError(kind, f"event {sequence}: {what} {key} {value} is not positive")
    return value


def replay(events: Iterable[Mapping[str, Any]]) -> ReplayedOrder:
    """Fold one order's events (mappings with the event columns, in sequence order).

    Raises
    ------
    ReplayError
        ``FIRST_EVENT`` (the history does not start with the order entering PENDING),
        ``BROKEN_HISTORY`` (an event's from-status is not the status before it),
        ``ILLEGAL_TRANSITION``, ``BAD_FILL_EVENT``, ``BAD_CLOSE_EVENT`` (a close's
        ``venue_executed_quantity`` not a positive decimal) or ``FILL_NEVER_SUBMITTED`` (a fill
        after close on an order that never reached SUBMITTED).
    """
    state = ReplayedOrder()
    for event in events:
        sequence = int(event["sequence"])
        source, target = _name(event["from_status"]), _name(event["to_status"])
        payload = event.get("payload") or {}
        if state.status is None:
            if source is not None or target != "PENDING":
                raise ReplayError("FIRST_EVENT", f"event {sequence}: an order's first event enters PENDING from nothing, "
                                                 f"not {source} -> {target}")
            state.status, state.last_sequence = target, sequence
            continue
        if source != state.status:
            raise ReplayError("BROKEN_HISTORY", f"event {sequence} starts from {source}, the order was {state.status}")
        if source == target and NOTE_PAYLOAD_KEY in payload and not core_ext.can_transition(source, target):
            state.last_sequence = sequence  # a note, not a transition
            continue
        if is_fill_after_close(source, target, payload):
            if not state.submissions:
                raise ReplayError("FILL_NEVER_SUBMITTED", f"event {sequence}: a fill after close on an order that "
                                                          "was never sent to a venue")
            _add_fill(state, payload, sequence)
            state.last_sequence = sequence  # the order stays closed
            continue
        previous = state.previous_status if source == "PENDING_CANCEL" else None
        if not core_ext.can_transition(source, target, previous):
            raise ReplayError("ILLEGAL_TRANSITION", f"event {sequence}: {source} -> {target} is not a legal transition")
        if target == "PENDING_CANCEL":
            state.previous_status = source
        elif source == "PENDING_CANCEL":
            state.previous_status = None
        if target == "SUBMITTED" and source == "APPROVED":
            state.submissions += 1
            nonce = payload.get("token_nonce")
            if isinstance(nonce, str) and nonce:
                state.token_nonces.append(nonce)
        if "trade_id" in payload and target in ("PARTIALLY_FILLED", "FILLED"):
            _add_fill(state, payload, sequence)
        if CLOSE_PAYLOAD_KEY in payload and target in CLOSED_FILLABLE_NAMES:
            state.venue_executed = _decimal(payload, CLOSE_PAYLOAD_KEY, sequence, "close")
        state.status, state.last_sequence = target, sequence
    return state


def _add_fill(state: ReplayedOrder, payload: Mapping[str, Any], sequence: int) -> None:
    quantity, price = _decimal(payload, "quantity", sequence), _decimal(payload, "price", sequence)
    state.filled_quantity += quantity
    state.notional += quantity * price
    state.fills.append((str(payload["trade_id"]), quantity, price))
