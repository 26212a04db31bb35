"""The services' async bridge to the store: one writer with group commit, and readers.

gRPC servicers run on asyncio; the database calls are synchronous. Every write of a
process goes through one writer thread that commits concurrent requests together
(group commit), on one connection it keeps:

* **set writes** (:meth:`Database.write`, :meth:`Database.write_many`): the order path.
  Each names a :class:`SetWrite` kind (new orders, claims, fills, ...); the writer takes
  every call queued meanwhile and gives each kind all of its items at once, so a kind
  writes one multi-row statement per table for the whole batch (prebuilt SQL, no ORM
  session, no savepoint per call). A kind settles each item itself: a lost
  compare-and-set or a duplicate is that item's outcome, not the batch's.
* **unit-of-work calls** (:meth:`Database.run`): ``fn(uow, *args)`` with the
  repositories, for everything off the order path (cancels, order managers, the trading
  state, the reconciler). Each runs in its own SAVEPOINT when it shares the batch, so
  one that raises rolls back only itself.
* The writer takes its batch once the transaction has begun: on SQLite, once it holds
  the file's write lock (one writer per file: the three services take turns, handed
  over by the kernel, see :class:`~services.store.engine.WriterTurn`), so what was
  queued while another process committed shares the next commit.
* One commit (one fsync on SQLite with ``synchronous=FULL``, one WAL flush on
  PostgreSQL with ``synchronous_commit=on``) covers the batch, and every caller is
  answered only after it: nothing is acknowledged before it is durable. When the commit
  (or anything outside a call's own savepoint) fails, every call of the batch fails with
  that error and nothing of it is kept.

After the commit the writer reports the order events the batch stored (``on_events``,
the services' order metrics) and brings the order managers whose orders it moved up to
date, in the same transaction.

:meth:`Database.read` runs read-only units of work on a small pool of reader threads
(on SQLite a deferred transaction, which WAL lets run beside the writer), so reads never
queue behind writes.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Generic, Iterable, Iterator, Protocol, Sequence, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from .codec import Codec
from .engine import SQLITE_BUSY_TIMEOUT_MS, WriterTurn
from .uow import JoinedUnitOfWork, Store, UnitOfWork, refresh_managers

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an item type
log = logging.getLogger(__name__)

#: At most this many calls share one transaction. PostgreSQL: 64 unit-of-work calls,
#: because each one's savepoint that writes is a subtransaction, and a transaction
#: with more than 64 of them overflows PostgreSQL's per-backend subtransaction cache.
#: Set writes take no savepoint: a batch takes up to ``MAX_SET_ITEMS`` of their items.
DEFAULT_MAX_BATCH = {"sqlite": 256, "postgresql": 64}
MAX_SET_ITEMS = 4096


class WriteContext:
    """What a set write gets: the batch's connection, the dialect's codec, and where to
    note what the writer does after it (events to report, managers to refresh)."""

    __slots__ = ("connection", "codec", "dialect", "events", "managers")

    def __init__(self, connection: Connection, codec: Codec) -> None:
        self.connection = connection
        self.codec = codec
        self.dialect = codec.dialect
        #: Order events stored: (order_id, to_status, event_time) for the order metrics.
        self.events: list[tuple[str, str, Any]] = []
        #: Order managers whose orders this batch moved.
        self.managers: set[str] = set()

    def run(self, sql: str, parameters: Any, *, many: bool = False) -> Any:
        """Run one prebuilt statement on the batch's connection; returns the driver's cursor
        (see :func:`run_on_driver`)."""
        return run_on_driver(self.connection, sql, parameters, many=many)


def run_on_driver(connection: Connection, sql: str, parameters: Any, *, many: bool = False) -> Any:
    """Run one prebuilt statement on ``connection``'s driver cursor; returns the cursor.

    The statement goes to the driver's cursor directly, without a SQLAlchemy result
    built around it (its row and metadata set-up costs more than the statement, for
    the order path's small sets): the engine's ``before_cursor_execute`` and
    ``after_cursor_execute`` listeners still see it (statement counts, tracing), and a
    driver error is raised as SQLAlchemy raises it (an ``OperationalError`` for a lost
    database, with the connection invalidated when it is gone).
    """
    dbapi = connection.connection.dbapi_connection
    cursor = dbapi.cursor()
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, many)
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except connection.dialect.loaded_dbapi.Error as error:
        gone = connection.dialect.is_disconnect(error, dbapi, cursor)
        if gone:
            connection.invalidate(error)
        raise DBAPIError.instance(sql, parameters, error, connection.dialect.loaded_dbapi.Error,
                                  connection_invalidated=gone) from error
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(connection, cursor, sql, parameters, None, many)
    return cursor


@contextlib.contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Run the statements of the block in psycopg's pipeline mode: a statement whose result
    the writer does not read (the events and trades that follow an update, say) is sent
    without waiting for the one before it to answer, and the block ends with one sync.
    An error is raised there, as SQLAlchemy raises a driver error (an ``OperationalError``
    for a lost database, with the connection invalidated)."""
    dbapi = connection.connection.dbapi_connection
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():
            yield
    except connection.dialect.loaded_dbapi.Error as error:
        if isinstance(error, DBAPIError):
            raise
        gone = connection.dialect.is_disconnect(error, dbapi, None)
        if gone:
            connection.invalidate(error)
        raise DBAPIError.instance("(pipeline)", None, error, connection.dialect.loaded_dbapi.Error,
                                  connection_invalidated=gone) from error


class SetWrite(Protocol[I]):
    """One kind of set write: writes all of a batch's items of its kind at once."""

    name: str

    def write(self, context: WriteContext, items: Sequence[I]) -> list[Any]:
        """Write ``items``; return one outcome per item, in order: its result, or the
        exception that refuses it (returned, not raised). Raising fails the batch."""


class _Pending:
    __slots__ = ("loop", "future", "result", "error")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self) -> None:
        """Hand the outcome to the caller's event loop (from the writer thread)."""
        try:
            self.loop.call_soon_threadsafe(self._resolve)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting
            pass

    def _resolve(self) -> None:
        if self.future.done():  # the caller was cancelled
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


