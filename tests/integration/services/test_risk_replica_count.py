"""Two Risk replica counts at once never decide (docs/risk-sharding.md, "Changing the
replica count"): each replica checks in to the store (``risk_replicas``) at start and
every tenth of its lease, and does not decide, nor write the ledger, while a replica seen
within the lease runs with another TESSERA_RISK_SHARDS, or while its own check-in is
unconfirmed for half the lease.

The clocks are the tests' own: the UTC time the rows are dated by, and the monotonic
time a replica measures its own check-ins by.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from services.domain import OrderStatus, OrderType
from services.domain.errors import ShardMapUnsettled
from services.risk.engine import RiskEngine
from services.risk.sharding import Sharding
from services.store import Store
from services.store.database import Database
from services.store.engine import make_engine
from test_risk_ledger import LIMITS, fill

S = OrderStatus
D = Decimal
LEASE = 10.0


@dataclasses.dataclass
class Clocks:
    now: dt.datetime = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.timezone.utc)
    mono: float = 1000.0

    def utc(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def second_db(store: Store):
    """Another process's connection pool on the same database."""
    other = Database(Store(make_engine(store.engine.url)))
    yield other
    other.close()


def replica(db: Database, keyring: Any, clocks: Clocks, shard: int, shards: int, **extra: Any) -> RiskEngine:
    return RiskEngine(db, keyring, LIMITS, sharding=Sharding(shard, shards), clock=clocks.utc,
                      monotonic=clocks.monotonic, lease_seconds=LEASE, flush_seconds=0, **extra)


def account_of(**owners: int) -> str:
    """An account owned by the given ordinal under each count: account_of(two=0, three=2)."""
    counts = {"one": 1, "two": 2, "three": 3}
    return next(a for a in (f"acct-{n}" for n in range(1000))
                if all(Sharding(owner, counts[name]).owns(a) for name, owner in owners.items()))


async def decide(risk: RiskEngine, make_order, account: str, **fields: Any) -> Any:
    """The decision, or the ShardMapUnsettled that refused it."""
    fields.setdefault("quantity", D("0.001"))
    try:
        return await risk.validate(make_order(account=account, order_type=OrderType.MARKET, price=None, **fields))
    except ShardMapUnsettled as refused:
        return refused


def test_a_replica_started_with_another_count_decides_nothing_while_one_with_the_old_count_runs(
        db, second_db, keyring, make_order):
    clocks = Clocks()
    account = account_of(two=0, three=2)  # replica 0 of 2 owns it, and so would replica 2 of 3

    async def scenario():
        old = replica(db, keyring, clocks, 0, 2)
        before = await decide(old, make_order, account)
        new = replica(second_db, keyring, clocks, 2, 3)  # started with the new count, the old still running
        await new.start()
        by_new = await decide(new, make_order, account)
        await old.check_in()  # its next beat sees the new one
        by_old = await decide(old, make_order, account)
        await new.stop()  # the new one goes: the old count is alone again
        await old.check_in()
        after = await decide(old, make_order, account)
        return before, by_new, by_old, after

    before, by_new, by_old, after = asyncio.run(scenario())

    assert before.order.status is S.APPROVED
    assert isinstance(by_new, ShardMapUnsettled) and by_new.reason == "SHARD_MAP_UNSETTLED"
    assert "risk replica 2 of 3 does not decide while risk replica 0 on" in str(by_new)
    assert "runs with TESSERA_RISK_SHARDS=2" in str(by_new)
    assert isinstance(by_old, ShardMapUnsettled) and "runs with TESSERA_RISK_SHARDS=3" in str(by_old)
    assert after.order.status is S.APPROVED


def test_a_replica_of_the_new_count_loads_its_book_once_the_old_count_is_gone_and_sees_what_it_approved(
        db, second_db, keyring, make_order):
    """The new owner loads its book only once no replica of the old count runs: the old
    owner's approvals up to its stop are in it (here: the open orders limit)."""
    clocks = Clocks()
    account = account_of(two=1, three=0)
    limits = dataclasses.replace(LIMITS, max_open_orders=2)

    async def scenario():
        old = RiskEngine(db, keyring, limits, sharding=Sharding(1, 2), clock=clocks.utc, monotonic=clocks.monotonic,
                         lease_seconds=LEASE, flush_seconds=0)
        first = await decide(old, make_order, account)
        new = RiskEngine(second_db, keyring, limits, sharding=Sharding(0, 3), clock=clocks.utc,
                         monotonic=clocks.monotonic, lease_seconds=LEASE, flush_seconds=0)
        await new.start()  # the old one runs: nothing loaded
        second = await decide(old, make_order, account)  # the old one has not seen the new one yet
        await old.stop()
        await new.check_in()
        await new.sync()  # the count settled: the book is loaded now
        third = await decide(new, make_order, account)
        return first, second, third

    first, second, third = asyncio.run(scenario())

    assert [first.order.status, second.order.status] == [S.APPROVED, S.APPROVED]
    assert third.order.status is S.REJECTED and [v.code for v in third.violations] == ["MAX_OPEN_ORDERS_EXCEEDED"]


