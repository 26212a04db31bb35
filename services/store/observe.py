"""Order metrics from the store: every order event counts once its transaction commits.

A listener on the session factory notes the rows each unit of work inserts into
``order_events_ts`` (whoever writes them: Risk, the OMS, the fill tracker, the
reconciler) and hands them to :func:`services.common.observability.metrics.events_committed`
after the commit; a rollback forgets them, a savepoint's rollback (group commit) those
written inside it. Nothing here touches the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from services.common.observability import metrics

from .models import order_events_table

_PENDING = "tessera_committed_events"


def _noted(state: ORMExecuteState) -> None:
    statement = state.statement
    if not getattr(statement, "is_insert", False) or getattr(statement, "table", None) is not order_events_table:
        return
    parameters: Any = state.parameters
    rows = parameters if isinstance(parameters, list) else [parameters] if parameters else []
    session = state.session
    # Remember the (possibly nested) transaction: a savepoint rolled back takes its rows along.
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((transaction, rows))


def _within(transaction: Any, ended: Any) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False


def _committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint released (the event fires for those too): the transaction goes on
    pending = session.info.pop(_PENDING, None)
    if pending:
        metrics.events_committed(row for _, rows in pending for row in rows)


def _rolled_back(session: Session, previous_transaction: Any) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        session.info[_PENDING] = [(t, rows) for t, rows in pending if not _within(t, previous_transaction)]


def observe_order_events(factory: sessionmaker[Session]) -> None:
    """Count the order events committed through sessions of ``factory``."""
    if event.contains(factory, "do_orm_execute", _noted):
        return
    event.listen(factory, "do_orm_execute", _noted)
    event.listen(factory, "after_commit", _committed)
    event.listen(factory, "after_soft_rollback", _rolled_back)


__all__ = ["observe_order_events"]
