"""Reference prices: the market price pre-trade risk measures orders and positions at.

Risk depends on the small :class:`PriceSource` interface only. Today's source is
:class:`StaticPrices` (``TESSERA_PRICES``, the same static prices the paper exchange
fills at); a live source (venue tickers, a price feed) plugs in by implementing
``reference_price``.

Whatever a source answers, a decision measures only a usable price: a ``Decimal`` that
is finite and positive. Anything else (zero, a negative price, NaN, infinity, a binary
float, text) is taken for no price at all, so the order is refused with
``NO_REFERENCE_PRICE`` and a position is valued at its entry price, never at an invented
price (a zero would make any market order's notional zero).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Iterable, Mapping, Protocol

log = logging.getLogger(__name__)


class PriceSource(Protocol):
    def reference_price(self, symbol: str) -> Decimal | None:
        """The symbol's current reference price, or None when there is none."""


class StaticPrices:
    """A fixed price per symbol."""

    def __init__(self, prices: Mapping[str, Decimal]) -> None:
        self._prices = dict(prices)

    def reference_price(self, symbol: str) -> Decimal | None:
        return self._prices.get(symbol)


def usable_price(price: Any) -> bool:
    """True for a price a decision can measure at: a finite, positive ``Decimal``."""
    return isinstance(price, Decimal) and price.is_finite() and price > 0


def reference_prices(source: PriceSource, symbols: Iterable[str]) -> dict[str, Decimal]:
    """The reference price of each symbol that has a usable one (see :func:`usable_price`)."""
    prices = {}
    for symbol in set(symbols):
        price = source.reference_price(symbol)
        if price is None:
            continue
        if usable_price(price):
            prices[symbol] = price
        else:
            log.warning("reference price of %s is not a positive finite decimal (%r): taken for none", symbol, price)
    return prices
