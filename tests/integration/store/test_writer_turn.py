"""WriterTurn: the services' writers on one SQLite file take turns through a kernel lock
(``flock`` on ``<database>-writer``), handed from one to the next as each commits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from services.domain import TradingState
from services.store import Store, UnitOfWork
from services.store.database import Database
from services.store.engine import WriterTurn, make_engine

_HOLD = """
import sys, time
from sqlalchemy import create_engine
from services.store.engine import WriterTurn
turn = WriterTurn.for_engine(create_engine(sys.argv[1]))
turn.__enter__()
print("holding", flush=True)
time.sleep(60)
"""


def test_the_turn_is_a_file_beside_the_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/tessera.db")
    turn = WriterTurn.for_engine(engine)
    try:
        assert turn is not None
        assert (tmp_path / "tessera.db-writer").exists()
    finally:
        assert turn is not None
        turn.close()
        engine.dispose()


def test_no_turns_off_a_sqlite_file() -> None:
    assert WriterTurn.for_engine(create_engine("sqlite://")) is None
    assert WriterTurn.for_engine(create_engine("sqlite:///:memory:")) is None
    assert WriterTurn.for_engine(create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")) is None


def test_no_turns_where_the_lock_file_cannot_be_opened(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/missing-directory/tessera.db")
    assert WriterTurn.for_engine(engine) is None


def test_a_second_writer_waits_for_the_first_to_release_its_turn(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/tessera.db")
    first, second = WriterTurn.for_engine(engine), WriterTurn.for_engine(engine)  # two descriptors, as two processes
    assert first is not None and second is not None
    order: list[str] = []
    taken = threading.Event()

    def take_second() -> None:
        with second:
            order.append("second")
            taken.set()

    try:
        with first:
            waiter = threading.Thread(target=take_second, daemon=True)
            waiter.start()
            assert not taken.wait(0.2)  # blocked while the first holds the turn
            order.append("first releases")
        assert taken.wait(5)
        waiter.join(5)
        assert order == ["first releases", "second"]
    finally:
        first.close()
        second.close()


def test_a_writer_killed_holding_its_turn_hands_it_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tessera.db"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, url], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[3])
    turn = WriterTurn.for_engine(create_engine(url))
    assert turn is not None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        taken = threading.Event()
        waiter = threading.Thread(target=lambda: (turn.__enter__(), taken.set()), daemon=True)
        waiter.start()
        assert not taken.wait(0.2)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert taken.wait(5), "the turn was not handed on after the holder died"
        waiter.join(5)
        turn.__exit__(None, None, None)
    finally:
        if holder.poll() is None:
            holder.kill()
        turn.close()


def test_the_services_writer_waits_for_its_turn_then_commits(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path}/tessera.db", migrate=True)
    other = WriterTurn.for_engine(store.engine)  # another process's writer
    db = Database(store)
    assert other is not None

    def write(uow: UnitOfWork) -> str:
        uow.trading_state.set(TradingState.REDUCING, "ops", "test", scope="turns")
        return "written"

    async def scenario() -> str:
        with other:
            call = asyncio.ensure_future(db.run(write))
            await asyncio.sleep(0.2)
            assert not call.done()  # waiting for the turn the other writer holds
        return await asyncio.wait_for(call, 10)

    try:
        assert asyncio.run(scenario()) == "written"
        assert db.read_sync(lambda uow: uow.trading_state.get("turns").state) is TradingState.REDUCING
    finally:
        db.close()
        other.close()
        store.dispose()


def test_writes_queued_behind_a_turn_held_too_long_fail_as_the_store_unavailable_and_writing_resumes(
        tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path}/tessera.db", migrate=True)
    other = WriterTurn.for_engine(store.engine)  # another process's writer, stuck holding its turn
    db = Database(store, turn_timeout=1.0)
    assert other is not None

    def write(uow: UnitOfWork, scope: str) -> str:
        uow.trading_state.set(TradingState.REDUCING, "ops", "test", scope=scope)
        return "written"

    async def scenario() -> str:
        with other:
            queued = asyncio.ensure_future(db.run(write, "queued"))
            await asyncio.sleep(0.1)
            assert not queued.done()  # still within the timeout: waiting
            with pytest.raises(OperationalError, match="database is locked.*write turn"):
                await asyncio.wait_for(queued, 5)
            with pytest.raises(OperationalError, match="database is locked.*write turn"):
                await asyncio.wait_for(db.run(write, "asked later"), 5)
        # The turn released: a write succeeds again once the writer holds it (until then a
        # write asked for still fails as unavailable, which a caller retries).
        for _ in range(200):
            try:
                return await asyncio.wait_for(db.run(write, "resumed"), 10)
            except OperationalError:
                await asyncio.sleep(0.05)
        raise AssertionError("writing did not resume once the turn was released")

    try:
        assert asyncio.run(scenario()) == "written"
        states = db.read_sync(lambda uow: {scope: uow.trading_state.get(scope).state
                                           for scope in ("queued", "asked later", "resumed")})
        # The failed writes were not written once the turn came; the one after it was.
        assert states == {"queued": TradingState.ACTIVE, "asked later": TradingState.ACTIVE,
                          "resumed": TradingState.REDUCING}
    finally:
        db.close()
        other.close()
        store.dispose()


def test_closing_does_not_wait_without_end_for_a_turn_another_process_keeps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tessera.db"
    store = Store.from_url(url, migrate=True)
    other = WriterTurn.for_engine(store.engine)  # another process's writer, stuck holding its turn
    db = Database(store, turn_timeout=1.0)
    assert other is not None

    def write(uow: UnitOfWork) -> str:
        uow.trading_state.set(TradingState.REDUCING, "ops", "test", scope="queued")
        return "written"

    closed = threading.Event()

    async def scenario() -> None:
        queued = asyncio.ensure_future(db.run(write))
        await asyncio.sleep(0.1)
        assert not queued.done()  # waiting for the turn
        closer = threading.Thread(target=lambda: (db.close(), closed.set()), daemon=True)
        closer.start()
        with pytest.raises(OperationalError, match="database is locked.*write turn"):
            await asyncio.wait_for(queued, 10)
        # A liveness bound, not a speed claim: without it close() would wait as long as
        # the other process keeps the turn.
        assert await asyncio.get_running_loop().run_in_executor(None, closed.wait, 10), \
            "close() waited for a turn another process keeps"

    writer = None
    try:
        with other:
            asyncio.run(scenario())
            writer = db._writer
            assert writer is not None and writer.is_alive()  # still blocked for the turn
        # The turn released: the writer left behind ends, and writes nothing.
        writer.join(10)
        assert not writer.is_alive()
        reader = Store.from_url(url, migrate=False)
        try:
            with reader.uow(read_only=True) as uow:
                assert uow.trading_state.get("queued").state is TradingState.ACTIVE
        finally:
            reader.dispose()
    finally:
        other.close()
        store.dispose()


_KILLED_MID_BATCH = """
import asyncio, sys, time
from services.domain import TradingState
from services.store import Store
from services.store.database import Database

