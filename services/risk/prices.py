"""Reference prices: the market price pre-trade risk measures orders and positions at.

Risk depends on the small :class:`PriceSource` interface only. Today's source is
:class:`StaticPrices` (``TESSERA_PRICES``, the same static prices the paper exchange
fills at); a live source (venue tickers, a price feed) plugs in by implementing
``reference_price``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Mapping, Protocol


class PriceSource(Protocol):
    def reference_price(self, symbol: str) -> Decimal | None:
        """The symbol's current reference price, or None when there is none."""


class StaticPrices:
    """A fixed price per symbol."""

    def __init__(self, prices: Mapping[str, Decimal]) -> None:
        self._prices = dict(prices)

    def reference_price(self, symbol: str) -> Decimal | None:
        return self._prices.get(symbol)


def reference_prices(source: PriceSource, symbols: Iterable[str]) -> dict[str, Decimal]:
    """The reference price of each symbol that has one."""
    prices = {}
    for symbol in set(symbols):
        price = source.reference_price(symbol)
        if price is not None:
            prices[symbol] = price
    return prices
