"""The order path's writes, as sets: one multi-row statement per table per group commit.

Three kinds of :class:`~services.store.database.SetWrite`, each taking every item of
its kind that a batch carries:

* :data:`NEW_ORDERS` (Risk): the decided orders and their first events (PENDING, then
  APPROVED or REJECTED). Two statements: the orders, then the events of those stored.
  An order whose client order id (or id) the account already used is refused
  (:class:`DuplicateClientOrderId`), the others are stored.
* :data:`CLAIMS` (the OMS, before the venue): APPROVED -> SUBMITTED. Two statements
  (the updates, the events) for claims that come with their order, whose stored row
  and chain head are known from the verified request; a read first for the others and
  for whatever the update did not move, each checked against what it read: the order
  exists, is APPROVED, its expire time (if any) is still to come, trading in its symbol
  is not HALTED (and, in REDUCING, the order only reduces the account's position, summed
  from its trades). See :class:`Claims`.
* :data:`FILLS` (the OMS, after the venue): the orders as the venue's answer left them,
  their events and their trades. Three statements.

The compare-and-set of every update is the order's ``last_sequence``: an update names
the sequence it read, and the events it appends take the next ones, the
``(order_id, sequence)`` key of ``order_events_ts``. A writer that lost the race
(another OMS replica, a cancel) gets :class:`~services.domain.errors.StaleOrder` for
that order alone, reloads and applies its change again. Each update returns the ids it
moved, so the winners are known from the statement itself.

SQLite runs each insert with ``executemany`` (the driver steps one prepared statement
through the rows, in C) and each update as ``UPDATE ... FROM (VALUES ...) RETURNING``
(up to 500 orders a statement); PostgreSQL binds each column as one array and
``unnest``s it (``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``),
one statement whatever the number of rows, prepared once, except that an insert of a
few rows goes as rows of values (see :func:`_insert`). Values are converted by the
dialect's :class:`~services.store.codec.Codec`, exactly as the column types store them.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any, Callable

import core_ext
from services.domain import (
    LiquiditySide,
    MarketType,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Trade,
    TradingState,
    WorkingType,
    ledger,
)
from services.domain.errors import (InvalidOrder, OrderNotFound, PreconditionFailed, StaleOrder, TokenReplayed,
                                    trading_halted)
from services.domain.order import event_label

from .codec import json_text
from .database import WriteContext
from .errors import DuplicateClientOrderId, DuplicateOrderId
from .mapping import ORDER_COLUMNS, ORDER_LIFECYCLE_COLUMNS, TRADE_COLUMNS
from .models import order_events_table, orders_table, trades_table
from .trading_state import GLOBAL_SCOPE

EVENT_COLUMNS = ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload",
                 "prev_hash", "hash", "raw_venue_json")
#: The columns an update of the order path writes (``version`` is bumped by the statement).
UPDATE_COLUMNS = ORDER_LIFECYCLE_COLUMNS
#: At most this many ids in one ``IN (...)`` list on SQLite (its variable limit is 32766).
IN_CHUNK = 500
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_WIDE = Context(prec=100)
_ENUMS = {"market_type": MarketType, "side": Side, "order_type": OrderType, "time_in_force": TimeInForce,
          "status": OrderStatus, "previous_status": OrderStatus, "working_type": WorkingType}
_DECIMALS = frozenset({"quantity", "price", "stop_price", "leverage", "filled_quantity", "average_fill_price",
                       "activation_price", "callback_rate", "quote_order_qty", "venue_executed_quantity"})
_TIMES = frozenset({"expire_time", "order_time", "updated_time"})
_JSON = frozenset({"reject_reasons", "raw_venue_payload"})
_FLAGS = frozenset({"reduce_only", "post_only", "close_position", "price_protect"})


# -- values ----------------------------------------------------------------------------------
def _pg_type(column: Any) -> str:
    """The array element type PostgreSQL binds a column of this table as."""
    name = type(column.type).__name__
    return {"DecimalString": "numeric", "UTCDateTime": "timestamptz", "Boolean": "boolean",
            "Integer": "integer", "BigInteger": "bigint"}.get(name, "jsonb" if column.name in _JSON
                                                                  or column.name in ("payload", "raw_payload")
                                                                  else "text")


#: How each column of the order path's tables is stored (see :class:`~services.store.codec.Codec`).
KINDS: dict[str, str] = {
    **{name: "decimal" for name in _DECIMALS - {"average_fill_price"}}, "average_fill_price": "derived",
    **{name: "time" for name in _TIMES}, **{name: "flag" for name in _FLAGS}, **{name: "json" for name in _JSON},
    **{name: "enum" for name in _ENUMS},
}
_TRADE_KINDS = {"quantity": "decimal", "price": "decimal", "commission": "decimal", "trade_time": "time",
                "raw_payload": "json", "side": "enum", "liquidity_side": "enum"}


def order_values(codec: Any, order: Order, columns: Sequence[str] = ORDER_COLUMNS) -> list[Any]:
    """The order's values for ``columns``, as the store keeps them."""
    row = codec.plan(columns, KINDS)(order)
    if "reject_reasons" in columns:
        index = columns.index("reject_reasons")
        if row[index] is None:
            row[index] = "[]"
    return row


