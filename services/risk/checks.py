"""Pre-trade checks: pure functions from an order, the limits and its context to violations.

A rejection is data, not an exception: every violated control is reported, each with
its own code, so a client sees all that is wrong with an order at once. The checks of
the order itself are here; those measured against the account's ledger and activity are
in :mod:`services.risk.account_checks`. When the symbol is not allowed, the checks that
value it at a market price (reference, band, position, exposure, leverage) are moot and
skipped: SYMBOL_NOT_ALLOWED already says why.
"""

from __future__ import annotations

from decimal import Context, Decimal

from services.domain import Order, Side, TradingState
from services.domain.ledger import only_reduces

from . import account_checks
from .context import RiskContext
from .limits import RiskLimits
from .violations import Violation, plain, rounded

__all__ = ["RiskContext", "Violation", "check_order", "notional_price"]

_WIDE = Context(prec=100)
#: An order's own prices, checked against the price limit and the band.
_PRICES = ("price", "stop_price", "activation_price")


def notional_price(order: Order, reference: Decimal | None) -> Decimal | None:
    """The price the order's notional is measured at: the most it may trade at.

    A buy pays its own limit, stop or activation price at most (a market order: the
    reference price). A sell trades at its price or better, so it is measured at the
    higher of its price and the market it meets: a limit order meets the market now (a
    sell limit below the reference sells at the market), a conditional one the market
    at its trigger (a stop-limit sell whose limit is below its stop sells at the stop).
    """
    own = order.price or order.stop_price or order.activation_price
    if own is None:
        return reference
    if order.side is Side.SELL:
        met = (order.stop_price or order.activation_price) if order.order_type.is_conditional else reference
        if met is not None and met > own:
            return met
    return own


def check_order(order: Order, limits: RiskLimits, context: RiskContext | None = None) -> list[Violation]:
    """Every violation of ``order`` (empty: approve it), in a fixed order of controls."""
    context = context or RiskContext()
    reference = context.reference_prices.get(order.symbol)
    allowed = order.symbol in limits.allowed_symbols
    found: list[Violation | None] = [
        _trading_halted(context),
        reducing_only(order, context),
        None if allowed else Violation("SYMBOL_NOT_ALLOWED", f"{order.symbol} is not an allowed symbol"),
        _max_quantity(order, limits),
        *_price_range(order, limits),
        _no_reference(order) if allowed and reference is None else None,
        _max_notional(order, limits, notional_price(order, reference)),
    ]
    if allowed and reference is not None:
        found += [
            _price_band(order, limits, reference),
            account_checks.max_position(order, limits, context, reference),
            account_checks.max_gross_exposure(order, limits, context),
            account_checks.max_leverage(order, limits, context),
        ]
    found += [
        account_checks.max_open_orders(limits, context),
        account_checks.order_rate(limits, context),
        account_checks.daily_loss(order, limits, context),
    ]
    return [violation for violation in found if violation is not None]


def _trading_halted(context: RiskContext) -> Violation | None:
    if context.trading_state is TradingState.HALTED:
        return Violation("TRADING_HALTED", "trading is halted: no new orders")
    return None


def reducing_only(order: Order, context: RiskContext) -> Violation | None:
    """In REDUCING an order may only reduce the account's position in its symbol: never
    open from flat, never add to it, never flip it through zero. Orders already working
    on the same side count, so several reducing orders cannot flip it together."""
    if context.trading_state is not TradingState.REDUCING:
        return None
    held = context.position(order.symbol)
    working = 0 if order.close_position else context.working_same_side
    quantity = account_checks.order_quantity(order, context)
    if only_reduces(held, order.side, account_checks.reducing_quantity(order, context)):
        return None
    prefix = "trading is REDUCING: orders may only reduce a position;"
    if held == 0:
        return Violation("REDUCING_ONLY", f"{prefix} the account holds no {order.symbol} position")
    direction = "long" if held > 0 else "short"
    position = f"the {direction} {order.symbol} position of {plain(abs(held))}"
    if (held > 0) == (order.side is Side.BUY):
        return Violation("REDUCING_ONLY", f"{prefix} a {order.side.value} would add to {position}")
    already = f" plus {plain(working)} already working" if working else ""
    return Violation(
        "REDUCING_ONLY",
        f"{prefix} {order.side.value} {plain(quantity)}{already} exceeds {position}: it would flip through zero",
    )


def _max_quantity(order: Order, limits: RiskLimits) -> Violation | None:
    """The order's own quantity; an order whose quantity the venue decides has none (a
    quote-amount order is limited by its notional, a close-position order only reduces)."""
    limit = limits.max_quantity_per_order
    if limit is not None and order.quantity is not None and order.quantity > limit:
        return Violation("MAX_QUANTITY_EXCEEDED", f"quantity {plain(order.quantity)} exceeds the limit of {plain(limit)}")
    return None


def _price_range(order: Order, limits: RiskLimits) -> list[Violation | None]:
    found: list[Violation | None] = []
    for name in _PRICES:
        value = getattr(order, name)
        if limits.max_price is not None and value is not None and value > limits.max_price:
            found.append(Violation("PRICE_OUT_OF_RANGE", f"{name} {plain(value)} exceeds {plain(limits.max_price)}"))
    return found


def _no_reference(order: Order) -> Violation:
    return Violation(
        "NO_REFERENCE_PRICE", f"no reference price for {order.symbol}: the order cannot be measured against the market"
    )


def _max_notional(order: Order, limits: RiskLimits, price: Decimal | None) -> Violation | None:
    """The order's quantity at its price; a quote-amount order's notional is its amount.
    A close-position order is not limited: it can only bring the position to flat."""
    limit = limits.max_notional_per_order
    if limit is None or order.close_position:
        return None
    if order.quote_order_qty is not None:
        notional = order.quote_order_qty
    elif price is None or order.quantity is None:
        return None
    else:
        notional = _WIDE.multiply(order.quantity, price)
    if notional > limit:
        return Violation("MAX_NOTIONAL_EXCEEDED", f"notional {plain(notional)} exceeds the limit of {plain(limit)}")
    return None


def _price_band(order: Order, limits: RiskLimits, reference: Decimal) -> Violation | None:
    """Fat-finger guard: a limit or stop price too far from the reference price. A market
    order trades at the market, so it is within the band by definition."""
    band = limits.price_band
    if band is None:
        return None
    problems = []
    for name in _PRICES:
        value = getattr(order, name)
        if value is None:
            continue
        deviation = _WIDE.divide(abs(value - reference), reference)
        if deviation > band:
            problems.append(
                f"{name} {plain(value)} is {plain(rounded(deviation * 100, 2))}% from the reference "
                f"{plain(reference)}, beyond the band of {plain(band * 100)}%"
            )
    return Violation("PRICE_BAND_EXCEEDED", "; ".join(problems)) if problems else None
