"""Fakes for service tests: a clock tests move by hand, and a store in memory.

* :class:`FakeClock`: wall time (a UTC ``datetime`` and epoch seconds) and a monotonic
  clock, both still until a test calls :meth:`FakeClock.advance`. Its bound methods go
  where the services take a clock: ``clock=fake.now``, ``wall=fake.time``,
  ``monotonic=fake.monotonic``.
* :class:`FakeUnitOfWork`: :class:`services.store.uow.AbstractUnitOfWork` over in-memory
  repositories with the methods the service layer calls (orders with their hash-chained
  events and the compare-and-set of ``save``, trades, the trading state, anomalies). It
  works on a copy of the :class:`FakeStore` and puts it back only on :meth:`commit`.
* :class:`FakeDatabase`: what the services are given in place of
  :class:`services.store.database.Database`: ``run`` / ``read`` with a fake unit of work,
  and the order path's set writes (new orders, claims, fills) decided as the SQL ones
  decide them. ``tests/unit/service_layer/test_fake_store_contract.py`` runs the same
  scenarios against this and the real store on SQLite, so the two cannot drift apart.
* :class:`FakeRiskSource`: where a Risk engine loads its book from and follows the
  order events, over the fake store (Risk's ledger kept in a list).
* :class:`FakeGateway`: the OMS's Exchange gateway as data: fills marketable orders at the
  market price, rests the others, cancels what rests; every report dated by the clock.
* :class:`HeldPaperVenue`: a paper venue whose placements wait at its door until the test
  lets them in, and :func:`sweep_waiting`, which tells when an Exchange engine's
  venue-wide cancel has begun waiting for them: the kill switch's race, step by step.

What the fake does not hold (order managers' batches, positions, account activity,
Risk's ledger) raises :class:`NotInTheFake`: such a test belongs on the SQLite store.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import itertools
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import grpc

from services.domain import OPEN_STATUSES, Order, OrderEvent, OrderStatus, OrderType, Side, Trade, TradingState
from services.domain.errors import OrderNotFound, StaleOrder
from services.domain.order import event_label
from services.domain.execution import ExecutionReport, Fill as VenueFill
from services.domain.enums import LiquiditySide
from services.exchange.providers.paper import PaperProvider
from services.exchange.venue import OrderRef, make_report
from services.oms.gateway import Executed, Refusal, Swept
from services.store.chain import chain_rows
from services.store.errors import DuplicateClientOrderId, DuplicateOrderId
from services.store.mapping import ORDER_LIFECYCLE_COLUMNS, event_to_row
from services.store.order_sets import CLAIM_REASON, Claim, Fill, claim_refusal
from services.store.records import ExecutionAnomaly, TradingStateChange, TradingStateRecord
from services.store.trading_state import GLOBAL_SCOPE, symbol_scope
from services.store.uow import AbstractUnitOfWork
from tessera.common.v1 import types_pb2 as common_pb

UTC = dt.timezone.utc
#: Where a :class:`FakeClock` starts unless told: a Monday, mid-morning UTC.
START = dt.datetime(2030, 1, 7, 9, 30, tzinfo=UTC)
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class NotInTheFake(NotImplementedError):
    """The fake store does not hold this: write the test against the SQLite store."""


# -- the clock -----------------------------------------------------------------------------------
class FakeClock:
    """Wall and monotonic time that move only when :meth:`advance` (or :meth:`set`) says."""

    def __init__(self, start: dt.datetime = START, monotonic_start: float = 1_000.0) -> None:
        if start.tzinfo is None:
            raise ValueError("a fake clock starts at an aware (UTC) time")
        self._now = start.astimezone(UTC)
        self._monotonic = monotonic_start

    def now(self) -> dt.datetime:
        """The wall time, UTC (where services take ``clock=``)."""
        return self._now

    def time(self) -> float:
        """The wall time in epoch seconds (where services take ``wall=``)."""
        return self._now.timestamp()

    def monotonic(self) -> float:
        """Seconds on the monotonic clock (where services take ``monotonic=``)."""
        return self._monotonic

    def advance(self, by: float | dt.timedelta) -> dt.datetime:
        """Move both clocks forward by ``by`` (seconds or a timedelta); returns the new now."""
        step = by if isinstance(by, dt.timedelta) else dt.timedelta(seconds=by)
        if step < dt.timedelta(0):
            raise ValueError("time does not go back")
        self._now += step
        self._monotonic += step.total_seconds()
        return self._now

    def set(self, when: dt.datetime) -> dt.datetime:
        """Move to ``when`` (not before now); the monotonic clock moves as far."""
        return self.advance(when.astimezone(UTC) - self._now)


# -- the store ---------------------------------------------------------------------------------
@dataclasses.dataclass
class FakeState:
    """Everything a fake store holds (a unit of work works on a deep copy of it)."""

    orders: dict[str, Order] = dataclasses.field(default_factory=dict)
    events: dict[str, list[OrderEvent]] = dataclasses.field(default_factory=dict)
    #: Every event in the order it was stored, with its global id (the event stream's cursor).
    event_log: list[tuple[int, OrderEvent]] = dataclasses.field(default_factory=list)
    trades: dict[tuple[str, str], Trade] = dataclasses.field(default_factory=dict)
    trading_state: dict[str, TradingStateRecord] = dataclasses.field(default_factory=dict)
    trading_history: list[TradingStateChange] = dataclasses.field(default_factory=list)
    anomalies: list[ExecutionAnomaly] = dataclasses.field(default_factory=list)


class FakeStore:
    """The committed state, and the units of work over it (the shape of ``Store``)."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.state = FakeState()
        self.clock = clock or (lambda: dt.datetime.now(UTC))
        self.commits = 0

    def uow(self, read_only: bool = False) -> "FakeUnitOfWork":
        return FakeUnitOfWork(self, read_only=read_only)


