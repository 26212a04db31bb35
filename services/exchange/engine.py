"""The Exchange service's pipeline: verify the risk token again, then execute.

The Exchange service is a network endpoint of its own, so it trusts nothing the OMS
checked: an order reaches the provider only with a valid token bound to its exact
fields (verified on the request's bytes, like the OMS does), and at most once per order
id: remembered while its token could still be valid, and recorded in the store
(``exchange_executions``, :class:`StoreExecutions`) before the provider is called, so
that a restart, which forgets the memory, forgets nothing that matters. Every execution
mode runs this same pipeline; only the provider differs (see
:mod:`services.exchange.venue`).

**Nothing is sent to a venue while trading is halted.** The record is written only
while neither the global trading state nor the order's symbol's is HALTED, read in the
record's own statement (:mod:`services.store.executions`): an order the OMS claimed
before a halt but sent after it is not recorded, never reaches the provider, and is
refused FAILED_PRECONDITION ``TRADING_HALTED`` (the OMS stores it REJECTED). What the
record cannot stop is an order recorded just *before* the halt committed, its placement
still on its way to the venue: :meth:`ExchangeEngine.emergency_cancel_all`, the kill
switch's venue-wide cancel, first waits (at most ``placement_wait`` seconds) for the
placements in progress in this process (:class:`Placements`: from before the record is
written until the provider's call returns), so that such an order is at the venue, and
cancelled, when the sweep lists the venue's open orders. A placement still in progress
when the wait ends is answered as a failure of the sweep (``PLACEMENT_IN_PROGRESS``):
the OMS sends the sweep again, which waits again. The guarantee holds for the halt
committed before the sweep was asked (the OMS halts first): every placement that starts
after the sweep arrived has its record written after the halt, and is refused.
``CancelAllOrders`` (one symbol, no halt before it) does not wait.

The reports of an execution or a cancel travel in its answer. The report log
(``StreamExecutionReports``) carries what the provider learns later (a resting order
filling, a polled fill, the venue's own cancel), and an answer's reports only when
the call ended before its answer could be sent: each report reaches the OMS once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any, Callable, Collection, Protocol, Sequence

import core_ext
from services.common import convert
from services.common.tokens import ReplayCache, verify_oms_call, verify_or_raise
from services.domain import MarketType, Order, utcnow
from services.domain.errors import CancelAllIncomplete, TokenReplayed
from services.domain.execution import CancelFailure, ExecutionReport
from tessera.exchange.v1 import exchange_pb2

from .reports import ReportLog
from .venue import OrderRef, Provider, VenueOrderState

__all__ = ["ExchangeEngine", "ExecutionRecord", "PLACEMENT_IN_PROGRESS", "PLACEMENT_WAIT_SECONDS", "Placements",
           "Provider", "StoreExecutions"]

log = logging.getLogger(__name__)

#: How long the kill switch's venue-wide cancel waits, at most, for the placements in
#: progress (seconds): well within the OMS's deadline for the call (10 s by default),
#: which must leave room for the sweep itself.
PLACEMENT_WAIT_SECONDS = 2.0
#: The reason of a sweep's failure for an order still being placed when its wait ended.
PLACEMENT_IN_PROGRESS = "PLACEMENT_IN_PROGRESS"


class ExecutionRecord(Protocol):
    """Where the Exchange records, durably, each order id it sends to its provider."""

    async def record(self, orders: list[Order], mode: str) -> list[bool | Exception]:
        """Record ``orders``; True for each recorded now, False for one recorded before,
        or the refusal of one not recorded and not to be executed (``TRADING_HALTED``)."""


class StoreExecutions:
    """The store's ``exchange_executions`` table, written in the group commit of ``db``
    (one statement and one commit for the executions of the moment)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def record(self, orders: list[Order], mode: str) -> list[bool | Exception]:
        from services.store.executions import EXECUTIONS, Execution

        at = utcnow()
        return await self.db.write_many(EXECUTIONS, [
            Execution(o.order_id, o.client_order_id, o.account, o.venue, o.symbol, mode, at) for o in orders])


class _Placement:
    __slots__ = ("order", "ended")

    def __init__(self, order: Order) -> None:
        self.order = order
        #: Made by a sweep that waits for this placement; done when it ends.
        self.ended: asyncio.Future[None] | None = None


