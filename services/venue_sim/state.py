"""The simulated venue's state: books, orders, trades, settings, and the matching rules.

Liquidity is synthetic: levels around a mid price (``spread_bps``, ``levels``,
``level_quantity`` per level); takers consume it until the price next moves
(``POST /_sim/price``), when it is laid out afresh around the new price and resting
orders the new book crosses fill as makers, as far as its depth allows.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

BPS = Decimal("0.0001")
MAKER_FEE = Decimal("0.0002")
TAKER_FEE = Decimal("0.0004")
MARKETS = ("futures", "spot")


class VenueError(Exception):
    """An answer in the venue's error format: HTTP status, code, message."""

    def __init__(self, http_status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.http_status = http_status
        self.code = code
        self.msg = msg


def now_ms() -> int:
    return int(time.time() * 1000)


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _tick(value: Decimal, tick: Decimal) -> Decimal:
    return ((value / tick).to_integral_value(ROUND_HALF_EVEN) * tick).normalize()


@dataclasses.dataclass
class SymbolSpec:
    symbol: str
    price: Decimal
    tick: Decimal = Decimal("0.01")
    step: Decimal = Decimal("0.001")
    min_qty: Decimal = Decimal("0.001")
    max_qty: Decimal = Decimal("100000")
    min_notional: Decimal = Decimal("5")
    spread_bps: Decimal = Decimal("2")
    levels: int = 10
    level_quantity: Decimal = Decimal("1000")
    level_step_bps: Decimal = Decimal("1")

    def exchange_info(self) -> dict[str, Any]:
        quote = next((q for q in ("USDT", "USDC", "BTC") if self.symbol.endswith(q)), "USDT")
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.symbol[: -len(quote)],
            "quoteAsset": quote,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _fmt(self.tick), "maxPrice": "10000000", "tickSize": _fmt(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": _fmt(self.min_qty), "maxQty": _fmt(self.max_qty), "stepSize": _fmt(self.step)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": _fmt(self.min_qty), "maxQty": _fmt(self.max_qty), "stepSize": _fmt(self.step)},
                {"filterType": "MIN_NOTIONAL", "notional": _fmt(self.min_notional)},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }


@dataclasses.dataclass
class SimLevel:
    price: Decimal
    quantity: Decimal


class SimBook:
    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.last = spec.price
        self.bids: list[SimLevel] = []
        self.asks: list[SimLevel] = []
        self.reprice(spec.price)

    def reprice(self, price: Decimal) -> None:
        spec = self.spec
        self.last = price
        half = spec.spread_bps / 2
        self.asks, self.bids = [], []
        for k in range(spec.levels):
            offset = (half + spec.level_step_bps * k) * BPS
            self.asks.append(SimLevel(_tick(price * (1 + offset), spec.tick), spec.level_quantity))
            self.bids.append(SimLevel(_tick(price * (1 - offset), spec.tick), spec.level_quantity))

    def opposite(self, side: str) -> list[SimLevel]:
        return self.asks if side == "BUY" else self.bids

    def take(self, side: str, quantity: Decimal, limit: Decimal | None) -> list[tuple[Decimal, Decimal]]:
        """Consume up to ``quantity`` of liquidity, never past ``limit``."""
        taken = []
        for level in self.opposite(side):
            if quantity <= 0:
                break
            if limit is not None and (level.price > limit if side == "BUY" else level.price < limit):
                break
            size = min(quantity, level.quantity)
            if size > 0:
                level.quantity -= size
                quantity -= size
                taken.append((level.price, size))
        return taken

    def available(self, side: str, limit: Decimal | None) -> Decimal:
        total = Decimal(0)
        for level in self.opposite(side):
            if limit is not None and (level.price > limit if side == "BUY" else level.price < limit):
                break
            total += level.quantity
        return total

    def crosses(self, side: str, price: Decimal) -> bool:
        levels = self.opposite(side)
        if not levels:
            return False
        best = levels[0].price
        return best <= price if side == "BUY" else best >= price


@dataclasses.dataclass
class VOrder:
    order_id: int
    client_order_id: str
    market: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    time: int = dataclasses.field(default_factory=now_ms)
    update_time: int = dataclasses.field(default_factory=now_ms)
    triggered: bool = True
    fill_due: float | None = None

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed

    def to_json(self) -> dict[str, Any]:
        average = self.cum_quote / self.executed if self.executed else Decimal(0)
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price or Decimal(0)),
            "avgPrice": _fmt(average),
            "origQty": _fmt(self.quantity),
            "executedQty": _fmt(self.executed),
            "cumQty": _fmt(self.executed),
            "cumQuote": _fmt(self.cum_quote),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "origType": self.type,
            "reduceOnly": self.reduce_only,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": _fmt(self.stop_price or Decimal(0)),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "time": self.time,
            "updateTime": self.update_time,
        }


