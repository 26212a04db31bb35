"""The services' async bridge to the shared repository layer, with group commit.

gRPC servicers run on asyncio; SQLAlchemy sessions are synchronous. Writes go through
one writer thread that commits concurrent requests together (group commit):

* :meth:`Database.run` queues ``fn(uow, *args)``; the writer takes every call queued
  meanwhile (up to ``max_batch``) and runs them in **one** transaction, each inside its
  own SAVEPOINT, in the order they were queued. A call that raises rolls back only its
  savepoint and gets its exception; the others are unaffected.
* One commit (one fsync on SQLite with ``synchronous=FULL``, one WAL flush on
  PostgreSQL with ``synchronous_commit=on``) covers the whole batch, and every caller is
  answered only after it: nothing is acknowledged before it is durable.
* When the commit itself fails, every call of the batch fails with that error; none is
  retried here (a call may have changed the domain objects it was given; the callers
  that can retry, such as the OMS's compare-and-set writes, reload and retry
  themselves).
* A lone call runs without a savepoint: at one request in flight nothing is added.

:meth:`Database.read` runs read-only units of work on a small pool of reader threads
(on SQLite a deferred transaction, which WAL lets run beside the writer), so reads never
queue behind writes.

A store outage surfaces as ``UNAVAILABLE`` (the servicers map SQLAlchemy errors), not a
hung server.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from typing import Any, Callable, TypeVar

from services.store import Store, UnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)

#: At most this many calls share one transaction. PostgreSQL: 64, because each call's
#: savepoint that writes is a subtransaction, and a transaction with more than 64 of
#: them overflows PostgreSQL's per-backend subtransaction cache (every other session's
#: visibility checks then read pg_subtrans while it is open).
DEFAULT_MAX_BATCH = {"sqlite": 256, "postgresql": 64}


class _Call:
    __slots__ = ("fn", "args", "loop", "future", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future
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


class Database:
    """Runs ``fn(uow, *args)`` in a unit of work that commits when ``fn`` returns.

    Parameters
    ----------
    store
        The store to run against.
    workers
        Reader threads for :meth:`read` (default 2 on SQLite, 4 on PostgreSQL).
    max_batch
        At most this many concurrent writes share one transaction (default
        :data:`DEFAULT_MAX_BATCH` for the dialect); 1 turns group commit off (one
        transaction per call).
    """

    def __init__(self, store: Store, *, workers: int | None = None, max_batch: int | None = None) -> None:
        self.store = store
        dialect = store.engine.dialect.name
        if workers is None:
            workers = 2 if dialect == "sqlite" else 4
        self.max_batch = max(1, max_batch if max_batch is not None else DEFAULT_MAX_BATCH.get(dialect, 64))
        self._readers = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="db-read")
        self._queue: collections.deque[_Call | None] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._writer: threading.Thread | None = None
        self._closed = False
        #: Batches committed and calls they carried (for tests and diagnostics).
        self.batches = 0
        self.calls = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Database":
        return cls(Store.from_url(url, migrate=True), **kwargs)

    # -- the synchronous paths ----------------------------------------------------------------
    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in its own unit of work, in the calling thread (tests, tools)."""
        with self.store.uow() as uow:
            result = fn(uow, *args)
            uow.commit()
            return result

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in a read-only unit of work, in the calling thread; nothing is committed."""
        with self.store.uow(read_only=True) as uow:
            return fn(uow, *args)

    # -- the async paths --------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(uow, *args)`` in the next group commit; return once it is durable."""
        loop = asyncio.get_running_loop()
        call = _Call(fn, args, loop, loop.create_future())
        with self._ready:
            if self._closed:
                raise RuntimeError("the database is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="db-writer", daemon=True)
                self._writer.start()
            self._queue.append(call)
            self._ready.notify()
        return await call.future

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(uow, *args)`` in a read-only unit of work on a reader thread.

        It sees everything committed before it starts, so what a :meth:`run` returned
        for is visible; ``fn`` must not write.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self.read_sync, fn, *args)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._queue.append(None)
            self._ready.notify()
            writer = self._writer
        if writer is not None:
            writer.join()
        self._readers.shutdown(wait=True)
        self.store.dispose()

    # -- the writer thread ------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                batch: list[_Call] = []
                stop = False
                while self._queue and len(batch) < self.max_batch:
                    call = self._queue.popleft()
                    if call is None:
                        stop = True
                        break
                    batch.append(call)
            if batch:
                self._commit(batch)
            if stop:
                # Calls queued after close() began are refused.
                with self._ready:
                    leftover = [c for c in self._queue if c is not None]
                    self._queue.clear()
                for call in leftover:
                    call.error = RuntimeError("the database is closed")
                    call.settle()
                return

    def _commit(self, batch: list[_Call]) -> None:
        try:
            with self.store.uow() as uow:
                if len(batch) == 1:
                    call = batch[0]
                    try:
                        call.result = call.fn(uow, *call.args)
                    except BaseException as error:  # noqa: BLE001 - handed to the caller
                        call.error = error
                else:
                    session = uow.session
                    assert session is not None
                    for call in batch:
                        savepoint = session.begin_nested()
                        try:
                            call.result = call.fn(uow, *call.args)
                        except BaseException as error:  # noqa: BLE001 - handed to the caller
                            call.error = error
                            if savepoint.is_active:
                                savepoint.rollback()
                        else:
                            savepoint.commit()  # RELEASE: stays in the transaction
                if any(call.error is None for call in batch):
                    uow.commit()
        except BaseException as error:  # noqa: BLE001 - the commit (or BEGIN) failed: every call fails
            log.warning("group commit of %d calls failed: %s", len(batch), error)
            for call in batch:
                if call.error is None:
                    call.error = error
                    call.result = None
        self.batches += 1
        self.calls += len(batch)
        for call in batch:
            call.settle()


__all__ = ["Database", "UnitOfWork"]
