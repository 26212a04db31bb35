"""Plain records the store returns besides the domain objects."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, NamedTuple

from services.domain import TradingState


class TradingStateRecord(NamedTuple):
    """The kill switch of one scope; ``updated_time`` is None while never set."""

    state: TradingState
    reason: str
    operator: str
    updated_time: dt.datetime | None


class TradingStateChange(NamedTuple):
    """One entry of the trading-state audit trail."""

    id: int
    scope: str
    from_state: TradingState | None
    to_state: TradingState
    operator: str
    reason: str
    event_time: dt.datetime


@dataclasses.dataclass(frozen=True)
class ExecutionAnomaly:
    """A venue report that was refused rather than applied (see ``AnomalyRepository``)."""

    id: int
    kind: str
    venue: str
    order_id: str | None
    detail: str
    payload: dict[str, Any] | None
    observed_time: dt.datetime
