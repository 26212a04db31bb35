"""Where the database is and how to connect to it.

SQLite (the embedded default) is opened in WAL mode with foreign keys on, and
SQLAlchemy, not the ``sqlite3`` driver, emits ``BEGIN``: the driver's legacy mode
starts no transaction before a SELECT or DDL statement, which breaks repeatable reads,
savepoints and transactional DDL. Write transactions begin with ``BEGIN IMMEDIATE``,
taking the write lock up front, so concurrent writers queue on ``busy_timeout``
instead of failing with "database is locked" when a read transaction tries to become
a write transaction. Read-only units of work ask for a plain deferred ``BEGIN`` with
the execution option ``sqlite_begin="DEFERRED"`` and never wait for writers.

A writer that finds the lock taken (by another process: Risk, the OMS and the Exchange
share the file) polls for it every 50 microseconds to 2 milliseconds, up to the same
5 s ``busy_timeout``: SQLite's own busy handler sleeps 1, 2, 5, 10, 15, ... ms between
tries, which turns every brief overlap of two short transactions into milliseconds.
The services' writer threads first take their turn from the kernel
(:class:`WriterTurn`: ``flock`` on a file beside the database), so a waiting writer
sleeps until the one before it has committed and is woken as the turn is handed over,
instead of polling; the polling stays for every other writer (tools, migrations).
"""

from __future__ import annotations

import datetime as dt
import enum
import fcntl
import logging
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

#: Execution option naming how a SQLite transaction begins: IMMEDIATE or DEFERRED.
SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_BEGIN_MODES = {"IMMEDIATE", "DEFERRED", "EXCLUSIVE"}
_SQLITE_SYNCHRONOUS_MODES = {"OFF", "NORMAL", "FULL", "EXTRA", "0", "1", "2", "3"}
#: How long a SQLite statement waits for a lock (ms), and a writer for the write lock.
SQLITE_BUSY_TIMEOUT_MS = 5000


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    """``TESSERA_DATABASE_URL``, or a SQLite file ``var/tessera.db`` under the working
    directory (its directory is created).

    ``postgresql://`` (and ``postgres://``) URLs are rewritten to the psycopg 3 driver.
    """
    configured = environ.get("TESSERA_DATABASE_URL", "").strip()
    if configured:
        return normalize_url(configured).render_as_string(hide_password=False)
    path = Path.cwd() / "var" / "tessera.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and select psycopg 3 for a bare ``postgresql://`` URL."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


#: Query parameters of a database URL whose values are secrets (libpq's and psycopg's).
SECRET_QUERY_PARAMETERS = frozenset({"password", "sslpassword"})


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for logs and messages: the one in the URL's
    user part and one given as a query parameter (``?password=...``)."""
    parsed = make_url(url)
    secret = {name: "masked" for name in parsed.query if name.lower() in SECRET_QUERY_PARAMETERS}
    if secret:
        parsed = parsed.update_query_dict(secret)
    return parsed.render_as_string(hide_password=True)


def json_default(value: Any) -> Any:
    """Make JSON payloads of Decimals (as decimal strings), datetimes and enums."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


