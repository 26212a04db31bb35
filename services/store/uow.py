"""The unit of work and the store that hands them out.

::

    store = Store.from_url(database_url())        # migrates to head by default
    with store.uow() as uow:
        order = uow.orders.get(order_id)
        order.transition(OrderStatus.SUBMITTED)
        uow.orders.save(order)                    # status + event, compare-and-set
        uow.commit()                              # without it, everything rolls back

A unit of work is one transaction on one session; use one per thread and keep it
short. On SQLite a (default, writing) unit of work holds the database's write lock
from its first statement until it ends, so never keep two open in one thread; a
``store.uow(read_only=True)`` takes no write lock and never waits for writers.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from .engine import SQLITE_BEGIN_OPTION, database_url, make_engine, safe_url
from .migrate import upgrade
from .venue_settings import VenueSettingRepository
from .repositories import (
    AccountActivityRepository,
    AnomalyRepository,
    OrderManagerRepository,
    OrderRepository,
    PositionRepository,
    TradeRepository,
    TradingStateRepository,
)


class AbstractUnitOfWork(abc.ABC):
    """What services depend on; unit tests may subclass it with fake repositories."""

    orders: OrderRepository
    trades: TradeRepository
    order_managers: OrderManagerRepository
    trading_state: TradingStateRepository
    anomalies: AnomalyRepository
    positions: PositionRepository
    account_activity: AccountActivityRepository
    venue_settings: VenueSettingRepository

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.rollback()

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...


class UnitOfWork(AbstractUnitOfWork):
    """One transaction: committed by :meth:`commit`, rolled back on exit otherwise."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> Self:
        if self.session is not None:
            raise RuntimeError("this unit of work is already open")
        self.session = session = self.session_factory()
        self.orders = OrderRepository(session)
        self.trades = TradeRepository(session)
        self.order_managers = OrderManagerRepository(session)
        self.trading_state = TradingStateRepository(session)
        self.anomalies = AnomalyRepository(session)
        self.positions = PositionRepository(session)
        self.account_activity = AccountActivityRepository(session)
        self.venue_settings = VenueSettingRepository(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.rollback()  # a no-op after commit(); discards anything uncommitted
            finally:
                session.close()

    def _open_session(self) -> Session:
        if self.session is None:
            raise RuntimeError("use the unit of work in a with block")
        return self.session

    def commit(self) -> None:
        self._open_session().commit()

    def rollback(self) -> None:
        self._open_session().rollback()


class JoinedUnitOfWork(AbstractUnitOfWork):
    """The repositories on a session that joined a transaction someone else owns (the
    writer's batch, see :mod:`services.store.database`): it neither commits nor rolls
    back; its owner does."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.orders = OrderRepository(session)
        self.trades = TradeRepository(session)
        self.order_managers = OrderManagerRepository(session)
        self.trading_state = TradingStateRepository(session)
        self.anomalies = AnomalyRepository(session)
        self.positions = PositionRepository(session)
        self.account_activity = AccountActivityRepository(session)
        self.venue_settings = VenueSettingRepository(session)

    def __exit__(self, *exc_info: object) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


def refresh_managers(order_managers: OrderManagerRepository, unique_identifiers: Iterable[str]) -> None:
    """Bring the order managers whose orders moved up to date (their batch status, see
    :mod:`services.domain.batches`): what a writer does before it commits."""
    for unique_identifier in sorted(set(unique_identifiers)):
        order_managers.refresh(unique_identifier)


class Store:
    """Owns the engine and session factory; hands out units of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.session_factory = sessionmaker(engine, expire_on_commit=False)
        #: The engine of read-only work: on SQLite its transactions begin deferred (no write lock).
        self.read_engine = reader = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
        self.read_session_factory = sessionmaker(reader, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str | URL | None = None, migrate: bool = True) -> Store:
        """A store on ``url`` (default: :func:`database_url`), migrated to head unless
        ``migrate`` is False.

        Raises
        ------
        sqlalchemy.exc.OperationalError
            The database cannot be reached (migrating connects at once).
        """
        engine = make_engine(url or database_url())
        try:
            if migrate:
                upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def uow(self, read_only: bool = False) -> UnitOfWork:
        """A fresh unit of work. ``read_only`` ones must not write: on SQLite they
        begin a deferred transaction, which takes no write lock."""
        return UnitOfWork(self.read_session_factory if read_only else self.session_factory)

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({safe_url(self.engine.url)})"