_ENUM_VALUES = {name: {member.value: member for member in enum} for name, enum in _ENUMS.items()}


def order_from_values(codec: Any, row: Sequence[Any], columns: Sequence[str] = ORDER_COLUMNS) -> Order:
    """An order from a row of ``columns`` as the database returns them."""
    values: dict[str, Any] = {}
    for name, value in zip(columns, row):
        if value is None:
            pass
        elif name in _DECIMALS:
            value = codec.decimal_from(value)
        elif name in _TIMES:
            value = codec.time_from(value)
        elif name in _FLAGS:
            value = bool(value)
        elif name in _JSON:
            value = codec.json_from(value)
        elif name in _ENUM_VALUES:
            value = _ENUM_VALUES[name][value]
        values[name] = value
    values["reject_reasons"] = list(values.get("reject_reasons") or [])
    return Order(**values)


def _event_values(codec: Any, event: OrderEvent, prev_hash: str | None) -> tuple[list[Any], str]:
    digest = core_ext.event_hash(
        prev_hash, order_id=event.order_id, sequence=event.sequence, event_time=event.event_time,
        from_status=event.from_status, to_status=event.to_status, reason=event.reason, payload=event.payload,
    )
    return (event.order_id, event.sequence, codec.time(event.event_time),
            event.from_status.value if event.from_status is not None else None, event.to_status.value,
            event.reason, json_text(event.payload or {}), prev_hash, digest, event.raw_venue_json), digest


def chain(codec: Any, order: Order) -> tuple[list[list[Any]], str | None]:
    """The rows of the order's new events, hash-chained from its stored head; the new head."""
    rows, head = [], order.last_event_hash
    for event in order.new_events:
        row, head = _event_values(codec, event, head)
        rows.append(row)
    return rows, head


def trade_values(codec: Any, trade: Trade) -> list[Any]:
    return codec.plan(TRADE_COLUMNS, _TRADE_KINDS)(trade)


# -- statements --------------------------------------------------------------------------------
def _columns(table: Any, names: Sequence[str]) -> list[Any]:
    return [table.c[name] for name in names]


#: At most this many rows go to PostgreSQL as rows of values rather than arrays (see :func:`_insert`).
FEW_ROWS = 8


@functools.lru_cache(maxsize=None)
def insert_sql(dialect: str, table_name: str, names: tuple[str, ...], ignore_conflicts: bool = False,
               single: bool = False) -> str:
    """``INSERT`` of rows of ``names``: ``executemany`` on SQLite, ``unnest`` arrays on
    PostgreSQL, or there one row of values when ``single`` (see :func:`_insert`)."""
    table = {t.name: t for t in (orders_table, order_events_table, trades_table)}[table_name]
    column_list = ", ".join(names)
    if dialect == "sqlite":
        sql = f"INSERT INTO {table_name} ({column_list}) VALUES ({', '.join('?' for _ in names)})"
        return sql + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
    parameters = _pg_parameters([_pg_type(c) for c in _columns(table, names)], single)
    if single:
        sql = f"INSERT INTO {table_name} ({column_list}) VALUES ({parameters})"
    else:
        sql = f"INSERT INTO {table_name} ({column_list}) SELECT * FROM unnest({parameters})"
    return sql + (" ON CONFLICT DO NOTHING RETURNING order_id" if ignore_conflicts else "")


