"""The reconciler: Tessera's open orders against the venue's truth, by client order id.

It runs once when the OMS starts and then periodically. For every order Tessera
considers open it asks the Exchange service (``QueryOrder``) what the venue knows:

- the venue has it: its fills go through the fill tracker (each venue trade id once),
  then its end (cancelled, expired, rejected) or its acknowledgement. An order the venue
  cancelled or expired having executed more than the fills it lists (its trades lag its
  status) is closed all the same, owing the rest (``venue_executed_quantity``), as a
  cancel's answer would close it: the owed fills are asked for below;
- the venue does not have it and the order is SUBMITTED (in doubt) for longer than the
  grace period, asked after that period: it never arrived, so it is REJECTED with reason
  ``NOT_AT_VENUE`` (CANCELLED when a cancel was requested while it was in doubt).
  Nothing is ever resent; an order that changed while the question was in flight is
  left to the next pass;
- the venue does not have an order Tessera saw acknowledged: on a simulated venue
  (paper, shadow: memory lost with a restart) it EXPIRED; on a live venue that cannot be
  explained;
- a discrepancy it cannot explain (more executed at the venue than the order's quantity,
  fills the store refuses, a live order the venue does not know) quarantines the
  symbol: the trading state of scope ``symbol:<SYMBOL>`` goes HALTED, an anomaly row and
  an order event say why, and nothing is invented.

It also brings in the fills a closed order still owes. A CANCELLED or EXPIRED order
whose close came with a venue answer saying more was executed than it had filled keeps
that quantity (``venue_executed_quantity``) until its fills after close make it up: the
report stream normally brings them within moments, but a report dropped on the way (an
Exchange that crashed before it read them from the venue) would leave them out for
good. So each pass asks the venue (``QueryOrder``) for the fills of every such order
changed within ``fills_owed_horizon_seconds`` (its close, or its last fill after it) and
records them through the fill tracker (each venue trade id once, whichever of the stream
and the reconciler brings it first). An order still owing fills ``fills_owed_seconds``
after its close, or its last fill after it (the venue cannot be asked, does not know the
order, or gives fewer fills than it said it executed), is recorded once as a
``FILLS_OWED`` anomaly (the order's history is left as it is); it is
still asked about at every pass until the horizon, and a fill that comes later is still
recorded.

After each pass (:meth:`Reconciler.run_forever`), in live mode, the venue's futures
positions are compared with the ledger's (:mod:`services.oms.position_check`): a
difference that persists is recorded as a ``VENUE_POSITION_MISMATCH`` anomaly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any, Callable, TypeVar

import grpc

import core_ext
from services.common import convert
from services.domain import Order, OrderEvent, OrderStatus, TradingState, utcnow
from services.domain.errors import StaleOrder
from services.domain.execution import ExecutionReport
from services.domain.order import CLOSED_FILLABLE
from services.store import UnitOfWork
from services.store.database import Database
from services.store.repositories import symbol_scope
from tessera.exchange.v1 import exchange_pb2_grpc

from .fill_tracker import apply_report
from .gateway import SIMULATED_MODES, ExchangeGateway
from .position_check import PositionCheck

log = logging.getLogger(__name__)
T = TypeVar("T")

NOT_AT_VENUE = "NOT_AT_VENUE"
DISCREPANCY = "RECONCILE_DISCREPANCY"
#: The anomaly of a closed order whose owed fills the venue has not given within the bound.
FILLS_OWED = "FILLS_OWED"
OPERATOR = "reconciler"
_SIMULATED = SIMULATED_MODES
_CLOSING = (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)
#: How many orders owing fills the reconciler reads at a time.
OWING_PAGE = 500


@dataclasses.dataclass
class Summary:
    checked: int = 0
    resolved: int = 0
    not_at_venue: int = 0
    quarantined: int = 0
    waiting: int = 0
    unreachable: int = 0
    #: Closed orders owing fills that were asked about, those whose fills are now all in,
    #: and those still owing them after the bound (a FILLS_OWED anomaly).
    owing: int = 0
    owed_in: int = 0
    fills_owed: int = 0


class Reconciler:
    def __init__(
        self,
        db: Database[Any],
        keyring: "core_ext.KeyRing",
        exchange: exchange_pb2_grpc.ExchangeServiceStub,
        *,
        grace_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
        fills_owed_seconds: float = 120.0,
        fills_owed_horizon_seconds: float = 86_400.0,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.gateway = ExchangeGateway(exchange, keyring, timeout=timeout_seconds)
        self.grace = dt.timedelta(seconds=grace_seconds)
        self.fills_owed_after = dt.timedelta(seconds=fills_owed_seconds)
        self.fills_owed_horizon = dt.timedelta(seconds=fills_owed_horizon_seconds)
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.positions = PositionCheck(db, keyring, exchange, timeout_seconds=timeout_seconds)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        for attempt in range(8):
            try:
                return await self.db.run(fn, *args)
            except StaleOrder:
                await asyncio.sleep(0.002 * (attempt + 1))
        return await self.db.run(fn, *args)

    # -- the loop -------------------------------------------------------------------------------
    async def run_forever(self, stop: asyncio.Event, interval_seconds: float) -> None:
        """Reconcile now (the start-up pass), then every ``interval_seconds`` until ``stop``."""
        while not stop.is_set():
            try:
                summary = await self.reconcile_once()
                if summary.checked or summary.owing:
                    log.info("reconciled %s", summary)
                await self.check_positions()
            except Exception:  # noqa: BLE001 - the next pass tries again
                log.exception("reconciliation pass failed")
            if interval_seconds <= 0:
                return
            try:
                await asyncio.wait_for(stop.wait(), interval_seconds)
            except asyncio.TimeoutError:
                pass

    async def check_positions(self) -> None:
        """The venue's positions against the ledger (live mode; see the module docstring)."""
        try:
            await self.positions.check()
        except grpc.aio.AioRpcError as error:
            log.info("cannot compare positions with the venue now: exchange answered %s", error.code().name)

    async def reconcile_once(self) -> Summary:
        summary = Summary()
        orders = await self.db.run(lambda uow: uow.orders.open_orders())
        for order in orders:
            summary.checked += 1
            try:
                outcome = await self.reconcile_order(order)
            except grpc.aio.AioRpcError as error:
                log.info("cannot reconcile %s now: exchange answered %s", order.order_id, error.code().name)
                summary.unreachable += 1
                continue
            setattr(summary, outcome, getattr(summary, outcome) + 1)
        since = self.clock() - self.fills_owed_horizon
        after: tuple[dt.datetime, str] | None = None
        while True:  # page by page: those still owing after this pass must not hide the rest
            page = await self.db.run(lambda uow: uow.orders.owing_fills(updated_since=since, limit=OWING_PAGE,
                                                                        after=after))
            for order in page:
                summary.owing += 1
                outcome = await self.collect_owed_fills(order)
                setattr(summary, outcome, getattr(summary, outcome) + 1)
            if len(page) < OWING_PAGE:
                return summary
            after = (page[-1].updated_time, page[-1].order_id)

    # -- one order ------------------------------------------------------------------------------
    async def reconcile_order(self, order: Order) -> str:
        """Resolve one open order; returns the outcome's name (a :class:`Summary` field)."""
        asked_at = self.clock()  # "not found" proves nothing about an order younger than the question
        answer = await self.gateway.query(order, timeout=self.timeout_seconds)
        if not answer.found:
            return await self._absent(order, answer.mode, asked_at)
        fills = [convert.report_from_proto(f) for f in answer.fills]
        executed = Decimal(answer.executed_quantity or "0")
        filled = sum((f.fill.quantity for f in fills if f.fill), Decimal(0))
        if order.quantity is not None and (executed > order.quantity or filled > order.quantity):
            return await self._quarantine(
                order, f"the venue executed {max(executed, filled)} of an order for {order.quantity}",
                {"executed_quantity": str(executed), "fills": [f.fill.trade_id for f in fills if f.fill]},
            )
        for report in fills:
            await self._write(apply_report, report)
        refused = await self.db.run(self._unrecorded, order.order_id, [f.fill.trade_id for f in fills if f.fill])
        if refused:
            return await self._quarantine(
                order, f"the store refused venue fills {', '.join(refused)}", {"trade_ids": refused}
            )
        status = convert.enum_from_proto(OrderStatus, answer.venue_status, "venue_status", required=False)
        # An order whose quantity the venue decides ends FILLED on the venue's word alone.
        venue_filled = status is OrderStatus.FILLED and order.quantity is None
        if status in _CLOSING or status is OrderStatus.ACCEPTED or venue_filled:
            owed = None
            if (status in _CLOSING or venue_filled) and filled < executed:
                if status not in CLOSED_FILLABLE:
                    return "waiting"  # the venue's trades are not all visible yet
                # Ended at the venue (cancelled, expired) with fills it does not list yet:
                # closed, owing them, as a cancel's answer would close it; the owed fills
                # are asked for at every pass (and flagged FILLS_OWED past the bound).
                owed = executed
            await self._write(apply_report, self._status_report(order, status, answer.remote_order_id, self.clock(),
                                                                executed=owed))
        current = await self.db.run(lambda uow: uow.orders.get(order.order_id))
        return "waiting" if current is not None and current.status.is_open and status is None else "resolved"

    # -- a closed order's owed fills ----------------------------------------------------------
    async def collect_owed_fills(self, order: Order) -> str:
        """Ask the venue for the fills ``order`` (CANCELLED or EXPIRED, owing fills) still
        owes and record them; returns ``owed_in`` (none owed any more), ``waiting`` or
        ``fills_owed`` (still owed after the bound: anomaly recorded, once)."""
        try:
            answer = await self.gateway.query(order, timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as error:
            why = f"the Exchange answered {error.code().name}"
        else:
            why = ("the venue does not know the order" if not answer.found
                   else f"the venue gave {len(answer.fills)} fill(s) of the {answer.executed_quantity} it executed")
            for fill in answer.fills:
                await self._write(apply_report, convert.report_from_proto(fill))
        current = await self.db.run(lambda uow: uow.orders.get(order.order_id))
        if current is None or current.venue_executed_quantity is None:
            return "owed_in"
        if self.clock() - current.updated_time < self.fills_owed_after:
            return "waiting"
        await self._write(self._record_fills_owed, current.order_id, why, self.clock())
        return "fills_owed"

    @staticmethod
    def _record_fills_owed(uow: UnitOfWork, order_id: str, why: str, at: dt.datetime) -> None:
        order = uow.orders.get(order_id)
        if order is None or order.venue_executed_quantity is None:
            return  # the fills arrived meanwhile
        if any(a.kind == FILLS_OWED for a in uow.anomalies.list(order_id=order_id, limit=50)):
            return  # said once
        detail = (f"order {order_id} ({order.status.value}) owes {order.fills_owed} {order.symbol}: the venue "
                  f"executed {order.venue_executed_quantity}, {order.filled_quantity} recorded, no fill since "
                  f"{order.updated_time.isoformat()}; {why}")
        log.error("fills owed: %s", detail)
        uow.anomalies.record(kind=FILLS_OWED, venue=order.venue, order_id=order_id, detail=detail,
                             payload={"venue_executed_quantity": str(order.venue_executed_quantity),
                                      "filled_quantity": str(order.filled_quantity), "status": order.status.value},
                             observed_time=at)

    @staticmethod
    def _status_report(order: Order, status: OrderStatus, remote_order_id: str, at: dt.datetime, *,
                       executed: Decimal | None = None) -> ExecutionReport:
        return ExecutionReport(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            venue=order.venue,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            order_status=status,
            transact_time=at,
            remote_order_id=remote_order_id or None,
            cumulative_quantity=executed,
            reason=f"reconciled: the venue says {status.value.lower()}",
        )

    @staticmethod
    def _unrecorded(uow: UnitOfWork, order_id: str, trade_ids: list[str]) -> list[str]:
        recorded = {t.trade_id for t in uow.trades.for_order(order_id)}
        return [trade_id for trade_id in trade_ids if trade_id not in recorded]

    async def _absent(self, order: Order, mode: int, asked_at: dt.datetime) -> str:
        # In doubt: SUBMITTED without an answer, or a cancel requested while it was. The
        # question must have been asked after the grace period: an order may still be on
        # its way to the venue within it, however late the answer comes back.
        never_arrived = order.status is OrderStatus.SUBMITTED or (
            order.status is OrderStatus.PENDING_CANCEL and order.previous_status is OrderStatus.SUBMITTED
        )
        if never_arrived:
            # From when it was sent (a refused cancel moves updated_time, not this).
            sent_at = await self.db.run(self._sent_at, order.order_id) or order.updated_time
            if asked_at - sent_at < self.grace:
                return "waiting"
            target = OrderStatus.REJECTED if order.status is OrderStatus.SUBMITTED else OrderStatus.CANCELLED
            changed = await self._write(self._close_absent, order.order_id, order.version, target,
                                        "reconciled: not at venue (the order never arrived)", self.clock())
            return "not_at_venue" if changed else "waiting"
        if mode in _SIMULATED:
            target = OrderStatus.CANCELLED if order.status is OrderStatus.PENDING_CANCEL else OrderStatus.EXPIRED
            await self._write(self._close_absent, order.order_id, order.version, target,
                              "reconciled: the simulated venue no longer has the order (it restarted)", self.clock())
            return "resolved"
        current = await self.db.run(lambda uow: uow.orders.get(order.order_id))
        if current is None or current.version != order.version:
            return "waiting"  # it moved on while the question was in flight: ask again next pass
        return await self._quarantine(order, f"the venue has no order {order.client_order_id} that Tessera "
                                             f"considers {order.status.value}", {})

    @staticmethod
    def _sent_at(uow: UnitOfWork, order_id: str) -> dt.datetime | None:
        """When the OMS claimed the order for the venue (APPROVED -> SUBMITTED)."""
        sent = [e.event_time for e in uow.orders.events(order_id)
                if e.to_status is OrderStatus.SUBMITTED and e.from_status is OrderStatus.APPROVED]
        return sent[-1] if sent else None

    @staticmethod
    def _close_absent(uow: UnitOfWork, order_id: str, seen_version: int, target: OrderStatus, reason: str,
                      at: dt.datetime) -> bool:
        """Close an order the venue does not have, unless it changed since it was asked
        about (an acknowledgement or a fill arrived meanwhile: the next pass looks again)."""
        order = uow.orders.get(order_id)
        if order is None or not order.status.is_open or order.version != seen_version:
            return False
        if target is OrderStatus.REJECTED:
            order.reject_reasons = [NOT_AT_VENUE]
        order.transition(target, reason=reason, at=at, payload={"reconciler": True})
        uow.orders.save(order)
        return True

    async def _quarantine(self, order: Order, why: str, detail: dict[str, Any]) -> str:
        await self._write(self._record_quarantine, order.order_id, why, detail, self.clock())
        return "quarantined"

    @staticmethod
    def _record_quarantine(uow: UnitOfWork, order_id: str, why: str, detail: dict[str, Any], at: dt.datetime
                           ) -> None:
        order = uow.orders.get(order_id)
        assert order is not None
        if any(a.kind == DISCREPANCY for a in uow.anomalies.list(order_id=order_id, limit=50)):
            return  # already quarantined for this order: say it once
        log.error("quarantining %s: order %s: %s", order.symbol, order_id, why)
        uow.anomalies.record(kind=DISCREPANCY, venue=order.venue, order_id=order_id, detail=why, payload=detail)
        uow.trading_state.set(
            TradingState.HALTED.value, OPERATOR, f"order {order_id}: {why}", scope=symbol_scope(order.symbol)
        )
        # An event without a transition: the order stays as it is; the history says why.
        event = OrderEvent(
            order_id=order_id,
            sequence=order.last_sequence + 1,
            event_time=at,
            from_status=order.status,
            to_status=order.status,
            reason=f"reconciler: {order.symbol} quarantined: {why}",
            payload={"quarantine_scope": symbol_scope(order.symbol), **detail},
        )
        order.last_sequence = event.sequence
        order.new_events.append(event)
        uow.orders.save(order)
