"""The order-manager repository: batch intent rows, idempotent on ``unique_identifier``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.domain import OrderManager, new_id, utcnow
from services.domain.errors import Conflict

from ._sql import insert_unless_conflict
from .errors import OrderManagerNotFound
from .mapping import manager_from_row, manager_to_row
from .models import order_managers_table as managers_t


class OrderManagerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create_batch(
        self,
        unique_identifier: str,
        target_account_uid: str,
        target_time: dt.datetime,
        status: str,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[OrderManager, bool]:
        """Create the order manager, or return the one with this identifier.

        Returns ``(manager, created)``; ``created`` is False when the identifier was
        taken already (the stored row is returned unchanged). Insert-or-nothing then
        select, so concurrent creators of one identifier get the same row.

        Raises
        ------
        Conflict
            The identifier belongs to an order manager of another target account.
        """
        candidate = OrderManager(
            id=new_id(),
            unique_identifier=unique_identifier,
            target_account_uid=target_account_uid,
            target_time=target_time,
            status=status,
            metadata=dict(metadata or {}),
            created_time=utcnow(),
        )
        created = insert_unless_conflict(
            self.session, managers_t, manager_to_row(candidate), conflict_columns=("unique_identifier",)
        )
        stored = self.get(unique_identifier)
        assert stored is not None, "inserted or conflicting row must be visible"
        if stored.target_account_uid != target_account_uid:
            raise Conflict(
                f"order manager {unique_identifier!r} exists for another target account"
            )
        return stored, created

    def _one(self, condition: Any) -> OrderManager | None:
        row = self.session.execute(select(managers_t).where(condition)).mappings().first()
        return None if row is None else manager_from_row(row)

    def get(self, unique_identifier: str) -> OrderManager | None:
        return self._one(managers_t.c.unique_identifier == unique_identifier)

    def get_by_id(self, manager_id: str) -> OrderManager | None:
        return self._one(managers_t.c.id == manager_id)

    def save(self, manager: OrderManager) -> None:
        """Write status, order_received_time, execution_end and metadata.

        Raises
        ------
        OrderManagerNotFound
            No order manager has ``manager.id``.
        """
        statement = (
            update(managers_t)
            .where(managers_t.c.id == manager.id)
            .values(
                status=manager.status,
                order_received_time=manager.order_received_time,
                execution_end=manager.execution_end,
                metadata=dict(manager.metadata or {}),
            )
        )
        if self.session.execute(statement).rowcount != 1:  # type: ignore[attr-defined]
            raise OrderManagerNotFound(f"order manager {manager.id} not found")
