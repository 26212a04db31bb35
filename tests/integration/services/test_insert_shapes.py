"""The order path's inserts on PostgreSQL: one row as a row of values, a few rows as rows
of values (pipelined), more as one statement of ``unnest``ed arrays; each stores the same
rows and refuses a reused client order id the same way (SQLite: ``executemany`` always)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from sqlalchemy import event

from services.store.errors import DuplicateClientOrderId
from services.store.order_sets import FEW_ROWS, NEW_ORDERS


def _inserts(db: Any, table: str, listeners: list[Any]) -> list[str]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith(f"INSERT INTO {table} "):
            seen.append(statement)

    event.listen(db.store.engine, "before_cursor_execute", note)
    listeners.append(note)
    return seen


def _order_fields(order: Any) -> dict[str, Any]:
    fields = dataclasses.asdict(order)
    return {k: v for k, v in fields.items() if k not in ("events", "new_events", "last_event_hash", "version")}


def _event_fields(event: Any) -> tuple[Any, ...]:
    return (event.sequence, event.event_time, event.from_status, event.to_status, event.reason, event.payload)


def _shape(statement: str) -> str:
    return "unnest" if "unnest(" in statement else "values" if " VALUES " in statement else statement


def _stores_the_same_whatever_the_shape(db: Any, make_order: Any) -> tuple[list[str], list[str], bool]:
    async def scenario() -> tuple[list[str], list[str], bool]:
        listeners: list[Any] = []
        orders_seen, events_seen = _inserts(db, "orders_ts", listeners), _inserts(db, "order_events_ts", listeners)
        try:
            return await stores(orders_seen, events_seen)
        finally:
            for note in listeners:
                event.remove(db.store.engine, "before_cursor_execute", note)

    async def stores(orders_seen: list[str], events_seen: list[str]) -> tuple[list[str], list[str], bool]:
        sizes = (1, FEW_ROWS, FEW_ROWS + 12)
        written: list[Any] = []
        expected: dict[str, list[tuple[Any, ...]]] = {}
        for size in sizes:
            orders = [make_order() for _ in range(size)]
            for order in orders:
                order.record_creation()
                expected[order.order_id] = [_event_fields(e) for e in order.new_events]
            outcomes = await db.write_many(NEW_ORDERS, orders)
            assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
            written += orders
        stored = await db.read(lambda uow: [(uow.orders.get(o.order_id), uow.orders.events(o.order_id))
                                            for o in written])
        same = all(s is not None and _order_fields(s) == _order_fields(o)
                   and [_event_fields(e) for e in events] == expected[o.order_id] != []
                   for (s, events), o in zip(stored, written))
        # A client order id used again: refused, alone or among others (the others stored).
        for size in (1, 3):
            twin = make_order(account=written[0].account, client_order_id=written[0].client_order_id)
            others = [make_order() for _ in range(size - 1)]
            for order in (twin, *others):
                order.record_creation()
            refused, *fine = await db.write_many(NEW_ORDERS, [twin, *others])
            assert isinstance(refused, DuplicateClientOrderId), refused
            assert not any(isinstance(o, BaseException) for o in fine), fine
        return [_shape(s) for s in orders_seen], [_shape(s) for s in events_seen], same

    return asyncio.run(scenario())


def test_inserts_one_row_as_values_and_many_as_arrays_on_postgresql_and_store_the_same(db, make_order):
    orders, events, same = _stores_the_same_whatever_the_shape(db, make_order)
    assert same
    if db.codec.dialect == "sqlite":  # executemany of rows of values, every size
        assert set(orders) == {"values"} and set(events) == {"values"}
    else:
        # Orders (their insert reads back the ids stored): one row as values, otherwise arrays.
        assert orders == ["values", "unnest", "unnest", "values", "unnest"]
        # Events (nothing to read back): values up to FEW_ROWS rows, then arrays.
        assert events == ["values", "values", "unnest", "values"]