class VenueState:
    """One account at one venue, futures and spot."""

    def __init__(
        self,
        specs: list[SymbolSpec],
        *,
        balance: Decimal = Decimal("1000000"),
        default_leverage: int = 20,
    ) -> None:
        self.specs = {spec.symbol: spec for spec in specs}
        self.books = {(m, s.symbol): SimBook(s) for m in MARKETS for s in specs}
        self.balance = balance
        self.default_leverage = default_leverage
        self.leverage: dict[str, int] = {}
        self.margin_types: dict[str, str] = {}
        self.orders: dict[int, VOrder] = {}
        self.by_client_id: dict[tuple[str, str, str], VOrder] = {}
        self.trades: list[dict[str, Any]] = []
        start = now_ms()
        self._next_order_id = start
        self._next_trade_id = start

    # -- lookups --------------------------------------------------------------------------------
    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise VenueError(400, -1121, "Invalid symbol.") from None

    def book(self, market: str, symbol: str) -> SimBook:
        self.spec(symbol)
        return self.books[(market, symbol)]

    def find(self, market: str, symbol: str, order_id: str | None, client_order_id: str | None) -> VOrder:
        order = None
        if order_id:
            order = self.orders.get(int(order_id))
        elif client_order_id:
            order = self.by_client_id.get((market, symbol, client_order_id))
        if order is None or order.market != market or order.symbol != symbol:
            raise VenueError(400, -2013, "Order does not exist.")
        return order

    # -- placing --------------------------------------------------------------------------------
    def place(self, market: str, params: dict[str, str], *, late_fill_after: float | None = None) -> VOrder:
        symbol = params.get("symbol", "")
        spec = self.spec(symbol)
        side = params.get("side", "")
        kind = params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1117, "Invalid side.")
        if kind not in ("LIMIT", "MARKET", "STOP", "STOP_MARKET"):
            raise VenueError(400, -1116, "Invalid orderType.")
        try:
            quantity = Decimal(params["quantity"])
            price = Decimal(params["price"]) if "price" in params else None
            stop_price = Decimal(params["stopPrice"]) if "stopPrice" in params else None
        except (KeyError, ArithmeticError):
            raise VenueError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.") from None
        if kind in ("LIMIT", "STOP") and price is None:
            raise VenueError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if kind in ("STOP", "STOP_MARKET") and stop_price is None:
            raise VenueError(400, -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        if quantity % spec.step != 0:
            raise VenueError(400, -1111, "Precision is over the maximum defined for this asset.")
        if quantity < spec.min_qty:
            raise VenueError(400, -4004, "Quantity less than min quantity.")
        if quantity > spec.max_qty:
            raise VenueError(400, -4005, "Quantity greater than max quantity.")
        for value in (price, stop_price):
            if value is not None and value % spec.tick != 0:
                raise VenueError(400, -4014, "Price not increased by tick size.")
        book = self.book(market, symbol)
        reference = price or stop_price or book.last
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        if quantity * reference < spec.min_notional and not reduce_only:
            raise VenueError(400, -4164, f"Order's notional must be no smaller than {_fmt(spec.min_notional)}")
        if market == "futures":
            leverage = self.leverage.get(symbol, self.default_leverage)
            if quantity * reference / leverage > self.balance:
                raise VenueError(400, -2019, "Margin is insufficient.")
        elif side == "BUY" and quantity * reference > self.balance:
            raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
        client_order_id = params.get("newClientOrderId") or f"sim-{self._next_order_id + 1}"
        if (market, symbol, client_order_id) in self.by_client_id:
            raise VenueError(400, -4116, "ClientOrderId is duplicated.")
        tif = params.get("timeInForce", "GTC")
        if tif == "GTX" and kind == "LIMIT" and price is not None and book.crosses(side, price):
            raise VenueError(400, -5022, "Due to the order could not be executed as maker, the Post Only order will be rejected.")
        self._next_order_id += 1
        order = VOrder(
            order_id=self._next_order_id,
            client_order_id=client_order_id,
            market=market,
            symbol=symbol,
            side=side,
            type=kind,
            time_in_force=tif,
            quantity=quantity,
            price=price,
            stop_price=stop_price,
            reduce_only=reduce_only,
        )
        self.orders[order.order_id] = order
        self.by_client_id[(market, symbol, client_order_id)] = order
        if late_fill_after is not None:
            order.fill_due = time.monotonic() + late_fill_after  # accepted now, matched later
            return order
        self._arrive(order, book)
        return order

    def _arrive(self, order: VOrder, book: SimBook) -> None:
        order.triggered = self._stop_triggered(order, book)
        if not order.triggered:
            return
        self._take(order, book)

    @staticmethod
    def _stop_triggered(order: VOrder, book: SimBook) -> bool:
        if order.type not in ("STOP", "STOP_MARKET"):
            return True
        assert order.stop_price is not None
        return book.last >= order.stop_price if order.side == "BUY" else book.last <= order.stop_price

    def _take(self, order: VOrder, book: SimBook) -> None:
        limit = order.price if order.type in ("LIMIT", "STOP") else None
        if order.time_in_force == "FOK" and book.available(order.side, limit) < order.remaining:
            self._finish(order, "EXPIRED")
            return
        for price, size in book.take(order.side, order.remaining, limit):
            self._trade(order, price, size, maker=False)
        if order.remaining > 0 and (order.type in ("MARKET", "STOP_MARKET") or order.time_in_force in ("IOC", "FOK")):
            self._finish(order, "EXPIRED")

    def _trade(self, order: VOrder, price: Decimal, size: Decimal, *, maker: bool) -> None:
        self._next_trade_id += 1
        order.executed += size
        order.cum_quote += price * size
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        order.update_time = now_ms()
        fee = (price * size * (MAKER_FEE if maker else TAKER_FEE)).quantize(Decimal("1e-8"))
        self.trades.append(
            {
                "symbol": order.symbol,
                "id": self._next_trade_id,
                "orderId": order.order_id,
                "side": order.side,
                "price": _fmt(price),
                "qty": _fmt(size),
                "quoteQty": _fmt(price * size),
                "commission": _fmt(fee),
                "commissionAsset": self.spec(order.symbol).exchange_info()["quoteAsset"],
                "time": order.update_time,
                "maker": maker,
                "buyer": order.side == "BUY",
                "realizedPnl": "0",
                "positionSide": "BOTH",
                "market": order.market,
            }
        )

    def _finish(self, order: VOrder, status: str) -> None:
        order.status = status
        order.update_time = now_ms()

    # -- time passing ---------------------------------------------------------------------------
    def run_due(self) -> None:
        """Match orders whose (late) fill is due."""
        moment = time.monotonic()
        for order in list(self.orders.values()):
            if order.fill_due is not None and order.fill_due <= moment and order.open:
                order.fill_due = None
                self._arrive(order, self.books[(order.market, order.symbol)])

    def set_price(self, market: str | None, symbol: str, price: Decimal) -> None:
        for m in MARKETS if market is None else (market,):
            book = self.book(m, symbol)
            book.reprice(_tick(price, book.spec.tick))
            for order in sorted(self.orders.values(), key=lambda o: o.order_id):
                if order.market != m or order.symbol != symbol or not order.open or order.fill_due is not None:
                    continue
                if not order.triggered:
                    if self._stop_triggered(order, book):
                        order.triggered = True
                        self._take(order, book)
                elif order.price is not None and book.crosses(order.side, order.price):
                    for _, size in book.take(order.side, order.remaining, order.price):
                        self._trade(order, order.price, size, maker=True)

    # -- cancels --------------------------------------------------------------------------------
    def cancel(self, market: str, symbol: str, order_id: str | None, client_order_id: str | None) -> VOrder:
        try:
            order = self.find(market, symbol, order_id, client_order_id)
        except VenueError:
            raise VenueError(400, -2011, "Unknown order sent.") from None
        if not order.open:
            raise VenueError(400, -2011, "Unknown order sent.")
        self._finish(order, "CANCELED")
        return order

    def cancel_all(self, market: str, symbol: str) -> int:
        self.spec(symbol)
        chosen = [o for o in self.orders.values() if o.market == market and o.symbol == symbol and o.open]
        for order in chosen:
            self._finish(order, "CANCELED")
        return len(chosen)

    def open_orders(self, market: str, symbol: str | None) -> list[VOrder]:
        return [o for o in self.orders.values() if o.market == market and o.open and symbol in (None, o.symbol)]

    def user_trades(
        self, market: str, symbol: str, *, order_id: int | None, from_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        self.spec(symbol)
        chosen = [
            {k: v for k, v in t.items() if k != "market"}
            for t in self.trades
            if t["market"] == market
            and t["symbol"] == symbol
            and (order_id is None or t["orderId"] == order_id)
            and (from_id is None or t["id"] >= from_id)
        ]
        return chosen[:limit] if from_id is not None else chosen[-limit:]