def make_engine(
    url: str | URL, *, environ: Mapping[str, str] = os.environ, **engine_kwargs: Any
) -> Engine:
    """Create the engine for ``url`` with Tessera's connection settings.

    Parameters
    ----------
    url
        A SQLAlchemy URL; ``postgresql://`` selects psycopg 3.
    environ
        Read for ``TESSERA_SQLITE_SYNCHRONOUS`` (default ``FULL``) and
        ``TESSERA_DB_POOL_SIZE`` (PostgreSQL, default 10).
    **engine_kwargs
        Passed on to :func:`sqlalchemy.create_engine`, overriding the defaults here.

    Raises
    ------
    ValueError
        ``TESSERA_SQLITE_SYNCHRONOUS`` is not a SQLite synchronous mode.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"json_serializer": json_dumps}
    if parsed.get_backend_name() == "sqlite":
        synchronous = environ.get("TESSERA_SQLITE_SYNCHRONOUS", "FULL").strip().upper()
        if synchronous not in _SQLITE_SYNCHRONOUS_MODES:
            raise ValueError(
                f"TESSERA_SQLITE_SYNCHRONOUS={synchronous!r}: expected OFF, NORMAL, FULL or EXTRA"
            )
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
        kwargs.update(engine_kwargs)
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, synchronous)
        return engine
    if parsed.get_backend_name() == "postgresql":
        pool_size = int(environ.get("TESSERA_DB_POOL_SIZE", "10"))
        kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    kwargs.update(engine_kwargs)
    return create_engine(parsed, **kwargs)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")).upper()
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION}={mode!r}: expected IMMEDIATE or DEFERRED")
        if mode == "DEFERRED":
            connection.exec_driver_sql("BEGIN")
        else:
            begin_write(connection.connection.dbapi_connection, f"BEGIN {mode}")


def begin_write(dbapi_connection: Any, statement: str, timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Run ``BEGIN IMMEDIATE`` (or EXCLUSIVE), polling briefly while another connection
    holds the write lock (see the module docstring), for up to ``timeout`` seconds.

    Raises
    ------
    sqlalchemy.exc.OperationalError
        The lock stayed taken for ``timeout`` seconds ("database is locked"), or any
        other failure to begin (the store is unavailable).
    """
    dbapi_connection.execute("PRAGMA busy_timeout=0")
    try:
        delay, deadline = 50e-6, 0.0
        while True:
            try:
                dbapi_connection.execute(statement)
                return
            except sqlite3.OperationalError as error:
                now = time.monotonic()
                deadline = deadline or now + timeout
                if ("locked" not in str(error) and "busy" not in str(error)) or now >= deadline:
                    raise OperationalError(statement, None, error) from error
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


class WriterTurn:
    """The turn of a process's writer on a SQLite file, handed from one process to the
    next by the kernel: an exclusive ``flock`` on ``<database>-writer``, taken before
    ``BEGIN IMMEDIATE`` and released after the commit (or the rollback).

    SQLite has one writer per file and no way to wake a writer waiting for the lock;
    this lock does: a writer whose turn it is not sleeps in the kernel and wakes as
    soon as the previous one releases it. It orders the writers that take it and
    nothing more: SQLite's own lock still guards the file, against writers that do not
    take a turn too. A process that dies releases its turn with its descriptors.

    The wait has no deadline (``flock`` has none, and a thread blocked in it cannot be
    interrupted): a writer *stopped* while it holds its turn (SIGSTOP, a debugger) keeps
    the others' writer threads waiting until it runs again or dies. Polling for the turn
    with a deadline instead cost 6 to 8 % of the throughput at 32 in flight (interleaved
    A/B runs, 2026-12-07): the kernel's hand-over is what the turn is for. The deadline
    is the callers': :attr:`waiting_since` says since when the writer has waited, and
    :class:`~services.store.database.Database` fails the writes queued behind a wait
    longer than its ``turn_timeout`` (SQLite's busy timeout, what a writer without
    turns waits for the file's lock) as the store being unavailable.

    :meth:`for_engine` gives None (no turns: plain polling) for another database, an
    in-memory one, or a file beside which the lock file cannot be opened.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        #: ``time.monotonic()`` when the wait for the turn began, while it lasts (None otherwise).
        self.waiting_since: float | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> "WriterTurn | None":
        url = engine.url
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
                or url.database.startswith("file:"):
            return None
        path = f"{url.database}-writer"
        try:
            return cls(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            log.info("no writer turns on %s (%s): writers poll for SQLite's lock", path, error.strerror)
            return None

    def __enter__(self) -> "WriterTurn":
        self.waiting_since = time.monotonic()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL until the turn is ours
        finally:
            self.waiting_since = None
        return self

    def __exit__(self, *exc_info: Any) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
