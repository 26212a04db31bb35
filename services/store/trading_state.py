"""The trading-state repository: the kill switch and its audit trail."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from services.domain import TradingState, utcnow

from ._sql import insert_unless_conflict
from .records import TradingStateChange, TradingStateRecord
from .models import trading_state_events_table as events_t
from .models import trading_state_table as state_t

GLOBAL_SCOPE = "global"
# How strict each state is: the effective state of a symbol is the stricter of the
# global one and the symbol's own (a quarantine).
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
# Read on every submission: built once (a statement built per call costs SQLAlchemy
# more than the read).
_TWO_SCOPES = select(state_t).where(or_(state_t.c.scope == bindparam("first"), state_t.c.scope == bindparam("second")))
_UNSET = TradingStateRecord(TradingState.ACTIVE, "", "", None)


def symbol_scope(symbol: str) -> str:
    """The scope of one symbol's own trading state (set by a quarantine)."""
    return f"symbol:{symbol}"


class TradingStateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, scope: str = GLOBAL_SCOPE) -> TradingStateRecord:
        """The scope's state; ACTIVE (never set: empty reason and operator) without a row."""
        statement = select(state_t).where(state_t.c.scope == scope)
        row = self.session.execute(statement).mappings().first()
        if row is None:
            return TradingStateRecord(TradingState.ACTIVE, "", "", None)
        return TradingStateRecord(TradingState(row["state"]), row["reason"], row["operator"], row["updated_time"])

    def effective(self, symbol: str) -> TradingStateRecord:
        """The state that governs new orders in ``symbol``: the stricter of the global
        state and the symbol's own (the global one when they are equal)."""
        scope = symbol_scope(symbol)
        rows = {
            row["scope"]: TradingStateRecord(TradingState(row["state"]), row["reason"], row["operator"], row["updated_time"])
            for row in self.session.execute(_TWO_SCOPES, {"first": GLOBAL_SCOPE, "second": scope}).mappings()
        }
        overall, own = rows.get(GLOBAL_SCOPE, _UNSET), rows.get(scope, _UNSET)
        return own if _STRICTNESS[own.state] > _STRICTNESS[overall.state] else overall

    def set(
        self, state: TradingState | str, operator: str, reason: str, scope: str = GLOBAL_SCOPE
    ) -> TradingStateRecord:
        """Set the scope's state and append the change to the audit trail.

        The row is locked (``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised)
        so the recorded ``from_state`` is the state this change really replaced.

        Raises
        ------
        ValueError
            ``state`` is not a trading state.
        """
        target = TradingState(state)
        now = utcnow()
        locked = select(state_t.c.state).where(state_t.c.scope == scope).with_for_update()
        current = self.session.execute(locked).scalar_one_or_none()
        values = {"state": target.value, "reason": reason, "operator": operator, "updated_time": now}
        inserted = current is None and insert_unless_conflict(
            self.session, state_t, {"scope": scope, "version": 1, **values}, ("scope",)
        )
        if not inserted:
            if current is None:  # created concurrently: lock it now
                current = self.session.execute(locked).scalar_one()
            self.session.execute(
                update(state_t).where(state_t.c.scope == scope).values(**values, version=state_t.c.version + 1)
            )
        self.session.execute(
            insert(events_t).values(
                scope=scope,
                from_state=current or TradingState.ACTIVE.value,
                to_state=target.value,
                operator=operator,
                reason=reason,
                event_time=now,
            )
        )
        return TradingStateRecord(target, reason, operator, now)

    def states(self) -> dict[str, TradingState]:
        """Every scope that has a state of its own, with it (the global scope only once set)."""
        return {scope: TradingState(state) for scope, state in self.session.execute(select(state_t.c.scope, state_t.c.state))}

    def history(self, scope: str = GLOBAL_SCOPE, limit: int = 100) -> list[TradingStateChange]:
        """The scope's changes, newest first."""
        statement = (
            select(events_t).where(events_t.c.scope == scope).order_by(events_t.c.id.desc()).limit(max(1, limit))
        )
        return [
            TradingStateChange(
                id=row["id"],
                scope=row["scope"],
                from_state=TradingState(row["from_state"]) if row["from_state"] else None,
                to_state=TradingState(row["to_state"]),
                operator=row["operator"],
                reason=row["reason"],
                event_time=row["event_time"],
            )
            for row in self.session.execute(statement).mappings()
        ]
