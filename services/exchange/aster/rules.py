"""A symbol's trading rules from the venue's exchange information, and fitting orders to them.

Prices are rounded to the tick in the order's favour (a buy limit down, a sell limit
up), so the venue never fills worse than the price Risk approved; stop prices to the
nearest tick. Quantities are never rounded: a quantity that is not a multiple of the
step could never fill completely (the order would stay open forever), so it is refused
before anything is sent, as is everything else the venue's filters would refuse.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, Mapping

from services.domain import MarketType, Order, OrderType, Side
from services.domain.errors import PreconditionFailed

NOT_REPRESENTABLE = "ORDER_NOT_REPRESENTABLE"


@dataclasses.dataclass(frozen=True)
class SymbolRules:
    """The filters of one symbol (``0`` disables a bound, as on the venue)."""

    symbol: str
    tick_size: Decimal = Decimal(0)
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
    step_size: Decimal = Decimal(0)
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    #: MARKET_LOT_SIZE: a MARKET order's quantity is held to these as well as to LOT_SIZE.
    market_step_size: Decimal = Decimal(0)
    market_min_qty: Decimal = Decimal(0)
    market_max_qty: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    #: PERCENT_PRICE: a futures BUY's price at most mark × up, a SELL's at least mark ×
    #: down; on spot both bounds hold for either side (against the index price).
    multiplier_up: Decimal = Decimal(0)
    multiplier_down: Decimal = Decimal(0)
    status: str = "TRADING"
    quote_asset: str = ""

    @classmethod
    def from_exchange_info(cls, entry: Mapping[str, Any]) -> "SymbolRules":
        """One element of ``exchangeInfo.symbols``."""
        fields: dict[str, Any] = {
            "symbol": entry["symbol"],
            "status": entry.get("status", "TRADING"),
            "quote_asset": entry.get("quoteAsset", ""),
        }
        for item in entry.get("filters", ()):
            kind = item.get("filterType")
            if kind == "PRICE_FILTER":
                fields.update(
                    tick_size=Decimal(item.get("tickSize", "0")),
                    min_price=Decimal(item.get("minPrice", "0")),
                    max_price=Decimal(item.get("maxPrice", "0")),
                )
            elif kind == "LOT_SIZE":
                fields.update(
                    step_size=Decimal(item.get("stepSize", "0")),
                    min_qty=Decimal(item.get("minQty", "0")),
                    max_qty=Decimal(item.get("maxQty", "0")),
                )
            elif kind == "MARKET_LOT_SIZE":
                fields.update(
                    market_step_size=Decimal(item.get("stepSize", "0")),
                    market_min_qty=Decimal(item.get("minQty", "0")),
                    market_max_qty=Decimal(item.get("maxQty", "0")),
                )
            elif kind in ("MIN_NOTIONAL", "NOTIONAL"):
                fields["min_notional"] = Decimal(str(item.get("notional", item.get("minNotional", "0"))))
            elif kind == "PERCENT_PRICE":
                fields.update(
                    multiplier_up=Decimal(str(item.get("multiplierUp", "0"))),
                    multiplier_down=Decimal(str(item.get("multiplierDown", "0"))),
                )
        return cls(**fields)


def parse_exchange_info(payload: Mapping[str, Any]) -> dict[str, SymbolRules]:
    return {entry["symbol"]: SymbolRules.from_exchange_info(entry) for entry in payload.get("symbols", ())}


@dataclasses.dataclass(frozen=True)
class FittedOrder:
    #: None for an order whose quantity the venue decides (close_position, quote_order_qty).
    quantity: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    activation_price: Decimal | None = None


def round_to_tick(value: Decimal, tick: Decimal, rounding: str, base: Decimal = Decimal(0)) -> Decimal:
    """``value`` on the grid ``base + k × tick`` (the venue's ``(price - minPrice) % tickSize == 0``)."""
    if tick <= 0:
        return value
    return (((value - base) / tick).to_integral_value(rounding=rounding) * tick + base).normalize()


def price_to_tick(price: Decimal, side: Side, rules: SymbolRules) -> Decimal:
    """The limit price the venue will take for ``price``: on the tick, in the order's
    favour (a buy down, a sell up). Risk should approve this value, so the price stored
    is the price sent."""
    passive = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return round_to_tick(price, rules.tick_size, passive, rules.min_price)


def _refuse(message: str) -> PreconditionFailed:
    return PreconditionFailed(message, reason=NOT_REPRESENTABLE)


def _check_price(name: str, value: Decimal, rules: SymbolRules) -> None:
    if value <= 0:
        raise _refuse(f"{name} {value} rounds to nothing at tick {rules.tick_size}")
    if rules.min_price > 0 and value < rules.min_price:
        raise _refuse(f"{name} {value} is below the venue's minimum {rules.min_price}")
    if rules.max_price > 0 and value > rules.max_price:
        raise _refuse(f"{name} {value} is above the venue's maximum {rules.max_price}")


def check_percent_price(order: Order, price: Decimal, mark: Decimal, rules: SymbolRules) -> None:
    """PERCENT_PRICE: the limit price within the band around the mark (index) price.

    Raises
    ------
    PreconditionFailed
        Reason ``PRICE_OUTSIDE_PERCENT_BAND``.
    """
    up, down = rules.multiplier_up, rules.multiplier_down
    both = order.market_type is MarketType.SPOT
    if up > 0 and (both or order.side is Side.BUY) and price > mark * up:
        raise PreconditionFailed(
            f"price {price} is above {up} × the mark price {mark} (PERCENT_PRICE)", reason="PRICE_OUTSIDE_PERCENT_BAND"
        )
    if down > 0 and (both or order.side is Side.SELL) and price < mark * down:
        raise PreconditionFailed(
            f"price {price} is below {down} × the mark price {mark} (PERCENT_PRICE)", reason="PRICE_OUTSIDE_PERCENT_BAND"
        )


def fit_order(order: Order, rules: SymbolRules | None, reference_price: Decimal | None = None) -> FittedOrder:
    """The quantity, price and stop price to send for ``order`` under ``rules``.

    ``reference_price`` is the mark price: it checks a limit price against PERCENT_PRICE
    and gives a market order's notional for MIN_NOTIONAL (the venue uses the mark price
    there: "Since MARKET orders have no price, the mark price is used").

    Raises
    ------
    PreconditionFailed
        Reason ``ORDER_NOT_REPRESENTABLE``, naming the filter the order breaks, or
        ``PRICE_OUTSIDE_PERCENT_BAND``.
    """
    if rules is None:
        return FittedOrder(order.quantity, order.price, order.stop_price, order.activation_price)
    if rules.status != "TRADING":
        raise _refuse(f"{order.symbol} is not trading at the venue (status {rules.status})")
    quantity = order.quantity
    if quantity is not None:
        _check_quantity(order, quantity, rules)
    price = None
    if order.price is not None:
        price = price_to_tick(order.price, order.side, rules)
        _check_price("price", price, rules)
        if reference_price is not None and reference_price > 0:
            check_percent_price(order, price, reference_price, rules)
    stop_price = _trigger_price("stop price", order.stop_price, rules)
    activation_price = _trigger_price("activation price", order.activation_price, rules)
    reference = price or stop_price or activation_price or reference_price
    # "unless you choose reduce only": a close-position order only reduces, too. A
    # quote-amount order's notional is its amount.
    if rules.min_notional > 0 and not (order.reduce_only or order.close_position):
        notional = order.quote_order_qty
        if notional is None and quantity is not None and reference is not None:
            notional = quantity * reference
        if notional is not None and notional < rules.min_notional:
            raise _refuse(f"notional {notional} is below the venue's minimum {rules.min_notional}")
    return FittedOrder(None if quantity is None else quantity.normalize(), price, stop_price, activation_price)


def _check_quantity(order: Order, quantity: Decimal, rules: SymbolRules) -> None:
    """LOT_SIZE, and for a MARKET order MARKET_LOT_SIZE too (its own step, minimum and maximum)."""
    _check_lot(quantity, rules.step_size, rules.min_qty, rules.max_qty, "")
    if order.order_type is OrderType.MARKET:
        _check_lot(quantity, rules.market_step_size, rules.market_min_qty, rules.market_max_qty,
                   " of a market order")


def _check_lot(quantity: Decimal, step: Decimal, minimum: Decimal, maximum: Decimal, what: str) -> None:
    if step > 0 and (quantity - minimum) % step != 0:
        raise _refuse(f"quantity {quantity} is not a multiple of the step size {step}{what}")
    if minimum > 0 and quantity < minimum:
        raise _refuse(f"quantity {quantity} is below the minimum {minimum}{what}")
    if maximum > 0 and quantity > maximum:
        raise _refuse(f"quantity {quantity} is above the maximum {maximum}{what}")


def _trigger_price(name: str, value: Decimal | None, rules: SymbolRules) -> Decimal | None:
    """A stop or activation price on the tick (the nearest), within the price filter."""
    if value is None:
        return None
    fitted = round_to_tick(value, rules.tick_size, ROUND_HALF_EVEN, rules.min_price)
    _check_price(name, fitted, rules)
    return fitted