class Placements:
    """The placements in progress in this process: each order from before its execution
    record is written until its provider's call returns (or the record refuses it).

    Marking one costs a set insertion and removal; only a venue-wide cancel that waits
    for them (:meth:`settle`) makes a future per placement."""

    def __init__(self) -> None:
        self._open: set[_Placement] = set()

    def __len__(self) -> int:
        return len(self._open)

    def begin(self, order: Order) -> _Placement:
        placement = _Placement(order)
        self._open.add(placement)
        return placement

    def end(self, placement: _Placement) -> None:
        """The placement is over (answered, failed or refused); ending it again does nothing."""
        self._open.discard(placement)
        if placement.ended is not None and not placement.ended.done():
            placement.ended.set_result(None)

    async def settle(self, timeout: float, symbols: Collection[str] | None = None,
                     market_type: MarketType | None = None) -> list[Order]:
        """Wait, at most ``timeout`` seconds, for the placements in progress when called
        (of ``symbols`` and ``market_type``; None: any) to end; placements that begin
        meanwhile are not waited for. Returns the orders of those still in progress then,
        by order id."""
        loop = asyncio.get_running_loop()
        waited: list[_Placement] = []
        for placement in self._open:
            order = placement.order
            if (symbols is None or order.symbol in symbols) and market_type in (None, order.market_type):
                if placement.ended is None:
                    placement.ended = loop.create_future()
                waited.append(placement)
        if waited and timeout > 0:
            await asyncio.wait([placement.ended for placement in waited], timeout=timeout)  # type: ignore[misc]
        return sorted((p.order for p in waited if p in self._open), key=lambda order: order.order_id)


