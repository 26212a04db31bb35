"""The fake store's contract: the same scenarios on :class:`fakes.FakeDatabase` and on the
real store (SQLAlchemy units of work and the SQL set writes, on SQLite in a temporary
file) end alike: the same answers, the same orders, events (to their hash chain's head),
trades and trading state. A change of the real store's behaviour that the fake does not
follow fails here, so the service-layer tests keep testing what production does."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from fakes import FakeClock, FakeDatabase, FakeGateway
from service_layer_support import KEY_ID, RESTING, SECRET, TTL, approve

import core_ext
from services.domain import LiquiditySide, Order, OrderStatus, TimeInForce, TradingState
from services.domain.errors import DomainError, StaleOrder
from services.domain.execution import Fill as VenueFill
from services.exchange.venue import OrderRef, make_report
from services.oms.cancels import Cancels
from services.oms.fill_tracker import apply_report, apply_to_order
from services.oms.submission import Submitter
from services.store import DuplicateClientOrderId, Store
from services.store.chain import chain_rows
from services.store.database import Database
from services.store.mapping import event_to_row
from services.store.order_sets import FILLS, Fill
from services.store.trading_state import symbol_scope


def _order(order: Order | None) -> dict[str, Any] | None:
    if order is None:
        return None
    fields = dataclasses.asdict(order)
    fields.pop("new_events")
    return fields


def _answer(outcome: Any) -> Any:
    if isinstance(outcome, BaseException):
        return type(outcome).__name__, getattr(outcome, "reason", None)
    return _order(outcome.order), [t.trade_id for t in outcome.trades], outcome.replayed


def _everything(db: Any, order_ids: list[str]) -> dict[str, Any]:
    def read(uow: Any) -> dict[str, Any]:
        return {
            "orders": [_order(uow.orders.get(i)) for i in order_ids],
            "events": [[dataclasses.astuple(e) for e in uow.orders.events(i)] for i in order_ids],
            "trades": [[(t.trade_id, t.quantity, t.price, t.trade_time) for t in uow.trades.for_order(i)]
                       for i in order_ids],
            "in_doubt": uow.orders.in_doubt(),
            "open": [o.order_id for o in uow.orders.open_orders()],
            "owing": ([o.order_id for o in uow.orders.owing_fills()], uow.orders.count_owing_fills()),
        }

    return db.read_sync(read)


def _approve(db: Any, keyring: Any, at: dt.datetime, name: str, **fields: Any) -> tuple[Order, str]:
    """:func:`approve` with ids and the token's nonce fixed by ``name``: both stores then
    hold the very same orders, to the hash of their events."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    order_id = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
    return approve(db, keyring, at, nonce=digest[32:64], order_id=order_id, client_order_id=f"client-{name}",
                   **fields)


def order_path(clock: FakeClock, db: Any) -> dict[str, Any]:
    """Orders through the OMS's handlers: filled, resting then cancelled, replayed,
    refused while its symbol is halted, an expired token, a lapsed one swept."""
    keyring = core_ext.KeyRing(KEY_ID, SECRET)
    gateway = FakeGateway(clock=clock.now)
    submitter = Submitter(db, keyring, gateway, ttl_seconds=TTL, clock=clock.now, wall=clock.time)  # type: ignore[arg-type]
    cancels = Cancels(submitter, gateway, ttl_seconds=TTL, clock=clock.now)  # type: ignore[arg-type]

    def submit(order: Order, token: str) -> Any:
        try:
            return asyncio.run(submitter.submit(order, token))
        except DomainError as error:
            return error

    filled, filled_token = _approve(db, keyring, clock.now(), "filled")
    resting, resting_token = _approve(db, keyring, clock.now(), "resting", **RESTING)
    halted, halted_token = _approve(db, keyring, clock.now(), "halted", symbol="ETHUSDT",
                                   price=Decimal("3300"))
    late, late_token = _approve(db, keyring, clock.now(), "late")
    gtd, _ = _approve(db, keyring, clock.now(), "gtd", time_in_force=TimeInForce.GTD,
                     expire_time=clock.now() + dt.timedelta(seconds=20))
    lapsing, _ = _approve(db, keyring, clock.now(), "lapsing")
    answers = []
    clock.advance(1)
    answers.append(submit(filled, filled_token))
    answers.append(submit(filled, filled_token))  # the same token again
    answers.append(submit(resting, resting_token))
    db.run_sync(lambda uow: uow.trading_state.set(TradingState.HALTED, "ops", "contract", symbol_scope("ETHUSDT")))
    answers.append(submit(halted, halted_token))
    clock.advance(30)
    swept_gtd = asyncio.run(cancels.expire_due())
    cancelled = asyncio.run(cancels.cancel(resting.order_id))
    clock.advance(TTL)
    answers.append(submit(late, late_token))
    swept = asyncio.run(cancels.expire_due())
    ids = [o.order_id for o in (filled, resting, halted, late, gtd, lapsing)]
    return {"answers": [_answer(a) for a in answers], "swept_gtd": [_order(o) for o in swept_gtd],
            "cancelled": _order(cancelled), "swept": [_order(o) for o in swept], **_everything(db, ids),
            "halted_state": db.read_sync(lambda uow: uow.trading_state.effective("ETHUSDT").state)}


