"""Positions and PnL for ``ListPositions`` / ``GetPosition``: the ledger, valued.

Any Risk replica answers, from the ledger in the store (:mod:`services.store.positions`),
which the replica owning an account writes from the fills it applied, every
``flush_seconds`` (1 s). Reading the store rather than the owner's book lets every
replica answer for every account, and list many accounts at once, without forwarding;
a query may lag the owner's memory by that flush interval, never the decisions (those
are made from memory). Unrealised PnL is at the reference prices of the price source
Risk's checks use (:mod:`services.risk.prices`), so a position reads as Risk sees it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from decimal import Context, Decimal
from typing import Any

from services.common import convert
from services.domain import MarketType
from services.domain.errors import InvalidOrder
from services.domain.ledger import Position
from tessera.risk.v1 import risk_pb2 as pb

from .prices import PriceSource, usable_price

_WIDE = Context(prec=100)
MAX_PAGE = 1000


@dataclasses.dataclass(frozen=True)
class Valued:
    """A position with its mark: the reference price (None without one) and the PnL at it."""

    position: Position
    mark: Decimal | None

    @property
    def unrealised_pnl(self) -> Decimal | None:
        return None if self.mark is None else self.position.unrealised_pnl(self.mark)


async def list_positions(db: Any, *, account: str | None, market_type: MarketType | None, symbol: str | None,
                         open_only: bool, after: tuple[str, str, str] | None, limit: int) -> list[Position]:
    """A page of the ledger's positions (the store's; see the module docstring)."""
    def read(uow: Any) -> list[Position]:
        found: list[Position] = []
        cursor = after
        while len(found) < limit:  # flat ones left out page by page, so a page is never short for it
            chunk = uow.positions.list(account=account, market_type=market_type, symbol=symbol, after=cursor,
                                       limit=limit)
            found += [p for p in chunk if not (open_only and p.is_flat)]
            if len(chunk) < limit:
                break
            last = chunk[-1]
            cursor = (last.account, last.symbol, last.market_type.value)
        return found[:limit]

    return await db.read(read)


async def get_position(db: Any, account: str, market_type: MarketType, symbol: str) -> Position:
    return await db.read(lambda uow: uow.positions.get(account, symbol, market_type))


def value(positions: list[Position], prices: PriceSource) -> list[Valued]:
    marks: dict[str, Decimal | None] = {}
    for position in positions:
        if position.symbol not in marks:
            mark = prices.reference_price(position.symbol)
            marks[position.symbol] = mark if usable_price(mark) else None  # as a decision takes it
    return [Valued(p, marks[p.symbol]) for p in positions]


def to_proto(valued: Valued) -> pb.Position:
    position = valued.position
    unrealised = valued.unrealised_pnl
    return pb.Position(
        account=position.account,
        market_type=convert.enum_to_proto(position.market_type),
        symbol=position.symbol,
        quantity=convert.format_decimal(position.quantity),
        average_entry_price=convert.format_decimal(position.average_entry_price),
        cost_basis=convert.format_decimal(position.cost_basis),
        realised_pnl=convert.format_decimal(position.realised_pnl),
        commission=convert.format_decimal(position.commission),
        net_realised_pnl=convert.format_decimal(position.net_realised_pnl),
        mark_price=convert.format_decimal(valued.mark),
        unrealised_pnl=convert.format_decimal(unrealised),
        fees=[pb.Fee(asset=asset, amount=convert.format_decimal(amount)) for asset, amount in position.fees],
        updated_time=convert.timestamp_to_proto(position.updated_time),
    )


def page_size(value: int) -> int:
    if value < 0 or value > MAX_PAGE:
        raise InvalidOrder("page_size", f"must be 0 (100) to {MAX_PAGE}, got {value}")
    return value or 100


def page_token(position: Position) -> str:
    """Where the next page starts: after this position, in listing order."""
    key = json.dumps([position.account, position.symbol, position.market_type.value], separators=(",", ":"))
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def after_token(token: str) -> tuple[str, str, str] | None:
    """The (account, symbol, market type) a page token continues after; None for the first page.

    Raises
    ------
    InvalidOrder
        Not a token this service made.
    """
    if not token:
        return None
    if len(token) > 512:
        raise InvalidOrder("page_token", "longer than 512 characters")
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        account, symbol, market = key
        MarketType(market)
        if not all(isinstance(part, str) for part in key):
            raise ValueError(token)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidOrder("page_token", "not a next_page_token of ListPositions") from None
    return account, symbol, market


__all__ = ["MAX_PAGE", "Valued", "after_token", "get_position", "list_positions", "page_size", "page_token",
           "to_proto", "value"]
