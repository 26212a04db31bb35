"""One account's user-data stream on one market: listenKey, websocket, keepalive, reconnect.

As Aster's docs define it ("User Data Streams", futures and spot, V1 and V3):

- ``POST /listenKey`` returns the account's active key, or a new one, valid 60 minutes;
  ``PUT /listenKey`` extends it ("It's recommended to send a ping about every 60
  minutes"; spot: "every 30 minutes"; this sends one every ``keepalive_seconds``, 30
  minutes by default, and one that failed again within a minute); ``DELETE /listenKey``
  closes it.
- The stream is ``<ws base>/ws/<listenKey>``; a connection lasts at most 24 hours; a
  ``listenKeyExpired`` event means nothing more comes on that key.
- Payloads "are not guaranteed to be in order during heavy periods": every message is
  handed over as it comes, and the consumer orders by what it carries (trade ids,
  cumulative quantities), never by arrival.

Whenever the socket is (re)connected, ``on_connected`` runs before any message is
handed over: that is where the consumer fills the gap from REST (events the venue pushed
while no socket was open are never resent). A dropped socket, an expired key, a refused
keepalive (``-1125``) or a failed connect all lead to the same path: wait, get a key,
connect, fill the gap. ``connected`` says whether the stream is live now, so the
consumer polls REST only while it is not; ``tessera_venue_user_stream_connected`` (by
account key and market) says the same to Prometheus, 0 from the start until the first
connection and while the REST polling fallback stands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

import aiohttp

from services.common.observability import metrics
from services.domain import MarketType

from . import raw
from . import requests as rq
from .credentials import VenueCredentials
from .errors import VenueRateLimited, VenueRejected

log = logging.getLogger(__name__)

#: How soon a keepalive that failed (no answer, rate limited) is sent again.
KEEPALIVE_RETRY_SECONDS = 60.0

MessageHandler = Callable[[dict[str, Any], str], Awaitable[None]]
ConnectedHandler = Callable[[], Awaitable[None]]

#: Aster's websocket hosts for its REST hosts (V3 docs: fstream / sstream).
_STREAM_HOSTS = {
    "fapi.asterdex.com": "wss://fstream.asterdex.com",
    "sapi.asterdex.com": "wss://sstream.asterdex.com",
    "fapi.asterdex-testnet.com": "wss://fstream.asterdex-testnet.com",
    "sapi.asterdex-testnet.com": "wss://sstream.asterdex-testnet.com",
}


def default_stream_url(rest_url: str) -> str:
    """The websocket base for a REST base URL: Aster's stream hosts, else the same host."""
    parsed = urlparse(rest_url)
    known = _STREAM_HOSTS.get(parsed.netloc)
    if known:
        return known
    scheme = "wss" if parsed.scheme == "https" else "ws"
    return f"{scheme}://{parsed.netloc}"


class UserDataStream:
    """The user-data stream of ``credentials`` on ``market_type``."""

    def __init__(
        self,
        transport: Any,
        credentials: VenueCredentials | None,
        market_type: MarketType,
        ws_url: str,
        on_message: MessageHandler,
        on_connected: ConnectedHandler,
        *,
        keepalive_seconds: float = 1800.0,
        reconnect_seconds: float = 1.0,
        max_reconnect_seconds: float = 30.0,
        max_connection_seconds: float = 23.5 * 3600,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.transport = transport
        self.credentials = credentials
        self.market_type = market_type
        self.ws_url = ws_url.rstrip("/")
        self.on_message = on_message
        self.on_connected = on_connected
        self.keepalive_seconds = keepalive_seconds
        self.reconnect_seconds = reconnect_seconds
        self.max_reconnect_seconds = max_reconnect_seconds
        self.max_connection_seconds = max_connection_seconds
        self.sleep = sleep
        self.connected = False
        self.connections = 0
        self.listen_key: str | None = None
        #: The metric's labels: the venue account's key (never a credential) and the market.
        self.labels = (credentials.account_key if credentials is not None else "default", market_type.value)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"UserDataStream({self.market_type.value}, {self.ws_url}, connected={self.connected})"

    def start(self) -> None:
        if self._task is None:
            metrics.user_stream_state(*self.labels, False)
            self._task = asyncio.create_task(self._run(), name=f"user-stream-{self.market_type.value.lower()}")

    async def wait_connected(self, timeout: float) -> bool:
        """True once the stream is live (for start-up and tests)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.connected = False
        metrics.user_stream_state(*self.labels, None)
        if self.listen_key is not None:
            with contextlib.suppress(Exception):
                await self.transport.send(rq.prepare_close_listen_key(self.listen_key, self.market_type),
                                          self.credentials)
            self.listen_key = None

    async def _run(self) -> None:
        delay = self.reconnect_seconds
        while True:
            try:
                await self._session_once()
                delay = self.reconnect_seconds  # a clean end (expiry, 24 h): reconnect at once
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure leads to the same reconnect
                log.info("user-data stream (%s) down: %s; reconnecting in %.1fs",
                         self.market_type.value, getattr(error, "reason", type(error).__name__), delay)
            finally:
                self.connected = False
                self._ready.clear()
                metrics.user_stream_state(*self.labels, False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_seconds)

    async def _session_once(self) -> None:
        payload = await self.transport.send(rq.prepare_listen_key(self.market_type), self.credentials)
        self.listen_key = str(payload["listenKey"])
        opened = time.monotonic()
        async with self.transport.session.ws_connect(f"{self.ws_url}/ws/{self.listen_key}", heartbeat=60.0) as socket:
            self.connections += 1
            await self.on_connected()  # the gap: filled from REST before the first message
            self.connected = True
            self._ready.set()
            metrics.user_stream_state(*self.labels, True)
            keepalive = asyncio.create_task(self._keepalive(socket))
            try:
                async for message in socket:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                        continue
                    event = raw.decode(message.data)
                    if isinstance(event, dict) and event.get("e") == "listenKeyExpired":
                        log.info("listenKey expired (%s); renewing", self.market_type.value)
                        break
                    if isinstance(event, dict):
                        await self.on_message(event, message.data)
                    if time.monotonic() - opened > self.max_connection_seconds:
                        break  # before the venue's 24-hour cut
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await keepalive

    async def _keepalive(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """``PUT /listenKey`` every ``keepalive_seconds``; one that got no answer (or was
        rate limited) again within :data:`KEEPALIVE_RETRY_SECONDS` (or when the venue
        allows), not a whole interval later, when the key may have expired; one the venue
        refuses closes the socket, for a new key."""
        wait = self.keepalive_seconds
        while True:
            await self.sleep(wait)
            wait = self.keepalive_seconds
            try:
                await self.transport.send(
                    rq.prepare_keepalive_listen_key(self.listen_key or "", self.market_type), self.credentials
                )
            except VenueRejected as error:
                log.info("listenKey keepalive refused (%s); reconnecting", error.reason)
                await socket.close()
                return
            except Exception as error:  # noqa: BLE001 - tried again soon
                wait = min(self.keepalive_seconds, KEEPALIVE_RETRY_SECONDS)
                if isinstance(error, VenueRateLimited) and error.retry_after > 0:
                    wait = min(max(wait, error.retry_after), self.keepalive_seconds)
                log.info("listenKey keepalive failed: %s; trying again in %.0fs",
                         getattr(error, "reason", type(error).__name__), wait)
