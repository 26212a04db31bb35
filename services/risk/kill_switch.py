"""The daily loss limit trips the kill switch.

When an order is rejected with DAILY_LOSS_LIMIT while the global trading state is
ACTIVE, Risk sets it to HALTED, as operator ``risk``, in the same transaction that
stores the rejection, so the audit trail shows who halted trading and why. Only an
operator sets it back (REDUCING to unwind, or ACTIVE); the daily reset clears the loss,
not the kill switch.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.domain import Order, TradingState
from services.store import UnitOfWork

from .violations import Violation

OPERATOR = "risk"
DAILY_LOSS_CODE = "DAILY_LOSS_LIMIT"


def trip_on_daily_loss(uow: UnitOfWork, order: Order, violations: Sequence[Violation]) -> bool:
    """Set HALTED when ``violations`` include the daily loss limit and global trading is ACTIVE.

    Returns True when it tripped the switch.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The trading state could not be written (the whole decision rolls back).
    """
    breach = next((v for v in violations if v.code == DAILY_LOSS_CODE), None)
    # The global state decides, not the symbol's (a quarantined symbol does not stop
    # the switch; an operator's REDUCING or HALTED means it has been acted on already).
    if breach is None or uow.trading_state.get().state is not TradingState.ACTIVE:
        return False
    uow.trading_state.set(
        TradingState.HALTED,
        operator=OPERATOR,
        reason=f"{DAILY_LOSS_CODE}: account {order.account}: {breach.message}"[:500],
    )
    return True