def _settle(batch: list[_Pending]) -> None:
    """Hand a batch's outcomes to their event loops: one wake-up per loop, not per call
    (each ``call_soon_threadsafe`` writes to the loop's self-pipe)."""
    by_loop: dict[int, list[_Pending]] = {}
    for pending in batch:
        by_loop.setdefault(id(pending.loop), []).append(pending)
    for pendings in by_loop.values():
        try:
            pendings[0].loop.call_soon_threadsafe(_resolve_all, pendings)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting
            pass


def _set_on_driver(connection: Connection, statement: str) -> None:
    """Run a session setting on the driver's connection and commit it: outside any
    transaction of SQLAlchemy's (none is begun, no commit event is seen). A driver error
    is raised as SQLAlchemy raises it (an ``OperationalError`` for a lost database)."""
    dbapi = connection.connection.dbapi_connection
    try:
        with dbapi.cursor() as cursor:
            cursor.execute(statement)
        dbapi.commit()
    except connection.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(statement, None, error, connection.dialect.loaded_dbapi.Error) from error


def _turn_unavailable(waited: float) -> OperationalError:
    return OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
        f"database is locked: another process's writer has held the store's write turn for {waited:.1f} s"))


def _resolve_all(pendings: list[_Pending]) -> None:
    for pending in pendings:
        pending._resolve()


