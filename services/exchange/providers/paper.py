"""Paper execution: simulated fills from a price source, with fees, slippage and partial fills.

``simulate_paper_fill`` is the seed's pure function: no I/O, deterministic for its
inputs (a whole order at one price). :class:`PaperProvider` is the paper venue: the
fill model of :mod:`.simulated` on books built from a price source (static, a seeded
random walk, or a recorded file), see :mod:`.books`.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Mapping

from services.domain import LiquiditySide, Order, Side
from services.domain.execution import Fill

from .books import BookShape, PriceBooks, PriceSource, StaticPrices
from .simulated import PaperFees, SimulatedVenue, commission, quote_asset, stop_triggered

VENUE_PREFIX = "paper"

__all__ = [
    "PaperFees",
    "PaperProvider",
    "is_marketable",
    "quote_asset",
    "simulate_paper_fill",
]


def is_marketable(order: Order, market_price: Decimal) -> bool:
    """Would the order trade against the market right now?"""
    if not stop_triggered(order, market_price):
        return False
    if order.price is None:
        return True
    return order.price >= market_price if order.side is Side.BUY else order.price <= market_price


def simulate_paper_fill(order: Order, price: Decimal, fees: PaperFees = PaperFees()) -> Fill | None:
    """The fill a paper venue gives ``order`` at market ``price``, or None if it rests.

    A marketable order takes liquidity at the market price (a limit order never
    trades through its limit); the commission is the taker fee on the notional, in
    the symbol's quote asset. An order whose quantity the venue decides (close_position,
    quote_order_qty) needs the venue's state: :class:`PaperProvider` fills it.
    """
    remaining = order.remaining_quantity
    if remaining is None or remaining <= 0 or not is_marketable(order, price):
        return None
    return Fill(
        trade_id=f"{VENUE_PREFIX}-{uuid.uuid4().hex}",
        quantity=remaining,
        price=price,
        commission=commission(remaining, price, fees.taker),
        commission_asset=quote_asset(order.symbol),
        liquidity_side=LiquiditySide.TAKER,
    )


class PaperProvider(SimulatedVenue):
    """A paper venue: ``prices`` is a price map (static) or any :class:`PriceSource`."""

    mode = "PAPER"

    def __init__(
        self,
        prices: Mapping[str, Decimal] | PriceSource,
        fees: PaperFees = PaperFees(),
        *,
        shape: BookShape = BookShape(),
        latency_seconds: float = 0.0,
        tick_seconds: float = 0.0,
    ) -> None:
        source = StaticPrices(prices) if isinstance(prices, Mapping) else prices
        self.source = source
        super().__init__(
            PriceBooks(source, shape),
            fees,
            latency_seconds=latency_seconds,
            tick_seconds=tick_seconds,
            id_prefix=VENUE_PREFIX,
        )