def test_a_restart_with_the_same_count_is_not_held_up(db, second_db, keyring, make_order):
    """A replica's row outlives a kill for the lease: a replica of the same count (its
    successor, or any other) is not refused for it."""
    clocks = Clocks()
    account = account_of(two=0)

    async def scenario():
        killed = replica(db, keyring, clocks, 0, 2)
        await killed.start()  # then killed: never checks out
        successor = replica(second_db, keyring, clocks, 0, 2)
        sibling = replica(second_db, keyring, clocks, 1, 2)
        await sibling.start()
        return await decide(successor, make_order, account)

    assert asyncio.run(scenario()).order.status is S.APPROVED


def test_a_killed_replica_of_another_count_holds_the_new_count_back_for_its_lease_only(
        db, second_db, keyring, make_order):
    clocks = Clocks()
    account = account_of(two=1, three=1)

    async def scenario():
        killed = replica(db, keyring, clocks, 1, 2)
        await killed.start()  # then killed (SIGKILL): its row stays
        new = replica(second_db, keyring, clocks, 1, 3)
        await new.start()
        within = await decide(new, make_order, account)
        clocks.advance(LEASE)
        await new.check_in()
        await new.sync()
        return within, await decide(new, make_order, account)

    within, after = asyncio.run(scenario())

    assert isinstance(within, ShardMapUnsettled)
    assert after.order.status is S.APPROVED


def test_a_replica_unconfirmed_for_half_its_lease_stops_deciding_and_loads_its_book_again_before_it_resumes(
        db, second_db, keyring, make_order, store):
    """Unconfirmed for the lease, a replica is taken for gone by a replica of another
    count, which may decide its accounts meanwhile: it refuses from half the lease on,
    and once confirmed again decides from a book loaded again from the store (here: an
    approval the other count's replica stored while it was taken for gone)."""
    clocks = Clocks()
    account = account_of(two=0, three=0)
    limits = dataclasses.replace(LIMITS, max_open_orders=1)

    async def scenario():
        cut_off = RiskEngine(db, keyring, limits, sharding=Sharding(0, 2), clock=clocks.utc,
                             monotonic=clocks.monotonic, lease_seconds=LEASE, flush_seconds=0)
        await cut_off.start()
        clocks.advance(LEASE / 2)  # no check-in got through meanwhile (the store unreachable from it)
        unconfirmed = await decide(cut_off, make_order, account)
        clocks.advance(LEASE / 2)
        other = RiskEngine(second_db, keyring, limits, sharding=Sharding(0, 3), clock=clocks.utc,
                           monotonic=clocks.monotonic, lease_seconds=LEASE, flush_seconds=0)
        by_other = await decide(other, make_order, account)  # takes the silent replica for gone
        await other.stop()
        await cut_off.check_in()  # the store again
        loading = await decide(cut_off, make_order, account)
        await cut_off.sync()
        return unconfirmed, by_other, loading, await decide(cut_off, make_order, account)

    unconfirmed, by_other, loading, resumed = asyncio.run(scenario())

    assert isinstance(unconfirmed, ShardMapUnsettled) and "has not confirmed" in str(unconfirmed)
    assert by_other.order.status is S.APPROVED
    assert isinstance(loading, ShardMapUnsettled) and "is loading its book" in str(loading)
    assert [v.code for v in resumed.violations] == ["MAX_OPEN_ORDERS_EXCEEDED"]  # the other's approval counts


