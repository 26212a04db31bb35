"""The order-manager repository: batch intent rows, idempotent on ``unique_identifier``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.domain import OrderManager, OrderStatus, batches, new_id, utcnow
from services.domain.errors import Conflict

from ._sql import insert_unless_conflict
from .errors import OrderManagerNotFound
from .mapping import manager_from_row, manager_to_row
from .models import order_managers_table as managers_t
from .models import orders_table as orders_t


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
                f"order manager {unique_identifier!r} exists for another target account",
                metadata={"unique_identifier": unique_identifier},
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

    def refresh(self, unique_identifier: str) -> OrderManager | None:
        """Make the batch's status, ``order_received_time`` and ``execution_end``
        follow its orders (see :mod:`services.domain.batches`).

        One aggregate query over the batch's orders; the row is written only when
        something changed.
        """
        manager = self.get(unique_identifier)
        if manager is None:
            return None
        rows = self.session.execute(
            select(
                orders_t.c.status,
                func.count(),
                func.min(orders_t.c.order_time),
                func.max(orders_t.c.updated_time),
            )
            .where(orders_t.c.order_manager_id == unique_identifier)
            .group_by(orders_t.c.status)
        ).all()
        counts = {OrderStatus(status): count for status, count, _, _ in rows}
        first_order = min((first for _, _, first, _ in rows if first is not None), default=None)
        last_update = max((last for _, _, _, last in rows if last is not None), default=None)
        status = batches.batch_status(counts)
        if status == batches.CREATED and manager.status != batches.CREATED:
            return manager  # a caller-chosen initial status stands until orders arrive
        received = manager.order_received_time or first_order
        ended = batches.execution_end(status, last_update)
        if (status, received, ended) != (manager.status, manager.order_received_time, manager.execution_end):
            manager.status, manager.order_received_time, manager.execution_end = status, received, ended
            self.save(manager)
        return manager
