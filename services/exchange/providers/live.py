"""Live execution: real orders on Aster through its REST API.

Safety first: an order for a futures symbol is refused (``FAILED_PRECONDITION``,
``LEVERAGE_NOT_SET`` / ``MARGIN_MODE_NOT_SET``) until SetLeverage and SetMarginMode
succeeded at the venue for that symbol, and an order whose quantity or prices the
venue's filters cannot represent is refused before it is sent.

The venue's ``clientOrderId`` is the order's client order id, so Tessera can always ask
the venue about an order it sent, whatever happened to the answer. Fills come from the
account's trades (``userTrades``), matched to orders by the venue's order id, never by
symbol and side; each trade id is reported once. Placement answers carry what is known
at once (a market order's fills); a poller follows open orders afterwards (fills,
cancels and expiries decided at the venue) and sends what it learns to the report sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from services.domain import LiquiditySide, MarginMode, MarketType, Order, OrderStatus, Side
from services.domain.errors import OrderNotFound, PreconditionFailed
from services.domain.execution import ExecutionReport, Fill

from ..aster import requests as rq
from ..aster.errors import VenueInDoubt, VenueOrderUnknown, VenueRateLimited, VenueRejected
from ..aster.rules import SymbolRules, parse_exchange_info
from ..aster.transport import AsterTransport
from ..venue import OrderRef, Quote, ReportSink, VenueOrderState, make_report

log = logging.getLogger(__name__)

#: The venue's order statuses in Tessera's terms.
VENUE_STATUSES = {
    "NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
FINAL = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})


def trade_id(market_type: MarketType, venue_trade_id: Any) -> str:
    """Futures and spot number their trades apart; the spot ones carry a prefix."""
    return f"spot-{venue_trade_id}" if market_type is MarketType.SPOT else str(venue_trade_id)


def _ms(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.timezone.utc)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class Tracked:
    """An order this process follows at the venue until everything about it is known."""

    ref: OrderRef
    quantity: Decimal
    venue_order_id: int
    seen: set[str] = dataclasses.field(default_factory=set)
    filled: Decimal = Decimal(0)
    venue_status: str = "NEW"
    venue_executed: Decimal = Decimal(0)

    @property
    def settled(self) -> bool:
        return self.venue_status in FINAL and self.filled >= self.venue_executed


class LiveProvider:
    mode = "LIVE"

    def __init__(
        self,
        transport: AsterTransport,
        *,
        poll_seconds: float = 1.0,
        require_settings: bool = True,
    ) -> None:
        self.transport = transport
        self.poll_seconds = poll_seconds
        self.require_settings = require_settings
        self.leverage: dict[str, int] = {}
        self.margin_modes: dict[str, MarginMode] = {}
        self._rules: dict[MarketType, dict[str, SymbolRules]] = {}
        self._tracked: dict[str, Tracked] = {}  # by order id
        self._by_venue_id: dict[tuple[MarketType, int], Tracked] = {}
        self._cursors: dict[tuple[MarketType, str], int] = {}
        self._sink: ReportSink | None = None
        self._poller: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        try:
            await self.transport.sync_clock()
        except Exception as error:  # noqa: BLE001 - reported; signed calls retry the sync on -1021
            log.warning("could not read the venue's clock: %s", error)
        if self.poll_seconds > 0 and self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="venue-fills")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.transport.close()

    # -- market data --------------------------------------------------------------------------
    async def price(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Decimal:
        payload = await self.transport.send(rq.prepare_ticker_price(symbol, market_type))
        return Decimal(str(payload["price"]))

    async def quote(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Quote:
        payload = await self.transport.send(rq.prepare_book_ticker(symbol, market_type))
        bid, ask = Decimal(str(payload["bidPrice"])), Decimal(str(payload["askPrice"]))
        return Quote(symbol, (bid + ask) / 2, bid, ask)

    async def rules(self, symbol: str, market_type: MarketType) -> SymbolRules:
        known = self._rules.get(market_type, {})
        if symbol not in known:
            payload = await self.transport.send(rq.prepare_exchange_info(market_type))
            known = self._rules[market_type] = parse_exchange_info(payload)
        try:
            return known[symbol]
        except KeyError:
            raise VenueRejected(f"{symbol} is not listed at the venue", reason="SYMBOL_NOT_AT_VENUE") from None

    # -- settings -----------------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: int) -> int:
        payload = await self.transport.send(rq.prepare_set_leverage(symbol, leverage))
        applied = int(payload.get("leverage", leverage)) if isinstance(payload, dict) else leverage
        self.leverage[symbol] = applied
        return applied

    async def set_margin_mode(self, symbol: str, margin_mode: MarginMode) -> MarginMode:
        try:
            await self.transport.send(rq.prepare_set_margin_type(symbol, margin_mode.value))
        except VenueRejected as error:
            if error.reason != "MARGIN_MODE_UNCHANGED":  # -4046: it already is
                raise
        self.margin_modes[symbol] = margin_mode
        return margin_mode

    def _check_settings(self, order: Order) -> None:
        if order.market_type is not MarketType.FUTURES or not self.require_settings:
            return
        if order.symbol not in self.leverage:
            raise PreconditionFailed(
                f"live mode: set the leverage of {order.symbol} (SetLeverage) before its first order",
                reason="LEVERAGE_NOT_SET",
            )
        if order.symbol not in self.margin_modes:
            raise PreconditionFailed(
                f"live mode: set the margin mode of {order.symbol} (SetMarginMode) before its first order",
                reason="MARGIN_MODE_NOT_SET",
            )
        if order.leverage is not None and int(order.leverage) != self.leverage[order.symbol]:
            raise PreconditionFailed(
                f"the order asks for leverage {order.leverage}; {order.symbol} is set to {self.leverage[order.symbol]}",
                reason="LEVERAGE_MISMATCH",
            )

    # -- orders -------------------------------------------------------------------------------
    async def execute(self, order: Order) -> list[ExecutionReport]:
        self._check_settings(order)
        rules = await self.rules(order.symbol, order.market_type)
        payload = await self.transport.send(rq.prepare_order(order, rules))
        order.remote_order_id = str(payload["orderId"])
        tracked = self._track(OrderRef.of(order), order.quantity, int(payload["orderId"]))
        return await self._learn(tracked, payload, announce=True)

    def _track(self, ref: OrderRef, quantity: Decimal, venue_order_id: int) -> Tracked:
        tracked = self._tracked.get(ref.order_id)
        if tracked is None:
            ref = dataclasses.replace(ref, remote_order_id=str(venue_order_id))
            tracked = Tracked(ref, quantity, venue_order_id)
            self._tracked[ref.order_id] = tracked
            self._by_venue_id[(ref.market_type, venue_order_id)] = tracked
        return tracked

    def _untrack_settled(self) -> None:
        for order_id, tracked in list(self._tracked.items()):
            if tracked.settled:
                del self._tracked[order_id]
                self._by_venue_id.pop((tracked.ref.market_type, tracked.venue_order_id), None)

    def _fill_report(self, tracked: Tracked, trade: dict[str, Any]) -> ExecutionReport | None:
        tid = trade_id(tracked.ref.market_type, trade["id"])
        if tid in tracked.seen:
            return None
        tracked.seen.add(tid)
        quantity = Decimal(str(trade["qty"]))
        tracked.filled += quantity
        fill = Fill(
            trade_id=tid,
            quantity=quantity,
            price=Decimal(str(trade["price"])),
            commission=abs(Decimal(str(trade.get("commission", "0")))),
            commission_asset=trade.get("commissionAsset") or None,
            liquidity_side=LiquiditySide.MAKER if trade.get("maker") else LiquiditySide.TAKER,
        )
        status = OrderStatus.FILLED if tracked.filled >= tracked.quantity else OrderStatus.PARTIALLY_FILLED
        return make_report(tracked.ref, status, fill=fill, cumulative=tracked.filled, raw=trade, at=_ms(trade.get("time")))

    async def _order_trades(self, tracked: Tracked) -> list[dict[str, Any]]:
        request = rq.prepare_user_trades(
            tracked.ref.symbol, tracked.ref.market_type, venue_order_id=tracked.venue_order_id
        )
        trades = await self.transport.send(request)
        return sorted((t for t in trades if int(t.get("orderId", -1)) == tracked.venue_order_id), key=lambda t: t["id"])

    async def _learn(self, tracked: Tracked, payload: dict[str, Any], *, announce: bool = False) -> list[ExecutionReport]:
        """Reports for what an order answer says: acknowledgement, fills (from its trades), end."""
        status = str(payload.get("status", "NEW"))
        tracked.venue_status = status
        tracked.venue_executed = Decimal(str(payload.get("executedQty", "0")))
        reports: list[ExecutionReport] = []
        if announce and status in ("NEW", "PARTIALLY_FILLED") and tracked.venue_executed == 0:
            reports.append(make_report(tracked.ref, OrderStatus.ACCEPTED, cumulative=Decimal(0), raw=payload))
        if tracked.venue_executed > tracked.filled:
            try:
                trades = await self._order_trades(tracked)
            except (VenueInDoubt, VenueRateLimited) as error:
                log.info("fills of %s not read yet (%s); the poller will", tracked.ref.order_id, error.reason)
                trades = []
            reports += [r for r in (self._fill_report(tracked, t) for t in trades) if r is not None]
        if status in ("CANCELED", "EXPIRED", "REJECTED"):
            reports.append(
                make_report(tracked.ref, VENUE_STATUSES[status], cumulative=tracked.venue_executed,
                            reason=f"venue: {status.lower()}", raw=payload)
            )
        self._untrack_settled()
        return reports

    async def cancel(
        self,
        order_id: str,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
        market_type: MarketType | None = None,
    ) -> ExecutionReport:
        tracked = self._tracked.get(order_id)
        if tracked is None and not (symbol and client_order_id):
            raise OrderNotFound(f"no open order {order_id} known here; give its symbol and client order id")
        ref = tracked.ref if tracked else None
        symbol = ref.symbol if ref else symbol
        client_order_id = ref.client_order_id if ref else client_order_id
        market = ref.market_type if ref else (market_type or MarketType.FUTURES)
        assert symbol and client_order_id
        payload = await self.transport.send(rq.prepare_cancel_order(symbol, client_order_id, market))
        if tracked is None:
            tracked = Tracked(
                OrderRef(order_id, client_order_id, "", "", symbol, Side(payload.get("side", "BUY")), market,
                         str(payload.get("orderId"))),
                Decimal(str(payload.get("origQty", "0"))),
                int(payload.get("orderId", 0)),
            )
        reports = await self._learn(tracked, payload)
        if reports and self._sink is not None and len(reports) > 1:
            await self._sink(reports[:-1])  # fills learnt on the way go to the stream
        if reports:
            return reports[-1]
        return make_report(tracked.ref, VENUE_STATUSES.get(str(payload.get("status")), OrderStatus.CANCELLED),
                           cumulative=Decimal(str(payload.get("executedQty", "0"))), raw=payload)

    async def cancel_all(
        self, symbol: str | None = None, market_type: MarketType | None = None
    ) -> list[ExecutionReport]:
        targets: set[tuple[MarketType, str]] = set()
        if symbol is not None:
            targets.add((market_type or MarketType.FUTURES, symbol))
        for tracked in self._tracked.values():
            if symbol in (None, tracked.ref.symbol) and market_type in (None, tracked.ref.market_type):
                targets.add((tracked.ref.market_type, tracked.ref.symbol))
        for market, name in sorted(targets):
            await self.transport.send(rq.prepare_cancel_all(name, market))
        reports: list[ExecutionReport] = []
        for tracked in list(self._tracked.values()):
            if (tracked.ref.market_type, tracked.ref.symbol) in targets:
                reports += await self._refresh(tracked)
        return reports

    async def _refresh(self, tracked: Tracked) -> list[ExecutionReport]:
        ref = tracked.ref
        payload = await self.transport.send(rq.prepare_query_order(ref.symbol, ref.client_order_id, ref.market_type))
        return await self._learn(tracked, payload)

    async def query_order(self, ref: OrderRef) -> VenueOrderState:
        try:
            payload = await self.transport.send(rq.prepare_query_order(ref.symbol, ref.client_order_id, ref.market_type))
        except VenueOrderUnknown:
            return VenueOrderState(found=False)
        venue_order_id = int(payload["orderId"])
        ref = dataclasses.replace(ref, remote_order_id=str(venue_order_id))
        quantity = Decimal(str(payload.get("origQty", "0")))
        probe = Tracked(ref, quantity, venue_order_id)
        trades = await self._order_trades(probe)
        fills = [r for r in (self._fill_report(probe, t) for t in trades) if r is not None]
        status = str(payload.get("status", "NEW"))
        if status not in FINAL:
            tracked = self._track(ref, quantity, venue_order_id)
            tracked.seen |= probe.seen
            tracked.filled = max(tracked.filled, probe.filled)
        return VenueOrderState(
            found=True,
            status=VENUE_STATUSES.get(status),
            executed_quantity=Decimal(str(payload.get("executedQty", "0"))),
            original_quantity=quantity,
            remote_order_id=str(venue_order_id),
            fills=fills,
            raw=payload,
        )

    # -- following open orders ----------------------------------------------------------------
    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                reports = await self.poll_once()
            except (VenueInDoubt, VenueRateLimited, VenueRejected) as error:
                log.info("venue poll skipped: %s", error.reason)
                continue
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad answer
                log.exception("venue poll failed")
                continue
            if reports and self._sink is not None:
                await self._sink(reports)

    async def poll_once(self) -> list[ExecutionReport]:
        """New fills of followed orders, then the end of those the venue closed."""
        reports: list[ExecutionReport] = []
        groups = sorted({(t.ref.market_type, t.ref.symbol) for t in self._tracked.values()})
        for market, symbol in groups:
            cursor = self._cursors.get((market, symbol))
            request = rq.prepare_user_trades(symbol, market, from_id=None if cursor is None else cursor + 1)
            trades = sorted(await self.transport.send(request), key=lambda t: t["id"])
            for trade in trades:
                self._cursors[(market, symbol)] = max(self._cursors.get((market, symbol), 0), int(trade["id"]))
                tracked = self._by_venue_id.get((market, int(trade.get("orderId", -1))))
                if tracked is not None:
                    report = self._fill_report(tracked, trade)
                    if report is not None:
                        reports.append(report)
            followed = [t for t in self._tracked.values() if (t.ref.market_type, t.ref.symbol) == (market, symbol)]
            if not any(t.venue_status not in FINAL for t in followed):
                continue
            open_ids = {o.get("clientOrderId") for o in await self.transport.send(rq.prepare_open_orders(symbol, market))}
            for tracked in followed:
                if tracked.venue_status not in FINAL and tracked.ref.client_order_id not in open_ids:
                    reports += await self._refresh(tracked)
        self._untrack_settled()
        return reports

