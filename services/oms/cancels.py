"""Cancels and expiry: one order, every order of a symbol, the kill switch, GTD and lapsed tokens.

A cancel of an order that never reached a venue (PENDING, APPROVED) closes it here; a
working one goes PENDING_CANCEL, then the venue's answer decides: CANCELLED (or a fill
that won the race), or back to the state before it when the venue refuses. A cancel
without an answer leaves the order PENDING_CANCEL (a new request sends it again).

A cancel the venue refuses because it has no open order by that id (``UNKNOWN_ORDER``,
``CANCEL_REJECTED``) says only that the venue no longer works the order, not that it still
may: an earlier cancel whose answer was lost (or a second cancel sent at the same moment)
cancelled it, or it filled. So the OMS asks the venue (``QueryOrder``) and records what it
says first (:func:`venue_word`): the order's fills, and its end when it ended. Only an order
the venue still works, or does not know, or that cannot be asked about now, goes back to
the state before the cancel.

When the venue's answer says it executed more of the order than the OMS has recorded,
the fills the cancel crossed on the wire are still on their way (the report stream):
the OMS reads them from the venue (``QueryOrder``) and records them before the close
(:func:`closing_reports`), so the answer holds the order with every fill. Should the
venue not answer that question, they are recorded when they arrive, on the closed
order (a fill after close, see :mod:`services.oms.fill_tracker`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any, Awaitable, Callable

import grpc

import core_ext
from services.common import convert
from services.common.observability import metrics
from services.domain import Order, OrderStatus, TradingState, utcnow
from services.domain.errors import OrderNotFound, PreconditionFailed, VenueUnavailable
from services.domain.execution import CancelFailure, ExecutionReport
from services.store import UnitOfWork

from .fill_tracker import apply_report
from .gateway import ExchangeGateway, Refusal
from .submission import Submitter

log = logging.getLogger(__name__)


#: How many times the kill switch sends its venue-wide cancel at most (TESSERA_KILL_SWITCH_ATTEMPTS).
KILL_SWITCH_ATTEMPTS = 3
#: How many due orders one expiry sweep reads at most.
EXPIRY_PAGE = 500


@dataclasses.dataclass(frozen=True)
class EmergencyCancel:
    """What the kill switch did: the orders it cancelled (each after its cancel request), and
    what the venue-wide cancel still could not cancel after its last attempt (empty: all)."""

    orders: list[Order]
    failures: list[CancelFailure]


def _unanswered(refusal: Refusal) -> CancelFailure:
    """The venue-wide cancel the Exchange did not carry out at all, as one failure."""
    reason = refusal.reason
    if reason == refusal.code.name and refusal.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        reason = "EXCHANGE_UNAVAILABLE"
    return CancelFailure("", None, "", reason, refusal.detail[:500])


def load(uow: UnitOfWork, order_id: str) -> Order:
    order = uow.orders.get(order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id}", metadata={"order_id": order_id})
    return order


class Cancels:
    def __init__(self, submitter: Submitter, gateway: ExchangeGateway, *, ttl_seconds: int = 300,
                 clock: Callable[[], dt.datetime] = utcnow, sweep_attempts: int = KILL_SWITCH_ATTEMPTS,
                 sweep_backoff: float = 0.5, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.submitter = submitter
        self.db = submitter.db
        self.gateway = gateway
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        #: The kill switch sends the venue-wide cancel at most this many times while some
        #: account or symbol fails, waiting ``sweep_backoff`` s, then twice that, ... between.
        self.sweep_attempts = max(1, sweep_attempts)
        self.sweep_backoff = sweep_backoff
        self.sleep = sleep
        #: Where the next expiry sweep reads on from (see expire_due).
        self._expiry_after: tuple[dt.datetime, str] | None = None

    async def cancel(self, order_id: str) -> Order:
        order = await self.submitter.write(_request_cancel, order_id, self.clock())
        if order.status is not OrderStatus.PENDING_CANCEL:
            return order  # never reached a venue: cancelled locally
        answer = await self.gateway.cancel(order)
        if isinstance(answer, Refusal):
            if answer.definitive or answer.not_found:
                word = await venue_word(self.gateway, order, answer, self.clock())
                return await self.submitter.write(_cancel_refused, order_id, answer.reason, self.clock(),
                                                  answer.venue_payload, word)
            # No answer: the cancel may or may not have reached the venue. The order stays
            # PENDING_CANCEL (a new cancel request sends it again); the caller is told UNAVAILABLE.
            raise VenueUnavailable(
                f"the Exchange did not answer the cancel of order {order_id} ({answer.code.name}); "
                "it stays PENDING_CANCEL"
            )
        return (await self.submitter.apply_reports(order_id, await closing_reports(self.gateway, order, answer))).order

    async def cancel_all(self, symbol: str, account: str | None) -> list[Order]:
        def working(uow: UnitOfWork) -> list[Order]:
            approved = uow.orders.list(account=account, symbol=symbol, statuses=[OrderStatus.APPROVED], limit=10_000)[0]
            return [*approved, *uow.orders.open_orders(account=account, symbol=symbol)]

        results = []
        for order in await self.db.read(working):
            try:
                results.append(await self.cancel(order.order_id))
            except (PreconditionFailed, VenueUnavailable):  # one unanswered cancel must not stop the rest
                results.append(await self.db.read(load, order.order_id))
            except Exception as error:  # noqa: BLE001 - nor any other failure of one order's cancel
                log.error("cancel of order %s failed, the other orders' cancels go on: %r", order.order_id, error)
                results.append(order)  # as it was read: not cancelled
        return results

    async def emergency_cancel_all(self, operator: str, reason: str) -> EmergencyCancel:
        """Halt trading (latched) first, so nothing new starts, then cancel everything: the
        orders Tessera holds, then every open order at the venue, sent again (at most
        ``sweep_attempts`` times in all) while some account or symbol failed. What still
        failed is answered (and counted, and logged); trading stays HALTED either way."""
        await self.submitter.write(
            lambda uow: uow.trading_state.set(TradingState.HALTED.value, operator, f"emergency cancel all: {reason}")
        )
        symbols = await self.db.read(
            lambda uow: sorted({o.symbol for o in uow.orders.open_orders()}
                               | {o.symbol for o in uow.orders.list(statuses=[OrderStatus.APPROVED], limit=10_000)[0]})
        )
        cancelled: list[Order] = []
        for symbol in symbols:
            try:
                cancelled += await self.cancel_all(symbol, None)
            except Exception as error:  # noqa: BLE001 - the venue-wide cancel below goes whatever failed here
                log.error("the kill switch's cancel of the orders Tessera holds in %s failed: %r", symbol, error)
        # Then at the venue itself: every open order of every account the Exchange trades
        # for, those placed outside Tessera too (allOpenOrders per symbol). An order listed
        # already (its own cancel found nothing at the venue: its placement was still on
        # its way) is answered as the sweep left it.
        listed = {order.order_id: index for index, order in enumerate(cancelled)}
        failures: list[CancelFailure] = []
        for attempt in range(1, self.sweep_attempts + 1):
            if attempt > 1:
                await self.sleep(self.sweep_backoff * (attempt - 1))
            answer = await self.gateway.emergency_cancel_all()
            if isinstance(answer, Refusal):
                failures = [_unanswered(answer)]
                continue
            for order in await self._apply_swept(answer.reports):
                if order.order_id in listed:
                    cancelled[listed[order.order_id]] = order
                else:
                    listed[order.order_id] = len(cancelled)
                    cancelled.append(order)
            failures = answer.failures
            if not failures:
                break
        if failures:
            metrics.kill_switch_failures(failure.reason for failure in failures)
            log.error("the kill switch's venue-wide cancel left %d account(s) or symbol(s) uncancelled after %d "
                      "attempt(s); trading stays HALTED: %s", len(failures), self.sweep_attempts,
                      "; ".join(failure.describe() for failure in failures))
        return EmergencyCancel(cancelled, failures)

    async def _apply_swept(self, reports: list[Any]) -> list[Order]:
        """Apply the reports of a venue-wide cancel: the orders they changed."""
        orders = []
        for report in reports:
            try:
                order, _ = await self.submitter.write(apply_report, report)
            except Exception as error:  # noqa: BLE001 - one report must not stop the rest
                log.warning("report of the venue-wide cancel not applied to %s: %s", report.order_id, error)
                continue
            if order is not None:
                orders.append(order)
        return orders

    # -- expiry ---------------------------------------------------------------------------
    async def expire_due(self, now: dt.datetime | None = None) -> list[Order]:
        """Expire what is due: APPROVED orders whose risk token lapsed before anyone
        submitted them, and GTD orders whose expire time has come (a working one is
        cancelled at the venue first, and EXPIRED once the venue confirms). Returns the
        orders it expired: not one that moved on after the sweep read it (a submission
        claimed it, a fill completed it).

        A sweep reads at most :data:`EXPIRY_PAGE` of them, least recently changed first,
        from after the last one the sweep before read when that one read a full page: the
        orders a sweep leaves due (a cancel pending, a venue that does not know the order)
        would otherwise fill every page and keep the others from ever expiring."""
        now = now or self.clock()
        lapsed_before = now - dt.timedelta(seconds=self.ttl_seconds + core_ext.DEFAULT_SKEW_SECONDS)
        after = self._expiry_after
        due = await self.db.read(lambda uow: uow.orders.due_for_expiry(lapsed_before, now, EXPIRY_PAGE, after))
        self._expiry_after = (due[-1].updated_time, due[-1].order_id) if len(due) == EXPIRY_PAGE else None
        expired = []
        for order in due:
            try:
                if order.status is OrderStatus.APPROVED:
                    swept = await self.submitter.write(_expire_locally, order.order_id, lapsed_before, now)
                elif order.status is not OrderStatus.PENDING_CANCEL:
                    swept = await self._expire_at_venue(order)
                else:
                    continue
            except (PreconditionFailed, VenueUnavailable) as error:
                log.warning("could not expire order %s: %s", order.order_id, error)
                continue
            if swept.status is OrderStatus.EXPIRED:  # not one that moved on since it was read (claimed, filled)
                expired.append(swept)
        return expired

    async def _expire_at_venue(self, order: Order) -> Order:
        """Cancel a working GTD order whose time has come, straight at the venue (the
        state table has no PENDING_CANCEL -> EXPIRED); the fill tracker records the
        venue's confirmation as EXPIRED, whichever path brings it first. A cancel the
        venue refuses for having no open order records what the venue says became of
        the order (filled, or ended otherwise: :func:`venue_word`)."""
        answer = await self.gateway.cancel(order)
        if isinstance(answer, Refusal):
            word = await venue_word(self.gateway, order, answer, self.clock())
            if word:
                ended = (await self.submitter.apply_reports(order.order_id, word)).order
                if ended.status.is_terminal:
                    return ended
            raise VenueUnavailable(f"the venue did not cancel order {order.order_id}: {answer.reason}")
        return (await self.submitter.apply_reports(order.order_id, await closing_reports(self.gateway, order, answer))
                ).order


async def closing_reports(gateway: ExchangeGateway, order: Order, answer: ExecutionReport) -> list[ExecutionReport]:
    """The venue's answer to the cancel of ``order`` (as it was stored when the cancel
    was sent), preceded by the order's fills at the venue when the answer says more was
    executed than the order has filled: they are recorded before the close."""
    executed = answer.cumulative_quantity
    if executed is None or executed <= order.filled_quantity:
        return [answer]
    return [*await fills_at_venue(gateway, order), answer]


async def fills_at_venue(gateway: ExchangeGateway, order: Order) -> list[ExecutionReport]:
    """Every fill the venue holds for ``order`` (each applied once, by trade id); none
    when the venue cannot be asked now (they then arrive on the report stream)."""
    try:
        answer = await gateway.query(order)
    except grpc.aio.AioRpcError as error:
        log.warning("fills of order %s not read from the venue (%s)", order.order_id, error.code().name)
        return []
    return [convert.report_from_proto(fill) for fill in answer.fills]


#: The refusals of a cancel that mean the venue has no open order by that id: it ended there
#: (cancelled, filled, expired), or never arrived.
NO_OPEN_ORDER = frozenset({"UNKNOWN_ORDER", "CANCEL_REJECTED"})
#: The venue's statuses of an order it ended, which a refused cancel does not undo.
_ENDED_THERE = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FILLED})


async def venue_word(gateway: ExchangeGateway, order: Order, refusal: Refusal, at: dt.datetime
                     ) -> list[ExecutionReport]:
    """What the venue says became of ``order`` after it refused its cancel (``refusal``)
    for having no open order by that id: the order's fills, then a report of its status
    there (dated ``at``, with the quantity the venue executed in all). Nothing when the
    refusal says something else, or the venue does not know the order, or cannot be
    asked now."""
    if not (refusal.not_found or refusal.reason in NO_OPEN_ORDER):
        return []
    try:
        answer = await gateway.query(order)
    except grpc.aio.AioRpcError as error:
        log.warning("the venue refused the cancel of order %s (%s) and could not be asked why (%s)", order.order_id,
                    refusal.reason, error.code().name)
        return []
    if not answer.found:
        return []
    reports = [convert.report_from_proto(fill) for fill in answer.fills]
    status = convert.enum_from_proto(OrderStatus, answer.venue_status, "venue_status", required=False)
    if status is not None:
        reports.append(ExecutionReport(
            order_id=order.order_id, client_order_id=order.client_order_id, venue=order.venue, account=order.account,
            symbol=order.symbol, side=order.side, order_status=status, transact_time=at,
            remote_order_id=answer.remote_order_id or None,
            cumulative_quantity=Decimal(answer.executed_quantity) if answer.executed_quantity else None,
            reason=f"venue: {status.value.lower()} (asked after it refused the cancel: {refusal.reason})"))
    return reports


def settle_refused_cancel(uow: UnitOfWork, order_id: str, reason: str, at: dt.datetime, venue_payload: str | None,
                          word: list[ExecutionReport]) -> Order:
    """The venue refused the cancel of ``order_id``: record what it says became of the
    order first (``word``, see :func:`venue_word`: its fills, its status there). An order
    the venue ended (cancelled, expired, filled) ends so, or stays PENDING_CANCEL while the
    fills it says it executed are on their way; any other goes back from PENDING_CANCEL to
    the state before the cancel, then takes the venue's status (an order that was on its
    way when it was cancelled, acknowledged meanwhile). Returns the order as stored."""
    for report in word:
        apply_report(uow, report)
    order = load(uow, order_id)
    status = word[-1] if word and word[-1].fill is None else None
    if status is not None and status.order_status in _ENDED_THERE:
        return order
    if order.status is OrderStatus.PENDING_CANCEL and order.previous_status is not None:
        event = order.transition(order.previous_status, reason=f"cancel refused by venue: {reason}", at=at)
        if venue_payload:  # the venue's refusal of the cancel, as it answered
            event.raw_venue_json = order.raw_venue_json = venue_payload
        uow.orders.save(order)
        if status is not None:
            applied, _ = apply_report(uow, status)
            order = applied or order
    return order


def _request_cancel(uow: UnitOfWork, order_id: str, at: dt.datetime) -> Order:
    order = load(uow, order_id)
    if order.status is OrderStatus.PENDING_CANCEL:
        return order
    if order.status in (OrderStatus.PENDING, OrderStatus.APPROVED):
        order.transition(OrderStatus.CANCELLED, reason="cancel requested before submission", at=at)
    elif order.status.is_open:
        order.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested", at=at)
    else:
        raise PreconditionFailed(f"order is {order.status.value}: nothing to cancel", reason="ORDER_NOT_OPEN",
                                 metadata={"order_id": order.order_id, "status": order.status.value})
    uow.orders.save(order)
    return order


def _cancel_refused(uow: UnitOfWork, order_id: str, reason: str, at: dt.datetime,
                    venue_payload: str | None = None, word: list[ExecutionReport] | None = None) -> Order:
    return settle_refused_cancel(uow, order_id, reason, at, venue_payload, word or [])


def _expire_locally(uow: UnitOfWork, order_id: str, lapsed_before: dt.datetime, now: dt.datetime) -> Order:
    order = load(uow, order_id)
    if order.status is not OrderStatus.APPROVED:
        return order
    if order.expire_time is not None and order.expire_time <= now:
        reason = "GTD expire time reached before submission"
    elif order.updated_time < lapsed_before:
        reason = "risk token expired before submission"
    else:
        return order  # re-approved meanwhile (a fresh token)
    order.transition(OrderStatus.EXPIRED, reason=reason, at=now)
    uow.orders.save(order)
    return order


__all__ = ["Cancels", "EmergencyCancel", "EXPIRY_PAGE", "KILL_SWITCH_ATTEMPTS", "NO_OPEN_ORDER", "closing_reports",
           "fills_at_venue", "load", "settle_refused_cancel", "venue_word"]