def _insert(context: WriteContext, table_name: str, names: tuple[str, ...], rows: list[Sequence[Any]],
            ignore_conflicts: bool = False) -> Any:
    """Insert ``rows`` into ``table_name``; returns the driver's cursor (the ids stored,
    on PostgreSQL, when ``ignore_conflicts``).

    On PostgreSQL a few rows go as rows of values (one row: ``execute``; up to
    :data:`FEW_ROWS` without a result to read: ``executemany``, which psycopg pipelines):
    binding each column as an array of one and ``unnest``ing it costs about twice as
    much, client and server together, as the plain row (0.68 against 0.35 ms for an
    order), and one order at a time is every set's size; from a few rows up the arrays
    cost the same or less and make one statement of any number of rows.
    """
    if context.dialect == "sqlite":
        return _execute(context, insert_sql("sqlite", table_name, names, ignore_conflicts), rows)
    if len(rows) == 1:
        return context.run(insert_sql(context.dialect, table_name, names, ignore_conflicts, True), tuple(rows[0]))
    if len(rows) <= FEW_ROWS and not ignore_conflicts:
        return context.run(insert_sql(context.dialect, table_name, names, False, True),
                           [tuple(row) for row in rows], many=True)
    return _execute(context, insert_sql(context.dialect, table_name, names, ignore_conflicts), rows)


def _pg_parameters(types: Sequence[str], single: bool) -> str:
    """PostgreSQL's placeholders for columns of ``types``: one value each when ``single``,
    else one array each (JSON bound as text)."""
    if single:
        return ", ".join(f"%s::{t}" for t in types)
    return ", ".join("%s::text[]::jsonb[]" if t == "jsonb" else f"%s::{t}[]" for t in types)


def _pg_source(types: Sequence[str], names: Sequence[str], rows: int) -> str:
    """The rows an update joins, on PostgreSQL, as ``v(names)``: one row of values when
    ``rows`` is 1 (cheaper than arrays of one, see :func:`_insert`), else one array per
    column ``unnest``ed (any number of rows)."""
    if rows == 1:
        return f"(VALUES ({_pg_parameters(types, True)})) AS v({', '.join(names)})"
    return f"unnest({_pg_parameters(types, False)}) AS v({', '.join(names)})"


