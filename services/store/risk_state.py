"""What the Risk service reads from the store, and the ledger it writes.

Risk decides from memory (:mod:`services.risk.book`); the store is where that memory
comes from when a replica starts, and how it stays current:

* :func:`load` reads, for the accounts a replica owns: the positions, the fills not yet
  in the ledger (a replica stopped before writing them), the orders that may still
  trade, the orders inside the throttle's window, the realised PnL since the daily
  reset (by the day each fill was traded on), the trading state of every scope and the
  halts since the reset; and the event cursor to follow from.
* :class:`EventTail` follows ``order_events_ts`` from that cursor: the submissions,
  fills and ends the OMS writes. On PostgreSQL an id is handed out at insert, not at
  commit, so a transaction that commits late can add an id below one already read:
  the tail remembers the ids it skipped (gaps) and asks for them again until they
  appear or a grace period passes (a rolled-back insert leaves a gap for good). On
  SQLite writers are serialised and ids are in commit order.
* :data:`LEDGER` writes the ledger entries and positions Risk computed from those fills,
  one multi-row statement per table per batch: an entry per venue trade id (a second
  write of it changes nothing), a position as the book holds it (keyed by account,
  market type and symbol: spot and futures apart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any, Callable

from sqlalchemy import Connection

from services.domain import OPEN_STATUSES, MarketType, OrderStatus, Side, TradingState, utcnow
from services.domain.ledger import ZERO, Position, fee_in_quote

from .codec import Codec
from .database import WriteContext, run_on_driver

_OPEN = ", ".join(f"'{status.value}'" for status in sorted(OPEN_STATUSES, key=lambda s: s.value))
#: The events the book follows: submissions, fills, ends.
FOLLOWED = (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
            OrderStatus.EXPIRED, OrderStatus.REJECTED)
_FOLLOWED = ", ".join(f"'{status.value}'" for status in FOLLOWED)
_WIDE = Context(prec=100)
_DAY = dt.timedelta(days=1)
#: How far below the newest id the tail looks for ids not committed yet (PostgreSQL).
GAP_WINDOW = 10_000


#: Read in batches through a server-side cursor on PostgreSQL: the driver never holds
#: every position row at once (it would keep the process's memory that high after the
#: load; docs/benchmarks.md, "Risk's memory").
_STREAMED = {"stream_results": True, "max_row_buffer": 5000}


def _mark(dialect: str) -> str:
    return "?" if dialect == "sqlite" else "%s"


@dataclasses.dataclass
class Snapshot:
    """What :func:`load` read, for the book."""

    cursor: int
    positions: list[Position]
    unapplied: list[dict[str, Any]]
    working: list[tuple[Any, ...]]
    recent: list[tuple[str, dt.datetime]]
    realised: list[tuple[str, Decimal]]
    trading: dict[str, TradingState]
    #: Event ids below the cursor not committed when it was read (PostgreSQL): to ask for.
    gaps: list[int] = dataclasses.field(default_factory=list)
    #: Realised PnL net of commissions of the fills traded on a later day than the reset's
    #: (a trade time past the next reset: the venue's clock ahead of Risk's), as
    #: (account, that day's reset, net): today's from that reset on, not before.
    realised_ahead: list[tuple[str, dt.datetime, Decimal]] = dataclasses.field(default_factory=list)
    #: (operator, reason) of every change of the global trading state to HALTED since the
    #: daily reset, oldest first: Risk reads which accounts' daily loss tripped the kill
    #: switch today from them (each trips it once per daily period).
    halts: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def load(connection: Connection, codec: Codec, *, now: dt.datetime, approved_since: dt.datetime,
         window_start: dt.datetime, reset: dt.datetime, owns: Callable[[str], bool] = lambda account: True,
         ) -> Snapshot:
    """Everything a replica's book starts from, read in one transaction (one snapshot).

    ``owns`` says which accounts' positions and realised PnL to keep (the replica's
    shard): the others' rows are skipped before they are converted, so a replica's
    memory follows its share of the accounts, not the whole ledger.

    The event cursor is read first: a fill committed meanwhile is in both the fills
    not yet in the ledger and the events after the cursor, and the book applies each
    venue trade once. On PostgreSQL the ids below the cursor that are not there yet
    (their transactions still open, or rolled back) are the tail's first gaps: a fill
    committed late with such an id is followed like any other.
    """
    mark = _mark(codec.dialect)
    run = connection.exec_driver_sql
    if codec.dialect == "postgresql":
        # One snapshot for every statement below (READ COMMITTED would give each its own:
        # a fill committed between two of them would be in the orders' filled quantities
        # and not in the fills not yet in the ledger, and come again after the cursor).
        run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cursor = run("SELECT COALESCE(MAX(id), 0) FROM order_events_ts").scalar_one()
    gaps: list[int] = []
    if codec.dialect == "postgresql" and cursor:
        floor = max(0, cursor - GAP_WINDOW)
        present = {row[0] for row in run(f"SELECT id FROM order_events_ts WHERE id > {mark}", (floor,))}
        gaps = [gap for gap in range(floor + 1, cursor) if gap not in present]
    names: dict[str, str] = {}  # one str object per account and symbol, however many rows name it
    positions = [
        Position(names.setdefault(account, account), names.setdefault(symbol, symbol), codec.decimal_from(quantity),
                 codec.decimal_from(cost), codec.decimal_from(realised), codec.decimal_from(commission),
                 codec.time_from(updated), version, MarketType(market_type), fees_from(codec.json_from(fees)))
        for account, market_type, symbol, quantity, cost, realised, commission, fees, updated, version in run(
            "SELECT account, market_type, symbol, quantity, cost_basis, realised_pnl, commission, fees, "
            "updated_time, version FROM positions", execution_options=_STREAMED)
        if owns(account)
    ]
    unapplied = unapplied_trades(connection, codec)
    working = [
        (order_id, account, client_order_id, symbol, side, codec.decimal_from(quantity), codec.decimal_from(filled),
         status, codec.time_from(updated), market_type)
        for order_id, account, client_order_id, symbol, side, quantity, filled, status, market_type, updated in run(
            "SELECT order_id, account, client_order_id, symbol, side, quantity, filled_quantity, status, market_type, "
            f"updated_time FROM orders_ts WHERE status IN ({_OPEN}) OR (status = 'APPROVED' AND updated_time >= {mark})",
            (codec.time(approved_since),))
    ]
    # The orders Risk approved (signed: a token nonce) in the throttle's window, whatever
    # became of them since; not those it rejected, which do not count in it.
    recent = [(account, codec.time_from(order_time)) for account, order_time in run(
        f"SELECT account, order_time FROM orders_ts WHERE order_time >= {mark} "
        "AND (status <> 'REJECTED' OR token_nonce IS NOT NULL) ORDER BY order_time",
        (codec.time(window_start),))]
    totals: dict[str, Decimal] = {}
    ahead: dict[tuple[str, dt.datetime], Decimal] = {}
    day_ends = reset + _DAY
    for account, symbol, realised, commission, commission_asset, trade_time in run(
            "SELECT account, symbol, realised_pnl, commission, commission_asset, trade_time FROM ledger_entries "
            f"WHERE trade_time >= {mark}", (codec.time(reset),), execution_options=_STREAMED):
        if not owns(account):
            continue
        # Summed here, exactly: with 100 digits, as the book adds (the default context keeps
        # 28), and not by SQLite's SUM, which would add decimal text as binary floats. A fee
        # in another asset than the quote is not counted (services.domain.ledger.fee_in_quote).
        net = codec.decimal_from(realised)
        if fee_in_quote(symbol, commission_asset):
            net = _WIDE.subtract(net, codec.decimal_from(commission))
        traded = codec.time_from(trade_time)
        if traded < day_ends:
            totals[account] = _WIDE.add(totals.get(account, ZERO), net)
        else:  # a later day's: counted from that day's reset on
            day = reset + _DAY * ((traded - reset) // _DAY)
            ahead[(account, day)] = _WIDE.add(ahead.get((account, day), ZERO), net)
    trading = {scope: TradingState(state) for scope, state in run("SELECT scope, state FROM trading_state")}
    halts = [(operator, reason) for operator, reason in run(
        "SELECT operator, reason FROM trading_state_events "
        f"WHERE scope = 'global' AND to_state = 'HALTED' AND event_time >= {mark} ORDER BY id",
        (codec.time(reset),))]
    return Snapshot(cursor, positions, unapplied, working, recent, list(totals.items()), trading, gaps,
                    [(account, day, net) for (account, day), net in ahead.items()], halts)


def unapplied_trades(connection: Connection, codec: Codec) -> list[dict[str, Any]]:
    """The fills not in the ledger yet (Risk takes each in a moment after it is stored), in
    the order they were stored."""
    return [
        {"trade_id": trade_id, "venue": venue, "order_id": order_id, "account": account, "symbol": symbol,
         "side": Side(side), "quantity": codec.decimal_from(quantity), "price": codec.decimal_from(price),
         "commission": codec.decimal_from(commission), "trade_time": codec.time_from(trade_time),
         "market_type": MarketType(market_type), "commission_asset": commission_asset}
        for trade_id, venue, order_id, account, symbol, side, quantity, price, commission, trade_time, market_type,
        commission_asset in connection.exec_driver_sql(
            "SELECT t.trade_id, t.venue, t.order_id, t.account, t.symbol, t.side, t.quantity, t.price, "
            "t.commission, t.trade_time, o.market_type, t.commission_asset FROM trades_ts AS t "
            "JOIN orders_ts AS o ON o.order_id = t.order_id WHERE NOT EXISTS (SELECT 1 FROM ledger_entries AS l "
            "WHERE l.venue = t.venue AND l.trade_id = t.trade_id) ORDER BY t.id")
    ]


def held_positions(connection: Connection, codec: Codec) -> dict[tuple[str, MarketType, str], Decimal]:
    """Net base quantity per (account, market type, symbol), flat ones left out: the
    ledger's positions and the fills it has not taken in yet, signed by side, read in one
    transaction (a fill is in one or the other, never both)."""
    held: dict[tuple[str, MarketType, str], Decimal] = {}
    for account, market_type, symbol, quantity in connection.exec_driver_sql(
            "SELECT account, market_type, symbol, quantity FROM positions"):
        held[(account, MarketType(market_type), symbol)] = codec.decimal_from(quantity)
    for trade in unapplied_trades(connection, codec):
        key = (trade["account"], trade["market_type"], trade["symbol"])
        signed = trade["quantity"] if trade["side"] is Side.BUY else -trade["quantity"]
        held[key] = held.get(key, Decimal(0)) + signed
    return {key: quantity for key, quantity in held.items() if quantity}


def fees_from(stored: Any) -> tuple[tuple[str, Decimal], ...]:
    """A position's ``fees`` column (a JSON object of asset to decimal text) as the
    sorted pairs :class:`Position` holds."""
    return tuple(sorted((asset, Decimal(amount)) for asset, amount in (stored or {}).items()))


def fees_json(fees: tuple[tuple[str, Decimal], ...]) -> dict[str, str]:
    return {asset: str(amount) for asset, amount in fees}


def trading_states(connection: Connection) -> dict[str, TradingState]:
    """Every scope's trading state (a scope without a row is ACTIVE)."""
    return {scope: TradingState(state) for scope, state in
            run_on_driver(connection, "SELECT scope, state FROM trading_state", ()).fetchall()}


