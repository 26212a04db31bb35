"""The store's invariants, checked on any Tessera database (``tessera verify-store``).

What an execution system promises, in terms of what it stored:

- **tamper evidence**: every order's events form an unbroken hash chain (sequences
  1..n, each event's hash recomputes, each links to the one before, the order row
  points at the last); an edited, inserted, deleted or reordered event breaks it;
- **replay**: folding an order's events through the state machine gives the stored
  order (status, filled quantity, average price, last sequence); a fill recorded after
  the order closed (CANCELLED or EXPIRED, the same status before and after) counts as a
  fill without a transition, and only on an order that was sent to a venue; a close
  whose venue answer said more was executed leaves the order owing fills
  (``venue_executed_quantity``) until its fills make it up;
- **never sent unapproved, never sent twice**: an order reached SUBMITTED only from
  APPROVED, with a verified risk token, at most once, and no token moved two orders;
- **every fill exactly once**: each stored trade is of a stored order and has exactly one
  fill event on it, and each fill event one trade, with the same quantity and price; the trades of
  an order add up to its filled quantity, never more than its quantity; each ledger
  entry is a stored trade's, once, with its account, market type, symbol, side, quantity
  and price, and each position's quantity equals its ledger entries'. The
  ledger follows the trades (the Risk replica that owns the account writes it, see
  :mod:`services.risk.book`): a trade not in it yet is counted as pending, and is a
  violation only with ``require_ledger`` (when every replica has caught up);
- **no overfill**: every fill the venue reported beyond an order's quantity (an
  ``OVERFILL`` anomaly the fill tracker refused to apply: the order reached the venue
  twice, or the venue is wrong) is reported, with whether its symbol is quarantined
  (its own trading state HALTED); a symbol not quarantined is a violation of its own;
- optionally **nothing left in doubt**: no order still working or owing fills
  (``require_terminal``) or in doubt (SUBMITTED) for longer than ``in_doubt_after``.

:func:`check_store` reads the database in pages of orders and reports every
violation it finds, not just the first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from services.store.chain import event_hash, store_digest
from services.store.engine import SQLITE_BEGIN_OPTION
from services.store.models import (
    anomalies_table,
    ledger_entries_table,
    order_events_table,
    orders_table,
    positions_table,
    trades_table,
    trading_state_table,
)

from .replay import NOTE_PAYLOAD_KEY, ReplayError, replay

OPEN = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL")
PAGE = 500
#: The average fill price is stored rounded (18 decimal places) after every fill.
AVERAGE_TOLERANCE = Decimal("1e-12")


@dataclasses.dataclass(frozen=True)
class Violation:
    kind: str
    order_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"order {self.order_id}" if self.order_id else "store"
        return f"{self.kind} {where}: {self.detail}"


@dataclasses.dataclass
class Report:
    orders: int = 0
    events: int = 0
    trades: int = 0
    open_orders: int = 0
    #: Trades the ledger does not hold yet (Risk applies them when it follows or starts).
    ledger_pending: int = 0
    digest: str = ""
    violations: list[Violation] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, kind: str, order_id: str | None, detail: str) -> None:
        self.violations.append(Violation(kind, order_id, detail))

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for violation in self.violations:
            counts[violation.kind] += 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "orders": self.orders,
            "events": self.events,
            "trades": self.trades,
            "open_orders": self.open_orders,
            "ledger_pending": self.ledger_pending,
            "digest": self.digest,
            "violations": [dataclasses.asdict(v) for v in self.violations],
        }


def _pages(session: Session) -> Iterator[list[dict[str, Any]]]:
    after = ""
    while True:
        rows = session.execute(
            select(orders_table).where(orders_table.c.order_id > after).order_by(orders_table.c.order_id).limit(PAGE)
        ).mappings().all()
        if not rows:
            return
        yield [dict(r) for r in rows]
        after = rows[-1]["order_id"]


def _grouped(session: Session, table: Any, order_ids: list[str], *order_by: Any) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in session.execute(select(table).where(table.c.order_id.in_(order_ids)).order_by(*order_by)).mappings():
        grouped[row["order_id"]].append(dict(row))
    return grouped


def _check_chain(report: Report, order: dict[str, Any], events: list[dict[str, Any]]) -> None:
    order_id = order["order_id"]
    sequences = [e["sequence"] for e in events]
    if sequences != list(range(1, len(events) + 1)):
        report.add("SEQUENCE_GAP", order_id, f"event sequences are {_short(sequences)}, expected 1..{len(events)}")
    head = None
    for event in events:
        if event["hash"] is None:
            report.add("UNCHAINED_EVENT", order_id, f"event {event['sequence']} has no hash "
                                                     "(written by a release before the hash chain)")
            head = None
            continue
        fields = {name: event[name] for name in
                  ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload")}
        if event_hash(event["prev_hash"], **fields) != event["hash"]:
            report.add("EVENT_EDITED", order_id, f"event {event['sequence']} does not match its hash")
        if event["prev_hash"] != head:
            report.add("CHAIN_BROKEN", order_id, f"event {event['sequence']} does not link to the event before it "
                                                  "(an event was inserted, deleted or reordered)")
        head = event["hash"]
    if events and order["last_event_hash"] != events[-1]["hash"]:
        report.add("CHAIN_HEAD_MISMATCH", order_id, "the order's last event hash is not its newest event's "
                                                     "(an event was deleted or appended outside the repository)")
    if not events:
        report.add("NO_EVENTS", order_id, "the order has no events")


def chain_violations(order: dict[str, Any], events: list[dict[str, Any]]) -> list[Violation]:
    """What is wrong with one order's hash chain (its row and its events in sequence
    order, as the database returns them): nothing when every event matches its hash,
    links to the one before it, and the last is the order's head."""
    report = Report()
    _check_chain(report, order, events)
    return report.violations


