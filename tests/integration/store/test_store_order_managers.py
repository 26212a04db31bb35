"""The order-manager repository: idempotent creation, conflicts, updates."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import IntegrityError

from services.domain.errors import Conflict
from services.store import OrderManagerNotFound

TARGET = dt.datetime(2025, 1, 3, 9, 30, tzinfo=dt.timezone.utc)


def test_create_batch_is_idempotent_on_unique_identifier(store):
    with store.uow() as uow:
        created, was_created = uow.order_managers.create_batch(
            "rebalance-1", "acct-1", TARGET, "PENDING", metadata={"strategy": "mean-rev"}
        )
        uow.commit()
    with store.uow() as uow:
        again, again_created = uow.order_managers.create_batch("rebalance-1", "acct-1", TARGET, "OTHER")
        uow.commit()
    assert (was_created, again_created) == (True, False)
    assert again == created
    assert again.status == "PENDING" and again.metadata == {"strategy": "mean-rev"}
    assert created.target_time == TARGET and created.created_time.tzinfo is not None


def test_create_batch_with_the_identifier_of_another_account_is_a_conflict(store):
    with store.uow() as uow:
        uow.order_managers.create_batch("rebalance-1", "acct-1", TARGET, "PENDING")
        uow.commit()
    with store.uow() as uow, pytest.raises(Conflict, match="another target account"):
        uow.order_managers.create_batch("rebalance-1", "acct-2", TARGET, "PENDING")
    with store.uow() as uow:
        assert uow.order_managers.get("rebalance-1").target_account_uid == "acct-1"


def test_order_manager_is_found_by_id_and_saved(store):
    with store.uow() as uow:
        manager, _ = uow.order_managers.create_batch("rebalance-2", "acct-1", TARGET, "PENDING")
        uow.commit()
    manager.status = "EXECUTED"
    manager.order_received_time = TARGET + dt.timedelta(seconds=1)
    manager.execution_end = TARGET + dt.timedelta(minutes=2)
    manager.metadata = {"orders": 3}
    with store.uow() as uow:
        uow.order_managers.save(manager)
        uow.commit()
    with store.uow() as uow:
        assert uow.order_managers.get_by_id(manager.id) == manager
        assert uow.order_managers.get("unknown") is None


def test_saving_an_unknown_order_manager_raises_not_found(store):
    with store.uow() as uow:
        manager, _ = uow.order_managers.create_batch("rebalance-3", "acct-1", TARGET, "PENDING")
        uow.rollback()
        with pytest.raises(OrderManagerNotFound):
            uow.order_managers.save(manager)


def test_orders_reference_an_existing_order_manager(store, make_order, add_orders):
    with store.uow() as uow:
        uow.order_managers.create_batch("rebalance-4", "acct-1", TARGET, "PENDING")
        uow.commit()
    add_orders(store, make_order(order_manager_id="rebalance-4"))
    with store.uow() as uow, pytest.raises(IntegrityError):
        uow.orders.add(make_order(order_manager_id="no-such-batch"))