def _sqlite_values(width: int, rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return ", ".join([row] * rows)


@functools.lru_cache(maxsize=256)
def update_sql(dialect: str, rows: int) -> str:
    """The compare-and-set update of orders' lifecycle columns on ``last_sequence``, for
    ``rows`` orders at once; returns the ids it updated.

    Parameters per order: the new values of ``UPDATE_COLUMNS``, then ``order_id`` and
    the expected sequence. SQLite: ``rows`` rows of ``VALUES``, flattened; PostgreSQL:
    one row of values for 1, else one array per column (any number of rows).
    """
    width = len(UPDATE_COLUMNS) + 2
    if dialect == "sqlite":
        assignments = ", ".join(f"{name} = v.column{i + 1}" for i, name in enumerate(UPDATE_COLUMNS))
        return (f"UPDATE orders_ts SET {assignments}, version = version + 1 "
                f"FROM (VALUES {_sqlite_values(width, rows)}) AS v "
                f"WHERE orders_ts.order_id = v.column{width - 1} AND orders_ts.last_sequence = v.column{width} "
                "RETURNING orders_ts.order_id")
    names = (*UPDATE_COLUMNS, "order_id", "expected_sequence")
    types = [*(_pg_type(orders_table.c[name]) for name in UPDATE_COLUMNS), "text", "integer"]
    assignments = ", ".join(f"{name} = v.{name}" for name in UPDATE_COLUMNS)
    return (f"UPDATE orders_ts AS o SET {assignments}, version = o.version + 1 "
            f"FROM {_pg_source(types, names, rows)} "
            "WHERE o.order_id = v.order_id AND o.last_sequence = v.expected_sequence RETURNING o.order_id")


@functools.lru_cache(maxsize=256)
def expected_claim_sql(dialect: str, rows: int) -> str:
    """The claim of orders whose stored row is known (see :class:`Claims`): APPROVED ->
    SUBMITTED where the row is exactly the expected one and trading is ACTIVE, for
    ``rows`` orders at once; returns the ids it moved.

    Parameters per claim: the update time, the new head; then the order id, the expected
    head, the token's nonce, the order manager and the expiry (NULL when unset). Returns
    each id with the order's new version (an approval Risk gave again, with a fresh
    token, moved the version on without an event).
    """
    untraded = ("NOT EXISTS (SELECT 1 FROM trading_state WHERE scope IN "
                f"('{GLOBAL_SCOPE}', 'symbol:' || {{symbol}}) AND state <> '{TradingState.ACTIVE.value}')")
    moved = f"status = '{OrderStatus.SUBMITTED.value}', last_sequence = 3"
    approved = f"status = '{OrderStatus.APPROVED.value}' AND {{o}}last_sequence = 2"
    if dialect == "sqlite":
        return (f"UPDATE orders_ts SET {moved}, updated_time = v.column1, last_event_hash = v.column2, "
                f"version = version + 1 FROM (VALUES {_sqlite_values(7, rows)}) AS v "
                f"WHERE orders_ts.order_id = v.column3 AND orders_ts.{approved.format(o='orders_ts.')} "
                "AND orders_ts.last_event_hash = v.column4 AND orders_ts.token_nonce = v.column5 "
                "AND orders_ts.order_manager_id IS v.column6 AND orders_ts.expire_time IS v.column7 AND "
                + untraded.format(symbol="orders_ts.symbol") + " RETURNING orders_ts.order_id, orders_ts.version")
    names = ("updated_time", "head", "order_id", "expected", "nonce", "manager", "expire")
    types = [_pg_type(orders_table.c[column]) for column in
             ("updated_time", "last_event_hash", "order_id", "last_event_hash", "token_nonce", "order_manager_id",
              "expire_time")]
    return (f"UPDATE orders_ts AS o SET {moved}, updated_time = v.updated_time, last_event_hash = v.head, "
            f"version = o.version + 1 FROM {_pg_source(types, names, rows)} "
            f"WHERE o.order_id = v.order_id AND o.{approved.format(o='o.')} "
            "AND o.last_event_hash = v.expected AND o.token_nonce = v.nonce "
            "AND o.order_manager_id IS NOT DISTINCT FROM v.manager AND o.expire_time IS NOT DISTINCT FROM v.expire "
            "AND " + untraded.format(symbol="o.symbol") + " RETURNING o.order_id, o.version")


@functools.lru_cache(maxsize=64)
def claim_read_sql(dialect: str, count: int) -> str:
    """The orders of a batch of claims and the trading state of their symbols, in one read."""
    columns = ", ".join(f"o.{name}" for name in ORDER_COLUMNS)
    states = ", ".join(f"(SELECT {column} FROM trading_state WHERE scope = {scope})"
                       for scope in (f"'{GLOBAL_SCOPE}'", "'symbol:' || o.symbol") for column in ("state", "reason"))
    if dialect == "sqlite":
        return f"SELECT {columns}, {states} FROM orders_ts AS o WHERE o.order_id IN ({', '.join('?' * count)})"
    return f"SELECT {columns}, {states} FROM orders_ts AS o WHERE o.order_id = ANY(%s)"


def _execute(context: WriteContext, sql: str, rows: list[Sequence[Any]]) -> Any:
    """``rows`` through ``sql``: executemany on SQLite, one set of arrays on PostgreSQL.
    Returns the driver's cursor."""
    if context.dialect == "sqlite":
        return context.run(sql, rows, many=True)
    return context.run(sql, tuple(list(column) for column in zip(*rows)))


#: At most this many orders in one SQLite ``UPDATE ... FROM (VALUES ...)`` (15 values
#: each for a lifecycle update: well under SQLite's 32766 variables).
UPDATE_CHUNK = 500


def _set_update(context: WriteContext, sql: Callable[[str, int], str], rows: list[list[Any]],
                key: int) -> dict[str, Any]:
    """Run a compare-and-set update of one row per order (its id at ``key``); returns the
    ids it moved, as the statement itself returns them, each with the row it returned.

    An order named twice keeps only its first row; the later ones lose, as they would
    one after the other (they expected the same stored row): their writers reload and
    apply again.
    """
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row[key] not in seen:
            seen.add(row[key])
            unique.append(row)
    if context.dialect != "sqlite":
        if len(unique) == 1:  # one row of values (see _pg_source)
            return {row[0]: row for row in context.run(sql(context.dialect, 1), tuple(unique[0]))}
        return {row[0]: row for row in context.run(sql(context.dialect, 0), tuple(list(c) for c in zip(*unique)))}
    moved: dict[str, Any] = {}
    for start in range(0, len(unique), UPDATE_CHUNK):
        chunk = unique[start:start + UPDATE_CHUNK]
        cursor = context.run(sql("sqlite", len(chunk)), [value for row in chunk for value in row])
        moved.update((row[0], row) for row in cursor.fetchall())
    return moved


def _updated(context: WriteContext, rows: list[list[Any]]) -> Any:
    """The compare-and-set updates of orders' lifecycle columns; the ids updated."""
    return _set_update(context, update_sql, rows, -2).keys()


def _note_events(context: WriteContext, order: Order) -> None:
    context.events += [(e.order_id, e.to_status.value if e.from_status is not e.to_status
                        else event_label(e.from_status, e.to_status, e.payload), e.event_time) for e in order.new_events]
    if order.order_manager_id and any(e.to_status.is_terminal or e.from_status in (None, OrderStatus.PENDING)
                                      for e in order.new_events):
        context.managers.add(order.order_manager_id)


def _stored(order: Order, head: str | None, *, inserted: bool = False) -> Order:
    order.new_events.clear()
    order.last_event_hash = head
    order.version = 1 if inserted else order.version + 1
    return order


# -- the kinds -------------------------------------------------------------------------------
class NewOrders:
    """Risk's decisions: new orders with their first events."""

    name = "new orders"

    def write(self, context: WriteContext, orders: Sequence[Order]) -> list[Any]:
        codec = context.codec
        order_rows, chains = [], []
        for order in orders:
            events, head = chain(codec, order)
            values = order_values(codec, order)
            values[ORDER_COLUMNS.index("version")] = 1
            values[ORDER_COLUMNS.index("last_event_hash")] = head
            order_rows.append(values)
            chains.append((events, head))
        result = _insert(context, "orders_ts", ORDER_COLUMNS, order_rows, ignore_conflicts=True)
        if context.dialect == "sqlite":
            stored = None if result.rowcount == len(orders) else self._present(context, orders, order_rows)
        else:
            stored = {row[0] for row in result}
        outcomes: list[Any] = []
        event_rows: list[list[Any]] = []
        for order, (events, head) in zip(orders, chains):
            if stored is not None and order.order_id not in stored:
                outcomes.append(self._refusal(context, order))
                continue
            _note_events(context, order)
            event_rows += events
            outcomes.append(_stored(order, head, inserted=True))
        if event_rows:
            _insert(context, "order_events_ts", EVENT_COLUMNS, event_rows)
        return outcomes

    @staticmethod
    def _present(context: WriteContext, orders: Sequence[Order], rows: list[list[Any]]) -> set[str]:
        """Which of the orders the insert stored (SQLite, when some were refused): those
        present now with the values written."""
        ids = [order.order_id for order in orders]
        stored: set[str] = set()
        key = ORDER_COLUMNS.index("client_order_id")
        written = {row[0]: row[key] for row in rows}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start:start + IN_CHUNK]
            sql = (f"SELECT order_id, client_order_id, last_event_hash FROM orders_ts "
                   f"WHERE order_id IN ({', '.join('?' * len(chunk))})")
            for order_id, client_order_id, _ in context.run(sql, tuple(chunk)).fetchall():
                if written.get(order_id) == client_order_id:
                    stored.add(order_id)
        return stored

    @staticmethod
    def _refusal(context: WriteContext, order: Order) -> Exception:
        sql = "SELECT 1 FROM orders_ts WHERE order_id = " + ("?" if context.dialect == "sqlite" else "%s")
        if context.run(sql, (order.order_id,)).fetchone() is not None:
            return DuplicateOrderId(order.order_id)
        return DuplicateClientOrderId(order.account, order.client_order_id)


