"""The services' async bridge to the shared repository layer.

gRPC servicers run on asyncio; SQLAlchemy sessions are synchronous. Each unit of work
runs on a small dedicated thread pool, so the event loop never blocks on the database
and a store outage surfaces as ``UNAVAILABLE`` instead of a hung server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Callable, TypeVar

from services.store import Store, UnitOfWork

T = TypeVar("T")


class Database:
    """Runs ``fn(uow, *args)`` inside a unit of work that commits when ``fn`` returns."""

    def __init__(self, store: Store, *, workers: int | None = None) -> None:
        self.store = store
        if workers is None:
            # SQLite serialises writers anyway; one thread avoids lock contention.
            workers = 1 if store.engine.dialect.name == "sqlite" else 4
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="db")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Database":
        return cls(Store.from_url(url, migrate=True), **kwargs)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        with self.store.uow() as uow:
            result = fn(uow, *args)
            uow.commit()
            return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.dispose()


__all__ = ["Database", "UnitOfWork"]
