"""The simulated venue's state: books, orders, trades, settings, and the matching rules.

Liquidity is synthetic: levels around a mid price (``spread_bps``, ``levels``,
``level_quantity`` per level); takers consume it until the price next moves
(``POST /_sim/price``), when it is laid out afresh around the new price and resting
orders the new book crosses fill as makers, as far as its depth allows.
"""

from __future__ import annotations

import dataclasses
import re
import time
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, Callable

from services.domain.triggers import reaches_stop, trail

BPS = Decimal("0.0001")
MAKER_FEE = Decimal("0.0002")
TAKER_FEE = Decimal("0.0004")
MARKETS = ("futures", "spot")
DEFAULT_ACCOUNT = "default"
#: newClientOrderId: "Can only be string following the rule: ^[\.A-Z\:/a-z0-9_-]{1,36}$"
CLIENT_ORDER_ID = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
#: Order types per market, as the docs' New Order lists them (trailing stops are futures only).
ORDER_TYPES = {
    "futures": ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"),
    "spot": ("LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"),
}
#: Conditional orders: they rest untriggered until the (working type's) price reaches them.
STOPS = ("STOP", "STOP_MARKET")
TAKE_PROFITS = ("TAKE_PROFIT", "TAKE_PROFIT_MARKET")
CLOSING_TYPES = ("STOP_MARKET", "TAKE_PROFIT_MARKET")
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
#: callbackRate: "min 0.1, max 5 where 1 for 1%".
CALLBACK_RATES = (Decimal("0.1"), Decimal(5))
#: Futures-only parameters of New Order: refused on spot (PARAM_NOT_REQUIRED).
FUTURES_ONLY = ("closePosition", "activationPrice", "callbackRate", "workingType", "priceProtect", "positionSide",
                "reduceOnly")


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


def _decimal(params: dict[str, str], name: str, *, required: bool = False) -> Decimal | None:
    """A DECIMAL parameter; -1102 when required and missing, or malformed."""
    text = params.get(name)
    if text is None and not required:
        return None
    try:
        value = Decimal(text) if text is not None else None
    except ArithmeticError:
        value = None
    if value is None or not value.is_finite():
        raise VenueError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _not_required(params: dict[str, str], *names: str) -> None:
    """-1106 PARAM_NOT_REQUIRED for the first of ``names`` that was sent."""
    for name in names:
        if name in params:
            raise VenueError(400, -1106, f"Parameter '{name}' sent when not required.")


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
    multiplier_up: Decimal = Decimal("1.15")
    multiplier_down: Decimal = Decimal("0.85")
    #: priceProtect: the most the mark and contract prices may differ (a fraction) for a
    #: protected conditional order to trigger.
    trigger_protect: Decimal = Decimal("0.05")

    def exchange_info(self, market: str = "futures") -> dict[str, Any]:
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
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": _fmt(self.min_notional)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": _fmt(self.multiplier_up),
                 "multiplierDown": _fmt(self.multiplier_down), "multiplierDecimal": 4},
            ],
            "orderTypes": list(ORDER_TYPES[market]),
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            "triggerProtect": _fmt(self.trigger_protect),
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

    def take_quote(self, side: str, amount: Decimal, step: Decimal) -> tuple[list[tuple[Decimal, Decimal]], bool]:
        """Consume what ``amount`` of the quote asset buys (sizes in whole ``step`` units);
        the trades, and whether the amount was spent (what is left buys no more units)."""
        taken = []
        for level in self.opposite(side):
            size = min(level.quantity, (amount / level.price / step).to_integral_value(ROUND_DOWN) * step)
            if size > 0:
                level.quantity -= size
                amount -= size * level.price
                taken.append((level.price, size))
            if amount < level.price * step:
                return taken, True
        return taken, False

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
    account: str = DEFAULT_ACCOUNT
    position_side: str = "BOTH"
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    close_position: bool = False
    activation_price: Decimal | None = None
    callback_rate: Decimal | None = None
    quote_order_qty: Decimal | None = None
    #: A trailing stop's extreme price since it activated (None: not active yet).
    extreme: Decimal | None = None
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

    @property
    def average(self) -> Decimal:
        return self.cum_quote / self.executed if self.executed else Decimal(0)

    def to_json(self) -> dict[str, Any]:
        answer = {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price or Decimal(0)),
            "avgPrice": _fmt(self.average),
            "origQty": _fmt(self.quantity),
            "executedQty": _fmt(self.executed),
            "cumQty": _fmt(self.executed),
            "cumQuote": _fmt(self.cum_quote),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "origType": self.type,
            "side": self.side,
            "stopPrice": _fmt(self.stop_price or Decimal(0)),
            "time": self.time,
            "updateTime": self.update_time,
        }
        if self.market == "futures":
            answer.update(reduceOnly=self.reduce_only, positionSide=self.position_side,
                          closePosition=self.close_position, workingType=self.working_type,
                          priceProtect=self.price_protect)
            if self.type == "TRAILING_STOP_MARKET":
                answer.update(activatePrice=_fmt(self.activation_price or Decimal(0)),
                              priceRate=_fmt(self.callback_rate or Decimal(0)))
        elif self.quote_order_qty is not None:
            answer["origQuoteOrderQty"] = _fmt(self.quote_order_qty)
        return answer


