"""Reliability: the store's invariants, order-event replay and the check against a venue.

- :func:`check_store` (``tessera verify-store``): hash chains, replay, submissions,
  fills, ledger, optionally nothing left in doubt; every violation, on any database.
- :func:`replay`: one order's events folded through the state machine.
- :func:`check_against_venue`: the store against the venue's own record of orders,
  trades and placement requests (the venue simulator's; the chaos test uses it).
"""

from .invariants import Report, Violation, check_store
from .replay import ReplayedOrder, ReplayError, replay
from .venue import VenueRecord, check_against_venue

__all__ = [
    "ReplayError",
    "ReplayedOrder",
    "Report",
    "VenueRecord",
    "Violation",
    "check_against_venue",
    "check_store",
    "replay",
]
