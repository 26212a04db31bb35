"""The anomaly repository: venue reports refused instead of applied.

A fill that would overfill an order, a report for an unknown order, a trade id seen
with other content: the fill tracker records it here and applies nothing, so an
operator can see and resolve it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from services.domain import utcnow

from .models import anomalies_table as anomalies_t
from .records import ExecutionAnomaly


class AnomalyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self,
        kind: str,
        venue: str,
        order_id: str | None,
        detail: str,
        payload: dict[str, Any] | None = None,
        observed_time: dt.datetime | None = None,
    ) -> int:
        """Store one anomaly (``kind`` e.g. ``"OVERFILL"``, ``"UNKNOWN_ORDER"``); returns its id."""
        statement = (
            insert(anomalies_t)
            .values(
                kind=kind,
                venue=venue,
                order_id=order_id,
                detail=detail,
                payload=payload,
                observed_time=observed_time or utcnow(),
            )
            .returning(anomalies_t.c.id)
        )
        return int(self.session.execute(statement).scalar_one())

    def list(self, limit: int = 100, order_id: str | None = None) -> list[ExecutionAnomaly]:
        """The newest anomalies first, optionally of one order."""
        statement = select(anomalies_t).order_by(anomalies_t.c.id.desc()).limit(max(1, limit))
        if order_id is not None:
            statement = statement.where(anomalies_t.c.order_id == order_id)
        return [
            ExecutionAnomaly(**{name: row[name] for name in ExecutionAnomaly.__dataclass_fields__})
            for row in self.session.execute(statement).mappings()
        ]

    def count_by_kind(self) -> dict[str, int]:
        """How many anomalies are recorded, by kind."""
        statement = select(anomalies_t.c.kind, func.count()).group_by(anomalies_t.c.kind)
        return {kind: int(count) for kind, count in self.session.execute(statement)}