@dataclasses.dataclass
class Claim:
    """A verified submission: move ``order_id`` from APPROVED to SUBMITTED.

    ``order`` is the order as Risk stored it, built from the request whose token
    verified (:func:`services.common.convert.order_as_approved`), when the OMS has it:
    the claim then needs no read (see :class:`Claims`).
    """

    order_id: str
    key_id: str
    nonce: str
    at: dt.datetime
    order: Order | None = None
    #: A replacement is claimed only by ReplaceOrder, once the order it replaces ended
    #: (``replacing`` is that order's id); SubmitOrder's claims leave it None.
    replacing: str | None = None
    #: The unsigned fields the request set (:func:`services.common.convert.unsigned_fields_sent`):
    #: each must equal the stored order's, or the claim is refused naming it.
    sent: dict[str, Any] | None = None


#: The reason of the claim's APPROVED -> SUBMITTED event.
CLAIM_REASON = "oms: risk token verified"


class Claims:
    """The OMS's claims: APPROVED -> SUBMITTED, with the trading state checked.

    Two statements for the claims that come with their order (the update, the events),
    three for the others (a read first):

    * **with the order**: Risk's first two events depend only on the order's id and
      approval time (:meth:`Order.record_approval`), so the head of the chain Risk
      stored is recomputed here, not read. One compare-and-set update per batch moves
      each order whose stored row is exactly the one expected (APPROVED, at sequence 2,
      with that head, the token's nonce, the message's order manager and expiry) while
      neither the global state nor its symbol's is other than ACTIVE. What it did not
      move (a replayed token, an order changed since, a halted or reducing symbol, an
      unsigned field that disagrees) goes the read path below, which says why, and so
      does a claim made at or after the order's expire time (never tried here).
    * **read first**: the orders and their symbols' trading state read together, each
      claim checked against what was read, then the updates.
    """

    name = "claims"

    def write(self, context: WriteContext, claims: Sequence[Claim]) -> list[Any]:
        outcomes: list[Any] = [None] * len(claims)
        event_rows: list[list[Any]] = []
        direct: list[int] = []
        read: list[int] = []
        seen: set[str] = set()
        for index, claim in enumerate(claims):
            # A second claim of the same order in the batch is read after the first moved it.
            # (The direct path's compare-and-set holds the order manager, the expiry and
            # the order time, through the head: a message that disagrees goes the read
            # path, which refuses it naming the field.)
            # A claim at or after the order's expire time goes the read path too, which refuses it.
            (direct if claim.order is not None and claim.order_id not in seen
             and not _past_expiry(claim.order, claim.at) else read).append(index)
            seen.add(claim.order_id)
        if direct:
            read += self._claim_expected(context, [(index, claims[index]) for index in direct], outcomes, event_rows)
        if read:
            read.sort()
            self._claim_read(context, [(index, claims[index]) for index in read], outcomes, event_rows)
        if event_rows:
            _insert(context, "order_events_ts", EVENT_COLUMNS, event_rows)
        return outcomes

    @staticmethod
    def _claim_expected(context: WriteContext, claims: list[tuple[int, Claim]], outcomes: list[Any],
                        event_rows: list[list[Any]]) -> list[int]:
        """The claims that come with their order; returns the indexes left for the read path."""
        codec = context.codec
        rows: list[list[Any]] = []
        moved: list[tuple[int, Order, list[list[Any]], str | None]] = []
        for index, claim in claims:
            assert claim.order is not None
            order = copy.copy(claim.order)  # a batch that fails is written again: the claim stays as given
            order.new_events = []
            order.record_approval(order.order_time)
            _, expected = chain(codec, order)
            order.new_events.clear()
            order.last_event_hash, order.version, order.token_nonce = expected, 1, claim.nonce
            order.transition(OrderStatus.SUBMITTED, reason=CLAIM_REASON, at=claim.at,
                             payload={"token_key_id": claim.key_id, "token_nonce": claim.nonce})
            events, head = chain(codec, order)
            rows.append([codec.time(claim.at), head, order.order_id, expected, claim.nonce, order.order_manager_id,
                         codec.time(order.expire_time) if order.expire_time is not None else None])
            moved.append((index, order, events, head))
        won = _set_update(context, expected_claim_sql, rows, 2)
        left: list[int] = []
        for index, order, events, head in moved:
            if order.order_id not in won:
                left.append(index)
                continue
            _note_events(context, order)
            event_rows += events
            order.new_events.clear()
            order.last_event_hash = head
            order.version = won[order.order_id][1]
            outcomes[index] = order
        return left

    def _claim_read(self, context: WriteContext, claims: list[tuple[int, Claim]], outcomes: list[Any],
                    event_rows: list[list[Any]]) -> None:
        """The claims whose orders are read first (and checked against what was read)."""
        codec = context.codec
        found = self._read(context, [claim.order_id for _, claim in claims])
        updates: list[list[Any]] = []
        winners: list[tuple[int, Order, list[list[Any]]]] = []
        claimed: set[str] = set()
        for index, claim in claims:
            entry = found.get(claim.order_id)
            refusal = self._refusal(context, claim, entry, claimed)
            if refusal is not None:
                outcomes[index] = refusal
                continue
            order = entry[0]
            expected = order.last_sequence
            order.transition(OrderStatus.SUBMITTED, reason=CLAIM_REASON, at=claim.at,
                             payload={"token_key_id": claim.key_id, "token_nonce": claim.nonce})
            events, head = chain(codec, order)
            order.last_event_hash = head
            updates.append([*order_values(codec, order, UPDATE_COLUMNS), order.order_id, expected])
            winners.append((index, order, events))
            claimed.add(claim.order_id)
        updated = _updated(context, updates) if updates else set()
        for index, order, events in winners:
            if order.order_id not in updated:
                outcomes[index] = StaleOrder(f"order {order.order_id} was changed by another writer",
                                             metadata={"order_id": order.order_id})
                continue
            _note_events(context, order)
            event_rows += events
            order.new_events.clear()
            order.version += 1
            outcomes[index] = order

    @staticmethod
    def _read(context: WriteContext, order_ids: list[str]) -> dict[str, tuple[Order, TradingState, str]]:
        """The orders, each with the stricter of the global state and its symbol's own
        (and that state's reason)."""
        found: dict[str, tuple[Order, TradingState, str]] = {}
        unique = list(dict.fromkeys(order_ids))
        width = len(ORDER_COLUMNS)
        chunks = ([unique[i:i + IN_CHUNK] for i in range(0, len(unique), IN_CHUNK)]
                  if context.dialect == "sqlite" else [unique])
        for chunk in chunks:
            sql = claim_read_sql(context.dialect, len(chunk))
            params = tuple(chunk) if context.dialect == "sqlite" else (chunk,)
            for row in context.run(sql, params).fetchall():
                order = order_from_values(context.codec, row[:width])
                overall = TradingState(row[width]) if row[width] else TradingState.ACTIVE
                own = TradingState(row[width + 2]) if row[width + 2] else TradingState.ACTIVE
                if _STRICTNESS[own] > _STRICTNESS[overall]:
                    found[order.order_id] = (order, own, row[width + 3] or "")
                else:
                    found[order.order_id] = (order, overall, row[width + 1] or "")
        return found

    @staticmethod
    def _refusal(context: WriteContext, claim: Claim, entry: tuple[Order, TradingState, str] | None,
                 claimed: set[str]) -> Exception | None:
        order, state, why = entry if entry is not None else (None, TradingState.ACTIVE, "")
        return claim_refusal(claim, order, claimed, state, why,
                             lambda o: position_from_trades(context, o.account, o.symbol, o.market_type))


