"""The provider interface every execution mode implements, and the values it trades in.

All modes share one pipeline (:class:`~services.exchange.engine.ExchangeEngine`); only
the provider differs: paper (a fill model on a price source), shadow (the same fill
model on the venue's real book, never an order request) and live (Aster's REST API).
Providers are asynchronous: the live one waits on the network, the simulated ones may
simulate latency. Reports a provider learns later (a resting order filling, a fill
polled from the venue) go to the ``sink`` given to :meth:`Provider.start`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, Awaitable, Callable, Protocol

from services.domain import MarginMode, MarketType, Order, OrderStatus, Side, utcnow
from services.domain.execution import ExecutionReport, Fill

ReportSink = Callable[[list[ExecutionReport]], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class OrderRef:
    """What identifies an order at a venue, and what its reports must carry."""

    order_id: str
    client_order_id: str
    account: str
    venue: str
    symbol: str
    side: Side
    market_type: MarketType = MarketType.FUTURES
    remote_order_id: str | None = None

    @classmethod
    def of(cls, order: Order) -> "OrderRef":
        return cls(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            account=order.account,
            venue=order.venue,
            symbol=order.symbol,
            side=order.side,
            market_type=order.market_type,
            remote_order_id=order.remote_order_id,
        )


@dataclasses.dataclass(frozen=True)
class Quote:
    symbol: str
    price: Decimal
    bid: Decimal
    ask: Decimal


@dataclasses.dataclass
class VenueOrderState:
    """The venue's view of one order: what the reconciler compares with the store."""

    found: bool
    status: OrderStatus | None = None
    executed_quantity: Decimal = Decimal(0)
    original_quantity: Decimal | None = None
    remote_order_id: str | None = None
    fills: list[ExecutionReport] = dataclasses.field(default_factory=list)
    raw: dict[str, Any] | None = None


def make_report(
    ref: OrderRef,
    status: OrderStatus,
    *,
    fill: Fill | None = None,
    cumulative: Decimal | None = None,
    reason: str = "",
    remote_order_id: str | None = None,
    raw: dict[str, Any] | None = None,
    at: Any = None,
    raw_json: str | None = None,
) -> ExecutionReport:
    return ExecutionReport(
        order_id=ref.order_id,
        client_order_id=ref.client_order_id,
        venue=ref.venue,
        account=ref.account,
        symbol=ref.symbol,
        side=ref.side,
        order_status=status,
        transact_time=at or utcnow(),
        remote_order_id=remote_order_id or ref.remote_order_id,
        fill=fill,
        cumulative_quantity=cumulative,
        reason=reason,
        raw_payload=raw,
        raw_json=raw_json,
    )


class Provider(Protocol):
    mode: str

    async def start(self, sink: ReportSink) -> None: ...

    async def close(self) -> None: ...

    async def price(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Decimal: ...

    async def quote(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Quote: ...

    async def execute(self, order: Order) -> list[ExecutionReport]: ...

    async def cancel(
        self,
        order_id: str,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
        market_type: MarketType | None = None,
        account: str | None = None,
    ) -> ExecutionReport: ...

    async def cancel_all(
        self, symbol: str | None = None, market_type: MarketType | None = None
    ) -> list[ExecutionReport]: ...

    async def set_leverage(self, symbol: str, leverage: int, *, account: str | None = None) -> int: ...

    async def set_margin_mode(self, symbol: str, margin_mode: MarginMode, *, account: str | None = None
                              ) -> MarginMode: ...

    async def query_order(self, ref: OrderRef) -> VenueOrderState: ...
