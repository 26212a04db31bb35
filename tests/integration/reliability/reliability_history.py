"""A realistic order history written through the repository and the fill tracker."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import order_factory

from services.domain import LiquiditySide, Order, OrderStatus
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_report
from services.store import Store

T0 = dt.datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def report(order: Order, status: OrderStatus, *, trade: tuple[str, str, str] | None = None, when: float = 0) -> ExecutionReport:
    fill = None
    if trade is not None:
        trade_id, quantity, price = trade
        fill = Fill(trade_id, Decimal(quantity), Decimal(price), Decimal("0.01"), "USDT", LiquiditySide.TAKER)
    return ExecutionReport(order.order_id, order.client_order_id, order.venue, order.account, order.symbol,
                           order.side, status, at(when), remote_order_id="r-" + order.order_id[:8], fill=fill)


def _approved(store: Store, **fields: Any) -> Order:
    order = order_factory.build_order(order_time=T0, updated_time=T0, **fields)
    order.record_creation(T0)
    order.transition(OrderStatus.APPROVED, reason="risk: approved", at=at(0.1))
    order.token_nonce = uuid.uuid4().hex
    with store.uow() as uow:
        uow.orders.add(order)
        uow.commit()
    return order


def _submit(store: Store, order_id: str, nonce: str) -> Order:
    with store.uow() as uow:
        order = uow.orders.get(order_id)
        order.transition(OrderStatus.SUBMITTED, reason="oms: risk token verified", at=at(0.2),
                         payload={"token_key_id": "k1", "token_nonce": nonce})
        uow.orders.save(order)
        uow.commit()
    return order


def _apply(store: Store, *reports: ExecutionReport) -> None:
    for item in reports:
        with store.uow() as uow:
            apply_report(uow, item)
            uow.commit()


def _move(store: Store, order_id: str, status: OrderStatus, reason: str) -> None:
    with store.uow() as uow:
        order = uow.orders.get(order_id)
        order.transition(status, reason=reason, at=at(3))
        uow.orders.save(order)
        uow.commit()


def build_history(store: Store) -> dict[str, str]:
    """Orders through every path: filled in two fills, cancelled, cancel refused, rejected
    at the venue, rejected by risk, still approved, still working. Returns their ids by name."""
    ids: dict[str, str] = {}
    filled = _approved(store, quantity=Decimal("1.5"))
    _submit(store, filled.order_id, filled.token_nonce)
    _apply(store, report(filled, OrderStatus.ACCEPTED, when=0.5),
           report(filled, OrderStatus.PARTIALLY_FILLED, trade=("t-1", "0.5", "50000.1"), when=1),
           report(filled, OrderStatus.FILLED, trade=("t-2", "1", "49999.7"), when=2),
           report(filled, OrderStatus.FILLED, trade=("t-2", "1", "49999.7"), when=2))  # a duplicate report
    ids["filled"] = filled.order_id

    cancelled = _approved(store, quantity=Decimal(2))
    _submit(store, cancelled.order_id, cancelled.token_nonce)
    _apply(store, report(cancelled, OrderStatus.PARTIALLY_FILLED, trade=("t-3", "0.25", "50000"), when=1))
    _move(store, cancelled.order_id, OrderStatus.PENDING_CANCEL, "cancel requested")
    _apply(store, report(cancelled, OrderStatus.CANCELLED, when=4))
    ids["cancelled"] = cancelled.order_id

    refused = _approved(store)
    _submit(store, refused.order_id, refused.token_nonce)
    _apply(store, report(refused, OrderStatus.ACCEPTED, when=0.5))
    _move(store, refused.order_id, OrderStatus.PENDING_CANCEL, "cancel requested")
    _move(store, refused.order_id, OrderStatus.ACCEPTED, "cancel refused by venue: UNKNOWN_ORDER")
    ids["working"] = refused.order_id

    rejected = _approved(store)
    _submit(store, rejected.order_id, rejected.token_nonce)
    _apply(store, report(rejected, OrderStatus.REJECTED, when=0.5))
    ids["venue_rejected"] = rejected.order_id

    risk_rejected = order_factory.build_order(order_time=T0, updated_time=T0)
    risk_rejected.record_creation(T0)
    risk_rejected.reject_reasons = ["MAX_NOTIONAL_EXCEEDED"]
    risk_rejected.transition(OrderStatus.REJECTED, reason="risk: MAX_NOTIONAL_EXCEEDED", at=at(0.1),
                             payload={"violations": [{"code": "MAX_NOTIONAL_EXCEEDED", "limit": Decimal(250000)}]})
    with store.uow() as uow:
        uow.orders.add(risk_rejected)
        uow.commit()
    ids["risk_rejected"] = risk_rejected.order_id

    ids["approved"] = _approved(store).order_id
    in_doubt = _approved(store)
    _submit(store, in_doubt.order_id, in_doubt.token_nonce)
    ids["in_doubt"] = in_doubt.order_id
    follow_ledger(store)
    return ids


def follow_ledger(store: Store) -> None:
    """What the Risk replica that owns the accounts does: apply the stored fills to the
    ledger and write its entries and positions."""
    import asyncio

    import core_ext
    from services.risk.engine import RiskEngine
    from services.risk.limits import RiskLimits
    from services.store.database import Database

    db = Database(store, owns_store=False)
    try:
        asyncio.run(RiskEngine(db, core_ext.KeyRing("k1", b"history-ledger-secret-0123456789abcdef"),
                               RiskLimits.from_env({}), flush_seconds=0).sync())
    finally:
        db.close()