def units_of_work(clock: FakeClock, db: Any) -> dict[str, Any]:
    """The repositories' own contract: compare-and-set, duplicates, rollback."""
    keyring = core_ext.KeyRing(KEY_ID, SECRET)
    order, _ = _approve(db, keyring, clock.now(), "uow")
    outcomes: list[Any] = []
    with db.store.uow() as first, db.store.uow(read_only=True) as reader:
        mine = first.orders.get(order.order_id)
        theirs = copy.deepcopy(reader.orders.get(order.order_id))
        mine.transition(OrderStatus.CANCELLED, reason="first", at=clock.now())
        first.orders.save(mine)
        first.commit()
    with db.store.uow() as second:
        theirs.transition(OrderStatus.EXPIRED, reason="second", at=clock.now())
        try:
            second.orders.save(theirs)
        except StaleOrder:
            outcomes.append("stale")
    with db.store.uow() as uncommitted:
        uncommitted.trading_state.set(TradingState.HALTED, "ops", "never committed")
    with db.store.uow() as duplicate:
        again = copy.deepcopy(mine)
        again.order_id = "another-id"
        again.version = 0
        try:
            duplicate.orders.add(again)
        except DuplicateClientOrderId:
            outcomes.append("duplicate client order id")
    return {"outcomes": outcomes, "global": db.read_sync(lambda uow: uow.trading_state.get().state),
            **_everything(db, [order.order_id])}


def two_fills_in_one_write(clock: FakeClock, db: Any) -> dict[str, Any]:
    """Two fills of one order in one set write (the later one computed from the
    earlier's result), and a rival that expected the same row as the first."""
    keyring = core_ext.KeyRing(KEY_ID, SECRET)
    gateway = FakeGateway(clock=clock.now)
    submitter = Submitter(db, keyring, gateway, ttl_seconds=TTL, clock=clock.now, wall=clock.time)  # type: ignore[arg-type]
    order, token = _approve(db, keyring, clock.now(), "fills", quantity=Decimal("0.02"), **RESTING)
    working = asyncio.run(submitter.submit(order, token)).order
    def fill(base: Order, trade: str, seconds: int) -> tuple[Fill, Order]:
        moved = copy.deepcopy(base)
        expected = moved.last_sequence
        clock.advance(seconds)
        applied = apply_to_order(moved, make_report(OrderRef.of(moved), OrderStatus.PARTIALLY_FILLED, at=clock.now(),
                                                    fill=VenueFill(trade, Decimal("0.01"), Decimal("60000"),
                                                                   Decimal("0"), "USDT", LiquiditySide.MAKER)))
        after = copy.deepcopy(moved)
        after.new_events = []
        from services.store.chain import chain_rows
        from services.store.mapping import event_to_row

        _, after.last_event_hash = chain_rows([event_to_row(e) for e in moved.new_events], moved.last_event_hash)
        after.version += 1
        return Fill(moved, expected, [applied.trade]), after

    first, after_first = fill(working, "t-first", 1)
    second, _ = fill(after_first, "t-second", 1)
    rival, _ = fill(working, "t-rival", 1)
    outcomes = asyncio.run(db.write_many(FILLS, [first, second, rival]))
    return {"outcomes": [type(o).__name__ for o in outcomes], **_everything(db, [order.order_id])}


def fills_after_close(clock: FakeClock, db: Any) -> dict[str, Any]:
    """A resting order cancelled, then a fill the venue made before the cancel reported
    after it, twice; and a fill for an order cancelled before it was sent."""
    keyring = core_ext.KeyRing(KEY_ID, SECRET)
    gateway = FakeGateway(clock=clock.now)
    submitter = Submitter(db, keyring, gateway, ttl_seconds=TTL, clock=clock.now, wall=clock.time)  # type: ignore[arg-type]
    cancels = Cancels(submitter, gateway, ttl_seconds=TTL, clock=clock.now)  # type: ignore[arg-type]
    sent, token = _approve(db, keyring, clock.now(), "sent", **RESTING)
    unsent, _ = _approve(db, keyring, clock.now(), "unsent", **RESTING)
    clock.advance(1)
    asyncio.run(submitter.submit(sent, token))
    asyncio.run(cancels.cancel(sent.order_id))
    asyncio.run(cancels.cancel(unsent.order_id))
    clock.advance(1)
    applied = []
    for order, trade in ((sent, "t-late"), (sent, "t-late"), (unsent, "t-unsent")):
        late = make_report(OrderRef.of(order), OrderStatus.PARTIALLY_FILLED, at=clock.now(),
                           fill=VenueFill(trade, Decimal("0.004"), Decimal("60000"), Decimal("0"), "USDT",
                                          LiquiditySide.MAKER))
        stored, recorded = asyncio.run(submitter.write(apply_report, late))
        applied.append((_order(stored), recorded is not None))
    anomalies = db.read_sync(lambda uow: [(a.kind, a.order_id) for a in uow.anomalies.list()])
    return {"applied": applied, "anomalies": anomalies, **_everything(db, [sent.order_id, unsent.order_id])}


