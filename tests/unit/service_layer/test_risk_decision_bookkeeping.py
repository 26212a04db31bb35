"""What the engine's book keeps of each decision, over the fake store: an approval whose
store write failed is taken back (from the open orders and the throttle's window); a
client order id answers the same decision after a restart (the book reloaded from the
store), or a conflict for other content; a replacement takes the place of the order it
replaces among the open orders, but no more, and counts in the throttle's window."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import order_factory
import pytest
from fakes import FakeRiskSource

import core_ext
from services.domain import OrderStatus
from services.domain.errors import Conflict
from services.risk.engine import RiskEngine
from services.risk.limits import RiskLimits
from services.risk.replacement import replacement_order

LIMITS = dict(
    allowed_symbols=frozenset({"BTCUSDT"}), max_notional_per_order=Decimal("250000"),
    max_quantity_per_order=Decimal("100"), max_price=Decimal("10000000"),
    reference_prices={"BTCUSDT": Decimal("65000")}, daily_loss_limit=None,
)
KEYS = core_ext.KeyRing("risk1", b"risk-decision-bookkeeping-secret-0123456789")


def engine(clock, db, **limits) -> RiskEngine:
    return RiskEngine(db, KEYS, RiskLimits(**{**LIMITS, **limits}), clock=clock.now, monotonic=clock.monotonic,
                      source=FakeRiskSource(db))


def order(**fields):
    return order_factory.build_order(**{"quantity": Decimal("0.01"), "price": Decimal("65000"), **fields})


class StoreDown(Exception):
    pass


def test_a_batch_whose_store_write_failed_is_taken_back_from_the_open_orders_and_the_throttle(clock, db):
    risk = engine(clock, db, max_open_orders=2, order_rate_limit=2)
    asyncio.run(risk.start())
    write_many = db.write_many

    async def failing(kind, items):
        raise StoreDown("the store is down")

    db.write_many = failing
    with pytest.raises(StoreDown):
        asyncio.run(risk.validate_many([(order(), False), (order(), False)]))
    db.write_many = write_many
    after = [asyncio.run(risk.validate(order())) for _ in range(2)]

    account = risk.book.accounts["acct-1"]
    assert [d.order.status for d in after] == [OrderStatus.APPROVED] * 2  # neither limit saw the lost two
    assert len(account.working) == 2 and len(account.recent) == 2


@pytest.mark.parametrize(
    ("quantity", "status", "codes"),
    [(Decimal("0.01"), OrderStatus.APPROVED, []),
     # Not among the working orders a restarted book loads: found by the store's unique key.
     (Decimal("101"), OrderStatus.REJECTED,
      ["MAX_QUANTITY_EXCEEDED", "MAX_NOTIONAL_EXCEEDED", "MAX_POSITION_EXCEEDED"])],
    ids=["approved", "rejected"],
)
def test_a_client_order_id_answers_the_same_decision_after_a_restart_and_a_conflict_for_other_content(
        clock, db, quantity, status, codes):
    def sent(**fields):  # the client's order, as ValidateOrder builds it from the request each time
        return order(client_order_id="cid-restart", quantity=quantity, **fields)

    first = sent()
    decided = asyncio.run(engine(clock, db).validate(first))
    restarted = engine(clock, db)  # a new process: its book comes from the store

    again = asyncio.run(restarted.validate(sent()))
    with pytest.raises(Conflict) as other:
        asyncio.run(restarted.validate(sent(price=Decimal("64000"))))

    assert (decided.order.status, [v.code for v in decided.violations]) == (status, codes)
    assert (again.order.order_id, again.order.status) == (first.order_id, status)
    assert [v.code for v in again.violations] == codes
    assert bool(again.token) is (status is OrderStatus.APPROVED)  # a fresh token for an approval
    assert other.value.reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert len(db.read_sync(lambda uow: uow.orders.list()[0])) == 1
    assert len(restarted.book.accounts.get("acct-1").recent or ()) == (1 if status is OrderStatus.APPROVED else 0)


def working_at_the_venue(risk, db, clock):
    """An approved order the OMS has submitted and the venue accepted (the book follows)."""
    decided = asyncio.run(risk.validate(order()))

    def accept(uow):
        stored = uow.orders.get(decided.order.order_id)
        stored.transition(OrderStatus.SUBMITTED, at=clock.now())
        stored.transition(OrderStatus.ACCEPTED, at=clock.now())
        uow.orders.save(stored)

    db.run_sync(accept)
    asyncio.run(risk.sync())
    return db.read_sync(lambda uow: uow.orders.get(decided.order.order_id))


def replace(risk, clock, old, price: str):
    new = replacement_order(old, order_id=order_factory.new_id(), client_order_id=f"rep-{price}", quantity=None,
                            price=Decimal(price), now=clock.now())
    return [v.code for v in asyncio.run(risk.validate_replacement(old, new)).violations]


def test_replacements_of_one_order_do_not_get_past_the_open_order_limit(clock, db):
    risk = engine(clock, db, max_open_orders=1)
    old = working_at_the_venue(risk, db, clock)

    assert replace(risk, clock, old, "64000") == []  # takes the old order's place
    assert replace(risk, clock, old, "63000") == ["MAX_OPEN_ORDERS_EXCEEDED"]  # a second one would not
    assert [v.code for v in asyncio.run(risk.validate(order())).violations] == ["MAX_OPEN_ORDERS_EXCEEDED"]


def test_a_replacement_counts_in_the_throttle_window(clock, db):
    risk = engine(clock, db, order_rate_limit=2)
    old = working_at_the_venue(risk, db, clock)

    assert replace(risk, clock, old, "64000") == []
    assert replace(risk, clock, old, "63000") == ["ORDER_RATE_EXCEEDED"]


def test_a_client_order_id_sent_again_with_another_expire_time_is_a_conflict(clock, db):
    from services.domain import TimeInForce

    risk = engine(clock, db)
    soon, later = clock.now() + dt.timedelta(minutes=5), clock.now() + dt.timedelta(hours=5)
    first = asyncio.run(risk.validate(order(client_order_id="cid-gtd", time_in_force=TimeInForce.GTD,
                                            expire_time=soon)))
    with pytest.raises(Conflict) as other:
        asyncio.run(risk.validate(order(client_order_id="cid-gtd", time_in_force=TimeInForce.GTD,
                                        expire_time=later)))

    assert first.order.status is OrderStatus.APPROVED
    assert other.value.reason == "DUPLICATE_CLIENT_ORDER_ID"
    assert db.read_sync(lambda uow: uow.orders.get(first.order.order_id)).expire_time == soon