#: What :func:`row_violations` reports: an order or trade row that is not what the order's
#: hash-chained events say (a row changed behind their back).
ROW_KINDS = frozenset({"REPLAY_MISMATCH", "FILL_WITHOUT_TRADE", "TRADE_WITHOUT_FILL", "TRADE_MISMATCH",
                       "TRADES_MISMATCH"})


def row_violations(order: dict[str, Any], events: list[dict[str, Any]],
                   trades: list[dict[str, Any]]) -> list[Violation]:
    """What is wrong with one order's row and trades against its events (in sequence
    order, as the database returns them): the status, filled quantity, average price,
    fills owed or last sequence the events do not replay to, and trades that are not its
    fill events' one to one. What the events themselves record (a second submission, a
    fill applied twice) is history, the chain's to vouch for, and not reported here;
    nor is anything when the events cannot be replayed (``verify-store`` says why)."""
    report = Report()
    _check_replay(report, order, events, trades, {}, {})
    return [violation for violation in report.violations if violation.kind in ROW_KINDS]


def _check_replay(report: Report, order: dict[str, Any], events: list[dict[str, Any]],
                  trades: list[dict[str, Any]], nonces: dict[str, str], fill_ids: dict[tuple[str, str], str]) -> None:
    order_id = order["order_id"]
    try:
        state = replay(events)
    except ReplayError as error:
        report.add(error.kind, order_id, str(error))
        return
    if state.status != order["status"]:
        report.add("REPLAY_MISMATCH", order_id, f"the events lead to {state.status}, the order is {order['status']}")
    if state.previous_status != order["previous_status"] and order["status"] == "PENDING_CANCEL":
        report.add("REPLAY_MISMATCH", order_id,
                   f"the events give {state.previous_status} before the cancel, the order says {order['previous_status']}")
    if state.filled_quantity != order["filled_quantity"]:
        report.add("REPLAY_MISMATCH", order_id,
                   f"the fill events add up to {state.filled_quantity}, the order has {order['filled_quantity']} filled")
    average, stored_average = state.average_fill_price, order["average_fill_price"]
    if (average is None) != (stored_average is None) or (
        average is not None and abs(average - stored_average) > AVERAGE_TOLERANCE * max(Decimal(1), abs(average))
    ):
        report.add("REPLAY_MISMATCH", order_id, f"the fills average {average}, the order says {stored_average}")
    if state.venue_executed_quantity != order.get("venue_executed_quantity"):
        report.add("REPLAY_MISMATCH", order_id,
                   f"the events leave {state.venue_executed_quantity} executed at the venue and owed, the order says "
                   f"{order.get('venue_executed_quantity')}")
    if state.last_sequence != order["last_sequence"]:
        report.add("REPLAY_MISMATCH", order_id,
                   f"the newest event is {state.last_sequence}, the order's last sequence is {order['last_sequence']}")
    if order["quantity"] is not None and order["filled_quantity"] > order["quantity"]:  # None: the venue sizes it
        report.add("OVERFILLED", order_id, f"filled {order['filled_quantity']} of {order['quantity']}")
    # Never sent unapproved, never sent twice.
    # A return to SUBMITTED from PENDING_CANCEL (the venue refused the cancel) is no submission,
    # nor is a note on an order in SUBMITTED (a quarantine: no transition, as replayed).
    submitted = [e for e in events if e["to_status"] == "SUBMITTED" and e["from_status"] != "PENDING_CANCEL"
                 and not _is_note(e)]
    if len(submitted) > 1:
        report.add("SUBMITTED_TWICE", order_id, f"{len(submitted)} SUBMITTED events")
    for event in submitted:
        if event["from_status"] != "APPROVED":
            report.add("SUBMITTED_UNAPPROVED", order_id, f"event {event['sequence']} submits from {event['from_status']}")
        nonce = (event["payload"] or {}).get("token_nonce")
        if not nonce:
            report.add("SUBMITTED_UNAPPROVED", order_id, f"event {event['sequence']} names no verified risk token")
        elif nonces.setdefault(nonce, order_id) != order_id:
            report.add("TOKEN_REUSED", order_id, f"its risk token (nonce {nonce}) also submitted order {nonces[nonce]}")
    # Every fill exactly once: fill events against trades.
    by_trade: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for trade_id, quantity, price in state.fills:
        by_trade[trade_id].append((quantity, price))
    stored = {t["trade_id"]: t for t in trades}
    for trade_id, fills in by_trade.items():
        if len(fills) > 1:
            report.add("FILL_APPLIED_TWICE", order_id, f"trade {trade_id} has {len(fills)} fill events")
        key = (order["venue"], trade_id)
        if fill_ids.setdefault(key, order_id) != order_id:
            report.add("FILL_APPLIED_TWICE", order_id, f"trade {trade_id} is also a fill of order {fill_ids[key]}")
        trade = stored.get(trade_id)
        if trade is None:
            report.add("FILL_WITHOUT_TRADE", order_id, f"fill event for trade {trade_id} but no such trade stored")
        elif (trade["quantity"], trade["price"]) != fills[0]:
            report.add("TRADE_MISMATCH", order_id,
                       f"trade {trade_id} is {trade['quantity']} @ {trade['price']}, its fill event "
                       f"{fills[0][0]} @ {fills[0][1]}")
    for trade_id, trade in stored.items():
        if trade_id not in by_trade:
            report.add("TRADE_WITHOUT_FILL", order_id, f"trade {trade_id} has no fill event on its order")
        for name in ("account", "symbol", "side", "venue"):
            if trade[name] != order[name]:
                report.add("TRADE_MISMATCH", order_id, f"trade {trade_id} has {name} {trade[name]}, the order {order[name]}")
    total = sum((t["quantity"] for t in trades), Decimal(0))
    if total != order["filled_quantity"]:
        report.add("TRADES_MISMATCH", order_id, f"its trades add up to {total}, the order has {order['filled_quantity']} filled")