def claim_refusal(claim: Claim, order: Order | None, claimed: set[str], state: TradingState, why: str,
                  held: Callable[[Order], Decimal]) -> Exception | None:
    """Why a claim may not move ``order`` (None: it may): the rules of :data:`CLAIMS`,
    whatever holds the store. ``claimed``: the order ids claimed earlier in the same
    write; ``state`` and ``why``: the trading state that applies to the order's symbol
    (the stricter of the global and the symbol's own) and its reason; ``held``: the
    account's net quantity in the order's symbol and market type, asked only when
    trading is REDUCING."""
    if order is None:
        return OrderNotFound(f"no order {claim.order_id}: orders are created by the Risk service",
                             metadata={"order_id": claim.order_id})
    if claim.order_id in claimed or order.status.is_open or order.status is OrderStatus.FILLED:
        status = "SUBMITTED" if claim.order_id in claimed else order.status.value
        return TokenReplayed(f"risk token already used: the order is {status}",
                             metadata={"order_id": claim.order_id, "status": status})
    if order.status is not OrderStatus.APPROVED:
        return PreconditionFailed(f"order is {order.status.value}: only APPROVED orders can be submitted",
                                  reason="ORDER_NOT_APPROVED",
                                  metadata={"order_id": order.order_id, "status": order.status.value})
    if order.replaces_order_id is not None and claim.replacing != order.replaces_order_id:
        return PreconditionFailed(
            f"order {order.order_id} replaces order {order.replaces_order_id}: send it with ReplaceOrder",
            reason="REPLACEMENT_ORDER",
            metadata={"order_id": order.order_id, "replaces_order_id": order.replaces_order_id})
    # A GTD order whose time has come would reach the venue expired: it is not sent, and
    # stays APPROVED for the expiry sweep, which expires it.
    if _past_expiry(order, claim.at):
        return InvalidOrder("expire_time", f"has passed ({_shown(order.expire_time)}): the order can no longer be "
                                           "submitted", violation="IN_THE_PAST")
    # An unsigned field the request set must be the approved order's: refused, not ignored.
    differing = [
        InvalidOrder(name, f"differs from the approved order's ({_shown(getattr(order, name))}): send the order "
                           "as Risk answered it, or leave the field unset", violation="DIFFERS_FROM_APPROVED")
        for name, value in (claim.sent or {}).items() if getattr(order, name) != value
    ]
    if differing:
        return InvalidOrder.of(differing)
    # The trading state may have changed since Risk approved the order: the global
    # state or the symbol's own (a quarantine), whichever is stricter, decides. A
    # refused order stays APPROVED and may go once trading resumes.
    if state is TradingState.HALTED:
        return trading_halted(order.symbol, why)
    if state is TradingState.REDUCING:
        position = held(order)
        if not ledger.only_reduces(position, order.side, order.quantity_at(position) or Decimal(0)):
            return PreconditionFailed(
                f"trading in {order.symbol} is REDUCING: the order would not only reduce the position of {position}",
                reason="REDUCING_ONLY", metadata={"symbol": order.symbol},
            )
    return None


