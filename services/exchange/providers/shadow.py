"""Shadow execution: the paper fill model against the venue's real book; never an order.

Books come from the venue's public depth endpoint (unsigned GETs only). The transport
is built public-only, so a signed or trading request is refused before anything is
sent; nothing in this provider builds one anyway. Resting orders meet a fresh book on
every poll.
"""

from __future__ import annotations

from decimal import Decimal

from services.domain import MarketType

from ..aster import requests as rq
from ..aster.transport import AsterTransport
from .books import Book, Level
from .simulated import PaperFees, SimulatedVenue


class VenueBooks:
    """The venue's real order book, read through a public-only transport."""

    def __init__(self, transport: AsterTransport, *, depth: int = 20) -> None:
        if not transport.public_only:
            raise ValueError("shadow mode needs a public-only (read-only) venue transport")
        self.transport = transport
        self.depth = depth

    async def book(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Book:
        payload = await self.transport.send(rq.prepare_depth(symbol, market_type, self.depth))
        bids = tuple(Level(Decimal(str(p)), Decimal(str(q))) for p, q in payload.get("bids", ()))
        asks = tuple(Level(Decimal(str(p)), Decimal(str(q))) for p, q in payload.get("asks", ()))
        if bids and asks:
            last = (bids[0].price + asks[0].price) / 2
        else:
            last = (bids or asks)[0].price if (bids or asks) else Decimal(0)
        return Book(symbol, last, bids, asks)

    async def advance(self) -> None:
        return None  # the venue moves by itself; every book read is fresh


class ShadowProvider(SimulatedVenue):
    mode = "SHADOW"

    def __init__(self, transport: AsterTransport, fees: PaperFees = PaperFees(), *, poll_seconds: float = 1.0) -> None:
        super().__init__(VenueBooks(transport), fees, tick_seconds=poll_seconds, id_prefix="shadow")
        self.transport = transport

    async def close(self) -> None:
        await super().close()
        await self.transport.close()
