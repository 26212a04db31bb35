"""Paper execution: simulated fills from a price source, with fees.

``simulate_paper_fill`` is the seed's pure function: no I/O, deterministic for its
inputs. :class:`PaperProvider` keeps resting orders and answers cancels.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from decimal import Decimal
from typing import Mapping

from services.domain import LiquiditySide, Order, OrderStatus, OrderType, Side, TimeInForce, utcnow
from services.domain.errors import InvalidOrder, OrderNotFound
from services.domain.execution import ExecutionReport, Fill

VENUE_PREFIX = "paper"


@dataclasses.dataclass(frozen=True)
class PaperFees:
    maker: Decimal = Decimal("0.0002")
    taker: Decimal = Decimal("0.0004")


def quote_asset(symbol: str) -> str:
    for quote in ("USDT", "USDC", "BUSD", "USD", "BTC", "ETH"):
        if symbol.endswith(quote) and symbol != quote:
            return quote
    return "USDT"


def is_marketable(order: Order, market_price: Decimal) -> bool:
    """Would the order trade against the market right now?"""
    if order.order_type.needs_stop_price:
        assert order.stop_price is not None
        triggered = market_price >= order.stop_price if order.side is Side.BUY else market_price <= order.stop_price
        if not triggered:
            return False
    if order.price is None:
        return True
    return order.price >= market_price if order.side is Side.BUY else order.price <= market_price


def simulate_paper_fill(order: Order, price: Decimal, fees: PaperFees = PaperFees()) -> Fill | None:
    """The fill a paper venue gives ``order`` at market ``price``, or None if it rests.

    A marketable order takes liquidity at the market price (a limit order never
    trades through its limit); the commission is the taker fee on the notional, in
    the symbol's quote asset.
    """
    remaining = order.remaining_quantity
    if remaining <= 0 or not is_marketable(order, price):
        return None
    commission = (remaining * price * fees.taker).quantize(Decimal("1e-8")).normalize()
    return Fill(
        trade_id=f"{VENUE_PREFIX}-{uuid.uuid4().hex}",
        quantity=remaining,
        price=price,
        commission=commission,
        commission_asset=quote_asset(order.symbol),
        liquidity_side=LiquiditySide.TAKER,
    )


class PaperProvider:
    """A paper venue on a static price source."""

    mode = "PAPER"

    def __init__(self, prices: Mapping[str, Decimal], fees: PaperFees = PaperFees()) -> None:
        self.prices = dict(prices)
        self.fees = fees
        self._resting: dict[str, Order] = {}
        self._remote_ids = itertools.count(1)

    def price(self, symbol: str) -> Decimal:
        try:
            return self.prices[symbol]
        except KeyError:
            raise InvalidOrder("symbol", f"no paper price for {symbol}") from None

    def _report(self, order: Order, status: OrderStatus, *, reason: str = "", fill: Fill | None = None) -> ExecutionReport:
        return ExecutionReport(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            venue=order.venue,
            account=order.account,
            symbol=order.symbol,
            side=order.side,
            order_status=status,
            transact_time=utcnow(),
            remote_order_id=order.remote_order_id,
            fill=fill,
            cumulative_quantity=order.filled_quantity + (fill.quantity if fill else 0),
            reason=reason,
        )

    def execute(self, order: Order) -> list[ExecutionReport]:
        price = self.price(order.symbol)
        order.remote_order_id = f"{VENUE_PREFIX}-{next(self._remote_ids)}"
        marketable = is_marketable(order, price)
        if order.post_only and marketable:
            return [self._report(order, OrderStatus.REJECTED, reason="POST_ONLY_WOULD_TAKE")]
        fill = simulate_paper_fill(order, price, self.fees)
        if fill is not None:
            return [self._report(order, OrderStatus.FILLED, fill=fill)]
        if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) or order.order_type is OrderType.MARKET:
            return [self._report(order, OrderStatus.EXPIRED, reason=f"{order.time_in_force.value}_NOT_MARKETABLE")]
        self._resting[order.order_id] = order
        return [self._report(order, OrderStatus.ACCEPTED)]

    def cancel(self, order_id: str) -> ExecutionReport:
        order = self._resting.pop(order_id, None)
        if order is None:
            raise OrderNotFound(f"no open paper order {order_id}", reason="UNKNOWN_ORDER")
        return self._report(order, OrderStatus.CANCELLED, reason="cancelled")

    def cancel_all(self, symbol: str | None = None) -> list[ExecutionReport]:
        chosen = [oid for oid, order in self._resting.items() if symbol in (None, order.symbol)]
        return [self.cancel(order_id) for order_id in chosen]
