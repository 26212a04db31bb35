"""Group commit (services.store.database.Database): concurrent writes share one transaction,
each in its own savepoint, and are answered only after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from typing import Any

import pytest
from sqlalchemy import event

from services.store.database import Database
from services.domain import TradingState
from services.store import Store, UnitOfWork


def _set_state(scope: str) -> Any:
    def write(uow: UnitOfWork) -> str:
        uow.trading_state.set(TradingState.REDUCING, "ops", "test", scope=scope)
        return scope

    return write


def _fail_after_writing(scope: str) -> Any:
    def write(uow: UnitOfWork) -> None:
        uow.trading_state.set(TradingState.HALTED, "ops", "test", scope=scope)
        raise ValueError(f"{scope} failed")

    return write


def _hold(gate: threading.Event, started: threading.Event | None = None) -> Any:
    def wait(uow: UnitOfWork) -> None:
        if started is not None:
            started.set()
        gate.wait(10)

    return wait


async def _holding(db: Database, gate: threading.Event) -> "asyncio.Future[Any]":
    """A first call that keeps the writer busy until ``gate`` is set; returns once the
    writer has taken it (its batch is closed: what is queued now forms the next one)."""
    started = threading.Event()
    first = asyncio.ensure_future(db.run(_hold(gate, started)))
    if not await asyncio.to_thread(started.wait, 10):
        raise AssertionError("the writer never took the first call")
    return first


async def _queued(db: Database, gate: threading.Event, *calls: Any) -> list[Any]:
    """Block the writer on a first call, queue ``calls`` behind it, then release it: the
    queued calls then form one batch."""
    first = await _holding(db, gate)
    rest = [asyncio.ensure_future(db.run(call)) for call in calls]
    await asyncio.sleep(0)  # each task's first step queues its call
    gate.set()
    await first
    return await asyncio.gather(*rest, return_exceptions=True)


def _commits(store: Store) -> list[int]:
    commits = [0]

    @event.listens_for(store.engine, "commit")
    def _count(_connection: Any) -> None:
        commits[0] += 1

    return commits


def test_concurrent_writes_share_one_commit(db: Database) -> None:
    asyncio.run(_concurrent_writes_share_one_commit(db))


async def _concurrent_writes_share_one_commit(db: Database) -> None:
    commits = _commits(db.store)
    results = await _queued(db, threading.Event(), *(_set_state(f"s{i}") for i in range(10)))
    assert results == [f"s{i}" for i in range(10)]
    # The first call (which wrote nothing: no commit) alone, then the ten queued behind
    # it in one transaction.
    assert commits[0] == 1
    assert db.batches == 2 and db.calls == 11
    states = await db.read(lambda uow: [uow.trading_state.get(f"s{i}").state for i in range(10)])
    assert states == [TradingState.REDUCING] * 10


def test_a_failing_call_rolls_back_only_its_own_writes(db: Database) -> None:
    asyncio.run(_a_failing_call_rolls_back_only_its_own_writes(db))


async def _a_failing_call_rolls_back_only_its_own_writes(db: Database) -> None:
    results = await _queued(db, threading.Event(), _set_state("a"), _fail_after_writing("b"), _set_state("c"))
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError) and str(results[1]) == "b failed"
    states = await db.read(lambda uow: {s: uow.trading_state.get(s).state for s in "abc"})
    # "b" wrote before it raised: its savepoint was rolled back, the others committed.
    assert states == {"a": TradingState.REDUCING, "b": TradingState.ACTIVE, "c": TradingState.REDUCING}


def test_a_failed_commit_fails_every_call_of_the_batch(db: Database) -> None:
    asyncio.run(_a_failed_commit_fails_every_call_of_the_batch(db))


async def _a_failed_commit_fails_every_call_of_the_batch(db: Database) -> None:
    @event.listens_for(db.store.engine, "commit")
    def _refuse(_connection: Any) -> None:
        raise RuntimeError("disk full")

    try:
        results = await _queued(db, threading.Event(), _set_state("x"), _set_state("y"))
    finally:
        event.remove(db.store.engine, "commit", _refuse)
    assert all(isinstance(r, RuntimeError) and "disk full" in str(r) for r in results)
    states = await db.read(lambda uow: [uow.trading_state.get(s).state for s in "xy"])
    assert states == [TradingState.ACTIVE, TradingState.ACTIVE]


def test_callers_are_answered_only_after_the_commit(db: Database) -> None:
    asyncio.run(_callers_are_answered_only_after_the_commit(db))


async def _callers_are_answered_only_after_the_commit(db: Database) -> None:
    seen: list[str] = []

    @event.listens_for(db.store.engine, "commit")
    def _committed(_connection: Any) -> None:
        seen.append("commit")

    try:
        async def write(scope: str) -> None:
            await db.run(_set_state(scope))
            seen.append(f"answered {scope}")

        gate = threading.Event()
        first = await _holding(db, gate)
        writes = [asyncio.ensure_future(write(s)) for s in ("p", "q")]
        await asyncio.sleep(0)  # each task's first step queues its call
        gate.set()
        await asyncio.gather(first, *writes)
    finally:
        event.remove(db.store.engine, "commit", _committed)
    assert seen == ["commit", "answered p", "answered q"]


def test_group_commit_off_commits_each_call(store: Store) -> None:
    asyncio.run(_group_commit_off_commits_each_call(store))


async def _group_commit_off_commits_each_call(store: Store) -> None:
    db = Database(store, max_batch=1)
    try:
        commits = _commits(store)
        results = await _queued(db, threading.Event(), *(_set_state(f"t{i}") for i in range(4)))
        assert results == [f"t{i}" for i in range(4)]
        assert commits[0] == 4
    finally:
        db.close()


def test_closed_database_refuses_writes(store: Store) -> None:
    asyncio.run(_closed_database_refuses_writes(store))


async def _closed_database_refuses_writes(store: Store) -> None:
    db = Database(store)
    await db.run(_set_state("z"))
    db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await db.run(_set_state("z"))


def test_calls_queued_while_another_writer_holds_the_file_share_the_commit_that_follows(sqlite_store: Store) -> None:
    asyncio.run(_calls_queued_while_another_writer_holds_the_file(sqlite_store))


async def _calls_queued_while_another_writer_holds_the_file(store: Store) -> None:
    """SQLite has one writer per file: the writer takes its batch once ``BEGIN IMMEDIATE``
    holds the lock, so what was queued while another process committed goes in one
    commit, not one commit for the first call and another for the rest."""
    other = sqlite3.connect(store.engine.url.database, isolation_level=None)  # another process's writer
    db = Database(store)
    try:
        commits = _commits(store)
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.ensure_future(db.run(_set_state("w0")))
        await asyncio.sleep(0.05)  # the writer woke for the first call and waits for the lock
        rest = [asyncio.ensure_future(db.run(_set_state(f"w{i}"))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert not first.done()
        other.execute("COMMIT")
        results = await asyncio.gather(first, *rest)
        assert results == [f"w{i}" for i in range(6)]
        assert commits[0] == 1 and db.batches == 1 and db.calls == 6
    finally:
        other.close()
        db.close()


def test_each_group_commit_is_reported_with_its_writes_and_the_time_waited_and_held(sqlite_store: Store) -> None:
    asyncio.run(_each_group_commit_is_reported(sqlite_store))


async def _each_group_commit_is_reported(store: Store) -> None:
    """``on_commit`` (the services' store metrics): one report per commit, with the
    writes it carried, how long the writer waited for the file (another process held
    it) and how long it then held it."""
    reports: list[tuple[int, float, float]] = []
    other = sqlite3.connect(store.engine.url.database, isolation_level=None)
    db = Database(store, on_commit=lambda *report: reports.append(report))
    try:
        await db.run(_set_state("alone"))
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.ensure_future(db.run(_set_state("w0")))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(db.run(_set_state(f"w{i}"))) for i in range(1, 4)]
        await asyncio.sleep(0.15)
        other.execute("COMMIT")
        await asyncio.gather(first, *rest)
        assert [items for items, _, _ in reports] == [1, 4]
        (_, waited, held) = reports[1]
        assert waited >= 0.15  # the other writer held the file meanwhile
        assert 0 < held < waited
    finally:
        other.close()
        db.close()


def test_the_store_metrics_count_each_commit_as_reported() -> None:
    from prometheus_client import REGISTRY

    from services.common.observability import metrics

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("tessera_store_commit_items_count"), value("tessera_store_commit_items_sum"),
              value("tessera_store_write_wait_seconds_bucket", le="0.001"),
              value("tessera_store_write_held_seconds_bucket", le="0.01"))
    metrics.store_committed(7, 0.0004, 0.02)
    after = (value("tessera_store_commit_items_count"), value("tessera_store_commit_items_sum"),
             value("tessera_store_write_wait_seconds_bucket", le="0.001"),
             value("tessera_store_write_held_seconds_bucket", le="0.01"))
    assert [b - a for a, b in zip(before, after)] == [1, 7, 1, 0]  # 20 ms held: above the 10 ms bucket


def test_a_writer_thread_that_dies_fails_its_callers_and_the_next_write_gets_a_new_writer(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_a_writer_thread_that_dies(store, monkeypatch))


async def _a_writer_thread_that_dies(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    db = Database(store)
    commit = Database._commit
    broken = [True]

    def dies_once(self: Database) -> bool:
        if broken.pop() if broken else False:
            raise MemoryError("the writer thread's own failure, outside any batch")
        return commit(self)

    monkeypatch.setattr(Database, "_commit", dies_once)
    try:
        # A liveness bound, not a speed claim: without it a caller of a dead writer waits for ever.
        with pytest.raises(OperationalError, match="writer stopped"):
            await asyncio.wait_for(db.run(_set_state("lost")), 30)
        assert await asyncio.wait_for(db.run(_set_state("after")), 30) == "after"
        states = await db.read(lambda uow: {s: uow.trading_state.get(s).state for s in ("lost", "after")})
        assert states == {"lost": TradingState.ACTIVE, "after": TradingState.REDUCING}
    finally:
        db.close()


def test_a_set_write_failing_after_its_first_statement_fails_every_caller_and_keeps_nothing(db: Database) -> None:
    asyncio.run(_a_set_write_failing_after_its_first_statement(db))


async def _a_set_write_failing_after_its_first_statement(db: Database) -> None:
    import order_factory

    from services.store.order_sets import NEW_ORDERS

    def decided() -> Any:
        order = order_factory.build_order()
        order.record_creation()
        return order

    def refuse_events(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO order_events_ts"):
            raise RuntimeError("no space left on device")

    gate = threading.Event()
    first = await _holding(db, gate)
    orders = [[decided(), decided()], [decided()], [decided()]]
    callers = [asyncio.ensure_future(db.write_many(NEW_ORDERS, batch)) for batch in orders]
    await asyncio.sleep(0)  # each caller's first step queues its orders: one batch, behind the first call
    event.listen(db.store.engine, "before_cursor_execute", refuse_events)
    try:
        gate.set()
        await first
        results = await asyncio.gather(*callers, return_exceptions=True)
    finally:
        event.remove(db.store.engine, "before_cursor_execute", refuse_events)

    assert all(isinstance(r, RuntimeError) and "no space left" in str(r) for r in results), results
    ids = [order.order_id for batch in orders for order in batch]
    stored = await db.read(lambda uow: [uow.orders.get(order_id) for order_id in ids])
    assert stored == [None] * len(ids)  # the orders' insert, before the events', was rolled back with them


def test_closing_writes_what_was_queued_before_it_and_refuses_what_comes_after(store: Store) -> None:
    asyncio.run(_closing_drains(store))


async def _closing_drains(store: Store) -> None:
    db = Database(store, owns_store=False)
    gate = threading.Event()
    first = await _holding(db, gate)
    queued = [asyncio.ensure_future(db.run(_set_state(f"d{i}"))) for i in range(5)]
    await asyncio.sleep(0)  # each task's first step queues its call
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    while not db._closed:  # close() has begun: what comes now is refused
        await asyncio.sleep(0.001)
    with pytest.raises(RuntimeError, match="closed"):
        await db.run(_set_state("late"))
    gate.set()
    await first
    assert await asyncio.gather(*queued) == [f"d{i}" for i in range(5)]
    await asyncio.get_running_loop().run_in_executor(None, closer.join, 30)
    assert not closer.is_alive()
    reader = Database(store, owns_store=False)
    try:
        states = await reader.read(lambda uow: {s: uow.trading_state.get(s).state
                                                for s in [f"d{i}" for i in range(5)] + ["late"]})
    finally:
        reader.close()
    assert states == {**{f"d{i}": TradingState.REDUCING for i in range(5)}, "late": TradingState.ACTIVE}


def test_a_postgresql_write_held_by_another_sessions_lock_fails_as_unavailable_and_closing_does_not_wait_on_it(
        postgres_store: Store) -> None:
    asyncio.run(_a_postgresql_write_held_by_a_lock(postgres_store))


async def _a_postgresql_write_held_by_a_lock(store: Store) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    db = Database(store, owns_store=False, turn_timeout=1.0)
    other = store.engine.connect()  # an operator's session, say, holding the table
    try:
        other.execute(text("LOCK TABLE trading_state IN ACCESS EXCLUSIVE MODE"))
        # A liveness bound, not a speed claim: without a lock timeout the write waits as long
        # as the other session keeps its lock.
        with pytest.raises(OperationalError, match="lock timeout"):
            await asyncio.wait_for(db.run(_set_state("locked out")), 30)
        queued = asyncio.ensure_future(db.run(_set_state("queued")))
        await asyncio.sleep(0)
        closed = threading.Event()
        threading.Thread(target=lambda: (db.close(), closed.set()), daemon=True).start()
        assert await asyncio.get_running_loop().run_in_executor(None, closed.wait, 30), \
            "close() waited for a lock another session keeps"
        with pytest.raises(OperationalError, match="lock timeout"):
            await asyncio.wait_for(queued, 30)
    finally:
        other.rollback()
        other.close()
        db.close()
    with store.uow(read_only=True) as uow:
        assert uow.trading_state.get("locked out").state is TradingState.ACTIVE
