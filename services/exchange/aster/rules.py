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

from services.domain import Order, OrderType, Side
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
    market_max_qty: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
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
                fields["market_max_qty"] = Decimal(item.get("maxQty", "0"))
            elif kind in ("MIN_NOTIONAL", "NOTIONAL"):
                fields["min_notional"] = Decimal(item.get("notional", item.get("minNotional", "0")))
        return cls(**fields)


def parse_exchange_info(payload: Mapping[str, Any]) -> dict[str, SymbolRules]:
    return {entry["symbol"]: SymbolRules.from_exchange_info(entry) for entry in payload.get("symbols", ())}


@dataclasses.dataclass(frozen=True)
class FittedOrder:
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None


def round_to_tick(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    if tick <= 0:
        return value
    return ((value / tick).to_integral_value(rounding=rounding) * tick).normalize()


def _refuse(message: str) -> PreconditionFailed:
    return PreconditionFailed(message, reason=NOT_REPRESENTABLE)


def _check_price(name: str, value: Decimal, rules: SymbolRules) -> None:
    if value <= 0:
        raise _refuse(f"{name} {value} rounds to nothing at tick {rules.tick_size}")
    if rules.min_price > 0 and value < rules.min_price:
        raise _refuse(f"{name} {value} is below the venue's minimum {rules.min_price}")
    if rules.max_price > 0 and value > rules.max_price:
        raise _refuse(f"{name} {value} is above the venue's maximum {rules.max_price}")


def fit_order(order: Order, rules: SymbolRules | None, reference_price: Decimal | None = None) -> FittedOrder:
    """The quantity, price and stop price to send for ``order`` under ``rules``.

    Raises
    ------
    PreconditionFailed
        Reason ``ORDER_NOT_REPRESENTABLE``, naming the filter the order breaks.
    """
    if rules is None:
        return FittedOrder(order.quantity, order.price, order.stop_price)
    if rules.status != "TRADING":
        raise _refuse(f"{order.symbol} is not trading at the venue (status {rules.status})")
    quantity = order.quantity
    if rules.step_size > 0 and quantity % rules.step_size != 0:
        raise _refuse(f"quantity {quantity} is not a multiple of the step size {rules.step_size}")
    if rules.min_qty > 0 and quantity < rules.min_qty:
        raise _refuse(f"quantity {quantity} is below the minimum {rules.min_qty}")
    max_qty = rules.market_max_qty if order.order_type is OrderType.MARKET and rules.market_max_qty > 0 else rules.max_qty
    if max_qty > 0 and quantity > max_qty:
        raise _refuse(f"quantity {quantity} is above the maximum {max_qty}")
    price = None
    if order.price is not None:
        passive = ROUND_FLOOR if order.side is Side.BUY else ROUND_CEILING
        price = round_to_tick(order.price, rules.tick_size, passive)
        _check_price("price", price, rules)
    stop_price = None
    if order.stop_price is not None:
        stop_price = round_to_tick(order.stop_price, rules.tick_size, ROUND_HALF_EVEN)
        _check_price("stop price", stop_price, rules)
    reference = price or stop_price or reference_price
    if rules.min_notional > 0 and reference is not None and not order.reduce_only:
        if quantity * reference < rules.min_notional:
            raise _refuse(
                f"notional {quantity * reference} is below the venue's minimum {rules.min_notional}"
            )
    return FittedOrder(quantity.normalize(), price, stop_price)
