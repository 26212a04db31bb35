"""When a conditional order triggers, as Aster's New Order defines it (the paper venue and
the venue simulator both trigger orders by these rules).

- ``STOP``, ``STOP_MARKET``: a BUY when the price is at or above the stop price, a SELL
  when it is at or below;
- ``TAKE_PROFIT``, ``TAKE_PROFIT_MARKET``: the other way (a BUY at or below, a SELL at or
  above);
- ``TRAILING_STOP_MARKET``: a BUY once the lowest price since it activated (at its
  activation price or below, or at once without one) times ``1 + callbackRate %`` is
  reached; a SELL once the price is at or below the highest since activation times
  ``1 - callbackRate %``.
"""

from __future__ import annotations

from decimal import Decimal


def reaches_stop(price: Decimal, stop: Decimal, *, buy: bool, take_profit: bool) -> bool:
    """Whether a stop (or, ``take_profit``, a take-profit) order triggers at ``price``."""
    rises = buy != take_profit
    return price >= stop if rises else price <= stop


def trail(extreme: Decimal | None, price: Decimal, *, buy: bool, activation: Decimal | None,
          callback_rate: Decimal) -> tuple[Decimal | None, bool]:
    """One step of a trailing stop at ``price``: its extreme since activation (None while
    not active) and whether it triggers."""
    if extreme is None:
        if activation is not None and (price > activation if buy else price < activation):
            return None, False
        extreme = price
    else:
        extreme = min(extreme, price) if buy else max(extreme, price)
    back = extreme * callback_rate / 100
    return extreme, (price >= extreme + back if buy else price <= extreme - back)