@dataclasses.dataclass(frozen=True)
class TailEvent:
    """A followed order event with what the book needs of its order."""

    id: int
    order_id: str
    sequence: int
    to_status: OrderStatus
    event_time: dt.datetime
    payload: dict[str, Any]
    account: str
    symbol: str
    side: Side
    venue: str
    quantity: Decimal
    filled_quantity: Decimal
    market_type: MarketType = MarketType.FUTURES
    #: The status before (None for the order's first event).
    from_status: OrderStatus | None = None


class EventTail:
    """Follows ``order_events_ts`` by id (see the module docstring on gaps).

    Parameters
    ----------
    cursor
        The last id already accounted for.
    gaps
        Ids below ``cursor`` not accounted for yet (not committed when it was read).
    gap_seconds
        How long a skipped id is asked for again before it is taken for a rollback.
    """

    def __init__(self, cursor: int, *, gaps: Sequence[int] = (), gap_seconds: float = 10.0, limit: int = 5000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cursor = cursor
        self.gap_seconds = gap_seconds
        self.limit = limit
        self.monotonic = monotonic
        now = monotonic()
        self.gaps: dict[int, float] = {gap: now for gap in gaps}

    def read(self, connection: Connection, codec: Codec) -> list[TailEvent]:
        """The followed events after the cursor (and any that filled a gap), oldest first."""
        now = self.monotonic()
        self.gaps = {gap: since for gap, since in self.gaps.items() if now - since < self.gap_seconds}
        mark = _mark(codec.dialect)
        # The order's columns are read for the followed statuses only, the payload for the
        # fills: the fill events, and the events from a closed status to itself (a fill after
        # close, or a note).
        columns = ("SELECT e.id, e.to_status, e.order_id, e.sequence, e.event_time, "
                   "CASE WHEN e.to_status IN ('PARTIALLY_FILLED', 'FILLED') OR e.from_status = e.to_status "
                   "THEN e.payload END, o.account, o.symbol, "
                   "o.side, o.venue, o.quantity, o.filled_quantity, o.market_type, e.from_status "
                   "FROM order_events_ts AS e "
                   "LEFT JOIN orders_ts AS o "
                   f"ON o.order_id = e.order_id AND e.to_status IN ({_FOLLOWED}) ")
        if codec.dialect == "sqlite":
            # Writers are serialised and ids are in commit order: no gaps to watch, so the
            # other statuses can be left out here.
            where, params = f"WHERE e.id > {mark} AND e.to_status IN ({_FOLLOWED})", (self.cursor,)
        elif self.gaps:
            where, params = f"WHERE (e.id > {mark} OR e.id = ANY({mark}))", (self.cursor, list(self.gaps))
        else:
            where, params = f"WHERE e.id > {mark}", (self.cursor,)
        # Read through the driver: plain tuples, no result processing per row.
        rows = run_on_driver(connection, columns + where + f" ORDER BY e.id LIMIT {self.limit}", params).fetchall()
        events = []
        for row in rows:
            event_id = row[0]
            if event_id in self.gaps:
                del self.gaps[event_id]
            elif event_id > self.cursor:
                if event_id > self.cursor + 1 and codec.dialect == "postgresql":
                    for missing in range(self.cursor + 1, min(event_id, self.cursor + 1 + GAP_WINDOW)):
                        self.gaps[missing] = now
                self.cursor = event_id
            status = _STATUSES.get(row[1])
            if status is None or row[6] is None:
                continue  # not followed
            events.append(TailEvent(event_id, row[2], row[3], status, codec.time_from(row[4]),
                                    codec.json_from(row[5]) or {}, row[6], row[7], _SIDES[row[8]], row[9],
                                    codec.decimal_from(row[10]), codec.decimal_from(row[11]), _MARKETS[row[12]],
                                    _EVERY_STATUS.get(row[13])))
        return events


_STATUSES = {status.value: status for status in FOLLOWED}
_EVERY_STATUS = {status.value: status for status in OrderStatus}
_SIDES = {side.value: side for side in Side}
_MARKETS = {market.value: market for market in MarketType}


class LedgerWrite:
    """The ledger entries and positions Risk computed, as one set write."""

    name = "ledger"

    def write(self, context: WriteContext, items: Sequence[tuple[list[dict[str, Any]], list[Position]]]) -> list[Any]:
        codec = context.codec
        sqlite = context.dialect == "sqlite"
        applied = utcnow()
        entries = [entry for batch, _ in items for entry in batch]
        latest: dict[tuple[str, MarketType, str], Position] = {}
        for _, positions in items:
            for position in positions:
                latest[(position.account, position.market_type, position.symbol)] = position
        entry_columns = ("account", "symbol", "venue", "trade_id", "side", "quantity", "price", "realised_pnl",
                         "commission", "position_quantity", "trade_time", "applied_time", "market_type",
                         "commission_asset")
        futures = MarketType.FUTURES
        rows = [[e["account"], e["symbol"], e["venue"], e["trade_id"], e["side"].value, codec.decimal(e["quantity"]),
                 codec.decimal(e["price"]), codec.decimal(e["realised_pnl"]), codec.decimal(e["commission"]),
                 codec.decimal(e["position_quantity"]), codec.time(e["trade_time"]), codec.time(applied),
                 e.get("market_type", futures).value, e.get("commission_asset")]
                for e in entries]
        position_columns = ("account", "market_type", "symbol", "quantity", "cost_basis", "average_entry_price",
                            "realised_pnl", "commission", "fees", "updated_time", "version")
        position_rows = [[p.account, p.market_type.value, p.symbol, codec.decimal(p.quantity),
                          codec.decimal(p.cost_basis), codec.derived_decimal(p.average_entry_price),
                          codec.decimal(p.realised_pnl), codec.decimal(p.commission), codec.json(fees_json(p.fees)),
                          codec.time(p.updated_time or applied), 1]
                         for p in latest.values()]
        run = context.run
        updates = ", ".join(f"{c} = excluded.{c}" for c in position_columns[3:-1])
        if sqlite:
            if rows:
                run(f"INSERT INTO ledger_entries ({', '.join(entry_columns)}) VALUES ({', '.join('?' * len(entry_columns))}) "
                    "ON CONFLICT (venue, trade_id) DO NOTHING", [tuple(r) for r in rows], many=True)
            if position_rows:
                run(f"INSERT INTO positions ({', '.join(position_columns)}) VALUES "
                    f"({', '.join('?' * len(position_columns))}) ON CONFLICT (account, market_type, symbol) "
                    "DO UPDATE SET "
                    f"{updates}, version = positions.version + 1", [tuple(r) for r in position_rows], many=True)
        else:
            types = ("text", "text", "text", "text", "text", "numeric", "numeric", "numeric", "numeric", "numeric",
                     "timestamptz", "timestamptz", "text", "text")
            if rows:
                run(f"INSERT INTO ledger_entries ({', '.join(entry_columns)}) SELECT * FROM unnest("
                    + ", ".join(f"%s::{t}[]" for t in types) + ") ON CONFLICT (venue, trade_id) DO NOTHING",
                    tuple(list(c) for c in zip(*rows)))
            if position_rows:
                ptypes = ("text", "text", "text", "numeric", "numeric", "numeric", "numeric", "numeric", "jsonb",
                          "timestamptz", "integer")
                run(f"INSERT INTO positions ({', '.join(position_columns)}) SELECT * FROM unnest("
                    + ", ".join(f"%s::{t}[]" for t in ptypes) + ") ON CONFLICT (account, market_type, symbol) "
                    "DO UPDATE SET "
                    f"{updates}, version = positions.version + 1", tuple(list(c) for c in zip(*position_rows)))
        return [None] * len(items)


LEDGER = LedgerWrite()


@dataclasses.dataclass(frozen=True)
class Replica:
    """Another running Risk replica, as its row in ``risk_replicas`` says."""

    instance: str
    ordinal: int
    shards: int
    host: str
    seen: dt.datetime


def check_in(connection: Connection, codec: Codec, *, instance: str, ordinal: int, shards: int, host: str,
             now: dt.datetime, live_since: dt.datetime, forget_before: dt.datetime) -> list[Replica]:
    """Record that this replica (``instance``) runs as ``ordinal`` of ``shards``, seen
    ``now``; the other replicas seen after ``live_since``. Rows not seen since
    ``forget_before`` (replicas that were killed) are deleted.

    Replicas checking in at once are serialised (``LOCK TABLE`` on PostgreSQL; SQLite
    serialises writers), so of two starting together the second sees the first."""
    mark = _mark(codec.dialect)
    run = connection.exec_driver_sql
    if codec.dialect == "postgresql":
        run("LOCK TABLE risk_replicas IN SHARE ROW EXCLUSIVE MODE")
    seen = codec.time(now)
    updated = run(f"UPDATE risk_replicas SET seen_time = {mark}, ordinal = {mark}, shards = {mark} "
                  f"WHERE instance = {mark}", (seen, ordinal, shards, instance)).rowcount
    if not updated:
        run("INSERT INTO risk_replicas (instance, ordinal, shards, host, started_time, seen_time) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark})",
            (instance, ordinal, shards, host[:128], seen, seen))
    run(f"DELETE FROM risk_replicas WHERE seen_time < {mark}", (codec.time(forget_before),))
    return [Replica(other, number, count, name, codec.time_from(when))
            for other, number, count, name, when in run(
                "SELECT instance, ordinal, shards, host, seen_time FROM risk_replicas "
                f"WHERE instance <> {mark} AND seen_time > {mark} ORDER BY ordinal, instance",
                (instance, codec.time(live_since)))]


def check_out(connection: Connection, codec: Codec, instance: str) -> None:
    """This replica stops: its row goes (the others need not wait for its lease)."""
    connection.exec_driver_sql(f"DELETE FROM risk_replicas WHERE instance = {_mark(codec.dialect)}", (instance,))


class StoreSource:
    """Where a Risk replica's book comes from and where its ledger goes: the store,
    through the process's :class:`~services.store.database.Database`. The engine asks it
    for the snapshot it starts from (:func:`load`), the order events since (an
    :class:`EventTail`) with the trading state, and writes the ledger it owes
    (:data:`LEDGER`); service tests give the engine an in-memory source with the same
    three methods."""

    def __init__(self, db: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.monotonic = monotonic
        self.tail: EventTail | None = None

    async def load(self, *, now: dt.datetime, approved_since: dt.datetime, window_start: dt.datetime,
                   reset: dt.datetime, owns: Callable[[str], bool]) -> Snapshot:
        codec = self.db.codec
        snapshot: Snapshot = await self.db.read(lambda uow: load(
            uow.session.connection(), codec, now=now, approved_since=approved_since, window_start=window_start,
            reset=reset, owns=owns))
        self.tail = EventTail(snapshot.cursor, gaps=snapshot.gaps, monotonic=self.monotonic)
        return snapshot

    async def follow(self, read_states: bool) -> tuple[list[TailEvent], dict[str, TradingState] | None]:
        """The followed order events since the last call, and every scope's trading state
        when ``read_states``."""
        tail, codec = self.tail, self.db.codec
        if tail is None:
            raise RuntimeError("load first")

        def read(connection: Connection) -> tuple[list[TailEvent], dict[str, TradingState] | None]:
            return tail.read(connection, codec), trading_states(connection) if read_states else None

        return await self.db.read_connection(read)

    async def write_ledger(self, entries: list[dict[str, Any]], positions: list[Position]) -> None:
        await self.db.write(LEDGER, (entries, positions))

    async def check_in(self, **replica: Any) -> list[Replica]:
        """:func:`check_in`, committed before it returns.

        On PostgreSQL in a short transaction of its own, not in the process's group
        commit: the table lock it waits for must never be held by a batch whose other
        calls wait for a lock another replica's batch holds (a deadlock). SQLite's group
        commit holds the file's write lock from its start: nothing inside it waits."""
        codec = self.db.codec

        def run(uow: Any) -> list[Replica]:
            return check_in(uow.session.connection(), codec, **replica)

        if codec.dialect == "postgresql":
            return await asyncio.get_running_loop().run_in_executor(None, self.db.run_sync, run)
        return await self.db.run(run)

    async def check_out(self, instance: str) -> None:
        codec = self.db.codec
        await self.db.run(lambda uow: check_out(uow.session.connection(), codec, instance))


__all__ = ["EventTail", "LEDGER", "Replica", "Snapshot", "StoreSource", "TailEvent", "check_in", "check_out",
           "fees_from", "fees_json", "load", "trading_states"]
