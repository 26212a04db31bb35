"""The store against the venue's own record: nothing lost, nothing sent twice.

Given what the venue holds (its orders and trades, and how many placement requests
reached it per client order id, which the venue simulator counts), checks that:

- no client order id was sent to the venue more than once (``SENT_TWICE``) and the
  venue holds at most one order per client order id;
- every order at the venue is a stored order that went through SUBMITTED, i.e. was
  approved and submitted by the OMS (``UNKNOWN_AT_VENUE``, ``UNAPPROVED_AT_VENUE``);
- every venue trade is stored exactly once, on the right order, with its quantity and
  price, and every stored trade of a venue order exists at the venue;
- the stored state agrees with the venue's: the same executed quantity, FILLED when
  the venue filled it, still working only when the venue has it working, and an order
  the venue never received closed without fills (``LOST``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from services.domain import MarketType
from services.domain.trade import venue_trade_id
from services.store.models import order_events_table, orders_table, trades_table

from .invariants import OPEN, Report

VENUE_OPEN = ("NEW", "PARTIALLY_FILLED")
VENUE_TO_STORED = {"FILLED": "FILLED", "CANCELED": "CANCELLED", "EXPIRED": "EXPIRED", "REJECTED": "REJECTED"}


@dataclasses.dataclass
class VenueRecord:
    orders: list[Mapping[str, Any]]
    trades: list[Mapping[str, Any]]
    placements: Mapping[str, int] | None = None  # client order id -> placement requests received

    @staticmethod
    def trade_id(trade: Mapping[str, Any]) -> str:
        """The venue trade id as Tessera stores it (:func:`~services.domain.trade.venue_trade_id`)."""
        market = MarketType.SPOT if trade.get("market") == "spot" else MarketType.FUTURES
        return venue_trade_id(market, trade["symbol"], trade["side"], trade["id"])


def check_against_venue(engine: Engine, venue: VenueRecord, *, venue_name: str | None = None,
                        report: Report | None = None) -> Report:
    """Add the store-versus-venue violations to ``report`` (a new one by default)."""
    report = report or Report()
    with Session(engine) as session:
        statement = select(orders_table.c.order_id, orders_table.c.client_order_id, orders_table.c.status,
                           orders_table.c.filled_quantity, orders_table.c.venue)
        if venue_name is not None:
            statement = statement.where(orders_table.c.venue == venue_name)
        orders = [dict(r) for r in session.execute(statement).mappings()]
        submitted = set(session.execute(
            select(order_events_table.c.order_id).where(order_events_table.c.to_status == "SUBMITTED")
        ).scalars())
        stored_trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in session.execute(select(trades_table.c.order_id, trades_table.c.trade_id, trades_table.c.quantity,
                                          trades_table.c.price)).mappings():
            stored_trades[row["order_id"]].append(dict(row))
        session.rollback()

    by_client: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in orders:
        by_client[order["client_order_id"]].append(order)
    for client_order_id, count in (venue.placements or {}).items():
        if count > 1:
            owner = by_client.get(client_order_id, [{}])[0].get("order_id")
            report.add("SENT_TWICE", owner, f"client order id {client_order_id} reached the venue {count} times")
    venue_orders: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for venue_order in venue.orders:
        venue_orders[str(venue_order["clientOrderId"])].append(venue_order)
    venue_trades: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for trade in venue.trades:
        venue_trades[int(trade["orderId"])].append(trade)

    for client_order_id, held in venue_orders.items():
        stored = by_client.get(client_order_id, [])
        if len(held) > 1:
            report.add("SENT_TWICE", stored[0]["order_id"] if stored else None,
                       f"the venue holds {len(held)} orders with client order id {client_order_id}")
        if not stored:
            report.add("UNKNOWN_AT_VENUE", None, f"venue order {held[0]['orderId']} ({client_order_id}) is not stored")
            continue
        if len(stored) > 1:
            report.add("AMBIGUOUS_CLIENT_ORDER_ID", stored[0]["order_id"],
                       f"{len(stored)} stored orders use client order id {client_order_id}")
            continue
        order = stored[0]
        if order["order_id"] not in submitted:
            report.add("UNAPPROVED_AT_VENUE", order["order_id"], f"at the venue but never SUBMITTED by the OMS "
                                                                 f"(stored {order['status']})")
        venue_order = held[0]
        trades = [t for v in held for t in venue_trades.get(int(v["orderId"]), [])]
        _compare_trades(report, order, trades, stored_trades.get(order["order_id"], []))
        _compare_state(report, order, venue_order)

    for order in orders:
        if order["order_id"] in submitted and order["client_order_id"] not in venue_orders:
            if order["status"] in OPEN:
                continue  # in doubt or on its way: for require_terminal to judge
            if order["filled_quantity"] != 0 or stored_trades.get(order["order_id"]):
                report.add("FILLS_NOT_AT_VENUE", order["order_id"], "fills stored for an order the venue never had")
            if order["status"] == "FILLED":
                report.add("LOST", order["order_id"], "stored FILLED, the venue never had the order")
    return report


def _compare_trades(report: Report, order: Mapping[str, Any], venue_trades: list[Mapping[str, Any]],
                    stored: list[Mapping[str, Any]]) -> None:
    order_id = order["order_id"]
    stored_ids = Counter(t["trade_id"] for t in stored)
    for trade_id, count in stored_ids.items():
        if count > 1:
            report.add("FILL_RECORDED_TWICE", order_id, f"venue trade {trade_id} is stored {count} times")
    by_id = {t["trade_id"]: t for t in stored}
    venue_ids = set()
    for trade in venue_trades:
        trade_id = VenueRecord.trade_id(trade)
        venue_ids.add(trade_id)
        mine = by_id.get(trade_id)
        if mine is None:
            report.add("FILL_NOT_RECORDED", order_id, f"venue trade {trade_id} ({trade['qty']} @ {trade['price']}) is not stored")
        elif (mine["quantity"], mine["price"]) != (Decimal(str(trade["qty"])), Decimal(str(trade["price"]))):
            report.add("FILL_MISMATCH", order_id, f"venue trade {trade_id} is {trade['qty']} @ {trade['price']}, "
                                                  f"stored {mine['quantity']} @ {mine['price']}")
    for trade_id in by_id.keys() - venue_ids:
        report.add("FILL_NOT_AT_VENUE", order_id, f"stored trade {trade_id} is not a venue trade of this order")


def _compare_state(report: Report, order: Mapping[str, Any], venue_order: Mapping[str, Any]) -> None:
    order_id, status = order["order_id"], order["status"]
    venue_status = str(venue_order["status"])
    executed = Decimal(str(venue_order.get("executedQty", "0")))
    if status in OPEN:
        return  # still working here: for require_terminal (or the next reconcile) to judge
    if venue_status in VENUE_OPEN:
        report.add("STATE_MISMATCH", order_id, f"stored {status}, the venue still has it {venue_status}")
        return
    if order["filled_quantity"] != executed:
        report.add("STATE_MISMATCH", order_id,
                   f"stored {order['filled_quantity']} filled ({status}), the venue executed {executed} ({venue_status})")
    expected = VENUE_TO_STORED.get(venue_status)
    if expected == "FILLED" and status != "FILLED":
        report.add("STATE_MISMATCH", order_id, f"stored {status}, the venue filled it")
    if status == "REJECTED" and executed > 0:
        report.add("LOST", order_id, f"stored REJECTED, the venue executed {executed}")

