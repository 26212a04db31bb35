"""How an order-manager batch's status follows its orders.

``created``: no order yet. ``executing``: at least one order is not terminal.
``completed``: every order is terminal and every one FILLED. ``completed_with_errors``:
every order is terminal and at least one ended otherwise (rejected by risk, cancelled,
expired). ``execution_end`` is the time the last order became terminal.
"""

from __future__ import annotations

import datetime as dt
from typing import Mapping

from .enums import TERMINAL_STATUSES, OrderStatus

CREATED = "created"
EXECUTING = "executing"
COMPLETED = "completed"
COMPLETED_WITH_ERRORS = "completed_with_errors"


def batch_status(counts: Mapping[OrderStatus, int]) -> str:
    """The batch status for its orders' status counts."""
    total = sum(counts.values())
    if total == 0:
        return CREATED
    if any(n for status, n in counts.items() if status not in TERMINAL_STATUSES):
        return EXECUTING
    return COMPLETED if counts.get(OrderStatus.FILLED, 0) == total else COMPLETED_WITH_ERRORS


def execution_end(status: str, last_update: dt.datetime | None) -> dt.datetime | None:
    """When a finished batch finished; None while it runs."""
    return last_update if status in (COMPLETED, COMPLETED_WITH_ERRORS) else None
