"""What a venue says about an order: acknowledgements, fills, cancels, refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

from .enums import LiquiditySide, MarketType, OrderStatus, Side


@dataclasses.dataclass
class Fill:
    trade_id: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    commission_asset: str | None
    liquidity_side: LiquiditySide


@dataclasses.dataclass
class ExecutionReport:
    """One venue message about one order; ``fill`` is set when it carries a trade."""

    order_id: str
    client_order_id: str
    venue: str
    account: str
    symbol: str
    side: Side
    order_status: OrderStatus
    transact_time: dt.datetime
    remote_order_id: str | None = None
    fill: Fill | None = None
    cumulative_quantity: Decimal | None = None
    reason: str = ""
    raw_payload: dict[str, Any] | None = None
    sequence: int = 0
    #: The venue payload this report came from, as exact JSON text (integers stay
    #: integers): a request and its answer, a stream message, a trade of a REST answer.
    raw_json: str | None = None


@dataclasses.dataclass(frozen=True)
class CancelFailure:
    """What a venue-wide cancel (``allOpenOrders``, the kill switch) could not cancel:
    one account's open orders it could not list (``symbol`` empty: every symbol of that
    account and market is unknown), or one symbol whose cancel the venue did not carry
    out. ``account`` is the Tessera account ("" for the single environment account, or
    for an Exchange that could not be reached at all); ``reason`` the stable code of the
    error (``VENUE_UNAUTHORIZED``, ``VENUE_UNAVAILABLE``, ...); ``message`` its text for
    people (never a credential)."""

    account: str
    market_type: MarketType | None
    symbol: str
    reason: str
    message: str

    @classmethod
    def of(cls, error: BaseException, *, account: str | None, market_type: MarketType | None,
           symbol: str = "") -> "CancelFailure":
        """The failure ``error`` caused, by its reason code (its type's name without one)."""
        reason = str(getattr(error, "reason", "") or type(error).__name__)
        return cls(account or "", market_type, symbol, reason, str(error)[:500])

    def describe(self) -> str:
        """``desk-a FUTURES BTCUSDT: VENUE_UNAUTHORIZED`` (``-`` for no account or market,
        ``(every symbol)`` when the account's open orders were not listed)."""
        market = self.market_type.value if self.market_type is not None else "-"
        return f"{self.account or '-'} {market} {self.symbol or '(every symbol)'}: {self.reason}"
