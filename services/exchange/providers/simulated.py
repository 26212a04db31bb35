"""The fill model shared by paper and shadow mode: a simulated venue on a book.

An arriving order takes liquidity by walking the book (slippage, one trade per level,
the taker fee); what a limit order cannot take at once rests and fills as a maker (at
its limit price, the maker fee) when a later book crosses it, as far as that book's
depth allows (partial fills). Conditional orders rest untriggered, then behave as the
market or limit order they become, triggered as the venue triggers them: a stop when the
price reaches its stop price (a BUY at or above it, a SELL at or below), a take-profit
the other way (a BUY at or below, a SELL at or above), a trailing stop once the price
comes back ``callback_rate`` percent from its extreme (the lowest price since it
activated for a BUY, the highest for a SELL; it activates at ``activation_price``, or at
once). The book's last price stands for both the mark and the contract price
(``working_type``). A close-position order, when it triggers, trades the position this
venue holds against its side (the ledger's positions at start, then its own fills;
nothing held: it expires); a quote-amount order
spends its amount walking the book. Immediate-or-cancel, fill-or-kill and market
remainders expire; a post-only order that would take is rejected, and so is a
reduce-only order (futures) that would not only reduce the position this venue holds:
on arrival its quantity, with the reduce-only orders open on its side, must be within
that position and against it (``REDUCE_ONLY_REJECTED``, the venue's -2022); when it
trades later (resting, or triggered), it trades no more than the position left then
(other orders may have reduced it first), and what it cannot trade expires
(``REDUCE_ONLY_EXPIRED``): a reduce-only order never flips the position. Optional
latency delays every arrival.

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
from decimal import ROUND_DOWN, Decimal
from typing import Any, Mapping, Protocol

from services.domain import LiquiditySide, MarginMode, MarketType, Order, OrderStatus, OrderType, Side, TimeInForce
from services.domain.errors import OrderNotFound
from services.domain.execution import ExecutionReport, Fill
from services.domain.ledger import quote_asset
from services.domain.triggers import reaches_stop, trail

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
    """Whether a stop or take-profit order triggers at ``market_price`` (an order without a
    stop price: at once; a trailing stop follows the price path, see :meth:`SimOrder.trail`)."""
    if not order.order_type.needs_stop_price:
        return order.order_type is not OrderType.TRAILING_STOP_MARKET
    assert order.stop_price is not None
    return reaches_stop(market_price, order.stop_price, buy=order.side is Side.BUY,
                        take_profit=order.order_type.is_take_profit)


#: A simulated fill's quantity when it is a quote amount's worth: whole units of this.
QUOTE_FILL_STEP = Decimal("0.00000001")


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
    #: The base quantity to trade: the order's, or a close-position order's once it triggered.
    target: Decimal | None = None
    #: A trailing stop's extreme price since it activated (None: not active yet).
    extreme: Decimal | None = None
    #: A quote-amount order's quote asset spent so far.
    spent: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.target is None:
            self.target = self.order.quantity

    @property
    def remaining(self) -> Decimal:
        return Decimal(0) if self.target is None else self.target - self.executed

    def trail(self, price: Decimal) -> bool:
        """A trailing stop's step at ``price``: activate, follow the extreme; True when it triggers."""
        order = self.order
        assert order.callback_rate is not None
        self.extreme, triggered = trail(self.extreme, price, buy=order.side is Side.BUY,
                                        activation=order.activation_price, callback_rate=order.callback_rate)
        return triggered


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
        #: Net base quantity per (account, market type, symbol): what a close-position
        #: order closes. The ledger's at start (:meth:`hold`), then this venue's fills.
        self.positions: dict[tuple[str, MarketType, str], Decimal] = {}

    def hold(self, positions: Mapping[tuple[str, MarketType, str], Decimal]) -> None:
        """Take ``positions`` (net base quantity per account, market type and symbol) as
        held before this venue's first fill: a restarted Exchange closes what was filled before."""
        self.positions.update(positions)

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

    def _fill(self, sim: SimOrder, quantity: Decimal, price: Decimal, liquidity: LiquiditySide,
              done: bool | None = None) -> ExecutionReport:
        rate = self.fees.maker if liquidity is LiquiditySide.MAKER else self.fees.taker
        sim.executed += quantity
        key = (sim.order.account, sim.order.market_type, sim.order.symbol)
        self.positions[key] = self.positions.get(key, Decimal(0)) + (quantity if sim.order.side is Side.BUY
                                                                      else -quantity)
        if done is None:
            done = sim.executed == sim.target
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
        if order.order_type is OrderType.TRAILING_STOP_MARKET and order.activation_price is not None and (
                order.activation_price >= book.last if order.side is Side.BUY else order.activation_price <= book.last):
            # The venue's -2021: a BUY's activation price must be below the price, a SELL's above.
            return [self._status(sim, OrderStatus.REJECTED, "ORDER_WOULD_IMMEDIATELY_TRIGGER")]
        if order.reduce_only and not self._reduces(sim):
            # The venue's -2022 "ReduceOnly Order is rejected".
            return [self._status(sim, OrderStatus.REJECTED, "REDUCE_ONLY_REJECTED")]
        sim.triggered = self._triggers(sim, book)
        if not sim.triggered:
            self._resting[order.order_id] = sim
            return [self._status(sim, OrderStatus.ACCEPTED)]
        if order.post_only and self._crosses(order, book):
            return [self._status(sim, OrderStatus.REJECTED, "POST_ONLY_WOULD_TAKE")]
        return self._take(sim, book, arriving=True)

    def _reduces(self, sim: SimOrder) -> bool:
        """Whether a reduce-only order may be placed: it trades against the account's
        position (futures), and with the reduce-only orders open on its side takes no more
        than that position, so it can neither increase nor flip it (the venue checks "your
        existing position and open orders", -4118). On arrival; when it trades later,
        :meth:`_within_position` caps it at the position left then."""
        order = sim.order
        if order.market_type is not MarketType.FUTURES:
            return True  # spot has no reduce-only (the contract refuses it)
        key = (order.account, order.market_type, order.symbol)
        reducible = self._reducible(order)
        pending = sum((other.remaining for other in self._resting.values()
                       if other.order.reduce_only and other.order.side is order.side
                       and (other.order.account, other.order.market_type, other.order.symbol) == key), Decimal(0))
        return reducible > 0 and sim.remaining + pending <= reducible

    def _reducible(self, order: Order) -> Decimal:
        """How much of the position this venue holds ``order`` trades against (0: none)."""
        held = self.positions.get((order.account, order.market_type, order.symbol), Decimal(0))
        return max(held if order.side is Side.SELL else -held, Decimal(0))

    @staticmethod
    def _crosses(order: Order, book: Book) -> bool:
        if order.price is None:
            return True
        touch = book.touch(order.side)
        return order.price >= touch if order.side is Side.BUY else order.price <= touch

    @staticmethod
    def _triggers(sim: SimOrder, book: Book) -> bool:
        if sim.order.order_type is OrderType.TRAILING_STOP_MARKET:
            return sim.trail(book.last)
        return stop_triggered(sim.order, book.last)

    def _take(self, sim: SimOrder, book: Book, *, arriving: bool) -> list[ExecutionReport]:
        """Take liquidity now; expire or rest what is left."""
        order = sim.order
        if order.quote_order_qty is not None:
            return self._spend(sim, book)
        if order.close_position and sim.target is None:
            held = self.positions.get((order.account, order.market_type, order.symbol), Decimal(0))
            sim.target = order.quantity_at(held)
            if not sim.target:
                self._resting.pop(order.order_id, None)
                return [self._status(sim, OrderStatus.EXPIRED, "NO_POSITION_TO_CLOSE")]
        wanted, excess = self._within_position(sim)
        if not wanted:
            return [self._expire_reduce_only(sim)]
        taken, remaining = walk(book, order.side, wanted, order.price)
        immediate = order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) or order.order_type.is_market_like
        if order.time_in_force is TimeInForce.FOK and remaining + excess > 0:
            self._resting.pop(order.order_id, None)
            return [self._status(sim, OrderStatus.EXPIRED, "FOK_NOT_MARKETABLE")]
        reports = [self._fill(sim, size, price, LiquiditySide.TAKER) for price, size in taken]
        if excess and remaining == 0:
            reports.append(self._expire_reduce_only(sim))
        elif remaining == 0:
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

    def _spend(self, sim: SimOrder, book: Book) -> list[ExecutionReport]:
        """A quote-amount order: as much of the base asset as its amount buys, level by
        level (whole :data:`QUOTE_FILL_STEP` units); what the book cannot fill expires."""
        order = sim.order
        assert order.quote_order_qty is not None
        reports: list[ExecutionReport] = []
        for level in book.opposite(order.side):
            size = ((order.quote_order_qty - sim.spent) / level.price).quantize(QUOTE_FILL_STEP, rounding=ROUND_DOWN)
            if level.quantity is not None:
                size = min(size, level.quantity)
            if size <= 0:
                break
            sim.spent += size * level.price
            # Done when what is left cannot buy another unit here (nor at the worse levels after).
            done = order.quote_order_qty - sim.spent < level.price * QUOTE_FILL_STEP
            reports.append(self._fill(sim, size, level.price, LiquiditySide.TAKER, done=done))
            if done:
                break
        if sim.status is not OrderStatus.FILLED:
            reports.append(self._status(sim, OrderStatus.EXPIRED, "REMAINDER_EXPIRED" if reports
                                        else "MARKET_NOT_MARKETABLE"))
        return reports

    def _rest_fill(self, sim: SimOrder, book: Book) -> list[ExecutionReport]:
        """A resting limit order the book now crosses fills at its limit, as a maker."""
        order = sim.order
        assert order.price is not None
        taken, _ = walk(book, order.side, sim.remaining, order.price)
        size = sum((q for _, q in taken), Decimal(0))
        if size <= 0:
            return []
        wanted, excess = self._within_position(sim)
        if not wanted:
            return [self._expire_reduce_only(sim)]
        size = min(size, wanted)
        report = self._fill(sim, size, order.price, LiquiditySide.MAKER)
        if sim.remaining == 0:
            self._resting.pop(order.order_id, None)
        elif excess and size == wanted:
            return [report, self._expire_reduce_only(sim)]  # the position is closed: the rest cannot reduce it
        return [report]

    def _within_position(self, sim: SimOrder) -> tuple[Decimal, Decimal]:
        """(what the order may trade now, what it may not): a reduce-only futures order no
        more than the position it reduces holds now (it may have shrunk since the order
        arrived: other orders filled first); any other order all of its remaining quantity."""
        order = sim.order
        if not order.reduce_only or order.market_type is not MarketType.FUTURES:
            return sim.remaining, Decimal(0)
        wanted = min(sim.remaining, self._reducible(order))
        return wanted, sim.remaining - wanted

    def _expire_reduce_only(self, sim: SimOrder) -> ExecutionReport:
        """A reduce-only order with no position left to reduce: what is left of it expires."""
        self._resting.pop(sim.order.order_id, None)
        return self._status(sim, OrderStatus.EXPIRED, "REDUCE_ONLY_EXPIRED")

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
                    if not self._triggers(sim, book):
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
            original_quantity=sim.target,
            remote_order_id=sim.order.remote_order_id,
            fills=list(sim.fills),
            raw=raw,
        )