class ExchangeEngine:
    def __init__(self, keyring: "core_ext.KeyRing", provider: Provider, *, ttl_seconds: int = 300,
                 wall: Callable[[], float] = time.time, executions: ExecutionRecord | None = None,
                 credentials_since: float | None = None, placement_wait: float = PLACEMENT_WAIT_SECONDS) -> None:
        self.keyring = keyring
        self.provider = provider
        self.ttl_seconds = ttl_seconds
        #: The placements in progress, and how long the kill switch's venue-wide cancel
        #: waits for them at most (seconds; see :meth:`emergency_cancel_all`).
        self.placements = Placements()
        self.placement_wait = placement_wait
        #: The time tokens and credentials are checked at, and executed ids forgotten
        #: after (epoch seconds): the wall clock unless a test gives its own.
        self.wall = wall
        #: The durable record of executed order ids (the service's: the store); None keeps
        #: the memory below alone (in-process tests), which a restart forgets.
        self.executions = executions
        self.reports = ReportLog()
        #: The nonces of the OMS's credentials accepted, until each expires: a credential
        #: is good for one call.
        self.replay = ReplayCache()
        #: The replay cache is memory: a restarted Exchange would accept again a credential
        #: its previous process accepted (within the credential's 35 s). So a credential
        #: issued before this engine was made (epoch seconds; default: now) is refused,
        #: SERVICE_CREDENTIAL_BEFORE_START. The previous process died before this one
        #: started, so every credential it accepted was issued before this instant by the
        #: OMS's clock when the two clocks agree; issue times are whole seconds, so a
        #: credential signed in the second this engine was made, after it, is refused too:
        #: :meth:`accepting_credentials` waits for the next whole second before the service
        #: serves. An OMS whose clock is behind this one's has its credentials refused until
        #: its clock passes this instant: the refusal is UNAVAILABLE and the OMS's gateway
        #: signs the call afresh and sends it again within its deadline. An OMS clock ahead
        #: of this one by more than the restart took would let the previous process's last
        #: credentials through: keep the clocks synchronised (the risk tokens need it too).
        self.credentials_since = self.wall() if credentials_since is None else credentials_since
        if hasattr(provider, "alive"):  # the venue's dead-man switch is held only while the OMS follows
            provider.alive = lambda: self.reports.followers > 0
        # order id -> when its token stops being valid; a second execution is a replay.
        # Ids go in the order they were executed, with the time they may be forgotten:
        # the oldest are let go from the front, so each execution costs O(1).
        self._executed: dict[str, float] = {}
        self._forget: collections.deque[tuple[float, str]] = collections.deque()

    async def start(self) -> None:
        """Let the provider report what it learns later (resting fills, polled fills)."""
        await self.provider.start(self.reports.append)

    async def close(self) -> None:
        await self.provider.close()

    def _claim(self, order: Order, issued_at: int) -> None:
        now = self.wall()
        forget = self._forget
        while forget and forget[0][0] <= now:
            until, order_id = forget.popleft()
            if self._executed.get(order_id) == until:
                del self._executed[order_id]
        if order.order_id in self._executed:
            raise _executed_before(order)
        until = max(issued_at + self.ttl_seconds + 60, forget[-1][0] if forget else 0.0)
        self._executed[order.order_id] = until
        forget.append((until, order.order_id))

    def _unclaim(self, orders: list[Order]) -> None:
        """Let ``orders`` be executed again: their execution could not be recorded, so none
        of them reached the provider. (Had the record been kept all the same, a commit
        failing after it was durable, the store refuses the next try: memory is only the
        first of the two guards.)"""
        for order in orders:
            self._executed.pop(order.order_id, None)

    async def accepting_credentials(self) -> None:
        """Wait until a credential signed now (a whole second) is one this engine accepts:
        the service serves from then on, so an OMS whose clock agrees with this one has no
        call refused for its credential's issue time."""
        delay = math.ceil(self.credentials_since) - self.wall()
        if delay > 0:
            await asyncio.sleep(delay)

    def authorize(self, metadata: object, method: str, request: object = b"") -> None:
        """Refuse calls the OMS did not sign for this method and this request (its bytes
        as received, or the message), a credential issued before this engine was made,
        and a credential's second use (see :func:`verify_oms_call`)."""
        verify_oms_call(self.keyring, metadata, method, request, replay=self.replay, now=self.wall(),
                        not_before=self.credentials_since)

    async def execute(self, order: Order, token: str, metadata: object, request: object = None
                      ) -> list[ExecutionReport]:
        """Verify ``token`` against ``order`` and execute it (the reports are the answer's).
        ``request``: the ExecuteOrderRequest the credential in ``metadata`` signs (its
        bytes or the message); None: the one ``order`` and ``token`` make."""
        # The risk token first, so a bad token is reported as such whoever sends it.
        result = verify_or_raise(self.keyring, token, order, ttl_seconds=self.ttl_seconds, now=self.wall())
        if request is None:
            request = exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(order), risk_token=token)
        return await self.execute_verified(order, result, token, metadata, request)

    async def execute_verified(self, order: Order, verified: "core_ext.VerifyResult", token: str,
                               metadata: object, request: object) -> list[ExecutionReport]:
        """Execute an order whose token verified (``verified``): the OMS's credential for
        this ``request``, once per order id, then the provider."""
        self.authorize(metadata, "ExecuteOrder", request)
        self._claim(order, verified.issued_at or 0)
        placement = self.placements.begin(order)
        try:
            if self.executions is not None:
                try:
                    (recorded,) = await self.executions.record([order], self.provider.mode)
                except BaseException:
                    self._unclaim([order])
                    raise
                if isinstance(recorded, Exception):  # trading halted: not recorded, not sent
                    self._unclaim([order])
                    raise recorded
                if not recorded:
                    raise _executed_before(order)
            return await self.provider.execute(order)
        finally:
            self.placements.end(placement)

    async def unanswered(self, reports: list[ExecutionReport]) -> None:
        """Reports whose call ended before its answer was sent: to the report log."""
        await self.reports.append(reports)

    async def execute_many(
        self, orders: list[tuple[Order | Exception, "core_ext.VerifyResult | None", str]], metadata: object,
        request: object,
    ) -> list[list[ExecutionReport] | Exception]:
        """Execute each ``(order, its token's verdict, risk token)``, in order: the reports
        of each, or the error that refused it (one order's failure leaves the others be;
        an item may already be its refusal). A verdict of None: verify the token here.
        The OMS's credential covers the whole batch: ``request``, the ExecuteOrdersRequest
        (its bytes as received, or the message)."""
        self.authorize(metadata, "ExecuteOrders", request)
        outcomes: list[list[ExecutionReport] | Exception | None] = []
        claimed: list[int] = []
        for order, verified, token in orders:
            if isinstance(order, Exception):
                outcomes.append(order)
                continue
            try:
                if verified is None:
                    verified = verify_or_raise(self.keyring, token, order, ttl_seconds=self.ttl_seconds,
                                               now=self.wall())
                self._claim(order, verified.issued_at or 0)
            except Exception as error:  # noqa: BLE001 - reported for this order alone
                outcomes.append(error)
                continue
            claimed.append(len(outcomes))
            outcomes.append(None)
        placing = {index: self.placements.begin(orders[index][0]) for index in claimed}  # type: ignore[arg-type]
        try:
            if self.executions is not None and claimed:
                # The batch's executions in one set write: recorded before any reaches the provider.
                sent = [orders[i][0] for i in claimed]
                try:
                    recorded = await self.executions.record(sent, self.provider.mode)  # type: ignore[arg-type]
                except BaseException:
                    self._unclaim(sent)  # type: ignore[arg-type]
                    raise
                for index, fresh in zip(claimed, recorded):
                    if isinstance(fresh, Exception):  # trading halted: not recorded, not sent
                        self._unclaim([orders[index][0]])  # type: ignore[list-item]
                        outcomes[index] = fresh
                    elif not fresh:
                        outcomes[index] = _executed_before(orders[index][0])  # type: ignore[arg-type]
                    else:
                        continue
                    self.placements.end(placing.pop(index))
            for index, outcome in enumerate(outcomes):
                if outcome is None:
                    try:
                        outcomes[index] = await self.provider.execute(orders[index][0])  # type: ignore[arg-type]
                    except Exception as error:  # noqa: BLE001 - reported for this order alone
                        outcomes[index] = error
                    finally:
                        self.placements.end(placing.pop(index))
        finally:
            for placement in placing.values():
                self.placements.end(placement)
        return outcomes  # type: ignore[return-value]

    async def cancel(
        self,
        order_id: str,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
        market_type: MarketType | None = None,
        account: str | None = None,
    ) -> ExecutionReport:
        return await self.provider.cancel(
            order_id, symbol=symbol, client_order_id=client_order_id, market_type=market_type, account=account
        )

    async def cancel_all(self, symbol: str | None, market_type: MarketType | None = None) -> list[ExecutionReport]:
        # Not one of the OMS's own order-by-order calls: the OMS learns these from the log.
        try:
            reports = await self.provider.cancel_all(symbol, market_type)
        except CancelAllIncomplete as incomplete:  # what was cancelled is logged all the same
            await self.reports.append(incomplete.reports)
            raise
        await self.reports.append(reports)
        return reports

    async def emergency_cancel_all(self, symbols: Sequence[str | None] = (None,),
                                   market_type: MarketType | None = None
                                   ) -> tuple[list[ExecutionReport], list[CancelFailure]]:
        """The kill switch's venue-wide cancel: every open order at the venue of each of
        ``symbols`` (None: every symbol), of ``market_type`` (None: every market).

        It first waits, at most :attr:`placement_wait` seconds, for the placements in
        progress in this process in those symbols (see the module docstring): an order
        recorded before the halt is then at the venue when the sweep lists the open
        orders, and is cancelled with them. One still in progress when the wait ends is
        one failure (``PLACEMENT_IN_PROGRESS``, naming the order): it may reach the venue
        after this sweep, and the OMS sends the sweep again. Each symbol's (and account's)
        failure stops none of the others. Returns the reports of the orders cancelled
        and the failures."""
        wanted = None if None in symbols else set(symbols)
        unsettled = await self.placements.settle(self.placement_wait, wanted, market_type)  # type: ignore[arg-type]
        reports: list[ExecutionReport] = []
        failures: list[CancelFailure] = []
        for symbol in symbols:
            try:
                reports += await self.cancel_all(symbol, market_type)
            except CancelAllIncomplete as incomplete:
                reports += incomplete.reports
                failures += incomplete.failures
        for order in unsettled:
            log.warning("order %s was still being placed when the venue-wide cancel went (after %g s): it may "
                        "reach the venue after it", order.order_id, self.placement_wait)
            failures.append(CancelFailure(
                order.account, order.market_type, order.symbol, PLACEMENT_IN_PROGRESS,
                f"order {order.order_id} was still being placed {self.placement_wait:g} s after the venue-wide "
                "cancel began: it may reach the venue after this sweep; send the cancel again"))
        return reports, failures

    async def query_order(self, ref: OrderRef) -> VenueOrderState:
        """The venue's view of one order; nothing is logged or changed."""
        return await self.provider.query_order(ref)


def _executed_before(order: Order) -> TokenReplayed:
    return TokenReplayed(f"order {order.order_id} was already executed", reason="TOKEN_ALREADY_USED",
                         metadata={"order_id": order.order_id})
