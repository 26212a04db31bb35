"""The fill tracker: applies the Exchange service's execution reports to orders.

A report is matched to its order by order id only (never by symbol and side). A fill
is recorded once per venue trade id; a fill that would overfill the order, or that
arrives for an order that can no longer take fills, is refused and recorded as an
anomaly, never silently applied. Reports may arrive twice (on the ExecuteOrder answer
and on the report stream) and in any order; applying one again changes nothing.
"""

from __future__ import annotations

import logging

import core_ext
from services.domain import Order, OrderStatus, TimeInForce, Trade
from services.domain.errors import OverfillError
from services.domain.execution import ExecutionReport
from services.store import UnitOfWork

log = logging.getLogger(__name__)

# Status-only reports the tracker applies; fills move orders through apply_fill.
_STATUS_REPORTS = frozenset(
    {OrderStatus.ACCEPTED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


def _trade(order: Order, report: ExecutionReport) -> Trade:
    fill = report.fill
    assert fill is not None
    return Trade(
        trade_id=fill.trade_id,
        venue=order.venue,
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        quantity=fill.quantity,
        price=fill.price,
        trade_time=report.transact_time,
        commission=fill.commission,
        commission_asset=fill.commission_asset,
        liquidity_side=fill.liquidity_side,
        raw_payload=report.raw_payload,
    )


def _anomaly(uow: UnitOfWork, kind: str, order: Order | None, report: ExecutionReport, detail: str) -> None:
    log.warning("execution anomaly %s on order %s: %s", kind, report.order_id, detail)
    uow.anomalies.record(
        kind=kind,
        venue=report.venue,
        order_id=order.order_id if order else None,
        detail=detail,
        payload={
            "trade_id": report.fill.trade_id if report.fill else None,
            "order_status": report.order_status.value,
            "remote_order_id": report.remote_order_id,
        },
    )


def _apply_fill(uow: UnitOfWork, order: Order, report: ExecutionReport) -> Trade | None:
    fill = report.fill
    assert fill is not None
    if uow.trades.get(order.venue, fill.trade_id) is not None:
        return None  # already recorded: a duplicate report
    try:
        order.apply_fill(
            fill.quantity,
            fill.price,
            at=report.transact_time,
            payload={"trade_id": fill.trade_id, "quantity": str(fill.quantity), "price": str(fill.price)},
        )
    except (OverfillError, core_ext.IllegalTransition) as error:
        _anomaly(uow, "OVERFILL" if isinstance(error, OverfillError) else "FILL_ON_CLOSED_ORDER", order, report, str(error))
        return None
    trade = _trade(order, report)
    if uow.trades.add_if_absent(trade):
        uow.positions.apply_trade(trade)
    return trade


def _apply_status(order: Order, report: ExecutionReport) -> bool:
    target = report.order_status
    reason = report.reason or f"venue: {target.value.lower()}"
    if (
        target is OrderStatus.CANCELLED
        and _gtd_due(order, report)
        and core_ext.can_transition(order.status.value, OrderStatus.EXPIRED.value)
    ):
        # A working GTD order cancelled at or after its time (by the OMS's expiry sweep,
        # or by the venue itself) expired, whichever path brings the report. One with a
        # cancel request pending was cancelled: the table has no PENDING_CANCEL -> EXPIRED.
        target, reason = OrderStatus.EXPIRED, "GTD expire time reached"
    if target is order.status or target not in _STATUS_REPORTS:
        return False
    # No rollback target: leaving PENDING_CANCEL for the state before it means the venue
    # refused the cancel, which only the cancel call's answer says, never a (possibly
    # duplicated) status report.
    if not core_ext.can_transition(order.status.value, target.value):
        # A late acknowledgement after the order moved on: the order already knows more.
        log.info("ignoring %s report for order %s in %s", target.value, order.order_id, order.status.value)
        return False
    order.transition(target, reason=reason, at=report.transact_time)
    return True


def _gtd_due(order: Order, report: ExecutionReport) -> bool:
    return (
        order.time_in_force is TimeInForce.GTD
        and order.expire_time is not None
        and order.expire_time <= report.transact_time
    )


def apply_report(uow: UnitOfWork, report: ExecutionReport) -> tuple[Order | None, Trade | None]:
    """Apply one report inside ``uow``; the caller commits (and retries on StaleOrder)."""
    order = uow.orders.get(report.order_id)
    if order is None:
        _anomaly(uow, "UNKNOWN_ORDER", None, report, f"report for unknown order {report.order_id}")
        return None, None
    changed = False
    if report.remote_order_id and order.remote_order_id != report.remote_order_id:
        order.remote_order_id = report.remote_order_id
        changed = True
    trade = _apply_fill(uow, order, report) if report.fill else None
    if trade is None and not report.fill:
        changed = _apply_status(order, report) or changed
    if changed or trade is not None:
        uow.orders.save(order)
    return order, trade
