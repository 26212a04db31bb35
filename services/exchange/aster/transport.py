"""Sending venue requests: signing, rate limits, backoff, retries of reads, error mapping.

The client is aiohttp: one well-kept asyncio HTTP library that also serves the venue
simulator (:mod:`services.venue_sim`), so both ends share one HTTP stack, one event loop
model and no threads.

- Every request is signed just before it is sent (a fresh timestamp or nonce, on the
  venue's clock: read with ``GET /time`` before the first signed request), with the
  credentials given for that call or the transport's default: V1 and V3 accounts can
  share one transport. What goes on the wire is exactly what was signed (query strings
  with ``encoded=True``: no re-quoting; V3 POST/PUT/DELETE as a form body).
- Request weight is budgeted per host (IP), from ``X-MBX-USED-WEIGHT-1m`` in every
  answer and the limit ``exchangeInfo.rateLimits`` publishes (:meth:`configure_limits`);
  a request that would take the minute past the budget waits for the next minute.
- Orders are counted per account against the ``ORDERS`` limits and the
  ``X-MBX-ORDER-COUNT-*`` headers: an order past a limit is refused before it is sent.
- After a 429 or 418 nothing is sent to that host until ``Retry-After`` has passed.
- Only idempotent reads (GET) are retried, on no answer, 5xx or ``-1021``; any ``-1021``
  reads the venue's clock again first. An order, a cancel or a setting is sent exactly
  once; without an answer it is in doubt, and so is an order answered with what the
  venue's docs do not call a refusal (:mod:`.errors`).
- :meth:`AsterTransport.exchange` returns the answer with its exact text and the request
  it answered (:mod:`.raw`), for audit. No secret leaves the credentials; logs name the
  method and path only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

import aiohttp
from yarl import URL

from services.common.observability import metrics
from services.domain import MarketType
from services.domain.errors import PreconditionFailed

from . import raw
from .credentials import V1, VenueCredentials
from .errors import VenueInDoubt, VenueRateLimited, VenueRejected, venue_error
from .limits import WEIGHT_HEADER, OrderCountGate, RateLimit, WeightGate, parse_rate_limits
from .requests import SPOT_PREFIX, VenueRequest
from .signing import DEFAULT_RECV_WINDOW_MS, sign_request

__all__ = ["AsterTransport", "VenueAnswer", "WeightGate", "WEIGHT_HEADER"]

log = logging.getLogger(__name__)

CLOCK_SKEW_REASON = "VENUE_TIMESTAMP_OUTSIDE_RECV_WINDOW"


@dataclasses.dataclass(frozen=True)
class VenueAnswer:
    """A successful answer: decoded, as text, and as the audit record of the exchange."""

    payload: Any
    text: str
    status: int
    request_json: str

    @property
    def raw_json(self) -> str:
        return raw.exchange_json(self.request_json, self.status, self.text)


class AsterTransport:
    """Sends :class:`VenueRequest` values to Aster (or anything speaking its protocol)."""

    def __init__(
        self,
        *,
        futures_url: str,
        spot_url: str | None = None,
        credentials: VenueCredentials | None = None,
        api_version: str | None = None,
        recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
        timeout_seconds: float = 10.0,
        weight_limit: int = 2400,
        read_retries: int = 2,
        retry_backoff: float = 0.2,
        default_backoff: float = 1.0,
        public_only: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.futures_url = futures_url.rstrip("/")
        self.spot_url = (spot_url or futures_url).rstrip("/")
        self.credentials = credentials
        # Unsigned requests (market data) use the default credentials' version, else this.
        self.api_version = api_version or (credentials.api if credentials is not None else V1)
        self.recv_window_ms = recv_window_ms
        self.timeout_seconds = timeout_seconds
        self.weight_limit = weight_limit
        self.gates: dict[str, WeightGate] = {}
        self.order_gates: dict[str, OrderCountGate] = {}
        self._order_limits: dict[str, list[RateLimit]] = {}  # by host
        self.read_retries = read_retries
        self.retry_backoff = retry_backoff
        self.default_backoff = default_backoff
        self.public_only = public_only
        self.sleep = sleep
        #: Wall time (epoch seconds): the rate limits' windows and backoffs, and the
        #: timestamp of signed requests (with the venue's offset).
        self.clock = clock
        self.clock_offset_ms = 0
        #: True once the venue's clock was read (or the first read of it failed): signed
        #: requests wait for that first read, so their timestamps and nonces are the venue's.
        self.clock_measured = False
        self._clock_reading: asyncio.Future[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AsterTransport(futures_url={self.futures_url!r}, spot_url={self.spot_url!r}, public_only={self.public_only})"

    # -- hosts, limits ----------------------------------------------------------------------------
    def base_url(self, request: VenueRequest) -> str:
        return self.spot_url if request.path.startswith(SPOT_PREFIX + "/") else self.futures_url

    def gate_for(self, base_url: str) -> WeightGate:
        """The weight budget of the host behind ``base_url`` (limits are per IP)."""
        host = urlparse(base_url).netloc
        gate = self.gates.get(host)
        if gate is None:
            gate = self.gates[host] = WeightGate(self.weight_limit, clock=self.clock)
        return gate

    @property
    def gate(self) -> WeightGate:
        """The futures host's weight budget."""
        return self.gate_for(self.futures_url)

    def order_gate(self, credentials: VenueCredentials, base_url: str) -> OrderCountGate:
        key = f"{credentials.account_key}@{urlparse(base_url).netloc}"
        gate = self.order_gates.get(key)
        if gate is None:
            gate = self.order_gates[key] = OrderCountGate(self._order_limits.get(urlparse(base_url).netloc, ()),
                                                          clock=self.clock)
        return gate

    def configure_limits(self, market_type: MarketType, exchange_info: Any) -> list[RateLimit]:
        """Take the weight and order limits ``exchangeInfo.rateLimits`` publishes for a market."""
        base = self.spot_url if market_type is MarketType.SPOT else self.futures_url
        limits = parse_rate_limits(exchange_info if isinstance(exchange_info, dict) else {})
        self.gate_for(base).configure(limits)
        host = urlparse(base).netloc
        self._order_limits[host] = limits
        for key, gate in self.order_gates.items():
            if key.endswith("@" + host):
                gate.configure(limits)
        return limits

    # -- session, clock ---------------------------------------------------------------------------
    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_seconds))
        return self._session

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (the user-data stream opens its websockets on it)."""
        return self._session_now()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def now_ms(self) -> int:
        """The venue's time as we know it: our clock plus the measured offset (milliseconds)."""
        return int(self.clock() * 1000) + self.clock_offset_ms

    def now_us(self) -> int:
        """:meth:`now_ms` in microseconds: the time V3 nonces are drawn from."""
        return int(self.clock() * 1_000_000) + self.clock_offset_ms * 1000

    async def sync_clock(self, market_type: MarketType = MarketType.FUTURES) -> int:
        """Measure the venue clock against ours (``GET /time``): the timestamps of signed V1
        requests and the nonces of V3 ones follow it."""
        prefix = SPOT_PREFIX if market_type is MarketType.SPOT else "/fapi/v1"
        before = self.clock() * 1000
        payload = await self.send(VenueRequest("GET", f"{prefix}/time"))
        after = self.clock() * 1000
        self.clock_offset_ms = int(int(payload["serverTime"]) - (before + after) / 2)
        self.clock_measured = True
        return self.clock_offset_ms

    async def _measure_clock(self) -> None:
        """Before the first signed request: read the venue's clock once (every request that
        comes meanwhile waits for that one read). A read that fails leaves our clock as it
        is; a ``-1021`` reads it again."""
        reading = self._clock_reading
        if reading is None:
            reading = self._clock_reading = asyncio.ensure_future(self._first_clock_read())
        await asyncio.shield(reading)

    async def _first_clock_read(self) -> None:
        try:
            await self.sync_clock()
        except Exception as error:  # noqa: BLE001 - signed with our clock; -1021 reads it again
            log.warning("could not read the venue's clock: %s", getattr(error, "reason", type(error).__name__))
        finally:
            self.clock_measured = True

    # -- sending ----------------------------------------------------------------------------------
    async def send(self, request: VenueRequest, credentials: VenueCredentials | None = None) -> Any:
        """:meth:`exchange`, the decoded answer only."""
        return (await self.exchange(request, credentials)).payload

    async def exchange(self, request: VenueRequest, credentials: VenueCredentials | None = None) -> VenueAnswer:
        """Send once (a read: up to ``1 + read_retries`` times) and return the answer.

        ``credentials`` sign this request (default: the transport's own).

        Raises
        ------
        VenueRejected, VenueCancelRejected, VenueOrderUnknown, VenueRateLimited, VenueInDoubt
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
        credentials = credentials or self.credentials
        if request.signed and credentials is not None and not self.clock_measured:
            await self._measure_clock()
        what = f"{request.method} {request.path}"
        base = self.base_url(request)
        gate = self.gate_for(base)
        attempts = 1 + (self.read_retries if request.idempotent else 0)
        for attempt in range(attempts):
            wait = gate.wait_before(request.weight, market_data=request.market_data)
            if wait > 0:
                log.info("%s waits %.1fs for the next minute's request weight", what, wait)
                await self.sleep(wait)
            if request.places_order and credentials is not None:
                self.order_gate(credentials, base).reserve()
            try:
                return await self._once(request, credentials, base, gate, what)
            except VenueRateLimited as error:
                gate.block(error.retry_after or self.default_backoff, error.reason)
                raise
            except (VenueInDoubt, VenueRejected) as error:
                skewed = isinstance(error, VenueRejected) and error.reason == CLOCK_SKEW_REASON
                if skewed:
                    # Our clock is off the venue's: read it again now, whatever the request,
                    # so the next one is signed on the venue's time (an order refused so is
                    # not resent: the refusal is its answer).
                    try:
                        await self.sync_clock()
                    except Exception:  # noqa: BLE001 - the retry (or the next -1021) reports what matters
                        pass
                retry = isinstance(error, VenueInDoubt) or skewed
                if not retry or attempt + 1 >= attempts:
                    raise
                log.info("%s: %s; retrying (read %d of %d)", what, error.reason, attempt + 2, attempts)
                await self.sleep(self.retry_backoff * (2**attempt))
        raise AssertionError("unreachable")

    async def _once(
        self, request: VenueRequest, credentials: VenueCredentials | None, base: str, gate: WeightGate, what: str
    ) -> VenueAnswer:
        signed = sign_request(
            request, credentials, timestamp_ms=self.now_ms(), recv_window_ms=self.recv_window_ms,
            api=self.api_version, now_us=self.now_us(),
        )
        url = URL(base + signed.target, encoded=True)
        data = signed.body.encode() if signed.body else None
        try:
            async with self._session_now().request(signed.method, url, headers=signed.headers, data=data) as response:
                gate.observe(response.headers)
                if request.places_order and credentials is not None:
                    self.order_gate(credentials, base).observe(response.headers)
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
            return VenueAnswer(payload, text, status, raw.request_json(request.method, signed.path, request.params))
        exchanged = raw.exchange_json(raw.request_json(request.method, signed.path, request.params), status, text)
        raise metrics.venue_error(venue_error(status, payload, what=what, retry_after=retry_after,
                                              venue_payload=exchanged, places_order=request.places_order))


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
