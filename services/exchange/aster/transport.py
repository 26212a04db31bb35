"""Sending venue requests: signing, weight limits, backoff, retries of reads, error mapping.

The client is aiohttp: one well-kept asyncio HTTP library that also serves the venue
simulator (:mod:`services.venue_sim`), so both ends share one HTTP stack, one event loop
model and no threads.

- Every request is signed just before it is sent (a fresh ``timestamp``); the query
  string goes on the wire exactly as signed (``encoded=True``: no re-quoting).
- The used weight (``X-MBX-USED-WEIGHT-1m``) is tracked from every answer; a request
  that would take the minute past the limit (less a headroom) waits for the next minute.
- After a 429 or 418 nothing is sent until ``Retry-After`` has passed: calls in that
  window fail at once with :class:`VenueRateLimited` (``RESOURCE_EXHAUSTED``).
- Only idempotent reads (GET) are retried, on no answer, 5xx or ``-1021``. An order, a
  cancel or a setting is sent exactly once; without an answer it is in doubt.
- The API secret never leaves :class:`~.signing.Credentials`; logs name the method and
  path only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

import aiohttp
from yarl import URL

from services.common.observability import metrics
from services.domain import MarketType
from services.domain.errors import PreconditionFailed

from .errors import VenueInDoubt, VenueRateLimited, venue_error
from .requests import SPOT_PREFIX, VenueRequest
from .signing import DEFAULT_RECV_WINDOW_MS, Credentials, sign_request

log = logging.getLogger(__name__)

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class WeightGate:
    """The request-weight budget of one IP per minute, and the backoff after a refusal."""

    def __init__(
        self,
        limit: int = 2400,
        *,
        headroom: float = 0.9,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.budget = int(limit * headroom)
        self.max_wait = max_wait
        self.clock = clock
        self.minute = int(clock() // 60)
        self.used = 0
        self.blocked_until = 0.0
        self.blocked_reason = ""

    def _roll(self) -> None:
        minute = int(self.clock() // 60)
        if minute != self.minute:
            self.minute, self.used = minute, 0

    def wait_before(self, weight: int) -> float:
        """Seconds to wait before a request of ``weight`` (0: send now).

        Raises
        ------
        VenueRateLimited
            The venue asked for a pause (429/418) that has not passed, or the wait for
            the next minute would exceed ``max_wait``.
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
        if self.used + weight <= self.budget:
            self.used += weight  # reserve it; the answer's header corrects the count
            return 0.0
        wait = 60.0 - (now % 60.0) + 0.05
        if wait > self.max_wait:
            raise VenueRateLimited(f"request weight budget of {self.budget}/min used up", retry_after=wait)
        return wait

    def observe(self, headers: Any) -> None:
        value = headers.get(WEIGHT_HEADER) or headers.get("X-MBX-USED-WEIGHT-1m")
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


class AsterTransport:
    """Sends :class:`VenueRequest` values to Aster (or anything speaking its protocol)."""

    def __init__(
        self,
        *,
        futures_url: str,
        spot_url: str | None = None,
        credentials: Credentials | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout_seconds: float = 10.0,
        weight_limit: int = 2400,
        read_retries: int = 2,
        retry_backoff: float = 0.2,
        default_backoff: float = 1.0,
        public_only: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.futures_url = futures_url.rstrip("/")
        self.spot_url = (spot_url or futures_url).rstrip("/")
        self.credentials = credentials
        self.recv_window_ms = recv_window_ms
        self.timeout_seconds = timeout_seconds
        self.gate = WeightGate(weight_limit)
        self.read_retries = read_retries
        self.retry_backoff = retry_backoff
        self.default_backoff = default_backoff
        self.public_only = public_only
        self.sleep = sleep
        self.clock_offset_ms = 0
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AsterTransport(futures_url={self.futures_url!r}, spot_url={self.spot_url!r}, public_only={self.public_only})"

    def base_url(self, request: VenueRequest) -> str:
        return self.spot_url if request.path.startswith(SPOT_PREFIX + "/") else self.futures_url

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    async def sync_clock(self, market_type: MarketType = MarketType.FUTURES) -> int:
        """Measure the venue clock against ours (``GET /time``); signed requests use it."""
        prefix = SPOT_PREFIX if market_type is MarketType.SPOT else "/fapi/v1"
        before = time.time() * 1000
        payload = await self.send(VenueRequest("GET", f"{prefix}/time"))
        after = time.time() * 1000
        self.clock_offset_ms = int(int(payload["serverTime"]) - (before + after) / 2)
        return self.clock_offset_ms

    async def send(self, request: VenueRequest) -> Any:
        """Send once (a read: up to ``1 + read_retries`` times) and return the decoded answer.

        Raises
        ------
        VenueRejected, VenueOrderUnknown, VenueRateLimited, VenueInDoubt
            See :mod:`.errors`.
        PreconditionFailed
            Reason ``SHADOW_MODE_READ_ONLY``: a signed or trading request on a public-only
            transport (shadow mode); nothing was sent.
        """
        if self.public_only and (request.signed or request.is_trading):
            raise PreconditionFailed(
                f"{request.method} {request.path} refused: this venue connection is read-only (shadow mode)",
                reason="SHADOW_MODE_READ_ONLY",
            )
        what = f"{request.method} {request.path}"
        attempts = 1 + (self.read_retries if request.idempotent else 0)
        for attempt in range(attempts):
            wait = self.gate.wait_before(request.weight)
            if wait > 0:
                log.info("%s waits %.1fs for the next minute's request weight", what, wait)
                await self.sleep(wait)
            try:
                return await self._once(request, what)
            except VenueRateLimited as error:
                self.gate.block(error.retry_after or self.default_backoff, error.reason)
                raise
            except VenueInDoubt as error:
                if attempt + 1 >= attempts:
                    raise
                log.info("%s: %s; retrying (read %d of %d)", what, error.reason, attempt + 2, attempts)
                if error.reason == "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW":
                    try:
                        await self.sync_clock()
                    except Exception:  # noqa: BLE001 - the retry reports what matters
                        pass
                await self.sleep(self.retry_backoff * (2**attempt))
        raise AssertionError("unreachable")

    async def _once(self, request: VenueRequest, what: str) -> Any:
        signed = sign_request(
            request, self.credentials, timestamp_ms=self.now_ms(), recv_window_ms=self.recv_window_ms
        )
        url = URL(self.base_url(request) + signed.target, encoded=True)
        try:
            async with self._session_now().request(signed.method, url, headers=signed.headers) as response:
                self.gate.observe(response.headers)
                text = await response.text()
                status = response.status
                retry_after = _seconds(response.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            raise metrics.venue_error(
                VenueInDoubt(f"{what}: no answer within {self.timeout_seconds:g}s", reason="VENUE_TIMEOUT")
            ) from None
        except aiohttp.ClientError as error:
            raise metrics.venue_error(
                VenueInDoubt(f"{what}: the venue did not answer ({type(error).__name__})", reason="VENUE_UNREACHABLE")
            ) from None
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        failed = isinstance(payload, dict) and isinstance(payload.get("code"), int) and payload["code"] < 0
        if 200 <= status < 300 and not failed:
            return payload
        raise metrics.venue_error(venue_error(status, payload, what=what, retry_after=retry_after))


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
