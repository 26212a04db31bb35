"""The OMS's claim (APPROVED -> SUBMITTED) as a set write, on SQLite and PostgreSQL.

A claim that comes with its order (built from the request whose token verified) is one
compare-and-set update with Risk's chain head recomputed, not read; anything that does
not match the stored row exactly goes the read path, which decides as before. Each test
compares the two paths or checks that a mismatch falls back rather than writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from services.common import convert
from services.domain import OrderStatus, TimeInForce, TradingState
from services.domain.errors import InvalidOrder, PreconditionFailed, TokenReplayed
from services.reliability.invariants import check_store
from services.store.order_sets import CLAIMS, Claim
from services.store.trading_state import GLOBAL_SCOPE
from svc_harness import approved

AT = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
#: What differs between two orders of the same economics.
PER_ORDER = {"order_id", "client_order_id", "order_time", "updated_time", "token_nonce", "last_event_hash",
             "new_events"}


def _claim(decision: Any, message: Any = None, *, with_order: bool = True) -> Claim:
    _, key_id, _, nonce, *_ = decision.token.split(".")
    message = message if message is not None else convert.order_to_proto(decision.order)
    return Claim(decision.order.order_id, key_id, nonce, AT, convert.order_as_approved(message) if with_order else None)


def _statements(db: Any) -> list[str]:
    seen: list[str] = []
    event.listen(db.store.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(statement))
    return seen


def _fields(order: Any) -> dict[str, Any]:
    return {name: value for name, value in dataclasses.asdict(order).items() if name not in PER_ORDER}


def test_a_claim_with_its_order_gives_the_order_a_read_claim_gives_and_stores_the_same(db, risk, make_order):
    async def scenario():
        first = await approved(risk, make_order(quantity=Decimal("0.02")))
        second = await approved(risk, make_order(quantity=Decimal("0.02")))
        statements = _statements(db)
        (direct,) = await db.write_many(CLAIMS, [_claim(first)])
        direct_statements = list(statements)
        (read,) = await db.write_many(CLAIMS, [_claim(second, with_order=False)])
        stored = await db.read(lambda uow: [uow.orders.get(first.order.order_id), uow.orders.get(second.order.order_id)])
        return direct, read, stored, direct_statements

    direct, read, (stored_direct, stored_read), statements = asyncio.run(scenario())
    assert direct.status is OrderStatus.SUBMITTED and read.status is OrderStatus.SUBMITTED
    assert _fields(direct) == _fields(read)
    # Nothing re-read: what the claim returned is what the store now holds.
    assert _fields(direct) == _fields(stored_direct) and direct.last_event_hash == stored_direct.last_event_hash
    assert _fields(stored_direct) == _fields(stored_read)
    # Two statements, neither of them a read.
    assert len(statements) == 2 and not any(s.lstrip().upper().startswith("SELECT") for s in statements), statements


def test_claims_by_both_paths_leave_chains_and_replays_that_verify_store_accepts(db, risk, make_order):
    async def scenario():
        direct = await approved(risk, make_order())
        read = await approved(risk, make_order())
        await db.write_many(CLAIMS, [_claim(direct), _claim(read, with_order=False)])
        return await db.read(lambda uow: uow.orders.events(direct.order.order_id))

    events = asyncio.run(scenario())
    assert [e.to_status for e in events] == [OrderStatus.PENDING, OrderStatus.APPROVED, OrderStatus.SUBMITTED]
    report = check_store(db.store.engine, ledger=False)
    assert report.orders == 2 and report.events == 6
    assert report.ok, report.violations


@pytest.mark.parametrize("tamper", ["order_manager_id", "expire_time", "order_time"])
def test_a_claim_whose_unsigned_fields_disagree_with_the_store_is_decided_by_reading_it(db, risk, make_order, tamper):
    async def scenario():
        decision = await approved(risk, make_order())
        message = convert.order_to_proto(decision.order)
        if tamper == "order_manager_id":
            message.order_manager_id = "someone-elses-manager"
        elif tamper == "expire_time":
            message.expire_time.FromDatetime(AT + dt.timedelta(days=1))
        else:
            message.order_time.FromDatetime(AT)
        statements = _statements(db)
        (outcome,) = await db.write_many(CLAIMS, [_claim(decision, message)])
        stored = await db.read(lambda uow: uow.orders.get(decision.order.order_id))
        return decision, outcome, stored, statements

    decision, outcome, stored, statements = asyncio.run(scenario())
    assert any(s.lstrip().upper().startswith("SELECT") for s in statements)  # the read path decided
    assert outcome.status is OrderStatus.SUBMITTED
    # The stored order keeps Risk's values, and so does the order the claim returned.
    assert stored.order_manager_id == decision.order.order_manager_id == outcome.order_manager_id
    assert stored.expire_time == decision.order.expire_time == outcome.expire_time
    assert stored.order_time == decision.order.order_time == outcome.order_time
    assert _fields(stored) == _fields(outcome)


@pytest.mark.parametrize("scope", ["global", "symbol"])
def test_a_claim_while_trading_is_halted_is_refused_and_the_order_stays_approved(db, risk, make_order, scope):
    async def scenario():
        decision = await approved(risk, make_order())
        where = GLOBAL_SCOPE if scope == "global" else f"symbol:{decision.order.symbol}"
        await db.run(lambda uow: uow.trading_state.set(TradingState.HALTED, "test", "halted for the test", where))
        (outcome,) = await db.write_many(CLAIMS, [_claim(decision)])
        stored = await db.read(lambda uow: uow.orders.get(decision.order.order_id))
        return outcome, stored

    outcome, stored = asyncio.run(scenario())
    assert isinstance(outcome, PreconditionFailed) and outcome.reason == "TRADING_HALTED"
    assert stored.status is OrderStatus.APPROVED and stored.last_sequence == 2


@pytest.mark.parametrize("with_order", [True, False], ids=["with-order", "read-first"])
def test_a_claim_at_or_after_a_gtd_orders_expire_time_is_refused_and_the_order_stays_approved(
        db, risk, make_order, with_order):
    async def scenario():
        expire_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(hours=1)
        late = await approved(risk, make_order(time_in_force=TimeInForce.GTD, expire_time=expire_at))
        in_time = await approved(risk, make_order(time_in_force=TimeInForce.GTD, expire_time=expire_at))
        outcomes = await db.write_many(CLAIMS, [
            dataclasses.replace(_claim(late, with_order=with_order), at=expire_at),
            dataclasses.replace(_claim(in_time, with_order=with_order), at=expire_at - dt.timedelta(microseconds=1)),
        ])
        stored = await db.read(lambda uow: uow.orders.get(late.order.order_id))
        return outcomes, stored

    (refused, claimed), stored = asyncio.run(scenario())
    assert isinstance(refused, InvalidOrder) and refused.field == "expire_time"
    assert refused.violations[0].reason == "IN_THE_PAST"
    assert stored.status is OrderStatus.APPROVED and stored.last_sequence == 2
    assert claimed.status is OrderStatus.SUBMITTED


def test_a_second_claim_of_an_order_in_the_batch_or_later_is_refused_as_replayed(db, risk, make_order):
    async def scenario():
        decision = await approved(risk, make_order())
        in_batch = await db.write_many(CLAIMS, [_claim(decision), _claim(decision)])
        later = await db.write_many(CLAIMS, [_claim(decision)])
        stored = await db.read(lambda uow: uow.orders.get(decision.order.order_id))
        return in_batch, later, stored

    (first, again), (later,), stored = asyncio.run(scenario())
    assert first.status is OrderStatus.SUBMITTED
    assert isinstance(again, TokenReplayed) and isinstance(later, TokenReplayed)
    assert stored.status is OrderStatus.SUBMITTED and stored.last_sequence == 3 and stored.version == 2


def test_one_claim_and_several_store_the_same_whatever_shape_the_update_takes(db, risk, make_order):
    """On PostgreSQL one claim joins one row of values, several join unnested arrays
    (SQLite: rows of values always); each claim moves its order all the same."""
    async def scenario():
        alone = await approved(risk, make_order())
        together = [await approved(risk, make_order()) for _ in range(3)]
        statements = _statements(db)
        first = await db.write_many(CLAIMS, [_claim(alone)])
        rest = await db.write_many(CLAIMS, [_claim(d) for d in together])
        stored = await db.read(lambda uow: [uow.orders.get(d.order.order_id) for d in (alone, *together)])
        return first + rest, stored, [s for s in statements if s.lstrip().startswith("UPDATE")]

    claimed, stored, updates = asyncio.run(scenario())
    assert [o.status for o in claimed] == [OrderStatus.SUBMITTED] * 4
    assert [o.status for o in stored] == [OrderStatus.SUBMITTED] * 4
    assert [(o.last_sequence, o.last_event_hash) for o in stored] == [(o.last_sequence, o.last_event_hash)
                                                                        for o in claimed]
    assert len(updates) == 2
    if db.codec.dialect == "sqlite":
        assert all("unnest(" not in u for u in updates)
    else:
        assert "(VALUES (" in updates[0] and "unnest(" not in updates[0]
        assert "unnest(" in updates[1]


def test_a_claim_of_an_order_approved_again_with_a_fresh_token_returns_the_version_it_stored(db, risk, make_order):
    async def scenario():
        order = make_order()
        await approved(risk, order)
        again = await risk.validate(make_order(client_order_id=order.client_order_id))  # a retry: a fresh token
        (claimed,) = await db.write_many(CLAIMS, [_claim(again)])
        stored = await db.read(lambda uow: uow.orders.get(order.order_id))
        return again, claimed, stored

    again, claimed, stored = asyncio.run(scenario())
    assert again.order.version == 2  # the approval given again moved the version on, without an event
    assert claimed.status is OrderStatus.SUBMITTED and stored.status is OrderStatus.SUBMITTED
    assert claimed.version == stored.version == 3
    assert _fields(claimed) == _fields(stored)