#: What a ledger entry takes from its trade (the market type from the trade's order).
_LEDGERED = ("account", "market_type", "symbol", "side", "quantity", "price")


def _is_note(event: dict[str, Any]) -> bool:
    """An event that records something without a transition (see :mod:`.replay`)."""
    return event["from_status"] == event["to_status"] and NOTE_PAYLOAD_KEY in (event["payload"] or {})


def _check_ledger(report: Report, session: Session, *, require_ledger: bool) -> None:
    # A trade's market type is its order's; positions are per (account, market type, symbol).
    trades = session.execute(
        select(trades_table.c.venue, trades_table.c.trade_id, trades_table.c.order_id, trades_table.c.quantity,
               trades_table.c.price, trades_table.c.side, trades_table.c.account, trades_table.c.symbol,
               orders_table.c.market_type)
        .join(orders_table, orders_table.c.order_id == trades_table.c.order_id)
    ).mappings().all()
    entries = {
        (row["venue"], row["trade_id"]): row
        for row in session.execute(
            select(ledger_entries_table.c.venue, ledger_entries_table.c.trade_id, ledger_entries_table.c.quantity,
                   ledger_entries_table.c.price, ledger_entries_table.c.side, ledger_entries_table.c.account,
                   ledger_entries_table.c.symbol, ledger_entries_table.c.market_type)
        ).mappings()
    }
    traded = set()
    sums: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for trade in trades:
        key = (trade["venue"], trade["trade_id"])
        traded.add(key)
        held_key = (trade["account"], trade["market_type"], trade["symbol"])
        sums[held_key] += trade["quantity"] if trade["side"] == "BUY" else -trade["quantity"]
        entry = entries.get(key)
        if entry is None:
            report.ledger_pending += 1
            if require_ledger:
                report.add("LEDGER_MISSING", trade["order_id"], f"trade {trade['trade_id']} is not in the ledger")
        elif any(entry[name] != trade[name] for name in _LEDGERED):
            differ = ", ".join(f"{name} {entry[name]} (the trade's {trade[name]})"
                               for name in _LEDGERED if entry[name] != trade[name])
            report.add("LEDGER_MISMATCH", trade["order_id"],
                       f"trade {trade['trade_id']}'s ledger entry differs from it: {differ}")
    ledgered: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for key, entry in entries.items():
        if key not in traded:
            report.add("LEDGER_WITHOUT_TRADE", None, f"ledger entry for trade {key[1]} at {key[0]} without a stored trade")
        signed = entry["quantity"] if entry["side"] == "BUY" else -entry["quantity"]
        ledgered[(entry["account"], entry["market_type"], entry["symbol"])] += signed
    positions = {
        (row["account"], row["market_type"], row["symbol"]): row["quantity"]
        for row in session.execute(select(positions_table.c.account, positions_table.c.market_type,
                                          positions_table.c.symbol, positions_table.c.quantity)).mappings()
    }

    def held(key: tuple[str, str, str]) -> str:
        return f"{key[2]} ({key[1].lower()})"

    for key in positions.keys() | ledgered.keys():
        quantity, entered = positions.get(key, Decimal(0)), ledgered.get(key, Decimal(0))
        if quantity != entered:
            report.add("POSITION_MISMATCH", None,
                       f"{key[0]} holds {quantity} {held(key)}, its ledger entries add up to {entered}")
    if require_ledger:
        for key in sums.keys() - positions.keys():
            if sums[key] != 0:
                report.add("POSITION_MISMATCH", None, f"{key[0]} holds no {held(key)}, its trades add up to {sums[key]}")
        for key in positions.keys() & sums.keys():
            if positions[key] != sums[key]:
                report.add("POSITION_MISMATCH", None,
                           f"{key[0]} holds {positions[key]} {held(key)}, its trades add up to {sums[key]}")