@dataclasses.dataclass
class Position:
    amount: Decimal = Decimal(0)  # signed: long > 0
    entry: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)

    def apply(self, signed_size: Decimal, price: Decimal) -> Decimal:
        """Add a fill; the realised PnL of the part that closed."""
        pnl = Decimal(0)
        if self.amount == 0 or (self.amount > 0) == (signed_size > 0):
            total = self.amount + signed_size
            self.entry = (self.entry * abs(self.amount) + price * abs(signed_size)) / abs(total)
            self.amount = total
            return pnl
        closing = min(abs(signed_size), abs(self.amount))
        direction = 1 if self.amount > 0 else -1
        pnl = (price - self.entry) * closing * direction
        self.realized += pnl
        self.amount += signed_size
        if self.amount == 0:
            self.entry = Decimal(0)
        elif (self.amount > 0) != (direction > 0):
            self.entry = price  # flipped through zero
        return pnl


Listener = Callable[[str, dict[str, Any]], None]


class Account:
    """One account at the venue: its orders, trades, settings and positions."""

    def __init__(self, name: str, *, balance: Decimal, default_leverage: int) -> None:
        self.name = name
        self.balance = balance
        self.default_leverage = default_leverage
        self.orders: dict[int, VOrder] = {}
        self.by_client_id: dict[tuple[str, str, str], VOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.leverage: dict[str, int] = {}
        self.margin_types: dict[str, str] = {}
        self.dual_side = False
        self.positions: dict[tuple[str, str], Position] = {}  # (symbol, positionSide)
        self.countdowns: dict[str, float] = {}  # symbol -> monotonic deadline
        self.listeners: list[Listener] = []

    def position(self, symbol: str, side: str) -> Position:
        return self.positions.setdefault((symbol, side), Position())

    def emit(self, market: str, event: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(market, event)


class VenueState:
    """The venue: one market (books, mark prices) and its accounts, futures and spot."""

    def __init__(
        self,
        specs: list[SymbolSpec],
        *,
        balance: Decimal = Decimal("1000000"),
        default_leverage: int = 20,
        maker_fee: Decimal = MAKER_FEE,
        taker_fee: Decimal = TAKER_FEE,
    ) -> None:
        self.specs = {spec.symbol: spec for spec in specs}
        self.books = {(m, s.symbol): SimBook(s) for m in MARKETS for s in specs}
        self.marks: dict[str, Decimal] = {}
        self.balance = balance
        self.default_leverage = default_leverage
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.accounts: dict[str, Account] = {}
        self.account(DEFAULT_ACCOUNT)
        start = now_ms()
        self._next_order_id = start
        #: Trades are numbered per market and symbol, as the venue numbers them (the same
        #: number comes up in two symbols).
        self._trade_start = start
        self._next_trade_ids: dict[tuple[str, str], int] = {}

    # -- accounts, and the default one the single-account callers use -----------------------------
    def account(self, name: str) -> Account:
        account = self.accounts.get(name)
        if account is None:
            account = self.accounts[name] = Account(name, balance=self.balance, default_leverage=self.default_leverage)
        return account

    @property
    def orders(self) -> dict[int, VOrder]:
        """Every account's orders by order id (ids are unique across accounts)."""
        return {oid: o for a in self.accounts.values() for oid, o in a.orders.items()}

    @property
    def trades(self) -> list[dict[str, Any]]:
        return [t for a in self.accounts.values() for t in a.trades]

    @property
    def leverage(self) -> dict[str, int]:
        return self.accounts[DEFAULT_ACCOUNT].leverage

    @property
    def margin_types(self) -> dict[str, str]:
        return self.accounts[DEFAULT_ACCOUNT].margin_types

    # -- lookups --------------------------------------------------------------------------------
    def spec(self, symbol: str) -> SymbolSpec:
        try:
            return self.specs[symbol]
        except KeyError:
            raise VenueError(400, -1121, "Invalid symbol.") from None

    def book(self, market: str, symbol: str) -> SimBook:
        self.spec(symbol)
        return self.books[(market, symbol)]

    def mark(self, symbol: str) -> Decimal:
        """The mark price: set apart by ``/_sim/mark``, else the futures book's last price."""
        return self.marks.get(symbol) or self.book("futures", symbol).last

    def find(self, account: Account, market: str, symbol: str, order_id: str | None,
             client_order_id: str | None) -> VOrder:
        order = None
        if order_id:
            order = account.orders.get(int(order_id))
        elif client_order_id:
            order = account.by_client_id.get((market, symbol, client_order_id))
        else:
            raise VenueError(400, -1102, "Param 'orderId' or 'origClientOrderId' must be sent, but both were empty/null!")
        if order is None or order.market != market or order.symbol != symbol:
            raise VenueError(400, -2013, "Order does not exist.")
        return order

    # -- placing --------------------------------------------------------------------------------
    def _check_position_side(self, account: Account, market: str, params: dict[str, str], side: str,
                             reduce_only: bool) -> str:
        position_side = params.get("positionSide", "BOTH")
        if market != "futures":
            return "BOTH"
        if position_side not in ("BOTH", "LONG", "SHORT"):
            raise VenueError(400, -4060, "Invalid position side.")
        if account.dual_side and position_side == "BOTH" or not account.dual_side and position_side != "BOTH":
            raise VenueError(400, -4061, "Order's position side does not match user's setting.")
        if account.dual_side and "reduceOnly" in params:
            raise VenueError(400, -1106, "Parameter 'reduceOnly' sent when not required.")
        return position_side

    def _check_reduce(self, account: Account, symbol: str, side: str, position_side: str, quantity: Decimal,
                      reduce_only: bool) -> None:
        """A reduce-only order (one-way) or a closing order (hedge) may not exceed the position."""
        if position_side == "BOTH":
            if not reduce_only:
                return
            amount = account.position(symbol, "BOTH").amount
            reducing = amount > 0 and side == "SELL" or amount < 0 and side == "BUY"
            pending = sum((o.remaining for o in account.orders.values() if o.open and o.reduce_only
                           and o.symbol == symbol and o.market == "futures" and o.side == side), Decimal(0))
            if not reducing or quantity + pending > abs(amount):
                raise VenueError(400, -2022, "ReduceOnly Order is rejected.")
            return
        closes = position_side == "LONG" and side == "SELL" or position_side == "SHORT" and side == "BUY"
        if closes and quantity > abs(account.position(symbol, position_side).amount):
            raise VenueError(400, -2022, "ReduceOnly Order is rejected.")

    def place(self, account: Account, market: str, params: dict[str, str], *,
              late_fill_after: float | None = None) -> VOrder:
        symbol = params.get("symbol", "")
        spec = self.spec(symbol)
        side = params.get("side", "")
        kind = params.get("type", "")
        futures = market == "futures"
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1117, "Invalid side.")
        if kind not in ORDER_TYPES[market]:
            raise VenueError(400, -1116, "Invalid orderType.")
        if not futures:
            _not_required(params, *FUTURES_ONLY)
        close_position = params.get("closePosition", "false").lower() == "true"
        if close_position:
            # "Cannot be used with quantity paremeter; cannot be used with reduceOnly parameter"
            if kind not in CLOSING_TYPES:
                _not_required(params, "closePosition")
            if "quantity" in params:
                raise VenueError(400, -4137, "Quantity must be zero with closePosition equals true")
            _not_required(params, "reduceOnly")
        quote_order_qty = _decimal(params, "quoteOrderQty")
        if quote_order_qty is not None:
            # Spot "MARKET: quantity or quoteOrderQty", the quote amount to spend on a BUY.
            if futures or kind != "MARKET" or side != "BUY" or "quantity" in params:
                _not_required(params, "quoteOrderQty")
            if quote_order_qty <= 0:
                raise VenueError(400, -1102, "Mandatory parameter 'quoteOrderQty' was not sent, was empty/null, "
                                             "or malformed.")
        if close_position or quote_order_qty is not None:
            quantity = Decimal(0)       # the venue decides it: at the trigger, or from the quote amount
        else:
            quantity = _decimal(params, "quantity", required=True)
        price = _decimal(params, "price")
        stop_price = _decimal(params, "stopPrice") if kind != "TRAILING_STOP_MARKET" else None  # "please ignore"
        activation_price = _decimal(params, "activationPrice") if kind == "TRAILING_STOP_MARKET" else None
        callback_rate = None
        if kind == "TRAILING_STOP_MARKET":
            callback_rate = _decimal(params, "callbackRate", required=True)
            if not CALLBACK_RATES[0] <= callback_rate <= CALLBACK_RATES[1]:
                raise VenueError(400, -1102, "Mandatory parameter 'callbackRate' was not sent, was empty/null, "
                                             "or malformed.")
        if kind in ("LIMIT", "STOP", "TAKE_PROFIT") and price is None:
            raise VenueError(400, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed.")
        if kind in STOPS + TAKE_PROFITS and stop_price is None:
            raise VenueError(400, -1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        working_type = params.get("workingType", "CONTRACT_PRICE")
        if working_type not in WORKING_TYPES:
            raise VenueError(400, -4031, f"Invalid parameter working type: {working_type}")
        if quantity or not (close_position or quote_order_qty is not None):
            if quantity <= 0:
                raise VenueError(400, -4003, "Quantity less than zero.")
            if (quantity - spec.min_qty) % spec.step != 0:
                raise VenueError(400, -4023, "Qty not increased by step size.")
            if quantity < spec.min_qty:
                raise VenueError(400, -4004, "Quantity less than min quantity.")
            if quantity > spec.max_qty:
                raise VenueError(400, -4005, "Quantity greater than max quantity.")
        for value in (price, stop_price, activation_price):
            if value is not None and (value - spec.tick) % spec.tick != 0:
                raise VenueError(400, -4014, "Price not increased by tick size.")
        mark = self.mark(symbol)
        if price is not None and futures:
            if side == "BUY" and price > mark * spec.multiplier_up:
                raise VenueError(400, -4016, "Price is higher than mark price multiplier cap.")
            if side == "SELL" and price < mark * spec.multiplier_down:
                raise VenueError(400, -4024, "Price is lower than mark price multiplier floor.")
        book = self.book(market, symbol)
        if activation_price is not None:
            latest = mark if working_type == "MARK_PRICE" else book.last
            if activation_price >= latest if side == "BUY" else activation_price <= latest:
                raise VenueError(400, -2021, "Order would immediately trigger.")
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        position_side = self._check_position_side(account, market, params, side, reduce_only or close_position)
        if close_position and position_side != "BOTH" and (position_side == "LONG") == (side == "BUY"):
            # "In Hedge Mode, cannot be used with BUY orders in LONG position side"
            raise VenueError(400, -4061, "Order's position side does not match user's setting.")
        # "An order's notional value is the price * quantity. Since MARKET orders have no price,
        # the mark price is used." A quote-amount order's notional is its amount.
        reference = price or stop_price or activation_price or mark
        notional = quote_order_qty if quote_order_qty is not None else quantity * reference
        if notional < spec.min_notional and not (reduce_only or close_position):
            raise VenueError(400, -4164, f"Order's notional must be no smaller than {_fmt(spec.min_notional)} "
                                         "(unless you choose reduce only)")
        if futures:
            self._check_reduce(account, symbol, side, position_side, quantity, reduce_only)
            leverage = account.leverage.get(symbol, account.default_leverage)
            opening = not (reduce_only or close_position) and not (position_side == "LONG" and side == "SELL"
                                                                   or position_side == "SHORT" and side == "BUY")
            if opening and quantity * reference / leverage > account.balance:
                raise VenueError(400, -2019, "Margin is insufficient.")
        elif side == "BUY" and notional > account.balance:
            raise VenueError(400, -2018, "Balance is insufficient.")
        client_order_id = params.get("newClientOrderId") or f"sim-{self._next_order_id + 1}"
        if not CLIENT_ORDER_ID.fullmatch(client_order_id):
            raise VenueError(400, -4015, "Client order id is not valid.")
        existing = account.by_client_id.get((market, symbol, client_order_id))
        if existing is not None and existing.open:
            # "A unique id among open orders"
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
            account=account.name,
            position_side=position_side,
            working_type=working_type,
            price_protect=params.get("priceProtect", "FALSE").upper() == "TRUE",
            close_position=close_position,
            activation_price=activation_price,
            callback_rate=callback_rate,
            quote_order_qty=quote_order_qty,
        )
        account.orders[order.order_id] = order
        account.by_client_id[(market, symbol, client_order_id)] = order
        self._event(account, order, "NEW")
        if late_fill_after is not None:
            order.fill_due = time.monotonic() + late_fill_after  # accepted now, matched later
            return order
        self._arrive(account, order, book)
        return order

    def _arrive(self, account: Account, order: VOrder, book: SimBook) -> None:
        order.triggered = self._triggered(order, book)
        if not order.triggered:
            return
        self._take(account, order, book)

    def _trigger_price(self, order: VOrder, book: SimBook) -> Decimal:
        """The price that triggers the order: the mark price or the contract's last (workingType)."""
        if order.market == "futures" and order.working_type == "MARK_PRICE":
            return self.mark(order.symbol)
        return book.last

    def _triggered(self, order: VOrder, book: SimBook) -> bool:
        """The docs' conditions: a stop BUY at or above its stopPrice, a SELL at or below; a
        take-profit the other way; a trailing stop once the price comes back callbackRate
        percent from its extreme after activation. With priceProtect, only while the mark
        and contract prices differ by no more than the symbol's triggerProtect."""
        if order.type not in STOPS + TAKE_PROFITS + ("TRAILING_STOP_MARKET",):
            return True
        latest = self._trigger_price(order, book)
        buy = order.side == "BUY"
        if order.type == "TRAILING_STOP_MARKET":
            assert order.callback_rate is not None
            order.extreme, triggered = trail(order.extreme, latest, buy=buy, activation=order.activation_price,
                                             callback_rate=order.callback_rate)
            return triggered
        assert order.stop_price is not None
        reached = reaches_stop(latest, order.stop_price, buy=buy, take_profit=order.type in TAKE_PROFITS)
        if reached and order.price_protect:
            mark, last = self.mark(order.symbol), book.last
            return abs(mark - last) <= mark * self.spec(order.symbol).trigger_protect
        return reached

    def _take(self, account: Account, order: VOrder, book: SimBook) -> None:
        if order.quote_order_qty is not None:
            self._spend(account, order, book)
            return
        if order.close_position and not order.quantity:
            # "If triggered, close all current long position (if SELL) or current short position (if BUY)."
            held = account.position(order.symbol, order.position_side).amount
            closable = held if order.side == "SELL" else -held
            if closable <= 0:
                self._finish(account, order, "EXPIRED")
                return
            order.quantity = closable
        limit = order.price if order.type in ("LIMIT", "STOP", "TAKE_PROFIT") else None
        if order.time_in_force == "FOK" and book.available(order.side, limit) < order.remaining:
            self._finish(account, order, "EXPIRED")
            return
        for price, size in book.take(order.side, order.remaining, limit):
            self._trade(account, order, price, size, maker=False)
        market_like = order.type in ("MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
        if order.remaining > 0 and (market_like or order.time_in_force in ("IOC", "FOK")):
            self._finish(account, order, "EXPIRED")

    def _spend(self, account: Account, order: VOrder, book: SimBook) -> None:
        """A quote-amount order: what its amount buys, in whole steps ("will not violate the
        LOT_SIZE limit rules"); FILLED once the amount buys no more, else the rest expires."""
        assert order.quote_order_qty is not None
        taken, spent = book.take_quote(order.side, order.quote_order_qty, self.spec(order.symbol).step)
        order.quantity = sum((size for _, size in taken), Decimal(0))
        for index, (price, size) in enumerate(taken):
            self._trade(account, order, price, size, maker=False, last=spent and index == len(taken) - 1)
        if not spent or not taken:
            self._finish(account, order, "EXPIRED")

    def _trade(self, account: Account, order: VOrder, price: Decimal, size: Decimal, *, maker: bool,
               last: bool | None = None) -> None:
        key = (order.market, order.symbol)
        trade_number = self._next_trade_ids[key] = self._next_trade_ids.get(key, self._trade_start) + 1
        order.executed += size
        order.cum_quote += price * size
        done = order.remaining == 0 if last is None else last
        order.status = "FILLED" if done else "PARTIALLY_FILLED"
        order.update_time = now_ms()
        fee = (price * size * (self.maker_fee if maker else self.taker_fee)).quantize(Decimal("1e-8"))
        pnl = Decimal(0)
        if order.market == "futures":
            signed = size if order.side == "BUY" else -size
            pnl = account.position(order.symbol, order.position_side).apply(signed, price)
        trade = {
            "symbol": order.symbol,
            "id": trade_number,
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
            "market": order.market,
        }
        if order.market == "futures":
            trade.update(realizedPnl=_fmt(pnl), positionSide=order.position_side)
        account.trades.append(trade)
        self._event(account, order, "TRADE", trade)
        if order.market == "futures":
            self._account_update(account, order)

    def _finish(self, account: Account, order: VOrder, status: str) -> None:
        order.status = status
        order.update_time = now_ms()
        self._event(account, order, status)

    # -- user-data events ---------------------------------------------------------------------------
    def _event(self, account: Account, order: VOrder, execution: str, trade: dict[str, Any] | None = None) -> None:
        if not account.listeners:
            return
        moment = now_ms()
        last_qty = trade["qty"] if trade else "0"
        last_price = trade["price"] if trade else "0"
        if order.market == "futures":
            body: dict[str, Any] = {
                "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type,
                "f": order.time_in_force, "q": _fmt(order.quantity), "p": _fmt(order.price or Decimal(0)),
                "ap": _fmt(order.average), "sp": _fmt(order.stop_price or Decimal(0)), "x": execution,
                "X": order.status, "i": order.order_id, "l": last_qty, "z": _fmt(order.executed),
                "L": last_price, "T": order.update_time, "t": trade["id"] if trade else 0, "b": "0", "a": "0",
                "m": bool(trade and trade["maker"]), "R": order.reduce_only, "wt": order.working_type,
                "ot": order.type, "ps": order.position_side, "cp": order.close_position,
                "rp": trade.get("realizedPnl", "0") if trade else "0",
            }
            if trade:
                body.update(N=trade["commissionAsset"], n=trade["commission"])
            if order.type == "TRAILING_STOP_MARKET":
                body.update(AP=_fmt(order.activation_price or Decimal(0)), cr=_fmt(order.callback_rate or Decimal(0)))
            account.emit("futures", {"e": "ORDER_TRADE_UPDATE", "E": moment, "T": order.update_time, "o": body})
            return
        event = {
            "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type,
            "f": order.time_in_force, "q": _fmt(order.quantity), "p": _fmt(order.price or Decimal(0)),
            "ap": _fmt(order.average), "P": _fmt(order.stop_price or Decimal(0)), "x": execution, "X": order.status,
            "i": order.order_id, "l": last_qty, "z": _fmt(order.executed), "L": last_price,
            "n": trade["commission"] if trade else "0", "N": trade["commissionAsset"] if trade else None,
            "T": order.update_time, "t": trade["id"] if trade else -1, "m": bool(trade and trade["maker"]),
            "ot": order.type, "O": order.time, "Z": _fmt(order.cum_quote),
            "Y": trade["quoteQty"] if trade else "0", "Q": "0", "e": "executionReport", "E": moment,
        }
        account.emit("spot", event)

    def _account_update(self, account: Account, order: VOrder) -> None:
        if not account.listeners:
            return
        position = account.position(order.symbol, order.position_side)
        margin = account.margin_types.get(order.symbol, "CROSSED").lower()
        account.emit("futures", {
            "e": "ACCOUNT_UPDATE", "E": now_ms(), "T": order.update_time,
            "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": _fmt(account.balance), "cw": _fmt(account.balance),
                                        "bc": "0"}],
                  "P": [{"s": order.symbol, "pa": _fmt(position.amount), "ep": _fmt(position.entry),
                         "cr": _fmt(position.realized), "up": "0", "mt": margin, "iw": "0",
                         "ps": order.position_side}]},
        })

    # -- time passing ---------------------------------------------------------------------------
    def run_due(self) -> None:
        """Match orders whose (late) fill is due; run out countdownCancelAll timers."""
        moment = time.monotonic()
        for account in self.accounts.values():
            for order in list(account.orders.values()):
                if order.fill_due is not None and order.fill_due <= moment and order.open:
                    order.fill_due = None
                    self._arrive(account, order, self.books[(order.market, order.symbol)])
            for symbol, deadline in list(account.countdowns.items()):
                if deadline <= moment:
                    del account.countdowns[symbol]
                    self.cancel_all(account, "futures", symbol)

    def set_price(self, market: str | None, symbol: str, price: Decimal) -> None:
        for m in MARKETS if market is None else (market,):
            book = self.book(m, symbol)
            book.reprice(_tick(price, book.spec.tick))
            resting = sorted((o for a in self.accounts.values() for o in a.orders.values()), key=lambda o: o.order_id)
            for order in resting:
                if order.market != m or order.symbol != symbol or not order.open or order.fill_due is not None:
                    continue
                account = self.accounts[order.account]
                if not order.triggered:
                    if self._triggered(order, book):
                        order.triggered = True
                        self._take(account, order, book)
                elif order.price is not None and book.crosses(order.side, order.price):
                    for _, size in book.take(order.side, order.remaining, order.price):
                        self._trade(account, order, order.price, size, maker=True)

    def set_mark(self, symbol: str, price: Decimal) -> None:
        """A new mark price: the futures orders it triggers (workingType MARK_PRICE, or a
        protected order held back by the mark) meet the book."""
        self.marks[self.spec(symbol).symbol] = price
        book = self.book("futures", symbol)
        resting = sorted((o for a in self.accounts.values() for o in a.orders.values()), key=lambda o: o.order_id)
        for order in resting:
            if (order.market == "futures" and order.symbol == symbol and order.open and not order.triggered
                    and order.fill_due is None and self._triggered(order, book)):
                order.triggered = True
                self._take(self.accounts[order.account], order, book)

    # -- cancels --------------------------------------------------------------------------------
    def cancel(self, account: Account, market: str, symbol: str, order_id: str | None,
               client_order_id: str | None) -> VOrder:
        """-2013 NO_SUCH_ORDER for an order the venue never had; -2011 CANCEL_REJECTED for
        one it will not cancel (already filled, cancelled or expired)."""
        order = self.find(account, market, symbol, order_id, client_order_id)
        if not order.open:
            raise VenueError(400, -2011, "CANCEL_REJECTED")
        self._finish(account, order, "CANCELED")
        return order

    def cancel_all(self, account: Account, market: str, symbol: str) -> int:
        self.spec(symbol)
        chosen = [o for o in account.orders.values() if o.market == market and o.symbol == symbol and o.open]
        for order in chosen:
            self._finish(account, order, "CANCELED")
        return len(chosen)

    def open_orders(self, account: Account, market: str, symbol: str | None) -> list[VOrder]:
        return [o for o in account.orders.values() if o.market == market and o.open and symbol in (None, o.symbol)]

    def user_trades(
        self, account: Account, market: str, symbol: str, *, order_id: int | None, from_id: int | None,
        start_time: int | None, end_time: int | None, limit: int,
    ) -> list[dict[str, Any]]:
        self.spec(symbol)
        chosen = [
            {k: v for k, v in t.items() if k != "market"}
            for t in account.trades
            if t["market"] == market
            and t["symbol"] == symbol
            and (order_id is None or t["orderId"] == order_id)
            and (from_id is None or t["id"] >= from_id)
            and (start_time is None or t["time"] >= start_time)
            and (end_time is None or t["time"] <= end_time)
        ]
        return chosen[:limit] if from_id is not None or start_time is not None else chosen[-limit:]

    def positions(self, account: Account, symbol: str | None) -> list[dict[str, Any]]:
        """``positionRisk``: one row per symbol (one-way) or per side (hedge)."""
        rows = []
        sides = ("LONG", "SHORT") if account.dual_side else ("BOTH",)
        for name in sorted(self.specs):
            if symbol not in (None, name):
                continue
            for side in sides:
                position = account.positions.get((name, side), Position())
                rows.append({
                    "entryPrice": _fmt(position.entry), "marginType": account.margin_types.get(name, "CROSSED").lower(),
                    "isAutoAddMargin": "false", "isolatedMargin": "0", "leverage": str(
                        account.leverage.get(name, account.default_leverage)),
                    "liquidationPrice": "0", "markPrice": _fmt(self.mark(name)), "maxNotionalValue": "1000000",
                    "positionAmt": _fmt(position.amount), "symbol": name, "unRealizedProfit": _fmt(
                        (self.mark(name) - position.entry) * position.amount if position.amount else Decimal(0)),
                    "positionSide": side, "updateTime": 0,
                })
        return rows
