"""What pre-trade risk reads about an account's orders: recent and working ones.

Counted in the database, so every Risk replica sees the same numbers. A validation
first takes the account's lock (:meth:`AccountActivityRepository.lock_account`), so
two replicas deciding orders of one account at once decide one after the other: the
order-rate throttle and the open-order limit cannot be overrun by a race.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Context, Decimal, localcontext
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from services.domain import OPEN_STATUSES, OrderStatus, Side

from .models import orders_table as orders_t

_OPEN = sorted(status.value for status in OPEN_STATUSES)
#: First key of the two-key PostgreSQL advisory locks taken per account ("risk").
ACCOUNT_LOCK_NAMESPACE = 0x7269736B


def account_lock_key(account: str) -> int:
    """A stable signed 32-bit key for the account (collisions only serialise more)."""
    return int.from_bytes(hashlib.sha256(account.encode()).digest()[:4], "big", signed=True)


class AccountActivityRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_account(self, account: str) -> None:
        """Hold the account's lock until the transaction ends.

        PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, a
        writing unit of work holds the database's write lock from its first statement.
        """
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
                {"namespace": ACCOUNT_LOCK_NAMESPACE, "key": account_lock_key(account)},
            )

    def orders_since(self, account: str, since: dt.datetime) -> int:
        """How many orders the account sent (whatever became of them) at or after ``since``."""
        statement = (
            select(func.count())
            .select_from(orders_t)
            .where(orders_t.c.account == account, orders_t.c.order_time >= since)
        )
        return int(self.session.execute(statement).scalar_one())

    def _working(self, account: str, approved_since: dt.datetime) -> Any:
        """Orders of the account that may still trade: open at a venue (SUBMITTED,
        ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL), or APPROVED at or after
        ``approved_since`` (older approvals hold expired tokens and can never be sent)."""
        return and_(
            orders_t.c.account == account,
            or_(
                orders_t.c.status.in_(_OPEN),
                and_(orders_t.c.status == OrderStatus.APPROVED.value, orders_t.c.updated_time >= approved_since),
            ),
        )

    def count_working(self, account: str, approved_since: dt.datetime) -> int:
        """How many of the account's orders may still trade (see :meth:`_working`)."""
        statement = select(func.count()).select_from(orders_t).where(self._working(account, approved_since))
        return int(self.session.execute(statement).scalar_one())

    def working_quantity(self, account: str, symbol: str, side: Side, approved_since: dt.datetime) -> Decimal:
        """What the account's working orders in ``symbol`` on ``side`` may still fill
        (quantity minus filled quantity, summed exactly; an order whose quantity the venue
        decides adds nothing)."""
        statement = select(orders_t.c.quantity, orders_t.c.filled_quantity).where(
            self._working(account, approved_since), orders_t.c.symbol == symbol, orders_t.c.side == side.value
        )
        total = Decimal(0)
        with localcontext(Context(prec=100)):
            for quantity, filled in self.session.execute(statement):
                if quantity is not None:
                    total += quantity - filled
        return total
