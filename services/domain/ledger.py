"""The position ledger: what an account holds, built from its own fills, never from orders.

A position is a signed net quantity (long > 0, short < 0) in one symbol of one account
and one market type (a spot holding and a futures position in the same symbol are two
positions: they are different instruments, margined and settled apart), with the cost basis of what is open (``|quantity| x average entry price``), the realised
PnL of what was closed and the commissions paid, all in the symbol's quote currency.
:func:`apply_fill` is the whole accounting, pure:

* a fill on the side of the position (or from flat) **increases** it: its notional is
  added to the cost basis, so the average entry price becomes the quantity-weighted
  average of the old and the new;
* a fill against it **reduces** it: the reduced part takes its share of the cost basis
  with it and realises ``proceeds - cost`` (``cost - proceeds`` for a short); the
  average entry price of the rest does not change;
* reduced to exactly zero it is **closed** (flat: no cost, no average entry price);
* a fill larger than the position **flips** it: the position is closed as above and the
  remainder opens a new position on the other side at the fill price.

A commission counts against PnL only when it is in the quote currency
(:func:`fee_in_quote`: its asset is the symbol's quote asset, or the venue did not say,
as the paper venue and Aster's futures charge USDT): it is added to ``commission``, and
``realised_pnl`` is gross of it, :attr:`Position.net_realised_pnl` net. A fee charged in
another asset (a spot buy's base asset, a fee token such as BNB or ASTER) has no price
in the quote currency here: it is left out of ``commission`` and the net PnL (and so of
the daily loss limit) rather than added as if it were USDT. ``fees`` keeps every fee by
the asset the venue charged it in (``""`` when the venue did not say), counted or not,
so each is reported as what it is. Arithmetic is exact (100 significant digits) but for
two roundings, half-even to 18 decimal places, the store's scale: a fill's notional
(quantity x price) when it has more decimals, and the share of the cost basis a partial
reduction takes (the one division). Because a close always takes the whole remaining
cost, the realised PnL of a complete round trip is exactly the difference of its
notionals, whatever the partial steps were.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import ROUND_HALF_EVEN, Context, Decimal

from .enums import MarketType, Side

ZERO = Decimal(0)
#: The store's scale: 18 decimal places.
SCALE = Decimal(1).scaleb(-18)
_WIDE = Context(prec=100)


def to_scale(value: Decimal) -> Decimal:
    """``value`` rounded half-even to 18 places, in plain form (no exponent, no -0)."""
    rounded = value.quantize(SCALE, rounding=ROUND_HALF_EVEN, context=_WIDE).normalize(_WIDE)
    if rounded.as_tuple().exponent > 0:  # type: ignore[operator]
        rounded = rounded.quantize(Decimal(1), context=_WIDE)
    return _WIDE.plus(rounded)


#: The quote assets a symbol's name is read with, in the order they are tried ("BUSD"
#: before "USD", which ends it).
QUOTE_ASSETS = ("USDT", "USDC", "BUSD", "USD", "BTC", "ETH")


def quote_asset(symbol: str) -> str:
    """The quote asset of ``symbol`` read from its name ("BTCUSDT": "USDT", "ETHBTC":
    "BTC"); "USDT" when none of :data:`QUOTE_ASSETS` ends it. The paper venue charges its
    fees in it."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and symbol != quote:
            return quote
    return "USDT"


def fee_in_quote(symbol: str, asset: str | None) -> bool:
    """True when a fee charged in ``asset`` is in ``symbol``'s quote currency, so it counts
    against the PnL: the venue did not say (empty), or ``asset`` is :func:`quote_asset`,
    or the symbol's name is a base followed by ``asset`` (a quote asset that list lacks,
    "USD1" of "BTCUSD1"). A fee in the base asset ("BTC" of "BTCUSDT") or in a fee token
    ("BNB", "ASTER" of "ASTERUSDT") is not."""
    if not asset:
        return True
    return asset == quote_asset(symbol) or (len(asset) < len(symbol) and symbol.endswith(asset))