def test_a_replica_that_may_not_decide_writes_no_ledger(db, second_db, keyring, make_order, store):
    """A fill followed while another count's replica runs is not written (both may own
    the account; the later write of an older position would stand): the owner once the
    count settles applies it, from the store."""
    clocks = Clocks()
    account = account_of(two=0, three=0)

    async def scenario():
        old = replica(db, keyring, clocks, 0, 2)
        approved = await decide(old, make_order, account)
        new = replica(second_db, keyring, clocks, 0, 3)
        await new.start()
        await old.check_in()
        fill(store, approved.order)
        await old.sync()
        await old.stop()
        with store.uow(read_only=True) as uow:
            unwritten = uow.positions.get(account, "BTCUSDT")
        await new.check_in()
        await new.sync()  # loads: the fill is among those the ledger does not hold yet
        await new.flush()
        with store.uow(read_only=True) as uow:
            return unwritten, uow.positions.get(account, "BTCUSDT")

    unwritten, written = asyncio.run(scenario())

    assert unwritten.quantity == 0
    assert written.quantity == D("0.001")


def test_a_stopping_replica_checks_out_only_after_its_decisions_are_stored(db, keyring, make_order, store):
    """Once its row is gone a replica of another count may load its book and decide: a
    decision still being stored then would be missing from that book."""
    clocks = Clocks()
    account = account_of(two=0)
    stored_at_check_out: list[bool] = []

    async def scenario():
        risk = replica(db, keyring, clocks, 0, 2)
        await risk.start()
        check_out = risk.source.check_out

        async def watched(instance: str) -> None:
            with store.uow(read_only=True) as uow:
                stored_at_check_out.append(uow.orders.get_by_client_order_id(account, "in-flight") is not None)
            await check_out(instance)

        risk.source.check_out = watched
        deciding = asyncio.ensure_future(decide(risk, make_order, account, client_order_id="in-flight"))
        await asyncio.sleep(0)  # decided, its write queued
        await risk.stop()
        return await deciding, await decide(risk, make_order, account)

    decided, after_stop = asyncio.run(scenario())

    assert decided.order.status is S.APPROVED
    assert stored_at_check_out == [True]
    assert isinstance(after_stop, ShardMapUnsettled) and "is stopping" in str(after_stop)


def test_a_stopping_replica_checks_out_only_after_a_decision_it_had_begun_is_stored(db, keyring, make_order, store):
    """A decision past the check but still reading (an order manager, say) when the stop
    begins is one the replica makes: it is stored before the row goes."""
    clocks = Clocks()
    account = account_of(two=0)
    stored_at_check_out: list[bool] = []

    async def scenario():
        risk = replica(db, keyring, clocks, 0, 2)
        await risk.start()
        check_out, check_references = risk.source.check_out, risk._check_references
        reading = asyncio.Event()
        read = asyncio.Event()

        async def slow_read(order: Any, now: Any) -> None:
            reading.set()
            await read.wait()
            await check_references(order, now)

        async def watched(instance: str) -> None:
            with store.uow(read_only=True) as uow:
                stored_at_check_out.append(uow.orders.get_by_client_order_id(account, "reading") is not None)
            await check_out(instance)

        risk._check_references, risk.source.check_out = slow_read, watched
        deciding = asyncio.ensure_future(decide(risk, make_order, account, client_order_id="reading"))
        await reading.wait()
        stopping = asyncio.ensure_future(risk.stop())
        await asyncio.sleep(0.05)
        read.set()
        await stopping
        return await deciding

    decided = asyncio.run(scenario())

    assert decided.order.status is S.APPROVED
    assert stored_at_check_out == [True]


def test_a_replica_writes_the_ledger_it_owes_as_it_stops(db, keyring, make_order, store):
    """SIGTERM ends the follow loop: the fills it applied since its last flush (an hour
    away here) are written before it checks out."""
    clocks = Clocks()
    account = account_of(two=1)

    async def scenario():
        risk = replica(db, keyring, clocks, 1, 2, poll_seconds=0.01)
        risk.flush_seconds = 3600
        approved = await decide(risk, make_order, account)
        fill(store, approved.order)
        stop = asyncio.Event()
        following = asyncio.ensure_future(risk.follow(stop))
        for _ in range(1000):  # until the book has the fill (the loop reads every 10 ms)
            held = risk.book.accounts[account].positions.get((approved.order.market_type, "BTCUSDT"))
            if held is not None and held.quantity:
                break
            await asyncio.sleep(0.01)
        with store.uow(read_only=True) as uow:
            before = uow.positions.get(account, "BTCUSDT").quantity
        stop.set()
        await following
        with store.uow(read_only=True) as uow:
            return before, uow.positions.get(account, "BTCUSDT").quantity, uow.session.execute(
                text("SELECT count(*) FROM risk_replicas")).scalar_one()

    before, after, rows = asyncio.run(scenario())

    assert (before, after) == (D("0"), D("0.001"))
    assert rows == 0  # checked out
