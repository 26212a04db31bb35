"""Partial fills over the real services: a paper book with little depth per level.

Each BTCUSDT level holds 0.01 and the next level is 10 bps further, so an order larger
than 0.01 walks the book: several trades at several prices, the order PARTIALLY_FILLED
on the way, its filled quantity and volume-weighted average price exact.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest

from services.cli.stack import Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera_e2e import RPC_TIMEOUT, StoreView, approve, sqlite_url, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def thin_book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, StoreView]]:
    directory: Path = tmp_path_factory.mktemp("partial-fills")
    url = sqlite_url(directory / "tessera.db")
    stack = start_stack(
        url,
        directory / "logs",
        TESSERA_PAPER_LEVEL_QUANTITY="0.01",
        TESSERA_PAPER_BOOK_LEVELS="3",
        TESSERA_PAPER_LEVEL_STEP_BPS="10",
    )
    store = StoreView(url)
    try:
        yield stack, store
    finally:
        store.close()
        stack.stop()


def submit(stack: Stack, **fields) -> pb.Order:  # type: ignore[no-untyped-def]
    approved = approve(stack, **fields)
    return stack.oms.SubmitOrder(approved.request(), timeout=RPC_TIMEOUT).order


def vwap(trades) -> Decimal:  # type: ignore[no-untyped-def]
    quantity = sum((t.quantity for t in trades), Decimal(0))
    return sum((t.quantity * t.price for t in trades), Decimal(0)) / quantity


def test_an_order_walking_the_book_fills_in_parts_with_an_exact_vwap(thin_book):
    stack, store = thin_book
    order = submit(stack, quantity="0.025")

    trades = store.trades(order.order_id)
    stored = store.order(order.order_id)
    assert order.status == pb.ORDER_STATUS_FILLED
    assert store.statuses(order.order_id)[2:] == ["SUBMITTED", "PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"]
    assert sorted(t.quantity for t in trades) == [Decimal("0.005"), Decimal("0.01"), Decimal("0.01")]
    assert len({t.price for t in trades}) == 3 and len({t.trade_id for t in trades}) == 3
    assert stored.filled_quantity == Decimal("0.025")
    assert stored.average_fill_price == vwap(trades)


def test_an_ioc_order_keeps_what_filled_and_its_remainder_expires(thin_book):
    stack, store = thin_book
    second_level = str(Decimal("65000") * (1 + Decimal("0.001")))
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price=second_level, quantity="0.05",
                   time_in_force=pb.TIME_IN_FORCE_IOC)

    stored = store.order(order.order_id)
    assert store.statuses(order.order_id)[-3:] == ["PARTIALLY_FILLED", "PARTIALLY_FILLED", "EXPIRED"]
    assert stored.filled_quantity == Decimal("0.02")
    assert stored.average_fill_price == vwap(store.trades(order.order_id))


def test_a_partly_filled_resting_order_cancels_and_keeps_its_fills(thin_book):
    stack, store = thin_book
    order = submit(stack, order_type=pb.ORDER_TYPE_LIMIT, price="65000", quantity="0.03")
    assert order.status == pb.ORDER_STATUS_PARTIALLY_FILLED

    cancelled = stack.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=order.order_id), timeout=RPC_TIMEOUT).order

    assert cancelled.status == pb.ORDER_STATUS_CANCELLED
    assert store.statuses(order.order_id)[-3:] == ["PARTIALLY_FILLED", "PENDING_CANCEL", "CANCELLED"]
    assert store.order(order.order_id).filled_quantity == Decimal("0.01")
    assert len(store.trades(order.order_id)) == 1
