"""What pre-trade risk knows about an order's account: :class:`RiskContext`.

The Risk replica that owns the account builds it from memory (:mod:`services.risk.book`)
when the order is decided: the ledger, the account's working orders, its recent order
count and today's PnL. The checks themselves (:mod:`services.risk.checks`) stay pure
functions of the order, the limits and this context.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from decimal import Context, Decimal
from typing import Mapping

from services.domain import MarketType, TradingState
from services.domain.ledger import ZERO, Position

_WIDE = Context(prec=100)


@dataclasses.dataclass(frozen=True)
class RiskContext:
    """The account's state when an order is checked (the defaults: a fresh account)."""

    #: The state governing the order's symbol: the stricter of the global one and the
    #: symbol's own.
    trading_state: TradingState = TradingState.ACTIVE
    #: The account's ledger positions by (market type, symbol) (flat ones too).
    positions: Mapping[tuple[MarketType, str], Position] = dataclasses.field(default_factory=dict)
    #: Reference prices by symbol: the order's and those of the account's positions.
    reference_prices: Mapping[str, Decimal] = dataclasses.field(default_factory=dict)
    #: How many of the account's orders may still trade (APPROVED with a live token, or open).
    open_orders: int = 0
    #: What the account's working orders in the order's symbol and market type, on its
    #: side, may still fill (the position limit counts it, and REDUCING).
    working_same_side: Decimal = ZERO
    #: The account's orders approved inside the throttle's window, this one not included.
    recent_orders: int = 0
    #: Realised PnL net of commissions of the fills since the last daily reset.
    realised_today: Decimal = ZERO
    #: The order's market type: the per-symbol checks (position, REDUCING) read the
    #: account's position in this market; exposure and PnL count every market.
    market_type: MarketType = MarketType.FUTURES

    def position(self, symbol: str) -> Decimal:
        """The net quantity held in ``symbol`` in the order's market type."""
        held = self.positions.get((self.market_type, symbol))
        return ZERO if held is None else held.quantity

    def valuation_price(self, key: tuple[MarketType, str]) -> Decimal | None:
        """The symbol's reference price, else the position's own average entry price."""
        price = self.reference_prices.get(key[1])
        if price is None and key in self.positions:
            price = self.positions[key].average_entry_price
        return price

    def _exposure(self, key: tuple[MarketType, str], held: Decimal) -> Decimal:
        price = self.valuation_price(key)
        return _WIDE.multiply(abs(held), price) if held and price is not None else ZERO

    @functools.cached_property
    def _gross_now(self) -> Decimal:
        total = ZERO
        for key, position in self.positions.items():
            total = _WIDE.add(total, self._exposure(key, position.quantity))
        return total

    def gross_exposure(self, symbol: str | None = None, quantity: Decimal | None = None) -> Decimal:
        """Sum of |quantity| x valuation price over the positions (every market type),
        with ``symbol`` in the order's market type held at ``quantity`` instead when given
        (a position after an order). Exact: the sum of the positions as they are is made
        once per context."""
        if symbol is None or quantity is None:
            return self._gross_now
        key = (self.market_type, symbol)
        return _WIDE.add(_WIDE.subtract(self._gross_now, self._exposure(key, self.position(symbol))),
                         self._exposure(key, quantity))

    def unrealised_pnl(self) -> Decimal:
        """Of every open position at its valuation price."""
        return self._unrealised

    @functools.cached_property
    def _unrealised(self) -> Decimal:
        total = ZERO
        for key, position in self.positions.items():
            price = self.valuation_price(key)
            if price is not None:
                total = _WIDE.add(total, position.unrealised_pnl(price))
        return total

    def equity(self, capital: Decimal) -> Decimal:
        """Capital plus all realised PnL net of commissions plus unrealised PnL."""
        total = capital
        for position in self.positions.values():
            total = _WIDE.add(total, position.net_realised_pnl)
        return _WIDE.add(total, self.unrealised_pnl())

    def pnl_today(self) -> Decimal:
        """Realised since the daily reset plus unrealised now."""
        return _WIDE.add(self.realised_today, self.unrealised_pnl())


def last_reset(now: dt.datetime, reset_time: dt.time) -> dt.datetime:
    """The latest instant at or before ``now`` whose UTC time of day is ``reset_time``."""
    now = now.astimezone(dt.timezone.utc)
    reset = dt.datetime.combine(now.date(), reset_time.replace(tzinfo=None), tzinfo=dt.timezone.utc)
    return reset if reset <= now else reset - dt.timedelta(days=1)


_DAY = dt.timedelta(days=1)


class DailyReset:
    """:func:`last_reset` for one reset time, remembered for the day it holds (every
    decision and every fill asks for it)."""

    __slots__ = ("reset_time", "_since")

    def __init__(self, reset_time: dt.time) -> None:
        self.reset_time = reset_time
        self._since: dt.datetime | None = None

    def at(self, now: dt.datetime) -> dt.datetime:
        since = self._since
        if since is not None and since <= now < since + _DAY:
            return since
        since = self._since = last_reset(now, self.reset_time)
        return since