def add_fee(fees: tuple[tuple[str, Decimal], ...], asset: str | None, amount: Decimal
            ) -> tuple[tuple[str, Decimal], ...]:
    """``fees`` (sorted ``(asset, total)`` pairs) with ``amount`` of ``asset`` added."""
    if not amount:
        return fees
    key = asset or ""
    totals = dict(fees)
    totals[key] = _WIDE.add(totals.get(key, ZERO), amount)
    return tuple(sorted(totals.items()))


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """One account's net position in one symbol of one market type; ``version`` is 0
    until stored. ``fees``: the commissions paid, by asset, as sorted ``(asset, total)``.

    Slotted: a Risk replica holds one per position of every account it owns (no
    per-instance ``__dict__``; see docs/benchmarks.md, "Risk's memory")."""

    account: str
    symbol: str
    quantity: Decimal = ZERO
    cost_basis: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    commission: Decimal = ZERO
    updated_time: dt.datetime | None = None
    version: int = 0
    market_type: MarketType = MarketType.FUTURES
    fees: tuple[tuple[str, Decimal], ...] = ()

    @property
    def key(self) -> tuple[MarketType, str]:
        """What an account's positions are keyed by: market type and symbol."""
        return self.market_type, self.symbol

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def average_entry_price(self) -> Decimal | None:
        """The cost basis per unit held (rounded to 18 places); None when flat."""
        if self.is_flat:
            return None
        return to_scale(_WIDE.divide(self.cost_basis, abs(self.quantity)))

    @property
    def net_realised_pnl(self) -> Decimal:
        """Realised PnL after commissions."""
        return _WIDE.subtract(self.realised_pnl, self.commission)

    def unrealised_pnl(self, mark: Decimal) -> Decimal:
        """What closing the whole position at ``mark`` would realise (0 when flat)."""
        if self.is_flat:
            return ZERO
        value = _WIDE.multiply(self.quantity, mark)
        return _WIDE.subtract(value, self.cost_basis) if self.quantity > 0 else _WIDE.add(value, self.cost_basis)


@dataclasses.dataclass(frozen=True)
class LedgerUpdate:
    """The result of one fill: the new position, what this fill realised and the
    commission it counted against the PnL (its fee when :func:`fee_in_quote`, else 0)."""

    position: Position
    realised_pnl: Decimal
    commission: Decimal


def apply_fill(
    position: Position,
    side: Side,
    quantity: Decimal,
    price: Decimal,
    commission: Decimal = ZERO,
    at: dt.datetime | None = None,
    commission_asset: str | None = None,
) -> LedgerUpdate:
    """The position after one fill of ``quantity`` at ``price`` on ``side``.

    Raises
    ------
    ValueError
        ``quantity`` or ``price`` is not a positive finite number, or ``commission``
        is not finite.
    """
    if not (quantity.is_finite() and quantity > 0 and price.is_finite() and price > 0):
        raise ValueError(f"a fill needs a positive quantity and price, got {quantity} @ {price}")
    if not commission.is_finite():
        raise ValueError(f"commission must be finite, got {commission}")
    counted = commission if fee_in_quote(position.symbol, commission_asset) else ZERO
    held, cost = position.quantity, position.cost_basis
    new_quantity = _WIDE.add(held, quantity if side is Side.BUY else -quantity)
    realised = ZERO
    if held == 0 or (held > 0) == (side is Side.BUY):
        new_cost = _WIDE.add(cost, to_scale(_WIDE.multiply(quantity, price)))
    else:
        closed = min(quantity, abs(held))
        # A close takes the whole cost basis (exact); a partial reduction its share.
        released = cost if closed == abs(held) else to_scale(_WIDE.divide(_WIDE.multiply(cost, closed), abs(held)))
        proceeds = to_scale(_WIDE.multiply(closed, price))
        realised = _WIDE.subtract(proceeds, released) if held > 0 else _WIDE.subtract(released, proceeds)
        new_cost = _WIDE.subtract(cost, released)
        if new_quantity != 0 and (new_quantity > 0) != (held > 0):  # flipped through zero
            new_cost = to_scale(_WIDE.multiply(abs(new_quantity), price))
    updated = dataclasses.replace(
        position,
        quantity=_WIDE.plus(new_quantity),
        cost_basis=_WIDE.plus(new_cost) if new_quantity != 0 else ZERO,
        realised_pnl=_WIDE.add(position.realised_pnl, realised),
        commission=_WIDE.add(position.commission, counted),
        updated_time=at if at is not None else position.updated_time,
        fees=add_fee(position.fees, commission_asset, commission),
    )
    return LedgerUpdate(updated, _WIDE.plus(realised), counted)


def only_reduces(position_quantity: Decimal, side: Side, quantity: Decimal) -> bool:
    """True when an order of ``quantity`` on ``side`` can only reduce the position: the
    position is not flat, the side is against it and the quantity does not exceed it
    (so it never opens from flat and never flips through zero)."""
    if position_quantity == 0 or quantity <= 0:
        return False
    against = (position_quantity > 0) != (side is Side.BUY)
    return against and quantity <= abs(position_quantity)


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One fill as the ledger applied it (at most one per venue trade)."""

    account: str
    symbol: str
    venue: str
    trade_id: str
    side: Side
    quantity: Decimal
    price: Decimal
    realised_pnl: Decimal
    commission: Decimal
    position_quantity: Decimal
    trade_time: dt.datetime
    applied_time: dt.datetime
    market_type: MarketType = MarketType.FUTURES
    commission_asset: str | None = None
