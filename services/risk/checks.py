"""Pre-trade checks: pure functions from an order and its context to violations.

A rejection is data, not an exception: every violated control is reported, each with
its own code, so a client sees all that is wrong with an order at once.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from services.domain import Order, TradingState

from .limits import RiskLimits


@dataclasses.dataclass(frozen=True)
class Violation:
    code: str
    message: str


def reference_price(order: Order, limits: RiskLimits) -> Decimal | None:
    """The price the order's notional is measured at: its own limit price, else the market's."""
    return order.price or order.stop_price or limits.reference_prices.get(order.symbol)


def check_order(order: Order, limits: RiskLimits, trading_state: TradingState) -> list[Violation]:
    violations: list[Violation] = []
    if trading_state is TradingState.HALTED:
        violations.append(Violation("TRADING_HALTED", "trading is halted: no new orders"))
    if order.symbol not in limits.allowed_symbols:
        violations.append(Violation("SYMBOL_NOT_ALLOWED", f"{order.symbol} is not an allowed symbol"))
    if order.quantity > limits.max_quantity_per_order:
        violations.append(
            Violation(
                "MAX_QUANTITY_EXCEEDED",
                f"quantity {order.quantity} exceeds the limit of {limits.max_quantity_per_order}",
            )
        )
    for name in ("price", "stop_price"):
        value = getattr(order, name)
        if value is not None and value > limits.max_price:
            violations.append(Violation("PRICE_OUT_OF_RANGE", f"{name} {value} exceeds {limits.max_price}"))
    price = reference_price(order, limits)
    if price is None:
        violations.append(
            Violation("NO_REFERENCE_PRICE", f"no reference price for {order.symbol}: notional cannot be checked")
        )
    else:
        notional = order.quantity * price
        if notional > limits.max_notional_per_order:
            violations.append(
                Violation(
                    "MAX_NOTIONAL_EXCEEDED",
                    f"notional {notional.normalize():f} exceeds the limit of {limits.max_notional_per_order}",
                )
            )
    return violations
