"""The hash chain at its edges: an order with thousands of events, a PostgreSQL commit-order
gap, and the same event hashed alike on both backends and both write paths."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import order_factory
import pytest
from sqlalchemy import select, text, update

from services.domain import OrderStatus
from services.reliability import check_store
from services.reliability.export import ChainBroken, export
from services.store import Store
from services.store.models import order_events_table as events_t

T0 = dt.datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)


def _events(store, order_id):
    with store.engine.connect() as connection:
        return [dict(r) for r in connection.execute(
            select(events_t).where(events_t.c.order_id == order_id).order_by(events_t.c.sequence)).mappings()]


def test_an_order_with_thousands_of_events_verifies_and_an_edit_deep_in_it_is_found_and_refused(store, tmp_path):
    order = order_factory.build_order(order_time=T0, updated_time=T0)
    order.record_creation(T0)
    for status in (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED):
        order.transition(status, reason=status.value, at=T0,
                         payload={"token_nonce": "n"} if status is OrderStatus.SUBMITTED else None)
    for index in range(2500):  # a cancel asked for and refused by the venue, again and again
        at = T0 + dt.timedelta(milliseconds=index)
        order.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested", at=at)
        order.transition(OrderStatus.ACCEPTED, reason=f"cancel refused #{index}", at=at)
    with store.uow() as uow:
        uow.orders.add(order)
        uow.commit()

    report = check_store(store.engine)
    assert (report.violations, report.events) == ([], 5004)
    summary = export(store.engine, T0, T0 + dt.timedelta(days=1), "csv", tmp_path / "clean")
    assert summary.rows["order_events"] == 5004

    deep = _events(store, order.order_id)[4320]
    with store.engine.begin() as connection:
        connection.execute(update(events_t).where(events_t.c.id == deep["id"]).values(reason="cancel granted"))
    assert [(v.kind, v.order_id) for v in check_store(store.engine).violations] == [("EVENT_EDITED", order.order_id)]
    with pytest.raises(ChainBroken) as refused:
        export(store.engine, T0, T0 + dt.timedelta(days=1), "csv", tmp_path / "tampered")
    assert [(v.kind, v.order_id) for v in refused.value.violations] == [("EVENT_EDITED", order.order_id)]
    assert "event 4321 " in str(refused.value)


@pytest.mark.postgres
def test_events_committed_out_of_id_order_on_postgresql_verify_at_every_moment(create_postgres_database, tmp_path):
    """PostgreSQL hands out event ids at insert, not at commit: an order whose events took
    lower ids commits after one whose events took higher ones. Each chain is its order's
    alone, so the store verifies before, between and after the two commits."""
    store = Store.from_url(create_postgres_database())
    try:
        early, late = (order_factory.build_order(order_time=T0, updated_time=T0) for _ in range(2))
        for order in (early, late):
            order.record_creation(T0)
            order.transition(OrderStatus.APPROVED, reason="approved", at=T0)
        slow = store.uow()
        slow.__enter__()
        slow.orders.add(early)  # takes the lower ids, commits last
        slow.session.flush()
        with store.uow() as fast:
            fast.orders.add(late)
            fast.commit()
        between = check_store(store.engine)
        slow.commit()
        slow.__exit__(None, None, None)
        after = check_store(store.engine)

        ids = {e["order_id"]: e["id"] for e in _events(store, early.order_id) + _events(store, late.order_id)}
        assert ids[early.order_id] < ids[late.order_id]
        assert (between.violations, between.orders) == ([], 1)
        assert (after.violations, after.orders) == ([], 2)
        assert export(store.engine, T0, T0 + dt.timedelta(days=1), "csv", tmp_path / "audit").chains_verified == 2
    finally:
        store.dispose()


def _awkward_order():
    """An order whose events hold what canonical forms are made of: decimals with trailing
    zeros and exponents, a time given in another zone, text beyond ASCII, nested payloads."""
    zone = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    order = order_factory.build_order(order_id="0b3c6d2e-5f4a-4b8c-9d1e-2f3a4b5c6d7e", client_order_id="cid-awkward",
                                      order_time=T0, updated_time=T0)
    order.record_creation(T0)
    order.transition(OrderStatus.REJECTED, reason="risk: prix hors bande — «MAX_NOTIONAL» 限价",
                     at=T0.astimezone(zone) + dt.timedelta(microseconds=1),
                     payload={"violations": [{"code": "MAX_NOTIONAL_EXCEEDED", "limit": Decimal("250000.00"),
                                              "tiny": Decimal("1E-8"), "big": Decimal("1.5E+3")}],
                              "nested": {"z": [1, True, None, "x"], "a": {"k": "v"}}, "count": 3})
    return order


def _hashes(store, order_id):
    return [(e["sequence"], e["prev_hash"], e["hash"]) for e in _events(store, order_id)]


@pytest.mark.postgres
def test_the_same_event_hashes_alike_on_sqlite_and_postgresql_and_through_both_write_paths(
        create_postgres_database, tmp_path):
    from services.store.database import Database
    from services.store.order_sets import NEW_ORDERS

    stores = {"sqlite": Store.from_url(f"sqlite:///{tmp_path}/h.db"), "postgresql": Store.from_url(
        create_postgres_database())}
    try:
        hashes = {}
        for name, store in stores.items():
            with store.uow() as uow:  # the repository (ORM) path
                uow.orders.add(_awkward_order())
                uow.commit()
            hashes[name] = _hashes(store, _awkward_order().order_id)
            with store.engine.begin() as connection:
                connection.execute(text("DELETE FROM order_events_ts"))
                connection.execute(text("DELETE FROM orders_ts"))
            db = Database(store, owns_store=False)  # the order path's set writes
            try:
                asyncio.run(db.write_many(NEW_ORDERS, [_awkward_order()]))
            finally:
                db.close()
            hashes[name + " sets"] = _hashes(store, _awkward_order().order_id)
            assert check_store(store.engine).violations == []
        assert len({tuple(h) for h in hashes.values()}) == 1, hashes
    finally:
        for store in stores.values():
            store.dispose()


@pytest.mark.parametrize("number", [0.1, 1e-07, 5.0, 1e16, 1e23, -3.5e20, 2.0 ** 70, 2 ** 70])
def test_a_number_in_a_payload_hashes_as_it_reads_back_from_either_backend(store, number):
    """SQLite gives a payload's JSON text back to Python's parser; PostgreSQL's JSONB keeps
    the number the text says (``1e+23`` is 10**23, an integer) and gives that back."""
    order = order_factory.build_order(order_time=T0, updated_time=T0)
    order.record_creation(T0)
    order.transition(OrderStatus.APPROVED, reason="approved", at=T0, payload={"n": number, "in": [number]})
    with store.uow() as uow:
        uow.orders.add(order)
        uow.commit()

    assert check_store(store.engine).violations == []
