"""The checks measured against the account: its ledger, its working orders, its activity.

Positions come from the ledger of Tessera's own fills (:class:`RiskContext`), never from
order requests. The position, exposure and leverage limits refuse an order that would
*increase* the measure beyond the limit; an order that lowers it always passes, so an
account over a limit (prices moved) can still trade its way back under it.
"""

from __future__ import annotations

from decimal import Context, Decimal

from services.domain import Order, Side, TradingState
from services.domain.ledger import ZERO, only_reduces

from .context import RiskContext
from .limits import RiskLimits
from .violations import Violation, plain, rounded

_WIDE = Context(prec=100)


def order_quantity(order: Order, context: RiskContext) -> Decimal:
    """The base quantity the checks size ``order`` by: its own; a close-position order's,
    the position it closes (all of it when held against the order's side, else nothing);
    a quote-amount order's, its amount at the reference price (nothing without one: the
    order is refused for the missing reference anyway)."""
    if order.quantity is not None:
        return order.quantity
    sized = order.quantity_at(context.position(order.symbol), context.reference_prices.get(order.symbol))
    return ZERO if sized is None else sized


def position_after(order: Order, context: RiskContext) -> Decimal:
    """The account's net quantity in the order's symbol once the order is filled (a
    close-position order leaves it flat, or as it is when it holds nothing to close)."""
    quantity = order_quantity(order, context)
    signed = quantity if order.side is Side.BUY else _WIDE.minus(quantity)
    return _WIDE.add(context.position(order.symbol), signed)


def reducing_quantity(order: Order, context: RiskContext) -> Decimal:
    """What counts against the position when only reducing is allowed: the order's
    quantity plus what the account's orders on the same side may still fill. A
    close-position order closes what is left when it triggers, never more: its own."""
    quantity = order_quantity(order, context)
    return quantity if order.close_position else _WIDE.add(quantity, context.working_same_side)


def max_position(order: Order, limits: RiskLimits, context: RiskContext, reference: Decimal) -> Violation | None:
    """|net quantity if the order and every order working on its side fill| x reference
    price against the per-symbol limit.

    The account's orders on the order's side (in its symbol and market type) may all
    fill: what they may still fill counts with the ledger position, so orders approved
    one after another cannot together take the position past the limit before any of
    them has filled. Orders on the other side are not netted (they may be cancelled). A
    close-position order closes what is left when it triggers: it never raises the
    position."""
    limit = limits.max_position_notional
    if limit is None or order.close_position:
        return None

    def signed(quantity: Decimal) -> Decimal:
        return quantity if order.side is Side.BUY else _WIDE.minus(quantity)

    held = context.position(order.symbol)
    working = context.working_same_side
    before = abs(_WIDE.add(held, signed(working)))
    after_quantity = _WIDE.add(held, signed(_WIDE.add(working, order_quantity(order, context))))
    after = abs(after_quantity)
    if after <= before:
        return None
    value = _WIDE.multiply(after, reference)
    if value <= limit:
        return None
    already = f" with {plain(working)} already working on its side" if working else ""
    return Violation(
        "MAX_POSITION_EXCEEDED",
        f"the {order.symbol} position would be {plain(after_quantity)}{already} "
        f"(notional {plain(value)} at {plain(reference)}), above the limit of {plain(limit)}",
    )


def max_gross_exposure(order: Order, limits: RiskLimits, context: RiskContext) -> Violation | None:
    """Sum over the account's positions of |quantity| x reference price, this order included."""
    limit = limits.max_gross_exposure
    if limit is None:
        return None
    before = context.gross_exposure()
    after = context.gross_exposure(order.symbol, position_after(order, context))
    if after <= limit or after <= before:
        return None
    return Violation(
        "MAX_GROSS_EXPOSURE_EXCEEDED",
        f"gross exposure would be {plain(after)} (now {plain(before)}), above the limit of {plain(limit)}",
    )


def max_leverage(order: Order, limits: RiskLimits, context: RiskContext) -> Violation | None:
    """The order's own leverage, and the account's gross exposure over its equity."""
    limit = limits.max_leverage
    if limit is None:
        return None
    problems = []
    if order.leverage is not None and order.leverage > limit:
        problems.append(f"the order asks for leverage {plain(order.leverage)}")
    before = context.gross_exposure()
    after = context.gross_exposure(order.symbol, position_after(order, context))
    if after > before:
        equity = context.equity(limits.account_equity)
        if equity <= 0:
            problems.append(f"the account's equity is {plain(equity)}: no exposure can be added")
        elif _WIDE.divide(after, equity) > limit:
            leverage = rounded(_WIDE.divide(after, equity), 4)
            problems.append(
                f"account leverage would be {plain(leverage)} (gross exposure {plain(after)} / equity {plain(equity)})"
            )
    if not problems:
        return None
    return Violation("MAX_LEVERAGE_EXCEEDED", "; ".join(problems) + f", above the max leverage of {plain(limit)}")


def max_open_orders(limits: RiskLimits, context: RiskContext) -> Violation | None:
    """The account's working orders (this one not yet among them) against the limit."""
    limit = limits.max_open_orders
    if limit is None or context.open_orders < limit:
        return None
    return Violation(
        "MAX_OPEN_ORDERS_EXCEEDED", f"the account has {context.open_orders} open orders, the limit is {limit}"
    )


def order_rate(limits: RiskLimits, context: RiskContext) -> Violation | None:
    """The orders approved for the account in the rolling window (this one not yet among them)
    against the limit."""
    limit = limits.order_rate_limit
    if limit is None or context.recent_orders < limit:
        return None
    return Violation(
        "ORDER_RATE_EXCEEDED",
        f"the account had {context.recent_orders} orders approved in the last "
        f"{limits.order_rate_window_seconds} s, the limit is {limit}",
    )


def daily_loss(order: Order, limits: RiskLimits, context: RiskContext) -> Violation | None:
    """Today's loss (realised since the reset + unrealised) beyond the limit.

    In REDUCING, orders that only reduce a position pass: that is how an operator
    unwinds after the limit tripped the kill switch. (The engine trips it: HALTED.)
    """
    limit = limits.daily_loss_limit
    if limit is None:
        return None
    loss = -context.pnl_today()
    if loss <= limit:
        return None
    if context.trading_state is TradingState.REDUCING and only_reduces(
        context.position(order.symbol), order.side, reducing_quantity(order, context)
    ):
        return None
    return Violation(
        "DAILY_LOSS_LIMIT",
        f"today's loss is {plain(loss)} (realised {plain(context.realised_today)}, unrealised "
        f"{plain(context.unrealised_pnl())}), beyond the daily loss limit of {plain(limit)}",
    )