def write_then_hang(uow):
    for index in range(200):  # pages of the file written into the WAL, never committed
        uow.trading_state.set(TradingState.HALTED, "ops", "x" * 500, scope=f"killed-{index}")
    uow.session.flush()
    print("holding", flush=True)
    time.sleep(60)

db = Database(Store.from_url(sys.argv[1], migrate=False))
asyncio.run(db.run(write_then_hang))
"""


def test_a_service_killed_mid_batch_holding_its_turn_and_the_files_lock_hands_both_on_and_loses_its_batch(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tessera.db"
    store = Store.from_url(url, migrate=True)
    holder = subprocess.Popen([sys.executable, "-c", _KILLED_MID_BATCH, url], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[3])
    db = Database(store)

    def write(uow: UnitOfWork) -> str:
        uow.trading_state.set(TradingState.REDUCING, "ops", "test", scope="after the kill")
        return "written"

    async def scenario() -> str:
        call = asyncio.ensure_future(db.run(write))
        await asyncio.sleep(0.2)
        assert not call.done()  # the killed-to-be writer holds its turn and SQLite's write lock
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        return await asyncio.wait_for(call, 10)

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert asyncio.run(scenario()) == "written"
        states = db.read_sync(lambda uow: [uow.trading_state.get(s).state
                                           for s in ("after the kill", "killed-0", "killed-199")])
        assert states == [TradingState.REDUCING, TradingState.ACTIVE, TradingState.ACTIVE]
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        if holder.poll() is None:
            holder.kill()
        db.close()
        store.dispose()
