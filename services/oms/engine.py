"""The order management service layer: the last gate before a venue.

One object the servicer and the process talk to, made of the parts that do the work:

* :mod:`.submission`: verify the risk token from the wire, claim the order (APPROVED ->
  SUBMITTED, a compare-and-set, so a token moves exactly one order, once), execute it,
  record the fills: two writes per order, each shared with every submission in flight;
* :mod:`.cancels`: cancels, the kill switch's cancel-all, GTD expiry and lapsed tokens;
* :mod:`.replace`: ReplaceOrder, amending a working order by cancel-replace;
* :mod:`.queries`: orders, events, trades, the event stream, order managers;
* :mod:`.gateway`: every call to the Exchange service;
* :meth:`OrderManagement.follow_exchange_reports`: what the Exchange learns after it
  answered (a resting order filling, the venue's own cancel), applied by the fill
  tracker.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from typing import Any, AsyncIterator, Callable

import grpc

import core_ext
from services.common import convert
from services.domain import Order, OrderEvent, OrderManager, Trade, utcnow
from services.domain.errors import DomainError
from services.store.database import Database

from .cancels import KILL_SWITCH_ATTEMPTS, Cancels, EmergencyCancel
from .fill_tracker import apply_report
from .gateway import ExchangeGateway
from .queries import Queries
from .replace import Replacement, Replacer
from .submission import Submission, Submitter
from .venue_settings import VenueSettings

log = logging.getLogger(__name__)
#: How many streamed reports the OMS remembers having applied (see ``report_key``).
RECENT_REPORTS = 100_000


def report_key(report: Any) -> tuple[object, ...]:
    """What identifies one execution report: a reconnecting stream replays the ones the
    Exchange retains, and those this process applied are skipped without a transaction."""
    return (
        report.order_id,
        report.order_status,
        report.fill.trade_id if report.fill is not None else None,
        report.transact_time,
        report.remote_order_id,
    )


class OrderManagement:
    def __init__(
        self,
        db: Database[Any],
        keyring: "core_ext.KeyRing",
        exchange: Any,
        *,
        ttl_seconds: int = 300,
        exchange_timeout: float = 10.0,
        exchange_channel: Any = None,
        clock: Callable[[], dt.datetime] = utcnow,
        wall: Callable[[], float] = time.time,
        kill_switch_attempts: int = KILL_SWITCH_ATTEMPTS,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.ttl_seconds = ttl_seconds
        self.gateway = ExchangeGateway(exchange, keyring, timeout=exchange_timeout, wall=wall,
                                       channel=exchange_channel)
        self._event_written = asyncio.Event()
        self.submitter = Submitter(db, keyring, self.gateway, ttl_seconds=ttl_seconds, clock=clock,
                                   wall=wall, written=self._event_written.set)
        self.cancels = Cancels(self.submitter, self.gateway, ttl_seconds=ttl_seconds, clock=clock,
                               sweep_attempts=kill_switch_attempts)
        self.replacer = Replacer(self.submitter, self.gateway, ttl_seconds=ttl_seconds)
        self.venue_settings = VenueSettings(self.submitter, self.gateway)
        self._settings_sync: asyncio.Task[int] | None = None
        self.queries = Queries(db, self._event_written)
        self._applied: collections.OrderedDict[tuple[object, ...], None] = collections.OrderedDict()

    # -- submissions ------------------------------------------------------------------------------
    async def submit(self, order: Order, token: str) -> Submission:
        return await self.submitter.submit(order, token)

    async def submit_wire(self, raw: bytes, *, remaining: float | None = None) -> Submission:
        return await self.submitter.submit_wire(raw, remaining=remaining)

    async def submit_wire_many(self, raw: bytes, *, remaining: float | None = None,
                               max_items: int | None = None) -> list[Submission | DomainError]:
        return await self.submitter.submit_wire_many(raw, remaining=remaining, max_items=max_items)

    async def submit_many(self, items: list[tuple[Order, str]]) -> list[Submission | DomainError]:
        """:meth:`submit` for each ``(order, risk token)``, together."""
        from tessera.oms.v1 import oms_pb2

        from .submission import client_message

        batch = oms_pb2.SubmitOrdersRequest(orders=[
            oms_pb2.SubmitOrderRequest(order=client_message(order), risk_token=token) for order, token in items
        ])
        return await self.submit_wire_many(batch.SerializeToString())

    async def apply_reports(self, order_id: str, reports: list[Any]) -> Submission:
        return await self.submitter.apply_reports(order_id, reports)

    async def replace(self, order: Any, token: str, *, remaining: float | None = None) -> Replacement:
        """ReplaceOrder: ``order`` is the replacement (a ``tessera.common.v1.Order``) as
        Risk answered it, ``token`` its risk token (see :mod:`.replace`)."""
        return await self.replacer.replace(order, token, remaining=remaining)

    # -- cancels and expiry -----------------------------------------------------------------------
    async def cancel(self, order_id: str) -> Order:
        return await self.cancels.cancel(order_id)

    async def cancel_all(self, symbol: str, account: str | None) -> list[Order]:
        return await self.cancels.cancel_all(symbol, account)

    async def emergency_cancel_all(self, operator: str, reason: str) -> EmergencyCancel:
        return await self.cancels.emergency_cancel_all(operator, reason)

    async def set_venue_setting(self, **fields: Any) -> Any:
        return await self.venue_settings.set(**fields)

    async def list_venue_settings(self, account: str | None = None) -> Any:
        return await self.venue_settings.list(account)

    async def venue_setting_history(self, account: str | None = None) -> Any:
        return await self.venue_settings.history(account)

    async def expire_due(self, now: dt.datetime | None = None) -> list[Order]:
        return await self.cancels.expire_due(now)

    # -- venue settings ---------------------------------------------------------------------------
    async def _sync_settings(self, again_after: tuple[float, ...] = (0.0, 2.0, 10.0)) -> int:
        """Store the settings the Exchange holds: at once, and again a little later (an
        Exchange that just started may still be reading them from the venue)."""
        changed = 0
        for delay in again_after:
            await asyncio.sleep(delay)
            try:
                changed += await self.venue_settings.sync()
            except Exception as error:  # noqa: BLE001 - the store may be down: the next pass or reconnect syncs
                log.warning("venue settings not stored (%s)", type(error).__name__)
        return changed

    # -- reads ------------------------------------------------------------------------------------
    async def get_order(self, order_id: str) -> Order:
        return await self.queries.get_order(order_id)

    async def find_order_id(self, account: str, client_order_id: str) -> str:
        return await self.queries.find_order_id(account, client_order_id)

    async def order_details(self, order_id: str) -> tuple[Order, list[OrderEvent], list[Trade]]:
        return await self.queries.order_details(order_id)

    async def list_orders(self, **filters: Any) -> tuple[list[Order], str | None]:
        return await self.queries.list_orders(**filters)

    async def list_trades(self, **filters: Any) -> tuple[list[Trade], str | None]:
        return await self.queries.list_trades(**filters)

    def follow_events(self, **kwargs: Any) -> AsyncIterator[tuple[int, OrderEvent, Order]]:
        return self.queries.follow_events(**kwargs)

    async def create_order_manager(self, **fields: Any) -> tuple[OrderManager, bool]:
        return await self.submitter.write(lambda uow: uow.order_managers.create_batch(**fields))

    async def get_order_manager(self, unique_identifier: str) -> tuple[OrderManager, list[Order]]:
        return await self.queries.get_order_manager(unique_identifier)

    # -- execution reports from the stream ----------------------------------------------------
    async def follow_exchange_reports(self, stop: asyncio.Event) -> None:
        """Apply reports from StreamExecutionReports until ``stop``; reconnect on failure.

        The stream carries what the Exchange learned after answering (the answers' own
        reports reach the OMS in the answers). It starts again from the Exchange's first
        retained report after a reconnect; the fill tracker applies each report once.
        """
        backoff = 0.2
        while not stop.is_set():
            call = self.gateway.reports(0)
            if self._settings_sync is None or self._settings_sync.done():
                # (Re)connected, perhaps to a restarted Exchange: store the venue settings it read.
                self._settings_sync = asyncio.ensure_future(self._sync_settings())
            try:
                async for response in call:
                    report = convert.report_from_proto(response.report)
                    key = report_key(report)
                    if key not in self._applied:
                        await self.submitter.write(apply_report, report)
                        self._applied[key] = None
                        if len(self._applied) > RECENT_REPORTS:
                            self._applied.popitem(last=False)
                    backoff = 0.2
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.CANCELLED:
                    log.info("execution report stream interrupted (%s); reconnecting", error.code().name)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - e.g. the store is down: resubscribe later
                call.cancel()
                log.warning("applying execution reports failed (%s); resubscribing", type(error).__name__)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except asyncio.TimeoutError:
                backoff = min(backoff * 2, 5.0)
        if self._settings_sync is not None:
            self._settings_sync.cancel()


__all__ = ["OrderManagement", "Replacement", "Submission", "utcnow"]
