"""The fill tracker: applies the Exchange service's execution reports to orders.

A report is matched to its order by order id only (never by symbol and side). A fill
is recorded once per venue trade id; a fill that would overfill the order, or that
arrives for an order that never worked at the venue (REJECTED, or closed before it was
sent: ``FILL_ON_CLOSED_ORDER``), is refused and recorded as an anomaly, never silently
applied. Applying a report twice changes nothing.

A fill for an order already CANCELLED or EXPIRED that reached the venue is recorded in
full: the venue filled it before the cancel (or expiry) took effect and reported the
fill after the close (a cancel's answer can overtake the report stream's fill). The
trade is stored, the order's filled quantity and average price grow, and its event goes
from the closed status to the same one (reason "fill after close",
:meth:`services.domain.Order.apply_fill_after_close`); the order stays closed, and Risk's
ledger applies the fill as any other. A close whose report says the venue executed more
than the order has filled records that (``venue_executed_quantity`` in its event's
payload and on the order until the fills make it up): the missing fills are on their
way, and the reconciler asks the venue for them should the report stream not bring
them (:mod:`services.oms.reconciler`). An overfill
(the venue reports more executed than the order's quantity: the order went to the venue
twice, or the venue is wrong) also quarantines the symbol: its own trading state goes
HALTED (scope ``symbol:<SYMBOL>``, lifted only by an operator's SetTradingState), and a
note event on the order says why; ``tessera verify-store`` reports every overfill.

:func:`apply_to_order` is the whole of it, in memory: the OMS applies an execution's
answer to the order it just claimed and stores the result in one set write
(:data:`services.store.order_sets.FILLS`). :func:`apply_report` does the same inside a
unit of work, reading the order first, for reports that arrive on their own (the report
stream, the reconciler, a cancel's answer) and for the rare answer the fast path hands
back (an anomaly, a lost compare-and-set). The ledger (positions, realised PnL) follows
the stored fills in the Risk service that owns the account.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import core_ext
from services.common.convert import format_decimal
from services.domain import Order, OrderEvent, OrderStatus, TimeInForce, Trade, TradingState, utcnow
from services.domain.errors import OverfillError, StaleOrder
from services.domain.execution import ExecutionReport, Fill
from services.domain.order import CLOSED_FILLABLE
from services.domain.trade import legacy_venue_trade_id
from services.store import UnitOfWork
from services.store.repositories import symbol_scope

from .replay import claim_of

log = logging.getLogger(__name__)

#: The longest venue reason kept in an order's ``reject_reasons`` (its event keeps all of it).
REJECT_REASON_LIMIT = 200
#: Who quarantines a symbol for an overfill (the trading state's operator).
QUARANTINE_OPERATOR = "fill-tracker"

# Status-only reports the tracker applies; fills move orders through apply_fill.
_STATUS_REPORTS = frozenset(
    {OrderStatus.ACCEPTED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


def fill_payload(fill: Fill) -> dict[str, Any]:
    """What a fill event records of its fill (Risk's ledger reads it back): its decimals
    as plain text (``0.00000005``, never ``str(Decimal)``'s ``5E-8``)."""
    payload: dict[str, Any] = {"trade_id": fill.trade_id, "quantity": format_decimal(fill.quantity),
                               "price": format_decimal(fill.price), "commission": format_decimal(fill.commission)}
    if fill.commission_asset:
        payload["commission_asset"] = fill.commission_asset
    return payload


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
        raw_venue_json=report.raw_json,
    )


@dataclasses.dataclass
class Applied:
    """What applying one report to an order did."""

    changed: bool = False
    trade: Trade | None = None
    #: (kind, detail) when the report was refused: record it as an anomaly.
    anomaly: tuple[str, str] | None = None


def _sent_here() -> bool:
    return True


def apply_to_order(order: Order, report: ExecutionReport, known_trades: set[str] | frozenset[str] = frozenset(),
                   reached_venue: Callable[[], bool] = _sent_here) -> Applied:
    """Apply ``report`` to ``order`` in memory (``known_trades``: venue trade ids the order
    already has, which are not applied again; ``reached_venue``: whether the order was
    sent to the venue, asked only for a fill on a CANCELLED or EXPIRED order; by default
    yes, for the answer of the caller's own submission)."""
    applied = Applied()
    if report.remote_order_id and order.remote_order_id != report.remote_order_id:
        order.remote_order_id = report.remote_order_id
        applied.changed = True
    fill = report.fill
    if fill is not None:
        if fill.trade_id in known_trades:
            return applied  # already recorded: a duplicate report
        try:
            if order.status in CLOSED_FILLABLE and reached_venue():
                event = order.apply_fill_after_close(fill.quantity, fill.price, at=report.transact_time,
                                                     payload=fill_payload(fill))
                log.warning("fill %s of order %s recorded after its close (%s)", fill.trade_id, order.order_id,
                            order.status.value)
            else:
                event = order.apply_fill(fill.quantity, fill.price, at=report.transact_time,
                                         payload=fill_payload(fill),
                                         complete=report.order_status is OrderStatus.FILLED)
        except (OverfillError, core_ext.IllegalTransition) as error:
            kind = "OVERFILL" if isinstance(error, OverfillError) else "FILL_ON_CLOSED_ORDER"
            applied.anomaly = (kind, str(error))
            return applied
        applied.trade = _trade(order, report)
        applied.changed = True
        _keep_raw(order, event, report)
        return applied
    event = _apply_status(order, report)
    if event is not None:
        _keep_raw(order, event, report)
    applied.changed = event is not None or applied.changed
    return applied


def _keep_raw(order: Order, event: OrderEvent, report: ExecutionReport) -> None:
    """The venue's payload (exact JSON text) on the event it made and on the order."""
    if report.raw_json:
        event.raw_venue_json = report.raw_json
        order.raw_venue_json = report.raw_json


def _apply_status(order: Order, report: ExecutionReport) -> OrderEvent | None:
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
    elif target is OrderStatus.EXPIRED and order.status is OrderStatus.PENDING_CANCEL:
        # The venue ended the order itself (its GTD time, a remainder) while a cancel was
        # pending, the cancel's answer lost: it is closed as a confirmed cancel would have
        # closed it (the table has no PENDING_CANCEL -> EXPIRED), never left open for good.
        target = OrderStatus.CANCELLED
    if target is OrderStatus.FILLED and order.quantity is None and order.filled_quantity > 0:
        # An order whose quantity the venue decides (close_position, quote_order_qty) is
        # filled when the venue says so, after the fills it reported.
        if not core_ext.can_transition(order.status.value, target.value):
            return None
        return order.transition(target, reason=reason, at=report.transact_time)
    if target is order.status or target not in _STATUS_REPORTS:
        return None
    # No rollback target: leaving PENDING_CANCEL for the state before it means the venue
    # refused the cancel, which only the cancel call's answer says, never a (possibly
    # duplicated) status report.
    if not core_ext.can_transition(order.status.value, target.value):
        # A late acknowledgement after the order moved on: the order already knows more.
        log.info("ignoring %s report for order %s in %s", target.value, order.order_id, order.status.value)
        return None
    if target not in CLOSED_FILLABLE:
        if target is OrderStatus.REJECTED and report.reason and not order.reject_reasons:
            order.reject_reasons = [report.reason[:REJECT_REASON_LIMIT]]  # why, on the order a client reads
        return order.transition(target, reason=reason, at=report.transact_time)
    # The venue may have executed more than the order has filled: those fills are on
    # their way (the report stream, the venue's trades), recorded when they arrive; until
    # then the order owes them (the reconciler asks the venue for them).
    event = order.close_at_venue(target, reason=reason, at=report.transact_time,
                                 venue_executed=report.cumulative_quantity)
    if order.venue_executed_quantity is not None:
        log.info("order %s %s with %s executed at the venue, %s filled here: fills on their way", order.order_id,
                 target.value, order.venue_executed_quantity, order.filled_quantity)
    return event


def _gtd_due(order: Order, report: ExecutionReport) -> bool:
    return (
        order.time_in_force is TimeInForce.GTD
        and order.expire_time is not None
        and order.expire_time <= report.transact_time
    )


def _stored_trade(uow: UnitOfWork, order: Order, trade_id: str) -> Trade | None:
    """The trade stored under ``trade_id`` at the order's venue, or this order's under the
    id the venue trade had before ids named its symbol and side (a fill stored before an
    upgrade and reported again after it, see :func:`legacy_venue_trade_id`)."""
    stored = uow.trades.get(order.venue, trade_id)
    if stored is None and order.filled_quantity:  # an order with nothing filled has no fill stored either way
        legacy = legacy_venue_trade_id(trade_id)
        if legacy is not None:
            earlier = uow.trades.get(order.venue, legacy)
            if earlier is not None and earlier.order_id == order.order_id:
                return earlier
    return stored


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


def _overfill_recorded(uow: UnitOfWork, order: Order, report: ExecutionReport) -> bool:
    trade_id = report.fill.trade_id if report.fill else None
    return any(a.kind == "OVERFILL" and (a.payload or {}).get("trade_id") == trade_id
               for a in uow.anomalies.list(order_id=order.order_id, limit=50))


def _quarantine(uow: UnitOfWork, order: Order, why: str) -> None:
    """HALT the order's symbol (its own scope) and note why on the order, without a transition."""
    scope = symbol_scope(order.symbol)
    log.error("quarantining %s: order %s overfilled: %s", order.symbol, order.order_id, why)
    uow.trading_state.set(TradingState.HALTED.value, QUARANTINE_OPERATOR,
                          f"order {order.order_id} overfilled: {why}", scope=scope)
    event = OrderEvent(
        order_id=order.order_id,
        sequence=order.last_sequence + 1,
        event_time=utcnow(),
        from_status=order.status,
        to_status=order.status,
        reason=f"fill tracker: {order.symbol} quarantined: overfill: {why}",
        payload={"quarantine_scope": scope, "anomaly": "OVERFILL"},
    )
    order.last_sequence = event.sequence
    order.new_events.append(event)


def apply_report(uow: UnitOfWork, report: ExecutionReport) -> tuple[Order | None, Trade | None]:
    """Apply one report inside ``uow``; the caller commits (and retries on StaleOrder)."""
    order = uow.orders.get(report.order_id)
    if order is None:
        _anomaly(uow, "UNKNOWN_ORDER", None, report, f"report for unknown order {report.order_id}")
        return None, None
    known = frozenset()
    if report.fill is not None:
        stored = _stored_trade(uow, order, report.fill.trade_id)
        if stored is not None and stored.order_id != order.order_id:
            # Never taken for this order's duplicate: its fill would be lost.
            _anomaly(uow, "TRADE_ID_CLASH", order, report,
                     f"venue trade {report.fill.trade_id} is stored already, as a fill of order {stored.order_id}")
            return order, None
        if stored is not None:
            known = frozenset({report.fill.trade_id})
    applied = apply_to_order(order, report, known, lambda: claim_of(uow.orders.events(order.order_id)) is not None)
    if applied.anomaly is not None:
        kind, detail = applied.anomaly
        if kind == "OVERFILL" and _overfill_recorded(uow, order, report):
            return order, None  # the same refused fill again: recorded and quarantined already
        _anomaly(uow, kind, order, report, detail)
        quarantined = kind == "OVERFILL"
        if quarantined:
            _quarantine(uow, order, detail)
        if quarantined or (order.remote_order_id and applied.changed):
            uow.orders.save(order)
        return order, None
    if applied.trade is not None and not uow.trades.add_if_absent(applied.trade):
        # Stored by a concurrent writer since it was looked up: reload and apply again.
        raise StaleOrder(f"trade {applied.trade.trade_id} of order {order.order_id} was stored concurrently")
    if applied.changed:
        uow.orders.save(order)
    return order, applied.trade