def _copy(order: Order) -> Order:
    loaded = copy.deepcopy(order)
    loaded.new_events = []
    return loaded


class FakeOrderRepository:
    """:class:`services.store.orders.OrderRepository` in memory."""

    def __init__(self, state: FakeState) -> None:
        self.state = state
        self.touched_managers: set[str] = set()
        self.written_events: list[tuple[str, str, Any]] = []

    # -- writes ------------------------------------------------------------------------------
    def add(self, order: Order) -> None:
        if order.order_id in self.state.orders:
            raise DuplicateOrderId(order.order_id)
        if self.get_by_client_order_id(order.account, order.client_order_id) is not None:
            raise DuplicateClientOrderId(order.account, order.client_order_id)
        order.version = 1
        self._write_events(order)
        self.state.orders[order.order_id] = _copy(order)
        if order.order_manager_id:
            self.touched_managers.add(order.order_manager_id)

    def save(self, order: Order) -> None:
        """Compare-and-set on ``order.version``, as the SQL repository."""
        stored = self.state.orders.get(order.order_id)
        if stored is None:
            raise OrderNotFound(f"order {order.order_id} not found")
        if stored.version != order.version:
            raise StaleOrder(f"order {order.order_id} was changed by another writer since version {order.version}")
        self._store_lifecycle(stored, order)

    def save_at_sequence(self, order: Order, expected_sequence: int) -> bool:
        """Compare-and-set on the stored ``last_sequence`` (the fills' set write); False
        when the stored order is not at ``expected_sequence``."""
        stored = self.state.orders.get(order.order_id)
        if stored is None or stored.last_sequence != expected_sequence:
            return False
        order.version = stored.version
        self._store_lifecycle(stored, order)
        return True

    def _store_lifecycle(self, stored: Order, order: Order) -> None:
        if order.order_manager_id and any(e.to_status.is_terminal for e in order.new_events):
            self.touched_managers.add(order.order_manager_id)
        self._write_events(order)
        for name in ORDER_LIFECYCLE_COLUMNS:  # the fixed fields are never rewritten
            setattr(stored, name, copy.deepcopy(getattr(order, name)))
        order.version += 1
        stored.version = order.version

    def _write_events(self, order: Order) -> None:
        rows, head = chain_rows([event_to_row(e) for e in order.new_events], order.last_event_hash)
        stored = self.state.events.setdefault(order.order_id, [])
        if {e.sequence for e in order.new_events} & {e.sequence for e in stored}:
            raise AssertionError(f"order {order.order_id}: an event sequence stored twice (UNIQUE(order_id, sequence))")
        for event in order.new_events:
            kept = copy.deepcopy(event)
            stored.append(kept)
            self.state.event_log.append((len(self.state.event_log) + 1, kept))
            self.written_events.append((event.order_id, event_label(event.from_status, event.to_status, event.payload),
                                        event.event_time))
        order.new_events.clear()
        order.last_event_hash = head

    # -- reads -------------------------------------------------------------------------------
    def get(self, order_id: str) -> Order | None:
        found = self.state.orders.get(order_id)
        return None if found is None else _copy(found)

    def _first(self, match: Callable[[Order], bool]) -> Order | None:
        return next((_copy(o) for o in self.state.orders.values() if match(o)), None)

    def get_by_client_order_id(self, account: str, client_order_id: str) -> Order | None:
        return self._first(lambda o: o.account == account and o.client_order_id == client_order_id)

    def get_by_remote_order_id(self, venue: str, remote_order_id: str) -> Order | None:
        return self._first(lambda o: o.venue == venue and o.remote_order_id == remote_order_id)

    def _select(self, match: Callable[[Order], bool]) -> list[Order]:
        return [_copy(o) for o in sorted(self.state.orders.values(), key=lambda o: (o.order_time, o.order_id))
                if match(o)]

    def list(self, account: str | None = None, symbol: str | None = None,
             statuses: Iterable[OrderStatus | str] | None = None, order_manager_id: str | None = None,
             limit: int = 100, cursor: str | None = None, newest_first: bool = False) -> tuple[list[Order], None]:
        """One page only (no cursor): enough for the service layer's own sweeps."""
        if cursor is not None:
            raise NotInTheFake("paging with a cursor")
        wanted = None if statuses is None else {OrderStatus(s) for s in statuses}
        found = self._select(lambda o: (account is None or o.account == account)
                             and (symbol is None or o.symbol == symbol)
                             and (wanted is None or o.status in wanted)
                             and (order_manager_id is None or o.order_manager_id == order_manager_id))
        if newest_first:
            found.reverse()
        return found[:limit], None

    def open_orders(self, account: str | None = None, symbol: str | None = None) -> list[Order]:
        return self._select(lambda o: o.status in OPEN_STATUSES and (account is None or o.account == account)
                            and (symbol is None or o.symbol == symbol))

    def due_for_expiry(self, approved_before: dt.datetime, now: dt.datetime, limit: int = 500,
                       after: tuple[dt.datetime, str] | None = None) -> list[Order]:
        working = {OrderStatus.APPROVED, *OPEN_STATUSES}
        due = [o for o in self.state.orders.values()
               if ((o.status is OrderStatus.APPROVED and o.updated_time < approved_before)
                   or (o.status in working and o.expire_time is not None and o.expire_time <= now))
               and (after is None or (o.updated_time, o.order_id) > after)]
        return [_copy(o) for o in sorted(due, key=lambda o: (o.updated_time, o.order_id))[:limit]]

    def count_open(self, account: str | None = None) -> int:
        return len(self.open_orders(account=account))

    def in_doubt(self) -> tuple[int, dt.datetime | None]:
        sent = [o.updated_time for o in self.state.orders.values() if o.status is OrderStatus.SUBMITTED]
        return len(sent), min(sent, default=None)

    def owing_fills(self, updated_since: dt.datetime | None = None, limit: int = 500,
                    after: tuple[dt.datetime, str] | None = None) -> list[Order]:
        owing = [o for o in self.state.orders.values() if o.venue_executed_quantity is not None
                 and (updated_since is None or o.updated_time >= updated_since)
                 and (after is None or (o.updated_time, o.order_id) > after)]
        return [_copy(o) for o in sorted(owing, key=lambda o: (o.updated_time, o.order_id))[:max(1, limit)]]

    def count_owing_fills(self) -> int:
        return len(self.owing_fills(limit=len(self.state.orders) or 1))

    def events(self, order_id: str) -> list[OrderEvent]:
        return copy.deepcopy(sorted(self.state.events.get(order_id, []), key=lambda e: e.sequence))

    def events_after(self, after_id: int, order_id: str | None = None, account: str | None = None,
                     limit: int = 500) -> list[tuple[int, OrderEvent]]:
        found = [(i, copy.deepcopy(e)) for i, e in self.state.event_log if i > after_id
                 and (order_id is None or e.order_id == order_id)
                 and (account is None or self.state.orders[e.order_id].account == account)]
        return found[:max(1, limit)]


