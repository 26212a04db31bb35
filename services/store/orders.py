"""The order repository: the order aggregate and its events, written together.

Version convention: ``Order.version`` is 0 for an order never stored; :meth:`add`
stores version 1, and every successful :meth:`save` increments it by one, in the
database and on the object. ``save`` is a compare-and-set on the version the object
carries, so of two writers that loaded the same version exactly one wins.

Both methods write ``order.new_events`` in the same transaction and then clear them
(and bump ``order.version``) at once, not at commit: after a rolled-back unit of work,
reload the order instead of saving the same object again. The events are hash-chained
per order (:mod:`services.store.chain`); ``order.last_event_hash`` is the chain's head.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from services.domain import OPEN_STATUSES, Order, OrderEvent, OrderStatus
from services.domain.errors import OrderNotFound, StaleOrder
from services.domain.order import event_label

from ._sql import insert_unless_conflict, keyset_page
from .chain import chain_rows
from .errors import DuplicateClientOrderId, DuplicateOrderId
from .mapping import ORDER_LIFECYCLE_COLUMNS, event_from_row, event_to_row, order_from_row, order_to_row
from .models import order_events_table as events_t
from .models import orders_table as orders_t

_OPEN = sorted(status.value for status in OPEN_STATUSES)
# The hottest read (every submission and execution report), built once.
_BY_ORDER_ID = select(orders_t).where(orders_t.c.order_id == bindparam("order_id"))


@functools.lru_cache(maxsize=8)
def _save_statement(columns: tuple[str, ...]) -> Any:
    """The compare-and-set UPDATE of :meth:`OrderRepository.save` for these columns,
    built once: built per call, its twenty-odd values cost SQLAlchemy more than the
    update itself. Parameters: ``key_order_id``, ``key_version`` and ``new_<column>``."""
    return (
        update(orders_t)
        .where(orders_t.c.order_id == bindparam("key_order_id"), orders_t.c.version == bindparam("key_version"))
        .values(**{name: bindparam(f"new_{name}") for name in columns}, version=orders_t.c.version + 1)
    )


class OrderRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        # Order managers whose batch progress this unit of work may have moved; whoever
        # commits it refreshes them first (services.store.uow.refresh_managers).
        self.touched_managers: set[str] = set()
        # The events written, (order_id, to_status, event_time), for the order metrics.
        self.written_events: list[tuple[str, str, Any]] = []

    # -- writes ---------------------------------------------------------------------
    def add(self, order: Order) -> None:
        """Insert a new order (at version 1) and its pending events.

        Raises
        ------
        DuplicateClientOrderId
            The account already has an order with this client order id; the
            transaction stays usable (nothing was written).
        DuplicateOrderId
            An order with this order id exists already.
        """
        events, head = self._chained_events(order)
        row = order_to_row(order)
        row["version"] = 1
        row["last_event_hash"] = head
        if not insert_unless_conflict(self.session, orders_t, row):
            if self._exists(order.order_id):
                raise DuplicateOrderId(order.order_id)
            raise DuplicateClientOrderId(order.account, order.client_order_id)
        self._write_events(order, events, head)
        order.version = 1
        if order.order_manager_id:
            self.touched_managers.add(order.order_manager_id)

    def save(self, order: Order) -> None:
        """Write the order's lifecycle fields and its pending events, compare-and-set
        on ``order.version``.

        The fields fixed at :meth:`add` (identity, ``order_time`` and the economic
        fields the risk token signs, see ``mapping.ORDER_FIXED_COLUMNS``) are not
        rewritten.

        Raises
        ------
        StaleOrder
            Another writer saved the order since this object was loaded; nothing
            was written.
        OrderNotFound
            The order was never added.
        """
        events, head = self._chained_events(order)
        values: dict[str, Any] = order_to_row(order, ORDER_LIFECYCLE_COLUMNS)
        values["last_event_hash"] = head
        parameters = {f"new_{name}": value for name, value in values.items()}
        parameters.update(key_order_id=order.order_id, key_version=order.version)
        if self.session.execute(_save_statement(tuple(values)), parameters).rowcount != 1:  # type: ignore[attr-defined]
            if not self._exists(order.order_id):
                raise OrderNotFound(f"order {order.order_id} not found")
            raise StaleOrder(
                f"order {order.order_id} was changed by another writer since version {order.version}"
            )
        if order.order_manager_id and any(e.to_status.is_terminal for e in order.new_events):
            self.touched_managers.add(order.order_manager_id)
        self._write_events(order, events, head)
        order.version += 1

    @staticmethod
    def _chained_events(order: Order) -> tuple[list[dict[str, Any]], str | None]:
        """The pending events as rows, hash-chained from the order's stored head.

        The head the order was loaded with is the stored one whenever the write
        succeeds: ``save`` is a compare-and-set on the version loaded with it.
        """
        return chain_rows([event_to_row(e) for e in order.new_events], order.last_event_hash)

    def _write_events(self, order: Order, rows: list[dict[str, Any]], head: str | None) -> None:
        if rows:
            self.session.execute(insert(events_t), rows)
            self.written_events += [(row["order_id"], event_label(row["from_status"], row["to_status"], row["payload"]),
                                     row["event_time"]) for row in rows]
        order.new_events.clear()
        order.last_event_hash = head

    def _exists(self, order_id: str) -> bool:
        found = self.session.execute(select(orders_t.c.order_id).where(orders_t.c.order_id == order_id))
        return found.first() is not None

    # -- reads ----------------------------------------------------------------------
    def _one(self, *conditions: Any) -> Order | None:
        row = self.session.execute(select(orders_t).where(*conditions)).mappings().first()
        return None if row is None else order_from_row(row)

    def get(self, order_id: str) -> Order | None:
        row = self.session.execute(_BY_ORDER_ID, {"order_id": order_id}).mappings().first()
        return None if row is None else order_from_row(row)

    def get_by_client_order_id(self, account: str, client_order_id: str) -> Order | None:
        return self._one(orders_t.c.account == account, orders_t.c.client_order_id == client_order_id)

    def get_by_remote_order_id(self, venue: str, remote_order_id: str) -> Order | None:
        return self._one(orders_t.c.venue == venue, orders_t.c.remote_order_id == remote_order_id)

    def list(
        self,
        account: str | None = None,
        symbol: str | None = None,
        statuses: Iterable[OrderStatus | str] | None = None,
        order_manager_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Order], str | None]:
        """A page of orders by ``(order_time, order_id)`` and the next page's cursor.

        Raises
        ------
        InvalidPage
            Bad ``limit`` or ``cursor``.
        """
        statement = select(orders_t)
        if account is not None:
            statement = statement.where(orders_t.c.account == account)
        if symbol is not None:
            statement = statement.where(orders_t.c.symbol == symbol)
        if statuses is not None:
            statement = statement.where(orders_t.c.status.in_([OrderStatus(s).value for s in statuses]))
        if order_manager_id is not None:
            statement = statement.where(orders_t.c.order_manager_id == order_manager_id)
        rows, next_cursor = keyset_page(
            self.session,
            statement,
            kind="orders",
            time_column=orders_t.c.order_time,
            key_column=orders_t.c.order_id,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )
        return [order_from_row(row) for row in rows], next_cursor

    def open_orders(self, account: str | None = None, symbol: str | None = None) -> list[Order]:
        """Orders that may still fill (SUBMITTED, ACCEPTED, PARTIALLY_FILLED, PENDING_CANCEL)."""
        statement = select(orders_t).where(orders_t.c.status.in_(_OPEN))
        if account is not None:
            statement = statement.where(orders_t.c.account == account)
        if symbol is not None:
            statement = statement.where(orders_t.c.symbol == symbol)
        statement = statement.order_by(orders_t.c.order_time, orders_t.c.order_id)
        return [order_from_row(row) for row in self.session.execute(statement).mappings()]

    def due_for_expiry(self, approved_before: dt.datetime, now: dt.datetime, limit: int = 500,
                       after: tuple[dt.datetime, str] | None = None) -> list[Order]:
        """APPROVED orders approved before ``approved_before`` (their token has lapsed)
        and GTD orders, approved or working, whose ``expire_time`` has come: at most
        ``limit``, least recently changed first, those after ``after`` (an order's
        ``(updated_time, order_id)``) only when given."""
        working = (OrderStatus.APPROVED.value, *_OPEN)
        statement = (
            select(orders_t)
            .where(
                or_(
                    and_(orders_t.c.status == OrderStatus.APPROVED.value, orders_t.c.updated_time < approved_before),
                    and_(orders_t.c.status.in_(working), orders_t.c.expire_time <= now),
                )
            )
            .order_by(orders_t.c.updated_time, orders_t.c.order_id)
            .limit(limit)
        )
        if after is not None:
            time, key = after
            statement = statement.where(or_(orders_t.c.updated_time > time,
                                            and_(orders_t.c.updated_time == time, orders_t.c.order_id > key)))
        return [order_from_row(row) for row in self.session.execute(statement).mappings()]

    def count_open(self, account: str | None = None) -> int:
        statement = select(func.count()).select_from(orders_t).where(orders_t.c.status.in_(_OPEN))
        if account is not None:
            statement = statement.where(orders_t.c.account == account)
        return int(self.session.execute(statement).scalar_one())

    def in_doubt(self) -> tuple[int, dt.datetime | None]:
        """How many orders are SUBMITTED (sent, no venue answer yet), and the oldest
        ``updated_time`` among them (UTC; None when there is none)."""
        statement = (select(func.count(), func.min(orders_t.c.updated_time))
                     .where(orders_t.c.status == OrderStatus.SUBMITTED.value))
        count, oldest = self.session.execute(statement).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.timezone.utc)
        return int(count), oldest

    def owing_fills(self, updated_since: dt.datetime | None = None, limit: int = 500,
                    after: tuple[dt.datetime, str] | None = None) -> list[Order]:
        """CANCELLED and EXPIRED orders that still owe fills (``venue_executed_quantity``
        set: the venue's answer to the close said it executed more than they have filled),
        least recently changed first; only those changed since ``updated_since`` if given,
        and those after ``after`` (an order's ``(updated_time, order_id)``) if given."""
        statement = select(orders_t).where(orders_t.c.venue_executed_quantity.is_not(None))
        if updated_since is not None:
            statement = statement.where(orders_t.c.updated_time >= updated_since)
        if after is not None:
            time, key = after
            statement = statement.where(or_(orders_t.c.updated_time > time,
                                            and_(orders_t.c.updated_time == time, orders_t.c.order_id > key)))
        statement = statement.order_by(orders_t.c.updated_time, orders_t.c.order_id).limit(max(1, limit))
        return [order_from_row(row) for row in self.session.execute(statement).mappings()]

    def count_owing_fills(self) -> int:
        """How many orders :meth:`owing_fills` would name, however old."""
        statement = (select(func.count()).select_from(orders_t)
                     .where(orders_t.c.venue_executed_quantity.is_not(None)))
        return int(self.session.execute(statement).scalar_one())

    # -- events ---------------------------------------------------------------------
    def events(self, order_id: str) -> list[OrderEvent]:
        """Every event of one order, by sequence."""
        statement = select(events_t).where(events_t.c.order_id == order_id).order_by(events_t.c.sequence)
        return [event_from_row(row) for row in self.session.execute(statement).mappings()]

    def events_after(
        self,
        after_id: int,
        order_id: str | None = None,
        account: str | None = None,
        limit: int = 500,
    ) -> list[tuple[int, OrderEvent]]:
        """Events with a global id above ``after_id``, oldest first, with their ids.

        The id is the streaming cursor: pass the last id received to get what
        followed. On PostgreSQL ids are handed out at insert, not at commit, so a
        transaction that commits late can add an id below one already read;
        consumers that must see every event should re-read a small overlap and
        de-duplicate by ``(order_id, sequence)``. On SQLite writers are serialised and
        ids are in commit order.
        """
        statement = select(events_t).where(events_t.c.id > after_id)
        if order_id is not None:
            statement = statement.where(events_t.c.order_id == order_id)
        if account is not None:
            owned = select(orders_t.c.order_id).where(orders_t.c.account == account)
            statement = statement.where(events_t.c.order_id.in_(owned))
        statement = statement.order_by(events_t.c.id).limit(max(1, limit))
        return [(row["id"], event_from_row(row)) for row in self.session.execute(statement).mappings()]
