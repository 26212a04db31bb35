"""The one table of legal order-status transitions (design §4).

Pure data. Both state-machine implementations (``_fsm_py`` and the compiled
``_fsm_c``) read this module and nothing else decides what is legal, so the
two can never disagree about the lifecycle of an order.
"""

from __future__ import annotations

#: Every order status, in a fixed order (the compiled core numbers them by
#: their position here; keep the order stable, append new statuses at the end).
ORDER_STATUSES: tuple[str, ...] = (
    "PENDING",
    "APPROVED",
    "REJECTED",
    "SUBMITTED",
    "ACCEPTED",
    "PARTIALLY_FILLED",
    "FILLED",
    "PENDING_CANCEL",
    "CANCELLED",
    "EXPIRED",
)

#: Statuses an order never leaves.
TERMINAL_STATUSES: frozenset[str] = frozenset({"REJECTED", "FILLED", "CANCELLED", "EXPIRED"})

#: ``current -> statuses it may move to``. Terminal statuses map to the empty set.
TRANSITIONS: dict[str, frozenset[str]] = {
    # Risk decides: approve (and sign a token) or reject with reason codes.
    "PENDING": frozenset({"APPROVED", "REJECTED"}),
    # An approved order that is never submitted is cancelled by its owner or
    # expires with its token; it never reaches a venue unsigned.
    "APPROVED": frozenset({"SUBMITTED", "CANCELLED", "EXPIRED"}),
    # SUBMITTED without a venue answer is the "in doubt" state: it is resolved by
    # asking the venue by client order id. Venues may skip the ACCEPTED ack and
    # report a fill, a cancel (e.g. IOC/FOK not filled) or a reject directly.
    "SUBMITTED": frozenset(
        {
            "ACCEPTED",
            "PARTIALLY_FILLED",
            "FILLED",
            "PENDING_CANCEL",
            "CANCELLED",
            "REJECTED",  # the venue refuses the order after we sent it
            "EXPIRED",
        }
    ),
    "ACCEPTED": frozenset({"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELLED", "EXPIRED"}),
    # Self-loop: every further partial fill is a transition of its own (one event each).
    "PARTIALLY_FILLED": frozenset(
        {"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELLED", "EXPIRED"}
    ),
    # Fill after cancel request: a real-world possibility, the fill can cross the
    # cancel on the wire. Returning to the state before PENDING_CANCEL (the venue
    # refused the cancel) is not in this table: see ROLLBACK_TARGETS.
    "PENDING_CANCEL": frozenset({"CANCELLED", "PARTIALLY_FILLED", "FILLED"}),
    "REJECTED": frozenset(),
    "FILLED": frozenset(),
    "CANCELLED": frozenset(),
    "EXPIRED": frozenset(),
}

#: ``current -> statuses it may return to``, only when the caller states that the
#: order was in that status just before ``current`` (``previous`` argument of
#: ``transition``). Used when the venue refuses a cancel request.
ROLLBACK_TARGETS: dict[str, frozenset[str]] = {
    "PENDING_CANCEL": frozenset({"SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED"}),
}

assert set(TRANSITIONS) == set(ORDER_STATUSES)
assert TERMINAL_STATUSES == {s for s, targets in TRANSITIONS.items() if not targets}
