"""Concurrent writers: compare-and-set has one winner and no update is lost."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest

from services.domain import OrderStatus
from services.domain.errors import StaleOrder

TARGET = dt.datetime(2025, 1, 3, 9, 30, tzinfo=dt.timezone.utc)


def run_together(count, work):
    """Run ``work(index, barrier)`` in ``count`` threads; return results or exceptions."""
    barrier = threading.Barrier(count)
    outcomes = [None] * count

    def run(index):
        try:
            outcomes[index] = work(index, barrier)
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.postgres
def test_two_threads_compare_and_set_on_postgresql_exactly_one_wins(pg_store, make_order, add_orders):
    order = make_order()
    add_orders(pg_store, order)
    targets = [OrderStatus.APPROVED, OrderStatus.REJECTED]

    def work(index, barrier):
        with pg_store.uow() as uow:
            loaded = uow.orders.get(order.order_id)  # both read version 1 ...
            barrier.wait()  # ... before either writes
            loaded.transition(targets[index], reason=f"thread-{index}")
            uow.orders.save(loaded)
            uow.commit()
            return targets[index]

    outcomes = run_together(2, work)
    winners = [o for o in outcomes if isinstance(o, OrderStatus)]
    losers = [o for o in outcomes if isinstance(o, StaleOrder)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    with pg_store.uow() as uow:
        stored_order = uow.orders.get(order.order_id)
        events = uow.orders.events(order.order_id)
    assert (stored_order.status, stored_order.version) == (winners[0], 2)
    assert [e.to_status for e in events] == [OrderStatus.PENDING, winners[0]]


def test_concurrent_read_modify_write_with_retry_loses_no_fill(store, make_order, add_orders):
    threads, fills_each = 4, 5
    order = make_order(quantity=Decimal(threads * fills_each))
    order.transition(OrderStatus.APPROVED)
    order.transition(OrderStatus.SUBMITTED)
    add_orders(store, order)

    def work(index, barrier):
        barrier.wait()
        retries = 0
        for _ in range(fills_each):
            while True:
                with store.uow() as uow:
                    loaded = uow.orders.get(order.order_id)
                    loaded.apply_fill(Decimal(1), Decimal(100 + index))
                    try:
                        uow.orders.save(loaded)
                    except StaleOrder:
                        retries += 1
                        continue
                    uow.commit()
                    break
        return retries

    outcomes = run_together(threads, work)
    assert all(isinstance(o, int) for o in outcomes), outcomes
    with store.uow() as uow:
        final = uow.orders.get(order.order_id)
        events = uow.orders.events(order.order_id)
    assert final.filled_quantity == threads * fills_each and final.status is OrderStatus.FILLED
    assert [e.sequence for e in events] == list(range(1, 4 + threads * fills_each))
    assert final.version == 1 + threads * fills_each


def test_concurrent_duplicate_trades_store_exactly_one(store, make_order, make_trade, add_orders):
    order = make_order()
    add_orders(store, order)
    trade = make_trade(order, trade_id="dup-1")

    def work(index, barrier):
        barrier.wait()
        with store.uow() as uow:
            added = uow.trades.add_if_absent(trade)
            uow.commit()
            return added

    assert sorted(run_together(4, work)) == [False, False, False, True]
    with store.uow() as uow:
        assert len(uow.trades.for_order(order.order_id)) == 1


def test_concurrent_create_batch_of_one_identifier_creates_one_manager(store):
    def work(index, barrier):
        barrier.wait()
        with store.uow() as uow:
            manager, created = uow.order_managers.create_batch("batch-race", "acct-1", TARGET, "PENDING")
            uow.commit()
            return manager.id, created

    outcomes = run_together(4, work)
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    assert len({manager_id for manager_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, False, False, True]
