"""The venue's rate limits: request weight per host (IP), order counts per account.

Aster's docs ("LIMITS"): ``exchangeInfo.rateLimits`` lists ``REQUEST_WEIGHT`` (per IP,
e.g. 2400 a minute on futures, 6000 on spot) and ``ORDERS`` limits (per account, e.g.
1200 a minute, or 300 per 10 seconds on spot). Every answer carries
``X-MBX-USED-WEIGHT-(intervalNum)(intervalLetter)`` with the IP's used weight, and every
successful order answer ``X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter)`` with the
account's order count. A 429 or 418 carries ``Retry-After`` in seconds.

:class:`WeightGate` keeps one host's weight budget and the backoff after a refusal;
:class:`OrderCountGate` keeps one account's order counts, so an order that would pass
a limit is refused here (``RESOURCE_EXHAUSTED``) instead of at the venue.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, Mapping

from .errors import VenueRateLimited

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
_INTERVAL_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_INTERVAL_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """One element of ``exchangeInfo.rateLimits``."""

    kind: str  # REQUEST_WEIGHT | ORDERS | RAW_REQUESTS
    interval: str
    interval_num: int
    limit: int

    @property
    def seconds(self) -> int:
        return _INTERVAL_SECONDS.get(self.interval, 60) * self.interval_num

    @property
    def header_suffix(self) -> str:
        """``1M``, ``10S``: the end of the header naming this window."""
        return f"{self.interval_num}{_INTERVAL_LETTER.get(self.interval, 'M')}"


def parse_rate_limits(payload: Mapping[str, Any]) -> list[RateLimit]:
    limits = []
    for item in payload.get("rateLimits", ()) or ():
        try:
            limits.append(RateLimit(str(item["rateLimitType"]), str(item.get("interval", "MINUTE")),
                                    int(item.get("intervalNum", 1)), int(item["limit"])))
        except (KeyError, TypeError, ValueError):
            continue
    return limits


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name[:-1] + name[-1].lower())
    return value


#: The share of a minute's request-weight budget market data a caller asked for may use
#: (:attr:`~services.exchange.aster.requests.VenueRequest.market_data`): the rest is kept
#: for the orders, their cancels and the reads that follow them.
MARKET_DATA_SHARE = 0.5


class WeightGate:
    """The request-weight budget of one host (one IP) per minute, and the backoff after a refusal."""

    def __init__(
        self,
        limit: int = 2400,
        *,
        headroom: float = 0.9,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.headroom = headroom
        self.max_wait = max_wait
        self.clock = clock
        self.set_limit(limit)
        self.minute = int(clock() // 60)
        self.used = 0
        self.blocked_until = 0.0
        self.blocked_reason = ""

    def set_limit(self, limit: int) -> None:
        """The venue's published per-minute weight limit (``exchangeInfo.rateLimits``)."""
        self.limit = limit
        self.budget = int(limit * self.headroom)

    def configure(self, limits: Iterable[RateLimit]) -> None:
        for item in limits:
            if item.kind == "REQUEST_WEIGHT" and item.seconds == 60:
                self.set_limit(item.limit)

    def _roll(self) -> None:
        minute = int(self.clock() // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0

    def wait_before(self, weight: int, *, market_data: bool = False) -> float:
        """Seconds to wait before a request of ``weight`` (0: send now).

        Raises
        ------
        VenueRateLimited
            The venue asked for a pause (429/418) that has not passed, or the wait for
            the next minute would exceed ``max_wait``, or (``market_data``) the request
            would pass :data:`MARKET_DATA_SHARE` of the budget: refused, not delayed.
        """
        now = self.clock()
        if now < self.blocked_until:
            raise VenueRateLimited(
                f"backing off after the venue's {self.blocked_reason or 'rate limit'}: "
                f"{self.blocked_until - now:.1f}s left",
                reason=self.blocked_reason or "VENUE_RATE_LIMITED",
                retry_after=self.blocked_until - now,
            )
        self._roll()
        if market_data and self.used + weight > int(self.budget * MARKET_DATA_SHARE):
            raise VenueRateLimited(
                f"market data refused: {self.used} of this minute's request weight budget of {self.budget} is used, "
                f"and what is left past {MARKET_DATA_SHARE:.0%} of it is kept for orders",
                retry_after=60.0 - (now % 60.0) + 0.05)
        if self.used + weight <= self.budget:
            self.used += weight  # reserve it; the answer's header corrects the count
            return 0.0
        wait = 60.0 - (now % 60.0) + 0.05
        if wait > self.max_wait:
            raise VenueRateLimited(f"request weight budget of {self.budget}/min used up", retry_after=wait)
        return wait

    def observe(self, headers: Any) -> None:
        value = _header(headers, WEIGHT_HEADER)
        if value is not None:
            try:
                used = int(value)
            except ValueError:
                return
            self._roll()
            self.used = max(self.used, used)  # our reservations may be ahead of the header

    def block(self, seconds: float, reason: str) -> None:
        self.blocked_until = max(self.blocked_until, self.clock() + max(seconds, 0.0))
        self.blocked_reason = reason


class OrderCountGate:
    """One account's order counts per window, against the venue's ORDERS limits.

    Windows are aligned to the clock, as the venue's are; the count in each answer's
    ``X-MBX-ORDER-COUNT-*`` header replaces our own when it is higher.
    """

    def __init__(self, limits: Iterable[RateLimit] = (), *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.limits: list[RateLimit] = []
        self._counts: dict[str, tuple[int, int]] = {}  # header suffix -> (window index, count)
        self.configure(limits)

    def configure(self, limits: Iterable[RateLimit]) -> None:
        self.limits = [item for item in limits if item.kind == "ORDERS" and item.limit > 0]

    def _count(self, item: RateLimit) -> int:
        window = int(self.clock() // item.seconds)
        index, count = self._counts.get(item.header_suffix, (window, 0))
        return count if index == window else 0

    def reserve(self) -> None:
        """Count one order about to be sent.

        Raises
        ------
        VenueRateLimited
            Reason ``VENUE_ORDER_RATE_LIMITED``: one more order would pass a limit;
            ``retry_after`` is the time to the window's end.
        """
        now = self.clock()
        for item in self.limits:
            if self._count(item) + 1 > item.limit:
                left = item.seconds - (now % item.seconds)
                raise VenueRateLimited(
                    f"the account's order limit of {item.limit} per {item.interval_num} {item.interval.lower()} "
                    f"is reached", reason="VENUE_ORDER_RATE_LIMITED", retry_after=left,
                )
        for item in self.limits:
            self._counts[item.header_suffix] = (int(now // item.seconds), self._count(item) + 1)

    def observe(self, headers: Any) -> None:
        now = self.clock()
        for item in self.limits:
            value = _header(headers, f"X-MBX-ORDER-COUNT-{item.header_suffix}")
            if value is None:
                continue
            try:
                count = int(value)
            except ValueError:
                continue
            self._counts[item.header_suffix] = (int(now // item.seconds), max(self._count(item), count))
