"""The fill model shared by paper and shadow mode: a simulated venue on a book.

An arriving order takes liquidity by walking the book (slippage, one trade per level,
the taker fee); what a limit order cannot take at once rests and fills as a maker (at
its limit price, the maker fee) when a later book crosses it, as far as that book's
depth allows (partial fills). Stop orders rest untriggered until the price crosses the
stop, then behave as the market or limit order they become. Immediate-or-cancel,
fill-or-kill and market remainders expire; a post-only order that would take is
rejected. Optional latency delays every arrival.

Only the book source differs between modes: paper builds books from a price source
(:mod:`.books`), shadow reads the venue's real book (:mod:`.shadow`). Given the same
book sequence the model is deterministic; trade ids carry a per-process run id so they
never repeat across restarts (the store keeps one trade per venue trade id).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import itertools
import logging
import uuid
from decimal import Decimal
from typing import Any, Protocol

from services.domain import LiquiditySide, MarginMode, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce
from services.domain.errors import OrderNotFound
from services.domain.execution import ExecutionReport, Fill
from services.domain.ledger import quote_asset

from ..venue import OrderRef, Quote, ReportSink, VenueOrderState, make_report
from .books import Book, walk

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PaperFees:
    maker: Decimal = Decimal("0.0002")
    taker: Decimal = Decimal("0.0004")


def commission(quantity: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    return (quantity * price * rate).quantize(Decimal("1e-8")).normalize()


def stop_triggered(order: Order, market_price: Decimal) -> bool:
    if not order.order_type.needs_stop_price:
        return True
    assert order.stop_price is not None
    return market_price >= order.stop_price if order.side is Side.BUY else market_price <= order.stop_price


class SimBookSource(Protocol):
    async def book(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Book: ...

    async def advance(self) -> None: ...


@dataclasses.dataclass
class SimOrder:
    order: Order
    ref: OrderRef
    status: OrderStatus
    executed: Decimal = Decimal(0)
    triggered: bool = True
    fills: list[ExecutionReport] = dataclasses.field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.order.quantity - self.executed


class SimulatedVenue:
    """A venue in memory: the Provider interface over a book source."""

    mode = "PAPER"

    def __init__(
        self,
        books: SimBookSource,
        fees: PaperFees = PaperFees(),
        *,
        latency_seconds: float = 0.0,
        tick_seconds: float = 0.0,
        id_prefix: str = "paper",
        retain: int = 100_000,
    ) -> None:
        self.books = books
        self.fees = fees
        self.latency_seconds = latency_seconds
        self.tick_seconds = tick_seconds
        self.id_prefix = id_prefix
        self.retain = retain
        self.run_id = uuid.uuid4().hex[:8]
        self._orders: collections.OrderedDict[str, SimOrder] = collections.OrderedDict()
        self._resting: dict[str, SimOrder] = {}
        self._remote_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._sink: ReportSink | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.leverage: dict[str, int] = {}
        self.margin_modes: dict[str, MarginMode] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        if self.tick_seconds > 0 and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_forever(), name=f"{self.id_prefix}-ticks")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                reports = await self.tick()
                if reports and self._sink is not None:
                    await self._sink(reports)
            except Exception:  # noqa: BLE001 - a bad tick must not stop the venue
                log.exception("%s tick failed", self.id_prefix)

    # -- prices ---------------------------------------------------------------------------------
    async def price(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Decimal:
        return (await self.books.book(symbol, market_type)).last

    async def quote(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Quote:
        book = await self.books.book(symbol, market_type)
        return Quote(symbol, book.last, book.bid, book.ask)

    # -- orders ---------------------------------------------------------------------------------
    def _remember(self, sim: SimOrder) -> None:
        self._orders[sim.order.order_id] = sim
        while len(self._orders) > self.retain:
            self._orders.popitem(last=False)

    def _fill(self, sim: SimOrder, quantity: Decimal, price: Decimal, liquidity: LiquiditySide) -> ExecutionReport:
        rate = self.fees.maker if liquidity is LiquiditySide.MAKER else self.fees.taker
        sim.executed += quantity
        done = sim.executed == sim.order.quantity
        fill = Fill(
            trade_id=f"{self.id_prefix}-{self.run_id}-{next(self._trade_ids)}",
            quantity=quantity,
            price=price,
            commission=commission(quantity, price, rate),
            commission_asset=quote_asset(sim.order.symbol),
            liquidity_side=liquidity,
        )
        sim.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        report = make_report(sim.ref, sim.status, fill=fill, cumulative=sim.executed)
        sim.fills.append(report)
        return report

    def _status(self, sim: SimOrder, status: OrderStatus, reason: str = "") -> ExecutionReport:
        sim.status = status
        return make_report(sim.ref, status, cumulative=sim.executed, reason=reason)

    async def execute(self, order: Order) -> list[ExecutionReport]:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        book = await self.books.book(order.symbol, order.market_type)  # unknown symbol: InvalidOrder
        async with self._lock:
            order.remote_order_id = f"{self.id_prefix}-{next(self._remote_ids)}"
            local = copy.copy(order)
            local.new_events = []
            sim = SimOrder(local, OrderRef.of(order), OrderStatus.ACCEPTED, executed=order.filled_quantity)
            self._remember(sim)
            return self._arrive(sim, book)

    def _arrive(self, sim: SimOrder, book: Book) -> list[ExecutionReport]:
        order = sim.order
        sim.triggered = stop_triggered(order, book.last)
        if not sim.triggered:
            self._resting[order.order_id] = sim
            return [self._status(sim, OrderStatus.ACCEPTED)]
        if order.post_only and self._crosses(order, book):
            return [self._status(sim, OrderStatus.REJECTED, "POST_ONLY_WOULD_TAKE")]
        return self._take(sim, book, arriving=True)

    @staticmethod
    def _crosses(order: Order, book: Book) -> bool:
        if order.price is None:
            return True
        touch = book.touch(order.side)
        return order.price >= touch if order.side is Side.BUY else order.price <= touch

    def _take(self, sim: SimOrder, book: Book, *, arriving: bool) -> list[ExecutionReport]:
        """Take liquidity now; expire or rest what is left."""
        order = sim.order
        taken, remaining = walk(book, order.side, sim.remaining, order.price)
        immediate = order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) or order.order_type in (
            OrderType.MARKET,
            OrderType.STOP_MARKET,
        )
        if order.time_in_force is TimeInForce.FOK and remaining > 0:
            self._resting.pop(order.order_id, None)
            return [self._status(sim, OrderStatus.EXPIRED, "FOK_NOT_MARKETABLE")]
        reports = [self._fill(sim, size, price, LiquiditySide.TAKER) for price, size in taken]
        if remaining == 0:
            self._resting.pop(order.order_id, None)
        elif immediate:
            self._resting.pop(order.order_id, None)
            reason = f"{order.time_in_force.value}_NOT_MARKETABLE" if not taken else "REMAINDER_EXPIRED"
            reports.append(self._status(sim, OrderStatus.EXPIRED, reason))
        else:
            self._resting[order.order_id] = sim
            if arriving and not taken:
                reports.append(self._status(sim, OrderStatus.ACCEPTED))
        return reports

    def _rest_fill(self, sim: SimOrder, book: Book) -> list[ExecutionReport]:
        """A resting limit order the book now crosses fills at its limit, as a maker."""
        order = sim.order
        assert order.price is not None
        taken, _ = walk(book, order.side, sim.remaining, order.price)
        size = sum((q for _, q in taken), Decimal(0))
        if size <= 0:
            return []
        report = self._fill(sim, size, order.price, LiquiditySide.MAKER)
        if sim.remaining == 0:
            self._resting.pop(order.order_id, None)
        return [report]

    async def tick(self) -> list[ExecutionReport]:
        """Move the book source one step, then let resting orders meet the new books."""
        await self.books.advance()
        return await self.match_resting()

    async def match_resting(self) -> list[ExecutionReport]:
        reports: list[ExecutionReport] = []
        async with self._lock:
            for sim in list(self._resting.values()):
                book = await self.books.book(sim.order.symbol, sim.order.market_type)
                if not sim.triggered:
                    if not stop_triggered(sim.order, book.last):
                        continue
                    sim.triggered = True
                    reports += self._take(sim, book, arriving=False)
                else:
                    reports += self._rest_fill(sim, book)
        return reports

    def _find(self, order_id: str | None, client_order_id: str | None) -> SimOrder | None:
        if order_id and order_id in self._orders:
            return self._orders[order_id]
        if client_order_id:
            for sim in reversed(self._orders.values()):
                if sim.order.client_order_id == client_order_id:
                    return sim
        return None

    async def cancel(
        self,
        order_id: str,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
        market_type: MarketType | None = None,
        account: str | None = None,
    ) -> ExecutionReport:
        async with self._lock:
            sim = self._resting.pop(order_id, None)
            if sim is None:
                raise OrderNotFound(f"no open {self.id_prefix} order {order_id}", reason="UNKNOWN_ORDER")
            return self._status(sim, OrderStatus.CANCELLED, "cancelled")

    async def cancel_all(
        self, symbol: str | None = None, market_type: MarketType | None = None
    ) -> list[ExecutionReport]:
        chosen = [
            oid
            for oid, sim in self._resting.items()
            if symbol in (None, sim.order.symbol) and market_type in (None, sim.order.market_type)
        ]
        return [await self.cancel(order_id) for order_id in chosen]

    async def set_leverage(self, symbol: str, leverage: int, *, account: str | None = None) -> int:
        """A symbol's leverage (paper and shadow: one book for every account; ``account``
        is accepted as the live provider takes it, and not told apart)."""
        self.leverage[symbol] = leverage
        return leverage

    async def set_margin_mode(self, symbol: str, margin_mode: MarginMode, *, account: str | None = None
                              ) -> MarginMode:
        """A symbol's margin mode (``account`` as for :meth:`set_leverage`)."""
        self.margin_modes[symbol] = margin_mode
        return margin_mode

    async def query_order(self, ref: OrderRef) -> VenueOrderState:
        sim = self._find(ref.order_id, ref.client_order_id)
        if sim is None:
            return VenueOrderState(found=False)
        raw: dict[str, Any] = {"status": sim.status.value, "executedQty": str(sim.executed)}
        return VenueOrderState(
            found=True,
            status=sim.status,
            executed_quantity=sim.executed,
            original_quantity=sim.order.quantity,
            remote_order_id=sim.order.remote_order_id,
            fills=list(sim.fills),
            raw=raw,
        )