def _past_expiry(order: Order, at: dt.datetime) -> bool:
    """Whether ``order`` has an expire time and it is ``at`` or before."""
    return order.expire_time is not None and order.expire_time <= at


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def position_from_trades(context: WriteContext, account: str, symbol: str, market_type: MarketType) -> Decimal:
    """The account's net quantity in ``symbol`` of ``market_type`` (spot and futures are two
    positions): its trades in that market (a trade's market is its order's) summed
    (exactly, here: SQLite would add decimal text as binary floats)."""
    mark = "?" if context.dialect == "sqlite" else "%s"
    sql = ("SELECT t.side, t.quantity FROM trades_ts AS t JOIN orders_ts AS o ON o.order_id = t.order_id "
           f"WHERE t.account = {mark} AND t.symbol = {mark} AND o.market_type = {mark}")
    total = Decimal(0)
    for side, quantity in context.run(sql, (account, symbol, market_type.value)).fetchall():
        amount = context.codec.decimal_from(quantity)
        total = _WIDE.add(total, amount if side == Side.BUY.value else -amount)
    return total


@dataclasses.dataclass
class Fill:
    """An order as the venue's answer left it (its new events applied in memory), the
    sequence it was stored at, and the trades to store with it."""

    order: Order
    stored_sequence: int
    trades: list[Trade]


