"""Reads: orders, their events and trades, the event stream, order managers.

Every read runs on the store's reader threads (a read-only transaction each), so reads
never queue behind the order path's writes.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from services.domain import Order, OrderEvent, OrderManager, Trade
from services.domain.errors import OrderNotFound
from services.store import UnitOfWork
from services.store.database import Database

from .cancels import load

#: Events read per page of :meth:`Queries.follow_events`.
EVENT_PAGE = 500


class Queries:
    def __init__(self, db: Database[Any], written: asyncio.Event) -> None:
        self.db = db
        self.written = written

    async def get_order(self, order_id: str) -> Order:
        return await self.db.read(load, order_id)

    async def find_order_id(self, account: str, client_order_id: str) -> str:
        order = await self.db.read(lambda uow: uow.orders.get_by_client_order_id(account, client_order_id))
        if order is None:
            raise OrderNotFound(f"no order {client_order_id!r} for account {account!r}",
                                metadata={"account": account, "client_order_id": client_order_id})
        return order.order_id

    async def order_details(self, order_id: str) -> tuple[Order, list[OrderEvent], list[Trade]]:
        def read(uow: UnitOfWork) -> tuple[Order, list[OrderEvent], list[Trade]]:
            return load(uow, order_id), uow.orders.events(order_id), uow.trades.for_order(order_id)

        return await self.db.read(read)

    async def list_orders(self, **filters: Any) -> tuple[list[Order], str | None]:
        return await self.db.read(lambda uow: uow.orders.list(**filters))

    async def list_trades(self, **filters: Any) -> tuple[list[Trade], str | None]:
        return await self.db.read(lambda uow: uow.trades.list(**filters))

    async def follow_events(
        self, *, order_id: str | None, account: str | None, after: int, history_only: bool, poll_seconds: float = 0.25
    ) -> AsyncIterator[tuple[int, OrderEvent, Order]]:
        """Stored events after ``after``, then new ones as they are written (by any process)."""
        cursor = after
        while True:
            batch = await self.db.read(_events_with_orders, cursor, order_id, account)
            for event_id, event, order in batch:
                cursor = event_id
                yield event_id, event, order
            if len(batch) < EVENT_PAGE:
                if history_only:
                    return
                self.written.clear()
                try:
                    await asyncio.wait_for(self.written.wait(), poll_seconds)
                except asyncio.TimeoutError:
                    pass

    # -- order managers ----------------------------------------------------------------------
    async def get_order_manager(self, unique_identifier: str) -> tuple[OrderManager, list[Order]]:
        def read(uow: UnitOfWork) -> tuple[OrderManager, list[Order]]:
            manager = uow.order_managers.get(unique_identifier)
            if manager is None:
                raise OrderNotFound(f"no order manager {unique_identifier!r}", reason="ORDER_MANAGER_NOT_FOUND",
                                    metadata={"unique_identifier": unique_identifier})
            orders, _ = uow.orders.list(order_manager_id=unique_identifier, limit=10_000)
            return manager, orders

        return await self.db.read(read)


def _events_with_orders(
    uow: UnitOfWork, cursor: int, order_id: str | None, account: str | None
) -> list[tuple[int, OrderEvent, Order]]:
    rows = uow.orders.events_after(cursor, order_id=order_id, account=account, limit=EVENT_PAGE)
    orders: dict[str, Order] = {}
    result = []
    for event_id, event in rows:
        if event.order_id not in orders:
            orders[event.order_id] = uow.orders.get(event.order_id)  # type: ignore[assignment]
        result.append((event_id, event, orders[event.order_id]))
    return result


__all__ = ["EVENT_PAGE", "Queries"]