def fills_owed(clock: FakeClock, db: Any) -> dict[str, Any]:
    """A resting order the venue cancels saying it executed 0.008, nothing filled here: it
    owes 0.008; then the two fills, one at a time."""
    keyring = core_ext.KeyRing(KEY_ID, SECRET)
    gateway = FakeGateway(clock=clock.now)
    submitter = Submitter(db, keyring, gateway, ttl_seconds=TTL, clock=clock.now, wall=clock.time)  # type: ignore[arg-type]
    owing, token = _approve(db, keyring, clock.now(), "owing", **RESTING)
    clock.advance(1)
    asyncio.run(submitter.submit(owing, token))
    ref = OrderRef.of(owing)
    asyncio.run(submitter.write(apply_report, make_report(ref, OrderStatus.CANCELLED, at=clock.now(),
                                                          cumulative=Decimal("0.008"))))
    seen = [_everything(db, [owing.order_id])]
    for trade in ("t-1", "t-2"):
        clock.advance(1)
        late = make_report(ref, OrderStatus.PARTIALLY_FILLED, at=clock.now(),
                           fill=VenueFill(trade, Decimal("0.004"), Decimal("60000"), Decimal("0"), "USDT",
                                          LiquiditySide.MAKER))
        asyncio.run(submitter.write(apply_report, late))
        seen.append(_everything(db, [owing.order_id]))
    return {"seen": seen}


@pytest.mark.parametrize("scenario", [order_path, units_of_work, two_fills_in_one_write, fills_after_close,
                                      fills_owed])
def test_the_fake_store_ends_as_the_real_one(scenario, tmp_path):
    results = {}
    for name in ("fake", "sqlite"):
        clock = FakeClock()
        if name == "fake":
            db = FakeDatabase(clock=clock.now)
        else:
            db = Database(Store.from_url(f"sqlite:///{tmp_path}/{scenario.__name__}.db", migrate=True))
        try:
            results[name] = scenario(clock, db)
        finally:
            db.close()
    assert results["fake"] == results["sqlite"]


def test_the_scenarios_exercise_what_they_name(tmp_path):
    """The comparison above is only worth what the scenarios do: check they do it."""
    clock = FakeClock()
    path = order_path(clock, FakeDatabase(clock=clock.now))
    statuses = [o["status"] for o in path["orders"]]
    # filled; rested then cancelled; refused while halted, then its token lapsed; refused
    # with its token expired, then swept; a GTD one at its time; one never submitted.
    assert statuses == [OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.EXPIRED,
                        OrderStatus.EXPIRED, OrderStatus.EXPIRED]
    assert [len(swept) for swept in (path["swept_gtd"], path["swept"])] == [1, 3]
    assert [a[1] if isinstance(a[0], str) else a[2] for a in path["answers"]] == [
        False, True, False, "TRADING_HALTED", "TOKEN_EXPIRED"]  # the same token again: answered as a replay
    clock = FakeClock()
    uow = units_of_work(clock, FakeDatabase(clock=clock.now))
    assert uow["outcomes"] == ["stale", "duplicate client order id"] and uow["global"] is TradingState.ACTIVE
    clock = FakeClock()
    fills = two_fills_in_one_write(clock, FakeDatabase(clock=clock.now))
    assert fills["outcomes"] == ["Order", "Order", "StaleOrder"]
    assert fills["orders"][0]["status"] is OrderStatus.FILLED and len(fills["trades"][0]) == 2
    clock = FakeClock()
    late = fills_after_close(clock, FakeDatabase(clock=clock.now))
    assert [recorded for _, recorded in late["applied"]] == [True, False, False]
    assert [(o["status"], o["filled_quantity"]) for o in late["orders"]] == [
        (OrderStatus.CANCELLED, Decimal("0.004")), (OrderStatus.CANCELLED, Decimal(0))]
    assert [kind for kind, _ in late["anomalies"]] == ["FILL_ON_CLOSED_ORDER"]
    clock = FakeClock()
    owed = fills_owed(clock, FakeDatabase(clock=clock.now))
    assert [(seen["orders"][0]["venue_executed_quantity"], seen["orders"][0]["filled_quantity"], seen["owing"][1])
            for seen in owed["seen"]] == [(Decimal("0.008"), Decimal(0), 1), (Decimal("0.008"), Decimal("0.004"), 1),
                                          (None, Decimal("0.008"), 0)]
