"""Order state machine, pure-Python twin of ``_fsm_c``; the rules live in ``core_ext.transitions``."""

from __future__ import annotations

from core_ext.errors import IllegalTransition
from core_ext.transitions import ROLLBACK_TARGETS, TERMINAL_STATUSES, TRANSITIONS

__all__ = ["can_transition", "is_terminal", "transition"]

_NO_ROLLBACK: frozenset[str] = frozenset()


def _is_status(value: object) -> bool:
    return isinstance(value, str) and value in TRANSITIONS


def transition(current: str, target: str, previous: str | None = None) -> str:
    """Return ``target`` if an order in ``current`` may move to it, else raise.

    Parameters
    ----------
    current, target : str
        Order statuses (``core_ext.transitions.ORDER_STATUSES``).
    previous : str, optional
        The status before ``current``. Only used to return from PENDING_CANCEL to
        the state before it when the venue refuses the cancel: that move is legal
        when ``target == previous`` and ``previous`` is in ``ROLLBACK_TARGETS``.

    Raises
    ------
    IllegalTransition
        The table does not allow the move, or a status is unknown.
    """
    if not _is_status(current):
        raise IllegalTransition(current, target, f"unknown order status {current!r}")
    if not _is_status(target):
        raise IllegalTransition(current, target, f"unknown order status {target!r}")
    if target in TRANSITIONS[current]:
        return target
    if _is_status(previous) and previous == target and target in ROLLBACK_TARGETS.get(current, _NO_ROLLBACK):
        return target
    raise IllegalTransition(current, target)


def can_transition(current: str, target: str, previous: str | None = None) -> bool:
    """Return whether :func:`transition` would succeed (never raises)."""
    try:
        transition(current, target, previous)
    except IllegalTransition:
        return False
    return True


def is_terminal(status: str) -> bool:
    """Return whether an order in ``status`` can never change again.

    Raises
    ------
    ValueError
        ``status`` is not a known order status.
    """
    if not _is_status(status):
        raise ValueError(f"unknown order status {status!r}")
    return status in TERMINAL_STATUSES
