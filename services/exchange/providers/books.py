"""Order books for the simulated venues, and the price sources that move them.

A :class:`Book` is a list of price levels per side. Paper mode builds one around a
price from a :class:`PriceSource` (static, a seeded random walk, or a recorded file),
shaped by a :class:`BookShape` (spread, number of levels, quantity per level); shadow
mode reads the venue's real book. Walking a book (:func:`walk`) gives the slippage of an
order that takes liquidity. Everything here is deterministic for its inputs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

from services.domain import Side
from services.domain.errors import InvalidOrder

BPS = Decimal("0.0001")


@dataclasses.dataclass(frozen=True)
class Level:
    price: Decimal
    quantity: Decimal | None  # None: unlimited


@dataclasses.dataclass(frozen=True)
class Book:
    symbol: str
    last: Decimal
    bids: tuple[Level, ...]  # best (highest) first
    asks: tuple[Level, ...]  # best (lowest) first

    @property
    def bid(self) -> Decimal:
        return self.bids[0].price if self.bids else self.last

    @property
    def ask(self) -> Decimal:
        return self.asks[0].price if self.asks else self.last

    def opposite(self, side: Side) -> tuple[Level, ...]:
        """The levels an order of ``side`` takes from."""
        return self.asks if side is Side.BUY else self.bids

    def touch(self, side: Side) -> Decimal:
        """The best price an order of ``side`` could take now."""
        return self.ask if side is Side.BUY else self.bid


def walk(
    book: Book, side: Side, quantity: Decimal, limit: Decimal | None = None
) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    """Take up to ``quantity`` from the book, never past ``limit``.

    Returns the (price, quantity) taken per level, best first, and the remainder.
    """
    taken: list[tuple[Decimal, Decimal]] = []
    remaining = quantity
    for level in book.opposite(side):
        if remaining <= 0:
            break
        if limit is not None and (level.price > limit if side is Side.BUY else level.price < limit):
            break
        size = remaining if level.quantity is None else min(remaining, level.quantity)
        if size > 0:
            taken.append((level.price, size))
            remaining -= size
    return taken, remaining


@dataclasses.dataclass(frozen=True)
class BookShape:
    """How paper mode lays out a book around a price.

    The defaults (no spread, one level of unlimited size) fill every marketable order at
    the price itself; a spread, several levels and a finite size per level give slippage
    and partial fills.
    """

    spread_bps: Decimal = Decimal(0)
    levels: int = 1
    level_quantity: Decimal | None = None
    level_step_bps: Decimal = Decimal(1)
    tick: Decimal = Decimal("0.00000001")

    def build(self, symbol: str, price: Decimal) -> Book:
        half = self.spread_bps / 2
        asks, bids = [], []
        for k in range(max(1, self.levels)):
            offset = (half + self.level_step_bps * k) * BPS
            asks.append(Level(_tick(price * (1 + offset), self.tick), self.level_quantity))
            bids.append(Level(_tick(price * (1 - offset), self.tick), self.level_quantity))
        return Book(symbol, price, tuple(bids), tuple(asks))


def _tick(value: Decimal, tick: Decimal) -> Decimal:
    return ((value / tick).to_integral_value(ROUND_HALF_EVEN) * tick).normalize()


class PriceSource(Protocol):
    def symbols(self) -> Iterable[str]: ...

    def current(self, symbol: str) -> Decimal: ...

    def advance(self) -> None: ...


class StaticPrices:
    """Prices that never move (``TESSERA_PRICES``)."""

    def __init__(self, prices: Mapping[str, Decimal]) -> None:
        self.prices = dict(prices)

    def symbols(self) -> Iterable[str]:
        return self.prices.keys()

    def current(self, symbol: str) -> Decimal:
        try:
            return self.prices[symbol]
        except KeyError:
            raise InvalidOrder("symbol", f"no paper price for {symbol}", violation="UNKNOWN_REFERENCE") from None

    def set(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = price

    def advance(self) -> None:
        return None


class RandomWalkPrices(StaticPrices):
    """A geometric random walk per symbol; the same seed gives the same path."""

    def __init__(
        self,
        prices: Mapping[str, Decimal],
        *,
        seed: int,
        volatility: Decimal = Decimal("0.001"),
        tick: Decimal = Decimal("0.01"),
    ) -> None:
        super().__init__(prices)
        self.random = random.Random(seed)
        self.volatility = float(volatility)
        self.tick = tick

    def advance(self) -> None:
        for symbol in sorted(self.prices):
            step = Decimal(repr(round(self.random.gauss(0.0, self.volatility), 10)))
            moved = _tick(self.prices[symbol] * (1 + step), self.tick)
            self.prices[symbol] = max(moved, self.tick)


class RecordedPrices(StaticPrices):
    """Prices replayed from a file, one snapshot per step; the last one holds at the end.

    JSON: a list of ``{"SYMBOL": "price", ...}`` snapshots. CSV: rows ``step,symbol,price``
    (a header row is allowed); rows with the same step form one snapshot.
    """

    def __init__(self, snapshots: Sequence[Mapping[str, Decimal]]) -> None:
        if not snapshots:
            raise ValueError("a recorded price file needs at least one snapshot")
        self.snapshots = [dict(s) for s in snapshots]
        self.position = 0
        merged: dict[str, Decimal] = {}
        for snapshot in self.snapshots:
            for symbol, price in snapshot.items():
                merged.setdefault(symbol, price)
        merged.update(self.snapshots[0])
        super().__init__(merged)

    @classmethod
    def from_file(cls, path: str | Path) -> "RecordedPrices":
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            return cls([{str(k).upper(): Decimal(str(v)) for k, v in snap.items()} for snap in raw])
        steps: dict[str, dict[str, Decimal]] = {}
        for row in csv.reader(text.splitlines()):
            if not row or row[0].strip().lower() == "step" or row[0].startswith("#"):
                continue
            step, symbol, price = (cell.strip() for cell in row[:3])
            steps.setdefault(step, {})[symbol.upper()] = Decimal(price)
        return cls(list(steps.values()))

    def advance(self) -> None:
        if self.position + 1 < len(self.snapshots):
            self.position += 1
            self.prices.update(self.snapshots[self.position])


class PriceBooks:
    """Paper books: a :class:`BookShape` around each price of a :class:`PriceSource`."""

    def __init__(self, prices: PriceSource, shape: BookShape = BookShape()) -> None:
        self.prices = prices
        self.shape = shape
        self._built: dict[str, tuple[Decimal, Book]] = {}  # symbol -> (price, its book)

    async def book(self, symbol: str, market_type: object = None) -> Book:
        """The book around the symbol's current price (built again when the price moves)."""
        price = self.prices.current(symbol)
        built = self._built.get(symbol)
        if built is None or built[0] != price:
            built = self._built[symbol] = (price, self.shape.build(symbol, price))
        return built[1]

    async def advance(self) -> None:
        self.prices.advance()
