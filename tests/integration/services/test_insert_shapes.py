"""The order path's inserts on PostgreSQL: one row as a row of values, a few rows as rows
of values (pipelined), more as one statement of ``unnest``ed arrays; each stores the same
rows and refuses a reused client order id the same way (SQLite: ``executemany`` always)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from services.store.database import Database
from services.store.errors import DuplicateClientOrderId
from services.store.order_sets import FEW_ROWS, NEW_ORDERS


def _inserts(db: Any, table: str) -> list[str]:
    seen: list[str] = []
    event.listen(db.store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement)
                 if statement.startswith(f"INSERT INTO {table} ") else None)
    return seen


def _shape(statement: str) -> str:
    return "unnest" if "unnest(" in statement else "values" if " VALUES " in statement else statement


def _stores_the_same_whatever_the_shape(db: Any, make_order: Any) -> tuple[list[str], list[str], bool]:
    async def scenario() -> tuple[list[str], list[str], bool]:
        orders_seen, events_seen = _inserts(db, "orders_ts"), _inserts(db, "order_events_ts")
        sizes = (1, FEW_ROWS, FEW_ROWS + 12)
        written: list[Any] = []
        for size in sizes:
            orders = [make_order() for _ in range(size)]
            for order in orders:
                order.record_creation()
            outcomes = await db.write_many(NEW_ORDERS, orders)
            assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
            written += orders
        stored = await db.read(lambda uow: [uow.orders.get(o.order_id) for o in written])
        same = all(s is not None and s.client_order_id == o.client_order_id and s.quantity == o.quantity
                   and s.price == o.price and s.status == o.status for s, o in zip(stored, written))
        # A client order id used again: refused, alone or among others.
        again = written[0]
        twin = make_order(account=again.account, client_order_id=again.client_order_id)
        twin.record_creation()
        (refused,) = await db.write_many(NEW_ORDERS, [twin])
        assert isinstance(refused, DuplicateClientOrderId), refused
        return [_shape(s) for s in orders_seen], [_shape(s) for s in events_seen], same

    return asyncio.run(scenario())


def test_postgresql_inserts_one_row_as_values_and_many_as_arrays_and_stores_the_same(postgres_store, make_order):
    db = Database(postgres_store)
    try:
        orders, events, same = _stores_the_same_whatever_the_shape(db, make_order)
    finally:
        db.close()
    assert same
    # Orders (their insert reads back the ids stored): one row as values, otherwise arrays.
    assert orders == ["values", "unnest", "unnest", "values"]
    # Events (nothing to read back): values up to FEW_ROWS rows, then arrays.
    assert events == ["values", "values", "unnest"]


def test_sqlite_inserts_every_size_with_executemany_and_stores_the_same(sqlite_store, make_order):
    db = Database(sqlite_store)
    try:
        orders, events, same = _stores_the_same_whatever_the_shape(db, make_order)
    finally:
        db.close()
    assert same
    assert set(orders) == {"values"} and set(events) == {"values"}