class Fills:
    """The OMS's write after the venue: orders, their events and their trades."""

    name = "fills"

    def write(self, context: WriteContext, fills: Sequence[Fill]) -> list[Any]:
        codec = context.codec
        updates, chains = [], []
        for fill in fills:
            events, head = chain(codec, fill.order)
            order = fill.order
            saved_head, order.last_event_hash = order.last_event_hash, head
            updates.append([*order_values(codec, order, UPDATE_COLUMNS), order.order_id, fill.stored_sequence])
            order.last_event_hash = saved_head
            chains.append((events, head))
        moved = self._moved(context, fills, updates)
        outcomes: list[Any] = []
        event_rows: list[list[Any]] = []
        trade_rows: list[list[Any]] = []
        for fill, (events, head), won in zip(fills, chains, moved):
            if not won:
                outcomes.append(StaleOrder(f"order {fill.order.order_id} was changed by another writer",
                                           metadata={"order_id": fill.order.order_id}))
                continue
            _note_events(context, fill.order)
            event_rows += events
            trade_rows += [trade_values(codec, trade) for trade in fill.trades]
            outcomes.append(_stored(fill.order, head))
        if event_rows:
            _insert(context, "order_events_ts", EVENT_COLUMNS, event_rows)
        if trade_rows:
            _insert(context, "trades_ts", TRADE_COLUMNS, trade_rows)
        return outcomes

    @staticmethod
    def _moved(context: WriteContext, fills: Sequence[Fill], updates: list[list[Any]]) -> list[bool]:
        """Which fills' compare-and-set updates moved their order. A batch may hold more
        than one write of an order (a later fill computed from what an earlier one
        stored): the n-th write of each order goes in the n-th update, after the ones
        before it, so it moves the order exactly when it expected what they left."""
        rounds: list[list[int]] = []
        occurrences: dict[str, int] = {}
        for index, fill in enumerate(fills):
            n = occurrences.get(fill.order.order_id, 0)
            occurrences[fill.order.order_id] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(index)
        moved = [False] * len(fills)
        for indexes in rounds:
            updated = _updated(context, [updates[index] for index in indexes])
            for index in indexes:
                moved[index] = fills[index].order.order_id in updated
        return moved


NEW_ORDERS = NewOrders()
CLAIMS = Claims()
FILLS = Fills()

__all__ = ["CLAIMS", "Claim", "FILLS", "Fill", "NEW_ORDERS", "order_from_values", "order_values"]
