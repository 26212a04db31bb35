"""The Exchange service's pipeline: verify the risk token again, then execute.

The Exchange service is a network endpoint of its own, so it trusts nothing the OMS
checked: an order reaches the provider only with a valid token bound to its exact
fields (verified on the request's bytes, like the OMS does), and at most once per order
id while that token could still be valid. Every execution mode runs this same
pipeline; only the provider differs (see :mod:`services.exchange.venue`).

The reports of an execution or a cancel travel in its answer. The report log
(``StreamExecutionReports``) carries what the provider learns later (a resting order
filling, a polled fill, the venue's own cancel), and an answer's reports only when
the call ended before its answer could be sent: each report reaches the OMS once.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

import core_ext
from services.common.tokens import batch_tokens, verify_oms_call, verify_or_raise
from services.domain import MarketType, Order
from services.domain.errors import TokenReplayed
from services.domain.execution import ExecutionReport

from .reports import ReportLog
from .venue import OrderRef, Provider, VenueOrderState

__all__ = ["ExchangeEngine", "Provider"]


class ExchangeEngine:
    def __init__(self, keyring: "core_ext.KeyRing", provider: Provider, *, ttl_seconds: int = 300,
                 wall: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self.provider = provider
        self.ttl_seconds = ttl_seconds
        #: The time tokens and credentials are checked at, and executed ids forgotten
        #: after (epoch seconds): the wall clock unless a test gives its own.
        self.wall = wall
        self.reports = ReportLog()
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
            raise TokenReplayed(f"order {order.order_id} was already executed", reason="TOKEN_ALREADY_USED",
                                metadata={"order_id": order.order_id})
        until = max(issued_at + self.ttl_seconds + 60, forget[-1][0] if forget else 0.0)
        self._executed[order.order_id] = until
        forget.append((until, order.order_id))

    def authorize(self, metadata: object, method: str, risk_token: str = "") -> None:
        """Refuse calls the OMS did not sign (see :func:`verify_oms_call`)."""
        verify_oms_call(self.keyring, metadata, method, risk_token, now=self.wall())

    async def execute(self, order: Order, token: str, metadata: object) -> list[ExecutionReport]:
        """Verify ``token`` against ``order`` and execute it (the reports are the answer's)."""
        # The risk token first, so a bad token is reported as such whoever sends it.
        result = verify_or_raise(self.keyring, token, order, ttl_seconds=self.ttl_seconds, now=self.wall())
        return await self.execute_verified(order, result, token, metadata)

    async def execute_verified(self, order: Order, verified: "core_ext.VerifyResult", token: str,
                               metadata: object) -> list[ExecutionReport]:
        """Execute an order whose token verified (``verified``): the OMS's credential,
        once per order id, then the provider."""
        self.authorize(metadata, "ExecuteOrder", token)
        self._claim(order, verified.issued_at or 0)
        return await self.provider.execute(order)

    async def unanswered(self, reports: list[ExecutionReport]) -> None:
        """Reports whose call ended before its answer was sent: to the report log."""
        await self.reports.append(reports)

    async def execute_many(
        self, orders: list[tuple[Order | Exception, "core_ext.VerifyResult | None", str]], metadata: object
    ) -> list[list[ExecutionReport] | Exception]:
        """Execute each ``(order, its token's verdict, risk token)``, in order: the reports
        of each, or the error that refused it (one order's failure leaves the others be;
        an item may already be its refusal). A verdict of None: verify the token here.
        The OMS's credential covers the whole batch (see :func:`batch_tokens`)."""
        self.authorize(metadata, "ExecuteOrders", batch_tokens([token for _, _, token in orders]))
        outcomes: list[list[ExecutionReport] | Exception] = []
        for order, verified, token in orders:
            if isinstance(order, Exception):
                outcomes.append(order)
                continue
            try:
                if verified is None:
                    verified = verify_or_raise(self.keyring, token, order, ttl_seconds=self.ttl_seconds,
                                               now=self.wall())
                self._claim(order, verified.issued_at or 0)
                outcomes.append(await self.provider.execute(order))
            except Exception as error:  # noqa: BLE001 - reported for this order alone
                outcomes.append(error)
        return outcomes

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
        reports = await self.provider.cancel_all(symbol, market_type)
        await self.reports.append(reports)
        return reports

    async def query_order(self, ref: OrderRef) -> VenueOrderState:
        """The venue's view of one order; nothing is logged or changed."""
        return await self.provider.query_order(ref)