class FakeTradeRepository:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def add_if_absent(self, trade: Trade) -> bool:
        key = (trade.venue, trade.trade_id)
        if key in self.state.trades:
            return False
        self.state.trades[key] = copy.deepcopy(trade)
        return True

    def get(self, venue: str, trade_id: str) -> Trade | None:
        return copy.deepcopy(self.state.trades.get((venue, trade_id)))

    def for_order(self, order_id: str) -> list[Trade]:
        mine = [t for t in self.state.trades.values() if t.order_id == order_id]
        return copy.deepcopy(sorted(mine, key=lambda t: t.trade_time))  # stable: then as stored

    def list(self, order_id: str | None = None, account: str | None = None, symbol: str | None = None,
             limit: int = 100, cursor: str | None = None, newest_first: bool = False) -> tuple[list[Trade], None]:
        if cursor is not None:
            raise NotInTheFake("paging with a cursor")
        found = sorted((t for t in self.state.trades.values() if (order_id is None or t.order_id == order_id)
                        and (account is None or t.account == account) and (symbol is None or t.symbol == symbol)),
                       key=lambda t: t.trade_time)
        if newest_first:
            found.reverse()
        return copy.deepcopy(found[:limit]), None


class FakeTradingStateRepository:
    def __init__(self, state: FakeState, clock: Callable[[], dt.datetime]) -> None:
        self.state = state
        self.clock = clock

    def get(self, scope: str = GLOBAL_SCOPE) -> TradingStateRecord:
        return self.state.trading_state.get(scope, TradingStateRecord(TradingState.ACTIVE, "", "", None))

    def effective(self, symbol: str) -> TradingStateRecord:
        overall, own = self.get(GLOBAL_SCOPE), self.get(symbol_scope(symbol))
        return own if _STRICTNESS[own.state] > _STRICTNESS[overall.state] else overall

    def set(self, state: TradingState | str, operator: str, reason: str, scope: str = GLOBAL_SCOPE
            ) -> TradingStateRecord:
        target = TradingState(state)
        now = self.clock()
        previous = self.state.trading_state.get(scope)
        record = self.state.trading_state[scope] = TradingStateRecord(target, reason, operator, now)
        self.state.trading_history.append(TradingStateChange(
            id=len(self.state.trading_history) + 1, scope=scope,
            from_state=previous.state if previous else TradingState.ACTIVE, to_state=target,
            operator=operator, reason=reason, event_time=now))
        return record

    def states(self) -> dict[str, TradingState]:
        return {scope: record.state for scope, record in self.state.trading_state.items()}

    def history(self, scope: str = GLOBAL_SCOPE, limit: int = 100) -> list[TradingStateChange]:
        return [c for c in reversed(self.state.trading_history) if c.scope == scope][:max(1, limit)]