def check_store(
    engine: Engine,
    *,
    require_terminal: bool = False,
    in_doubt_after: float | None = None,
    ledger: bool = True,
    require_ledger: bool = False,
    now: dt.datetime | None = None,
) -> Report:
    """Check every invariant on the database behind ``engine``; read-only.

    ``require_ledger``: every trade must be in the ledger already (the Risk replicas
    have caught up: at the end of a run, not while orders flow)."""
    now = now or dt.datetime.now(dt.UTC)
    report = Report()
    nonces: dict[str, str] = {}
    fill_ids: dict[tuple[str, str], str] = {}
    heads: list[tuple[str, str | None]] = []
    # One snapshot for every read: a write committed while the check runs (an order that
    # moves on between the read of its row and of its events, a fill the ledger takes in
    # between the read of the trades and of the entries) is not half seen as a violation.
    options = ({"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql"
               else {SQLITE_BEGIN_OPTION: "DEFERRED"})
    with engine.connect().execution_options(**options) as connection, Session(connection) as session:
        for page in _pages(session):
            ids = [o["order_id"] for o in page]
            events = _grouped(session, order_events_table, ids, order_events_table.c.order_id,
                              order_events_table.c.sequence, order_events_table.c.id)
            trades = _grouped(session, trades_table, ids, trades_table.c.order_id, trades_table.c.id)
            for order in page:
                order_id = order["order_id"]
                report.orders += 1
                report.events += len(events.get(order_id, []))
                report.trades += len(trades.get(order_id, []))
                heads.append((order_id, order["last_event_hash"]))
                _check_chain(report, order, events.get(order_id, []))
                _check_replay(report, order, events.get(order_id, []), trades.get(order_id, []), nonces, fill_ids)
                if require_terminal and order.get("venue_executed_quantity") is not None:
                    report.add("FILLS_OWED", order_id,
                               f"{order['status']} with {order['filled_quantity']} filled, the venue executed "
                               f"{order['venue_executed_quantity']}: fills still owed")
                if order["status"] in OPEN:
                    report.open_orders += 1
                    if require_terminal:
                        report.add("NOT_TERMINAL", order_id, f"still {order['status']}")
                    elif (in_doubt_after is not None and order["status"] == "SUBMITTED"
                          and (now - order["updated_time"]).total_seconds() > in_doubt_after):
                        report.add("IN_DOUBT_UNRESOLVED", order_id,
                                   f"SUBMITTED without a venue answer since {order['updated_time'].isoformat()}")
        for table, kind, rows in ((order_events_table, "ORPHAN_EVENTS", "events"),
                                  (trades_table, "TRADE_WITHOUT_ORDER", "trades")):
            orphans = session.execute(
                select(table.c.order_id, func.count())
                .where(table.c.order_id.not_in(select(orders_table.c.order_id)))
                .group_by(table.c.order_id)
            ).all()
            for order_id, count in orphans:
                report.add(kind, order_id, f"{count} {rows} of an order that is not stored")
        _check_overfills(report, session)
        if ledger:
            _check_ledger(report, session, require_ledger=require_ledger)
        session.rollback()
    report.digest = store_digest(heads)
    return report


def _check_overfills(report: Report, session: Session) -> None:
    """Every OVERFILL anomaly, and whether its symbol is quarantined (HALTED in its own scope)."""
    rows = session.execute(
        select(anomalies_table.c.order_id, anomalies_table.c.detail, orders_table.c.symbol)
        .join(orders_table, orders_table.c.order_id == anomalies_table.c.order_id, isouter=True)
        .where(anomalies_table.c.kind == "OVERFILL")
        .order_by(anomalies_table.c.id)
    ).all()
    states = {scope: state for scope, state in session.execute(
        select(trading_state_table.c.scope, trading_state_table.c.state))}
    for order_id, detail, symbol in rows:
        scope = f"symbol:{symbol}" if symbol else None
        state = states.get(scope or "", "ACTIVE")
        report.add("OVERFILL", order_id, f"the venue reported more than the order's quantity ({detail}); "
                                         f"{scope or 'its symbol'} is {state}")
        if state != "HALTED":
            report.add("OVERFILL_NOT_QUARANTINED", order_id, f"{scope or 'its symbol'} is {state}, not HALTED")


def _short(values: list[int]) -> str:
    return str(values if len(values) <= 12 else values[:6] + ["..."] + values[-3:])
