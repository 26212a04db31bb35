"""What the live provider keeps about venue accounts and the orders it follows.

:class:`AccountSession`: one venue account's credentials, settings (leverage, margin
mode, position mode), trade cursors and user-data streams. :class:`Tracked`: one order
followed at the venue until everything about it is known, with the trade ids already
reported (each is reported once, whichever path brings it first) and the stream reports
held while its placement is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any, Callable

from services.domain import MarginMode, MarketType, OrderStatus
from services.domain.execution import ExecutionReport

from ..aster.credentials import VenueCredentials
from ..aster.user_stream import UserDataStream
from ..venue import OrderRef

#: The venue's order statuses in Tessera's terms.
VENUE_STATUSES = {
    "NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
FINAL = frozenset({"FILLED", "CANCELED", "EXPIRED", "REJECTED"})
ENDED = ("CANCELED", "EXPIRED", "REJECTED")
TRADE_PAGE = 1000
#: How far before sending an order its trades are looked for (clock skew, venue latency).
TRADE_LOOKBACK_MS = 5000
CredentialsFor = Callable[[str], "VenueCredentials | None"]


def _ms(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value) / 1000, dt.timezone.utc)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class VenueSettings:
    """What the venue says about an account's futures settings."""

    hedge_mode: bool
    leverage: dict[str, int]
    margin_modes: dict[str, MarginMode]


class AccountSession:
    """One venue account as this process knows it: credentials, settings, cursors, streams."""

    def __init__(self, key: str, credentials: VenueCredentials | None) -> None:
        self.key = key
        self.credentials = credentials
        self.leverage: dict[str, int] = {}
        self.margin_modes: dict[str, MarginMode] = {}
        self.hedge_mode = False
        #: True once the venue's settings were read (load_settings).
        self.settings_loaded = False
        #: The read of them in flight, shared by whoever asks meanwhile (read_settings).
        self.settings_read: "asyncio.Future[Any] | None" = None
        self.cursors: dict[tuple[MarketType, str], int] = {}
        self.streams: dict[MarketType, UserDataStream] = {}

    def streaming(self, market: MarketType) -> bool:
        stream = self.streams.get(market)
        return stream is not None and stream.connected


@dataclasses.dataclass
class Tracked:
    """An order this process follows at the venue until everything about it is known."""

    ref: OrderRef
    #: None (or 0 as the venue says it) for an order whose quantity the venue decides.
    quantity: Decimal | None
    venue_order_id: int | None
    session: AccountSession
    since_ms: int | None = None
    seen: set[str] = dataclasses.field(default_factory=set)
    filled: Decimal = Decimal(0)
    venue_status: str = "NEW"
    venue_executed: Decimal = Decimal(0)
    announced: bool = False
    ended: bool = False
    #: While its placement is in flight, stream reports wait here and go out with the
    #: placement's answer, so the answer tells all and each report goes out once.
    inflight: bool = False
    held: list[ExecutionReport] = dataclasses.field(default_factory=list)

    def hold(self, reports: list[ExecutionReport]) -> list[ExecutionReport]:
        """``reports`` to send now, or none while the placement is in flight."""
        if self.inflight:
            self.held += reports
            return []
        return reports

    def release(self) -> list[ExecutionReport]:
        self.inflight = False
        held, self.held = self.held, []
        return held

    @property
    def settled(self) -> bool:
        return self.venue_status in FINAL and self.filled >= self.venue_executed

    @property
    def owes_fills(self) -> bool:
        """The venue executed more than was reported (a fill no stream message brought)."""
        return self.venue_executed > self.filled