class FakeAnomalyRepository:
    def __init__(self, state: FakeState, clock: Callable[[], dt.datetime]) -> None:
        self.state = state
        self.clock = clock

    def record(self, kind: str, venue: str, order_id: str | None, detail: str,
               payload: dict[str, Any] | None = None, observed_time: dt.datetime | None = None) -> int:
        anomaly_id = len(self.state.anomalies) + 1
        fields = {"id": anomaly_id, "kind": kind, "venue": venue, "order_id": order_id, "detail": detail,
                  "payload": payload, "observed_time": observed_time or self.clock()}
        self.state.anomalies.append(ExecutionAnomaly(**{name: fields.get(name) for name in
                                                        ExecutionAnomaly.__dataclass_fields__}))
        return anomaly_id

    def list(self, limit: int = 100, order_id: str | None = None) -> list[ExecutionAnomaly]:
        found = [a for a in reversed(self.state.anomalies) if order_id is None or a.order_id == order_id]
        return copy.deepcopy(found[:max(1, limit)])

    def count_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for anomaly in self.state.anomalies:
            counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
        return counts


class _Absent:
    """A repository the fake does not hold: any use raises :class:`NotInTheFake`."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        raise NotInTheFake(f"the fake store holds no {self._name} ({method}): use the SQLite store")


class _NoManagers(_Absent):
    def refresh(self, unique_identifier: str) -> None:
        return None  # no order manager to bring up to date


class FakeUnitOfWork(AbstractUnitOfWork):
    """One transaction on a :class:`FakeStore`: works on a copy, kept by :meth:`commit`."""

    def __init__(self, store: FakeStore, *, read_only: bool = False) -> None:
        self.store = store
        self.read_only = read_only
        self.committed = False
        self._begin()

    def _begin(self) -> None:
        self.state = copy.deepcopy(self.store.state)
        clock = self.store.clock
        self.orders = FakeOrderRepository(self.state)  # type: ignore[assignment]
        self.trades = FakeTradeRepository(self.state)  # type: ignore[assignment]
        self.trading_state = FakeTradingStateRepository(self.state, clock)  # type: ignore[assignment]
        self.anomalies = FakeAnomalyRepository(self.state, clock)  # type: ignore[assignment]
        self.order_managers = _NoManagers("order managers")  # type: ignore[assignment]
        self.positions = _Absent("positions")  # type: ignore[assignment]
        self.account_activity = _Absent("account activity")  # type: ignore[assignment]

    def commit(self) -> None:
        if self.read_only:
            raise AssertionError("a read-only unit of work does not commit")
        self.store.state = self.state
        self.store.commits += 1
        self.committed = True
        self._begin()

    def rollback(self) -> None:
        self._begin()


# -- the services' database --------------------------------------------------------------------
class FakeDatabase:
    """In place of :class:`services.store.database.Database`: each ``run`` its own
    committed fake unit of work, ``read`` one never committed, and the set writes."""

    def __init__(self, store: FakeStore | None = None, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.store = store or FakeStore(clock)
        self.batches = 0
        self.calls = 0
        self._writes: dict[str, Callable[[FakeUnitOfWork, list[Any]], list[Any]]] = {
            "new orders": _new_orders, "claims": _claims, "fills": _fills}

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.store.uow() as uow:
            result = fn(uow, *args)
            uow.commit()
            return result

    def read_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.store.uow(read_only=True) as uow:
            return fn(uow, *args)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        await asyncio.sleep(0)  # a real write yields to the loop while it waits for its commit
        self.batches += 1
        self.calls += 1
        return self.run_sync(fn, *args)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        await asyncio.sleep(0)
        return self.read_sync(fn, *args)

    async def write_many(self, kind: Any, items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        write = self._writes.get(kind.name)
        if write is None:
            raise NotInTheFake(f"the set write {kind.name!r}: use the SQLite store")
        await asyncio.sleep(0)
        self.batches += 1
        self.calls += 1
        with self.store.uow() as uow:
            outcomes = write(uow, items)
            uow.commit()
        return outcomes

    async def write(self, kind: Any, item: Any) -> Any:
        (outcome,) = await self.write_many(kind, [item])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def read_connection(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotInTheFake("a plain SQL connection")

    def close(self) -> None:
        pass


def _new_orders(uow: FakeUnitOfWork, orders: list[Order]) -> list[Any]:
    """:data:`services.store.order_sets.NEW_ORDERS`: each order added, or its duplicate refused."""
    outcomes: list[Any] = []
    for order in orders:
        try:
            uow.orders.add(order)
        except (DuplicateOrderId, DuplicateClientOrderId) as refused:
            outcomes.append(refused)
        else:
            outcomes.append(order)
    return outcomes


def _claims(uow: FakeUnitOfWork, claims: list[Claim]) -> list[Any]:
    """:data:`services.store.order_sets.CLAIMS`: APPROVED -> SUBMITTED with the trading
    state checked, refused as the SQL write refuses."""
    outcomes: list[Any] = []
    claimed: set[str] = set()
    for claim in claims:
        order = uow.orders.get(claim.order_id)
        refusal = _claim_refusal(uow, claim, order, claimed)
        if refusal is not None:
            outcomes.append(refusal)
            continue
        assert order is not None
        order.transition(OrderStatus.SUBMITTED, reason=CLAIM_REASON, at=claim.at,
                         payload={"token_key_id": claim.key_id, "token_nonce": claim.nonce})
        uow.orders.save(order)
        claimed.add(claim.order_id)
        outcomes.append(order)
    return outcomes


def _claim_refusal(uow: FakeUnitOfWork, claim: Claim, order: Order | None, claimed: set[str]) -> Exception | None:
    """The SQL write's rules (:func:`services.store.order_sets.claim_refusal`) over the fake's state."""
    state = uow.trading_state.effective(order.symbol) if order is not None else None

    def held(o: Order) -> Decimal:  # in the order's market type: a trade's is its order's
        return sum(((t.quantity if t.side is Side.BUY else -t.quantity) for t in uow.state.trades.values()
                    if t.account == o.account and t.symbol == o.symbol
                    and uow.state.orders[t.order_id].market_type is o.market_type), Decimal(0))

    return claim_refusal(claim, order, claimed, state.state if state else TradingState.ACTIVE,
                         state.reason if state else "", held)


def _fills(uow: FakeUnitOfWork, fills: list[Fill]) -> list[Any]:
    """:data:`services.store.order_sets.FILLS`: each order stored with its events and
    trades when the store still holds it at the sequence the fill expected."""
    outcomes: list[Any] = []
    for fill in fills:
        if not uow.orders.save_at_sequence(fill.order, fill.stored_sequence):
            outcomes.append(StaleOrder(f"order {fill.order.order_id} was changed by another writer",
                                       metadata={"order_id": fill.order.order_id}))
            continue
        for trade in fill.trades:
            if not uow.trades.add_if_absent(trade):
                raise AssertionError(f"trade {trade.trade_id} stored twice (UNIQUE(venue, trade_id))")
        outcomes.append(fill.order)
    return outcomes


# -- what Risk reads from the store ---------------------------------------------------------------
class FakeRiskSource:
    """:class:`services.store.risk_state.StoreSource` over a :class:`FakeDatabase`: the
    snapshot a Risk engine starts from, the order events it follows, the ledger it writes.

    The fake store holds no ledger: a book starts with no positions and no realised PnL
    (``positions`` and ``realised`` preset them), and learns fills from the fill events
    it follows, as a running replica does. The ledger the engine writes is kept in
    ``ledger`` and ``written_positions``.
    """

    def __init__(self, db: FakeDatabase, *, positions: Sequence[Any] = (),
                 realised: Sequence[tuple[str, Decimal]] = ()) -> None:
        self.db = db
        self.positions = list(positions)
        self.realised = list(realised)
        self.cursor = 0
        self.ledger: list[dict[str, Any]] = []
        self.written_positions: list[Any] = []

    async def load(self, *, now: dt.datetime, approved_since: dt.datetime, window_start: dt.datetime,
                   reset: dt.datetime, owns: Callable[[str], bool]) -> Any:
        from services.store.risk_state import Snapshot

        await asyncio.sleep(0)
        state = self.db.store.state
        self.cursor = len(state.event_log)
        working = [(o.order_id, o.account, o.client_order_id, o.symbol, o.side.value, o.quantity, o.filled_quantity,
                    o.status.value, o.updated_time, o.market_type.value) for o in state.orders.values()
                   if o.status in OPEN_STATUSES or (o.status is OrderStatus.APPROVED and o.updated_time >= approved_since)]
        recent = sorted(((o.account, o.order_time) for o in state.orders.values() if o.order_time >= window_start
                         and (o.status is not OrderStatus.REJECTED or o.token_nonce is not None)),
                        key=lambda item: item[1])
        trading = {scope: record.state for scope, record in state.trading_state.items()}
        halts = [(c.operator, c.reason) for c in state.trading_history
                 if c.scope == GLOBAL_SCOPE and c.to_state is TradingState.HALTED and c.event_time >= reset]
        return Snapshot(self.cursor, [p for p in self.positions if owns(p.account)], [], working, recent,
                        [(a, net) for a, net in self.realised if owns(a)], trading, halts=halts)

    async def follow(self, read_states: bool) -> tuple[list[Any], dict[str, TradingState] | None]:
        from services.store.risk_state import FOLLOWED, TailEvent

        await asyncio.sleep(0)
        state = self.db.store.state
        events = []
        for event_id, event in state.event_log[self.cursor:]:
            if event.to_status in FOLLOWED:
                order = state.orders[event.order_id]
                events.append(TailEvent(event_id, event.order_id, event.sequence, event.to_status, event.event_time,
                                        copy.deepcopy(event.payload) if event.to_status in (
                                            OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)
                                        or event.from_status is event.to_status else {},
                                        order.account, order.symbol, order.side, order.venue, order.quantity,
                                        order.filled_quantity, order.market_type, event.from_status))
        self.cursor = len(state.event_log)
        states = {scope: record.state for scope, record in state.trading_state.items()} if read_states else None
        return events, states

    async def write_ledger(self, entries: list[dict[str, Any]], positions: list[Any]) -> None:
        await asyncio.sleep(0)
        self.ledger += copy.deepcopy(entries)
        self.written_positions += copy.deepcopy(positions)


# -- the Exchange, as the OMS's gateway sees it -----------------------------------------------------
class FakeGateway:
    """:class:`services.oms.gateway.ExchangeGateway` as data, on paper.

    A MARKET order, or a LIMIT one at or through ``prices[symbol]``, fills at once at the
    market price; any other rests (ACCEPTED) until :meth:`cancel`. ``refuse`` makes the
    next executions answer that :class:`Refusal` instead. Every report is dated
    ``clock()``. :meth:`query` answers what the venue holds of an order it executed: its
    status there, what it executed and its fills.
    """

    def __init__(self, prices: dict[str, Decimal] | None = None, *,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.prices = prices or {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3200")}
        self.clock = clock or (lambda: dt.datetime.now(UTC))
        self.executed: list[tuple[Any, str]] = []
        self.cancelled: list[str] = []
        self.resting: dict[str, OrderRef] = {}
        #: Every order the venue took: its status there, the quantity executed, its fills' reports.
        self.venue: dict[str, tuple[OrderStatus, Decimal, list[ExecutionReport]]] = {}
        self.refuse: Refusal | None = None
        #: What the next EmergencyCancelAll calls answer (see emergency_cancel_all), and how many came.
        self.sweeps: list[Swept | Refusal] = []
        self.swept = 0
        self._trades = itertools.count(1)

    async def ready(self, within: float | None = None) -> bool:
        """Always connected (the real gateway waits for a restarting Exchange)."""
        return True

    async def execute(self, order: Any, token: str, *, remaining: float | None = None,
                      orphaned: Any = None) -> Executed | Refusal:
        """Executed at once (``orphaned``: the real gateway's hand-off of an answer whose
        caller went away; here the answer comes in the caller's own step)."""
        await asyncio.sleep(0)
        self.executed.append((order, token))
        if self.refuse is not None:
            return self.refuse
        from services.common import convert

        domain = convert.order_from_proto(order)
        ref = OrderRef.of(domain)
        market = self.prices[domain.symbol]
        crosses = domain.order_type is OrderType.MARKET or domain.price is None or (
            domain.price >= market if domain.side is Side.BUY else domain.price <= market)
        now = self.clock()
        remote = f"fake-{domain.order_id[:8]}"
        if not crosses:
            self.resting[domain.order_id] = ref
            self.venue[domain.order_id] = (OrderStatus.ACCEPTED, Decimal(0), [])
            return Executed([make_report(ref, OrderStatus.ACCEPTED, remote_order_id=remote, at=now)],
                            common_pb.EXECUTION_MODE_PAPER)
        fill = VenueFill(trade_id=f"fake-t{next(self._trades)}", quantity=domain.quantity, price=market,
                         commission=Decimal("0"), commission_asset="USDT", liquidity_side=LiquiditySide.TAKER)
        report = make_report(ref, OrderStatus.FILLED, fill=fill, cumulative=domain.quantity, remote_order_id=remote,
                             at=now)
        self.venue[domain.order_id] = (OrderStatus.FILLED, domain.quantity, [report])
        return Executed([report], common_pb.EXECUTION_MODE_PAPER)

    async def execute_many(self, items: Sequence[tuple[Any, str]], *, remaining: float | None = None
                           ) -> list[Executed | Refusal]:
        return [await self.execute(order, token, remaining=remaining) for order, token in items]

    async def cancel(self, order: Order) -> ExecutionReport | Refusal:
        await asyncio.sleep(0)
        self.cancelled.append(order.order_id)
        ref = self.resting.pop(order.order_id, None)
        if ref is None:
            return Refusal(grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND", f"no working order {order.order_id}")
        self._ended(order.order_id)
        return make_report(ref, OrderStatus.CANCELLED, at=self.clock())

    def _ended(self, order_id: str) -> None:
        _, executed, fills = self.venue[order_id]
        self.venue[order_id] = (OrderStatus.CANCELLED, executed, fills)

    async def emergency_cancel_all(self) -> Swept | Refusal:
        """The venue-wide cancel: every resting order cancelled, and the next of ``sweeps``
        (a ``Swept`` whose failures are answered with those reports, or a ``Refusal``) when
        one is queued. Each call is counted in ``swept``."""
        await asyncio.sleep(0)
        self.swept += 1
        scripted = self.sweeps.pop(0) if self.sweeps else None
        if isinstance(scripted, Refusal):
            return scripted
        reports = [make_report(ref, OrderStatus.CANCELLED, at=self.clock()) for ref in self.resting.values()]
        for order_id in self.resting:
            self._ended(order_id)
        self.resting.clear()
        return Swept(reports, list(scripted.failures) if scripted is not None else [])

    async def query(self, order: Order, *, timeout: float | None = None) -> Any:
        """``QueryOrder``'s answer: the venue's status of the order, what it executed, its fills."""
        from services.common import convert
        from tessera.exchange.v1 import exchange_pb2

        await asyncio.sleep(0)
        if order.order_id not in self.venue:
            return exchange_pb2.QueryOrderResponse(found=False, mode=common_pb.EXECUTION_MODE_PAPER)
        status, executed, fills = self.venue[order.order_id]
        return exchange_pb2.QueryOrderResponse(
            found=True, venue_status=convert.enum_to_proto(status), executed_quantity=convert.format_decimal(executed),
            fills=[convert.report_to_proto(report) for report in fills], mode=common_pb.EXECUTION_MODE_PAPER)

    def reports(self, after_sequence: int = 0) -> Any:
        raise NotInTheFake("StreamExecutionReports")


# -- the venue, a placement held at its door ------------------------------------------------------
class HeldPaperVenue(PaperProvider):
    """A paper venue whose placements wait until :attr:`release` is set: ``placing`` is
    set once one has reached it (the Exchange recorded the execution and called it), the
    order is placed (and answered) only once released."""

    def __init__(self, prices: dict[str, Decimal] | None = None) -> None:
        super().__init__(prices or {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3200")})
        self.placing = asyncio.Event()
        self.release = asyncio.Event()

    async def execute(self, order: Order) -> list[ExecutionReport]:
        self.placing.set()
        await self.release.wait()
        return await super().execute(order)


def sweep_waiting(engine: Any) -> asyncio.Event:
    """An event set when ``engine`` (an :class:`~services.exchange.engine.ExchangeEngine`)
    begins waiting for the placements in progress before a venue-wide cancel. The set of
    placements it waits for is taken as the wait begins, before the event's waiters run."""
    waiting = asyncio.Event()
    settle = engine.placements.settle

    async def watched(*args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return await settle(*args, **kwargs)

    engine.placements.settle = watched
    return waiting


async def first_of(task: "asyncio.Future[Any]", event: asyncio.Event) -> None:
    """Wait until ``task`` is done or ``event`` is set, whichever comes first."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


__all__ = ["FakeClock", "FakeDatabase", "FakeGateway", "FakeRiskSource", "FakeStore", "FakeUnitOfWork",
           "HeldPaperVenue", "NotInTheFake", "START", "first_of", "sweep_waiting"]