class _Call(_Pending):
    """``fn(uow, *args)`` in a unit of work."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.fn = fn
        self.args = args


class _Set(_Pending):
    """Items of one set write; the result is their outcomes."""

    __slots__ = ("kind", "items")

    def __init__(self, kind: SetWrite[Any], items: list[Any], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.kind = kind
        self.items = items


class Database(Generic[T]):
    """The writer (group commit) and the readers of one process.

    Parameters
    ----------
    store
        The store to run against.
    workers
        Reader threads for :meth:`read` (default 2 on SQLite, 4 on PostgreSQL).
    max_batch
        At most this many unit-of-work calls share one transaction (default
        :data:`DEFAULT_MAX_BATCH` for the dialect); 1 turns group commit off for them.
    on_events
        Called after each commit with the order events it stored, as
        ``(order_id, label, event_time)`` tuples, the label the status entered or
        ``FILL_AFTER_CLOSE`` (:func:`services.domain.order.event_label`; the services'
        order metrics).
    on_commit
        Called after each group commit with the items it wrote (a set write's items,
        a unit-of-work call one), the seconds the writer waited to begin (on SQLite:
        for its turn and the file's write lock, which the other processes' writers
        hold in turn) and the seconds from then to the end of the commit, the write
        lock held all along (the services' store metrics).
    owns_store
        :meth:`close` disposes of the store too (False: the caller keeps using it).
    turn_timeout
        On a SQLite file, how long the writes queued while the writer waits for its turn
        (:class:`~services.store.engine.WriterTurn`: another process's writer holds it)
        may wait: past it they fail as the store being unavailable (an
        ``OperationalError``, "database is locked"), and so does every write asked for
        until the turn comes. The writer itself waits on (the kernel's lock has no
        deadline) and writes what is queued once the turn comes. On PostgreSQL, the
        writer connection's ``lock_timeout``: a statement waiting that long for a lock
        another session holds fails (an ``OperationalError``, "lock timeout"), its
        batch with it. Default: SQLite's busy timeout, what a writer without turns waits
        for the file's lock.
    """

    def __init__(
        self,
        store: Store,
        *,
        workers: int | None = None,
        max_batch: int | None = None,
        on_events: Callable[[list[tuple[str, str, Any]]], None] | None = None,
        on_commit: Callable[[int, float, float], None] | None = None,
        owns_store: bool = True,
        turn_timeout: float | None = None,
    ) -> None:
        self.store = store
        self.turn_timeout = SQLITE_BUSY_TIMEOUT_MS / 1000 if turn_timeout is None else turn_timeout
        self.owns_store = owns_store
        dialect = store.engine.dialect.name
        self.codec = Codec(dialect)
        if workers is None:
            workers = 2 if dialect == "sqlite" else 4
        self.max_batch = max(1, max_batch if max_batch is not None else DEFAULT_MAX_BATCH.get(dialect, 64))
        self.on_events = on_events
        self.on_commit = on_commit
        self._readers = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="db-read")
        self._queue: collections.deque[_Pending | None] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        self._connection: Connection | None = None
        #: The writer's turn on a SQLite file among the processes sharing it (None: not
        #: SQLite), opened by the writer thread when it starts.
        self._turn: WriterTurn | None = None
        self._statements = 0  # run on the writer's connection in the current batch
        self._closed = False
        #: The calls of the batch the writer holds (taken from the queue, not yet answered).
        self._inflight: list[_Pending] = []
        #: Batches committed and calls they carried (for tests and diagnostics).
        self.batches = 0
        self.calls = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Database[Any]":
        return cls(Store.from_url(url, migrate=True), **kwargs)

    # -- the synchronous paths ----------------------------------------------------------------
    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in its own unit of work, in the calling thread (tests, tools)."""
        with self.store.uow() as uow:
            result = fn(uow, *args)
            refresh_managers(uow.order_managers, uow.orders.touched_managers)
            uow.commit()
            return result

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in a read-only unit of work, in the calling thread; nothing is committed."""
        with self.store.uow(read_only=True) as uow:
            return fn(uow, *args)

    def read_connection_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(connection, *args)`` in a read-only transaction on a plain Core connection
        (no unit of work, no session), in the calling thread."""
        with self.store.read_engine.connect() as connection:
            try:
                return fn(connection, *args)
            finally:
                connection.rollback()

    # -- the async paths --------------------------------------------------------------------
    def _enqueue(self, pending: _Pending) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the database is closed")
            waited = self._turn_waited()
            if waited is not None:
                raise _turn_unavailable(waited)
            if self._writer is None:  # the first write, or the writer before stopped (see _writer_stopped)
                self._writer = threading.Thread(target=self._write_loop, args=(threading.Event(),),
                                                name="db-writer", daemon=True)
                self._writer.start()
            self._queue.append(pending)
            self._ready.notify()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(uow, *args)`` in the next group commit; return once it is durable."""
        call = _Call(fn, args, asyncio.get_running_loop())
        self._enqueue(call)
        return await call.future

    async def write_many(self, kind: SetWrite[I], items: Iterable[I]) -> list[Any]:
        """Write ``items`` of one kind in the next group commit; return once durable.

        Returns one outcome per item, in order: its result or the exception that
        refused it (a returned exception, not raised).

        Raises
        ------
        Exception
            The batch failed as a whole (the store is down, the commit failed).
        """
        items = list(items)
        if not items:
            return []
        call = _Set(kind, items, asyncio.get_running_loop())
        self._enqueue(call)
        return await call.future

    async def write(self, kind: SetWrite[I], item: I) -> Any:
        """:meth:`write_many` of one item: its result, or its refusal raised."""
        (outcome,) = await self.write_many(kind, [item])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(uow, *args)`` in a read-only unit of work on a reader thread.

        It sees everything committed before it starts, so what a :meth:`run` returned
        for is visible; ``fn`` must not write.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, fn, *args)

    async def read_connection(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`read` for ``fn(connection, *args)`` on a plain Core connection: the
        statements a caller runs itself (Risk following the store), without a session."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_connection_sync, fn, *args)

    def close(self) -> None:
        """Write what was queued before, stop the writer, release the connections.

        A writer still waiting for its turn on a SQLite file past ``turn_timeout``
        (another process's writer holds it: stopped, say) is not waited for: the writes
        queued behind that wait have failed as the store being unavailable, and the
        writer thread, left to end once the turn comes, writes nothing more. Its
        connection and turn go with the process; the caller (a service stopping) is
        not held without end.
        """
        with self._ready:
            self._closed = True
            self._queue.append(None)
            self._ready.notify()
            writer = self._writer
        left_behind = False
        if writer is not None:
            writer.join(0.1)
            while writer.is_alive():
                if self._turn_waited() is not None:
                    left_behind = True
                    log.warning("the store's writer is still waiting for its write turn, held by another process: "
                                "closed without it (it writes nothing more)")
                    break
                writer.join(0.1)
        self._readers.shutdown(wait=True)
        if not left_behind:  # the writer left behind keeps its connection and turn
            if self._connection is not None:
                self._release(self._connection)
                self._connection = None
            if self._turn is not None:
                self._turn.close()
        if self.owns_store:
            self.store.dispose()

    # -- the writer thread ------------------------------------------------------------------
    def _turn_waited(self) -> float | None:
        """How long the writer has waited for its turn, when that is past ``turn_timeout``."""
        since = self._turn.waiting_since if self._turn is not None else None
        if since is None:
            return None
        waited = time.monotonic() - since
        return waited if waited > self.turn_timeout else None

    def _watch_turn(self, stopped: threading.Event) -> None:
        """Fail the writes queued behind a wait for the turn past ``turn_timeout`` (the
        writer thread is blocked in the kernel and cannot), until the writer ends (``stopped``)."""
        period = max(0.01, min(0.5, self.turn_timeout / 4))
        while not stopped.wait(period):
            with self._ready:
                waited = self._turn_waited()
                if waited is None:
                    continue
                failed = [pending for pending in self._queue if pending is not None]
                if not failed:
                    continue
                kept = [pending for pending in self._queue if pending is None]  # close(): still to come
                self._queue.clear()
                self._queue.extend(kept)
            log.warning("the store's write turn has been held by another process for %.1f s: %d queued writes "
                        "failed as the store being unavailable", waited, len(failed))
            for pending in failed:
                pending.error = _turn_unavailable(waited)
            _settle(failed)

    def _write_loop(self, stopped: threading.Event) -> None:
        try:
            self._write_batches(stopped)
        except BaseException as error:  # noqa: BLE001 - a writer that stops must not leave its callers waiting
            self._writer_stopped(error)
        finally:
            stopped.set()

    def _writer_stopped(self, error: BaseException) -> None:
        """The writer thread failed outside any batch (a defect, or memory exhausted): the
        calls it held and the ones queued fail as the store being unavailable instead of
        waiting for an answer that will not come, and the next write starts a new writer.
        A call of the batch it held may have been committed: its caller cannot tell (as
        when a connection drops during a commit), and retries as after any store error."""
        log.critical("the store's writer stopped: %r; the writes it held or had queued fail, the next write starts "
                     "a new writer", error, exc_info=error)
        failure = OperationalError("(the store's writer)", None, RuntimeError(
            f"the store's writer stopped ({error!r}): the write may or may not have been committed"))
        with self._ready:
            failed = [pending for pending in self._inflight if not pending.future.done()]
            failed += [pending for pending in self._queue if pending is not None]
            self._queue.clear()  # close() (None), if queued, is done with: its join returns
            self._inflight = []
            self._writer = None
            connection, self._connection = self._connection, None
            turn, self._turn = self._turn, None
        try:
            if connection is not None:
                self._release(connection)
            if turn is not None:
                turn.close()
        except Exception:  # noqa: BLE001 - gone already: nothing more to release
            log.debug("not released", exc_info=True)
        for pending in failed:
            pending.error, pending.result = failure, None
        _settle(failed)

    def _write_batches(self, stopped: threading.Event) -> None:
        self._turn = WriterTurn.for_engine(self.store.engine)
        if self._turn is not None:
            threading.Thread(target=self._watch_turn, args=(stopped,), name="db-writer-turn", daemon=True).start()
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                closing = self._queue[0] is None  # close(): nothing queued before it
                if closing:
                    self._queue.popleft()
            stop = closing or self._commit()
            if stop:
                # Calls queued after close() began are refused.
                with self._ready:
                    leftover = [c for c in self._queue if c is not None]
                    self._queue.clear()
                for pending in leftover:
                    pending.error = RuntimeError("the database is closed")
                    pending.settle()
                return

    def _take(self) -> tuple[list[_Pending], bool, int]:
        """The calls queued now, up to the batch's bounds, whether close() came among
        them (the batch is what was queued before it), and the writes they carry (a set
        write's items, a unit-of-work call one)."""
        batch: list[_Pending] = []
        calls = items = 0
        with self._ready:
            while self._queue and calls < self.max_batch and items < MAX_SET_ITEMS:
                pending = self._queue.popleft()
                if pending is None:
                    return batch, True, items + calls
                batch.append(pending)
                if isinstance(pending, _Set):
                    items += len(pending.items)
                else:
                    calls += 1
        return batch, False, items + calls

    def _open(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            connection = self.store.engine.connect()
            if connection.dialect.name == "postgresql":
                # A lock another session keeps (an operator's LOCK, a migration's ALTER)
                # fails the statement after turn_timeout, as SQLite's busy timeout does,
                # instead of holding the batch, every write queued behind it and close()
                # as long as it is kept. Set once on the writer's connection, which it
                # keeps (nothing more per batch), and reset before it goes back to the pool.
                try:
                    _set_on_driver(connection, f"SET lock_timeout = {max(1, round(self.turn_timeout * 1000))}")
                except BaseException:
                    connection.invalidate()  # not given back to the pool with the setting half made
                    connection.close()
                    raise
            self._connection = connection
            event.listen(connection, "before_cursor_execute", self._executed)
        return self._connection

    def _release(self, connection: Connection) -> None:
        """Give the writer's connection back to the pool as the pool gave it."""
        if connection.dialect.name == "postgresql" and not connection.closed and not connection.invalidated:
            try:
                connection.rollback()
                _set_on_driver(connection, "RESET lock_timeout")
            except Exception:  # noqa: BLE001 - gone: the pool discards it
                connection.invalidate()
        connection.close()

    def _executed(self, *_args: Any) -> None:
        self._statements += 1

    def _commit(self) -> bool:
        """Commit the calls queued once the transaction has begun; True when close()
        came among them.

        The batch is taken after ``BEGIN``: on SQLite that is when the file's write lock
        is held (``BEGIN IMMEDIATE``, which waits while another process commits), so
        every call queued during the wait shares this commit instead of waiting for the
        next one, and a busy file makes fewer, larger commits instead of more waits.
        """
        batch: list[_Pending] = []
        stop = False
        connection: Connection | None = None
        turn = self._turn if self._turn is not None else contextlib.nullcontext()
        try:
            connection = self._open()
            self._statements = 0
            asked = time.perf_counter()
            with turn, connection.begin() as transaction:
                begun = time.perf_counter()
                batch, stop, writes = self._take()
                self._inflight = batch
                sets = [p for p in batch if isinstance(p, _Set)]
                calls = [p for p in batch if isinstance(p, _Call)]
                context = WriteContext(connection, self.codec)
                self._write_sets(context, sets)
                if calls:
                    self._run_calls(context, calls, shared=len(batch) > 1)
                if context.managers:
                    with Session(bind=connection, join_transaction_mode="rollback_only") as session:
                        refresh_managers(JoinedUnitOfWork(session).order_managers, context.managers)
                if not self._statements or not any(p.error is None for p in batch):
                    transaction.rollback()  # nothing written, or nothing to keep: no commit
            if self.on_commit is not None and batch:
                try:
                    self.on_commit(writes, begun - asked, time.perf_counter() - begun)
                except Exception:  # noqa: BLE001 - never fail a committed batch over a metric
                    log.debug("commit not reported", exc_info=True)
            if self.on_events is not None and context.events:
                try:
                    self.on_events(context.events)
                except Exception:  # noqa: BLE001 - never fail a committed batch over a metric
                    log.debug("order events not reported", exc_info=True)
        except BaseException as error:  # noqa: BLE001 - the batch failed: every call fails with it
            log.warning("group commit of %d calls failed: %s", len(batch), error)
            if isinstance(error, DBAPIError) and connection is not None and error.connection_invalidated:
                self._connection = None
            elif connection is not None and not connection.closed:
                try:
                    connection.rollback()
                except Exception:  # noqa: BLE001 - the connection is gone: open a new one next time
                    connection.invalidate()
                    self._connection = None
            if not batch:  # BEGIN failed: what is queued fails with it
                batch, stop, _ = self._take()
                self._inflight = batch
            for pending in batch:
                pending.error = error
                pending.result = None
        self.batches += 1
        self.calls += len(batch)
        _settle(batch)
        self._inflight = []
        return stop

    @staticmethod
    def _write_sets(context: WriteContext, sets: list[_Set]) -> None:
        """Each kind's items of the batch in one ``write``, kinds in order of arrival; on
        PostgreSQL in psycopg's pipeline mode (see :func:`pipelined`)."""
        if not sets:
            return
        if context.dialect == "postgresql":
            with pipelined(context.connection):
                Database._write_kinds(context, sets)
        else:
            Database._write_kinds(context, sets)

    @staticmethod
    def _write_kinds(context: WriteContext, sets: list[_Set]) -> None:
        kinds: dict[int, tuple[SetWrite[Any], list[_Set]]] = {}
        for pending in sets:
            kinds.setdefault(id(pending.kind), (pending.kind, []))[1].append(pending)
        for kind, pendings in kinds.values():
            items = [item for pending in pendings for item in pending.items]
            outcomes = kind.write(context, items)
            if len(outcomes) != len(items):
                raise AssertionError(f"{kind.name} settled {len(outcomes)} of {len(items)} items")
            start = 0
            for pending in pendings:
                pending.result = outcomes[start:start + len(pending.items)]
                start += len(pending.items)

    @staticmethod
    def _run_calls(context: WriteContext, calls: list[_Call], *, shared: bool) -> None:
        connection = context.connection
        with Session(bind=connection, join_transaction_mode="rollback_only") as session:
            for call in calls:
                uow = JoinedUnitOfWork(session)
                savepoint = connection.begin_nested() if shared else None
                try:
                    call.result = call.fn(uow, *call.args)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    call.error = error
                    if savepoint is not None and savepoint.is_active:
                        savepoint.rollback()
                    # Alone in the batch (no savepoint): the batch rolls back, as every call failed.
                    continue
                if savepoint is not None:
                    savepoint.commit()  # RELEASE: stays in the transaction
                context.events += uow.orders.written_events
                context.managers |= uow.orders.touched_managers


__all__ = ["Database", "SetWrite", "UnitOfWork", "WriteContext"]
