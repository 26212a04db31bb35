"""The order repository: the aggregate, its events, compare-and-set and lookups."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.domain import Order, OrderStatus, Side, TimeInForce
from services.domain.errors import Conflict, OrderNotFound, StaleOrder
from services.store import DuplicateClientOrderId, DuplicateOrderId
from services.store.mapping import ORDER_COLUMNS
from services.store.models import order_events_table, orders_table

T1 = dt.datetime(2025, 1, 2, 4, 0, tzinfo=dt.timezone.utc)


def count_rows(store, table) -> int:
    with store.uow(read_only=True) as uow:
        return uow.session.execute(select(func.count()).select_from(table)).scalar_one()


def test_order_columns_are_exactly_the_persisted_order_fields():
    persisted = {field.name for field in dataclasses.fields(Order)} - {"new_events"}
    assert set(ORDER_COLUMNS) == persisted


def test_added_order_comes_back_equal_with_its_creation_event(store, make_order):
    order = make_order(token_nonce="n-1", reject_reasons=["a"], raw_venue_payload={"k": [1, 2]})
    with store.uow() as uow:
        uow.orders.add(order)
        uow.commit()
    assert order.version == 1 and order.new_events == []

    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
        events = uow.orders.events(order.order_id)
    assert loaded == dataclasses.replace(order, new_events=[])
    assert [(e.sequence, e.from_status, e.to_status, e.reason) for e in events] == [
        (1, None, OrderStatus.PENDING, "created")
    ]
    assert events[0].event_time == order.order_time


def test_get_of_unknown_order_is_none(store):
    with store.uow() as uow:
        assert uow.orders.get("no-such-order") is None
        assert uow.orders.get_by_client_order_id("acct-1", "nope") is None


def test_save_writes_status_and_events_in_the_same_transaction(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    order.transition(OrderStatus.APPROVED, reason="risk ok", at=T1)
    order.transition(OrderStatus.SUBMITTED, at=T1, payload={"venue": "paper"})
    with store.uow() as uow:
        uow.orders.save(order)
        uow.commit()
    assert order.version == 2 and order.new_events == []

    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
        events = uow.orders.events(order.order_id)
    assert (loaded.status, loaded.version, loaded.last_sequence) == (OrderStatus.SUBMITTED, 2, 3)
    assert [e.to_status for e in events] == [OrderStatus.PENDING, OrderStatus.APPROVED, OrderStatus.SUBMITTED]
    assert events[2].payload == {"venue": "paper"} and events[1].reason == "risk ok"


def test_rolled_back_save_leaves_neither_status_nor_events(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    order.transition(OrderStatus.APPROVED)
    with store.uow() as uow:
        uow.orders.save(order)
        uow.rollback()
    with store.uow() as uow:
        assert uow.orders.get(order.order_id).status is OrderStatus.PENDING
        assert len(uow.orders.events(order.order_id)) == 1
    assert count_rows(store, order_events_table) == 1


def test_unit_of_work_without_commit_rolls_back_on_exit(store, make_order):
    with store.uow() as uow:
        uow.orders.add(make_order())
    assert count_rows(store, orders_table) == 0


def test_exception_inside_unit_of_work_rolls_back_and_propagates(store, make_order):
    with pytest.raises(RuntimeError, match="boom"):
        with store.uow() as uow:
            uow.orders.add(make_order())
            raise RuntimeError("boom")
    assert count_rows(store, orders_table) == 0
    assert count_rows(store, order_events_table) == 0


def test_second_save_of_the_same_loaded_version_raises_stale_order_and_first_wins(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    with store.uow(read_only=True) as first_uow:
        first = first_uow.orders.get(order.order_id)
    with store.uow(read_only=True) as second_uow:
        second = second_uow.orders.get(order.order_id)

    first.transition(OrderStatus.APPROVED, reason="first")
    second.transition(OrderStatus.REJECTED, reason="second")
    with store.uow() as uow:
        uow.orders.save(first)
        uow.commit()
    with store.uow() as uow:
        with pytest.raises(StaleOrder):
            uow.orders.save(second)
    assert second.version == 1 and len(second.new_events) == 1  # untouched by the failed save

    with store.uow() as uow:
        stored_order = uow.orders.get(order.order_id)
        events = uow.orders.events(order.order_id)
    assert (stored_order.status, stored_order.version) == (OrderStatus.APPROVED, 2)
    assert [e.reason for e in events] == ["created", "first"]


def test_save_of_an_order_never_added_raises_order_not_found(store, make_order):
    with store.uow() as uow, pytest.raises(OrderNotFound):
        uow.orders.save(make_order())


def test_save_does_not_rewrite_the_signed_economic_fields(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    order.quantity, order.side = Decimal("999"), Side.SELL
    order.remote_order_id = "venue-42"
    with store.uow() as uow:
        uow.orders.save(order)
        uow.commit()
    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
    assert (loaded.quantity, loaded.side, loaded.remote_order_id) == (Decimal("1.5"), Side.BUY, "venue-42")


def test_client_order_id_is_unique_per_account_only(store, make_order, add_orders):
    original = make_order(account="acct-1", client_order_id="cid-7")
    add_orders(store, original, make_order(account="acct-2", client_order_id="cid-7"))

    with store.uow() as uow:
        with pytest.raises(DuplicateClientOrderId) as raised:
            uow.orders.add(make_order(account="acct-1", client_order_id="cid-7"))
        assert isinstance(raised.value, Conflict)
        # The transaction is still usable: the caller can look at the existing order.
        assert uow.orders.get_by_client_order_id("acct-1", "cid-7").order_id == original.order_id
        uow.orders.add(make_order(account="acct-1", client_order_id="cid-8"))
        uow.commit()
    assert count_rows(store, orders_table) == 3


def test_adding_an_existing_order_id_raises_duplicate_order_id(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    with store.uow() as uow, pytest.raises(DuplicateOrderId):
        uow.orders.add(dataclasses.replace(order, client_order_id="other", new_events=[]))


def test_events_are_returned_by_sequence_even_when_times_disagree(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    # Later sequence, earlier timestamp: the sequence, not the clock, orders events.
    order.transition(OrderStatus.APPROVED, at=T1)
    order.transition(OrderStatus.SUBMITTED, at=T1 - dt.timedelta(hours=2))
    order.transition(OrderStatus.ACCEPTED, at=T1 - dt.timedelta(hours=3))
    with store.uow() as uow:
        uow.orders.save(order)
        uow.commit()
    with store.uow() as uow:
        events = uow.orders.events(order.order_id)
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert [e.to_status for e in events][-1] is OrderStatus.ACCEPTED


def test_events_after_follows_the_global_id_cursor(store, make_order, add_orders):
    mine, other = make_order(account="acct-1"), make_order(account="acct-2")
    add_orders(store, mine, other)
    for order in (mine, other):
        order.transition(OrderStatus.APPROVED)
    with store.uow() as uow:
        uow.orders.save(mine)
        uow.orders.save(other)
        uow.commit()

    with store.uow(read_only=True) as uow:
        everything = uow.orders.events_after(0)
        ids = [event_id for event_id, _ in everything]
        assert ids == sorted(ids) and len(ids) == 4
        first_two = uow.orders.events_after(0, limit=2)
        rest = uow.orders.events_after(first_two[-1][0])
        assert first_two + rest == everything
        assert uow.orders.events_after(ids[-1]) == []
        for_account = uow.orders.events_after(0, account="acct-1")
        assert {e.order_id for _, e in for_account} == {mine.order_id} and len(for_account) == 2
        for_order = uow.orders.events_after(0, order_id=other.order_id)
        assert [e.to_status for _, e in for_order] == [OrderStatus.PENDING, OrderStatus.APPROVED]


def test_list_pages_by_order_time_then_order_id_without_gaps_or_repeats(store, make_order, add_orders):
    # Three orders share one instant: the order id breaks the tie.
    times = [T1, T1, T1, T1 + dt.timedelta(seconds=1), T1 - dt.timedelta(seconds=1), T1 + dt.timedelta(minutes=1), T1]
    orders = [make_order(order_time=t) for t in times]
    add_orders(store, *orders)
    expected = [o.order_id for o in sorted(orders, key=lambda o: (o.order_time, o.order_id))]

    seen, cursor, pages = [], None, 0
    with store.uow(read_only=True) as uow:
        while True:
            page, cursor = uow.orders.list(limit=3, cursor=cursor)
            seen += [o.order_id for o in page]
            pages += 1
            if cursor is None:
                break
        newest, _ = uow.orders.list(limit=len(orders), newest_first=True)
    assert seen == expected and pages == 3
    assert [o.order_id for o in newest] == expected[::-1]


def test_list_filters_by_account_symbol_status_and_order_manager(store, make_order, add_orders):
    with store.uow() as uow:
        uow.order_managers.create_batch("batch-1", "acct-1", T1, "PENDING")
        uow.commit()
    a = make_order(account="acct-1", symbol="ETHUSDT", order_manager_id="batch-1")
    b = make_order(account="acct-1", symbol="BTCUSDT")
    c = make_order(account="acct-2", symbol="ETHUSDT")
    add_orders(store, a, b, c)
    b.transition(OrderStatus.APPROVED)
    with store.uow() as uow:
        uow.orders.save(b)
        uow.commit()

    def ids(**filters):
        with store.uow(read_only=True) as uow:
            return {o.order_id for o in uow.orders.list(**filters)[0]}

    assert ids(account="acct-1") == {a.order_id, b.order_id}
    assert ids(symbol="ETHUSDT") == {a.order_id, c.order_id}
    assert ids(statuses=[OrderStatus.APPROVED]) == {b.order_id}
    assert ids(statuses=["PENDING"], account="acct-2") == {c.order_id}
    assert ids(order_manager_id="batch-1") == {a.order_id}


def test_open_orders_and_count_open_cover_exactly_the_working_statuses(store, make_order, add_orders):
    path = {
        OrderStatus.PENDING: [],
        OrderStatus.APPROVED: [OrderStatus.APPROVED],
        OrderStatus.SUBMITTED: [OrderStatus.APPROVED, OrderStatus.SUBMITTED],
        OrderStatus.ACCEPTED: [OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED],
        OrderStatus.PENDING_CANCEL: [OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.PENDING_CANCEL],
        OrderStatus.CANCELLED: [OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.CANCELLED],
    }
    orders = {status: make_order() for status in path}
    orders["other-account"] = make_order(account="acct-2")
    path["other-account"] = [OrderStatus.APPROVED, OrderStatus.SUBMITTED]
    add_orders(store, *orders.values())
    with store.uow() as uow:
        for key, order in orders.items():
            for status in path[key]:
                order.transition(status)
            uow.orders.save(order)
        uow.commit()

    working = {OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PENDING_CANCEL}
    with store.uow(read_only=True) as uow:
        open_ids = {o.order_id for o in uow.orders.open_orders(account="acct-1")}
        assert open_ids == {orders[s].order_id for s in working}
        assert uow.orders.count_open("acct-1") == 3
        assert uow.orders.count_open("acct-2") == 1
        assert uow.orders.count_open() == 4
        assert uow.orders.open_orders(symbol="NOPE") == []


def test_orders_due_for_expiry_page_on_from_an_orders_change_time_and_id(store, make_order, add_orders):
    # Four GTD orders due, two of them changed at the same instant (the id breaks the tie).
    expire_at = T1 + dt.timedelta(minutes=1)
    orders = [make_order(time_in_force=TimeInForce.GTD, expire_time=expire_at) for _ in range(4)]
    add_orders(store, *orders)
    with store.uow() as uow:
        for order, at in zip(orders, (T1, T1 + dt.timedelta(seconds=2), T1 + dt.timedelta(seconds=1),
                                      T1 + dt.timedelta(seconds=1))):
            order.transition(OrderStatus.APPROVED, at=at)
            uow.orders.save(order)
        uow.commit()
    expected = [o.order_id for o in sorted(orders, key=lambda o: (o.updated_time, o.order_id))]
    now = expire_at

    with store.uow(read_only=True) as uow:
        first = uow.orders.due_for_expiry(T1, now, limit=2)
        rest = uow.orders.due_for_expiry(T1, now, limit=2, after=(first[-1].updated_time, first[-1].order_id))
        past_the_end = uow.orders.due_for_expiry(T1, now, limit=2, after=(rest[-1].updated_time, rest[-1].order_id))

    assert [o.order_id for o in first + rest] == expected
    assert past_the_end == []


def test_order_is_found_by_remote_order_id(store, make_order, add_orders):
    order = make_order()
    add_orders(store, order)
    order.remote_order_id = "venue-123"
    with store.uow() as uow:
        uow.orders.save(order)
        uow.commit()
    with store.uow() as uow:
        assert uow.orders.get_by_remote_order_id("paper", "venue-123").order_id == order.order_id
        assert uow.orders.get_by_remote_order_id("other-venue", "venue-123") is None
