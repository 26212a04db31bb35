"""The simulated venue's user-data streams: listen keys and the websocket at ``/ws/<listenKey>``.

As Aster's docs define them ("User Data Streams"): ``POST /listenKey`` returns the
account's active key (extending it by 60 minutes) or a new one; ``PUT`` extends it;
``DELETE`` closes it; an unknown or expired key is ``-1125``. A socket on a valid key
receives the account's events of that market (futures ``ORDER_TRADE_UPDATE`` and
``ACCOUNT_UPDATE``, spot ``executionReport``); when the key expires it receives
``listenKeyExpired`` (``{"e": "listenKeyExpired", "E": <event time>}``, as Aster's futures
docs give it: pushed only to a socket connected on a key that was valid) and nothing
more. Events are pushed only to connected sockets:
what happens while none is connected is never delivered, exactly the gap a client has
to fill from REST after reconnecting.

Tests drop every socket (``POST /_sim/ws/drop``), refuse new ones for a while
(``POST /_sim/ws/refuse``) or expire the listen keys now, as an hour without a
keepalive would (``POST /_sim/ws/expire``), through the control surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from .state import VenueError, VenueState, now_ms


@dataclasses.dataclass
class ListenKey:
    key: str
    account: str
    market: str
    expires: float  # monotonic


class Streams:
    def __init__(self, state: VenueState, *, ttl_seconds: float = 3600.0) -> None:
        self.state = state
        self.ttl_seconds = ttl_seconds
        self.keys: dict[str, ListenKey] = {}
        self.sockets: dict[web.WebSocketResponse, ListenKey] = {}
        self.refuse_until = 0.0
        self.connections = 0  # accepted sockets, ever

    # -- listen keys ------------------------------------------------------------------------------
    def _active(self, account: str, market: str) -> ListenKey | None:
        now = time.monotonic()
        for entry in self.keys.values():
            if entry.account == account and entry.market == market and entry.expires > now:
                return entry
        return None

    def create(self, account: str, market: str) -> str:
        entry = self._active(account, market)
        if entry is None:
            entry = ListenKey(secrets.token_hex(32), account, market, 0.0)
            self.keys[entry.key] = entry
        entry.expires = time.monotonic() + self.ttl_seconds
        return entry.key

    def _find(self, account: str, market: str, key: str | None) -> ListenKey:
        entry = self.keys.get(key) if key else self._active(account, market)
        if entry is None or entry.account != account or entry.market != market or entry.expires <= time.monotonic():
            raise VenueError(400, -1125, "This listenKey does not exist.")
        return entry

    def keepalive(self, account: str, market: str, key: str | None) -> None:
        self._find(account, market, key).expires = time.monotonic() + self.ttl_seconds

    def close(self, account: str, market: str, key: str | None) -> None:
        entry = self._find(account, market, key)
        self.keys.pop(entry.key, None)
        for socket, held in list(self.sockets.items()):
            if held is entry:
                asyncio.ensure_future(socket.close())

    def expire(self, account: str | None = None) -> int:
        """Expire the listen keys (of ``account``, or every one) now: the next
        :meth:`expire_due` pushes ``listenKeyExpired`` to their sockets. Returns how many."""
        chosen = [e for e in self.keys.values() if account is None or e.account == account]
        for entry in chosen:
            entry.expires = 0.0
        return len(chosen)

    def expire_due(self) -> None:
        """Expired keys: their sockets get ``listenKeyExpired`` and nothing more."""
        now = time.monotonic()
        for key, entry in list(self.keys.items()):
            if entry.expires <= now:
                del self.keys[key]
                for socket, held in list(self.sockets.items()):
                    if held is entry:
                        with contextlib.suppress(Exception):
                            asyncio.ensure_future(socket.send_str(json.dumps({"e": "listenKeyExpired", "E": now_ms()})))
                        self.sockets.pop(socket, None)

    # -- sockets --------------------------------------------------------------------------------
    async def drop_all(self) -> int:
        dropped = list(self.sockets)
        self.sockets.clear()
        for socket in dropped:
            with contextlib.suppress(Exception):
                await socket.close()
        return len(dropped)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["listen_key"]
        entry = self.keys.get(key)
        if time.monotonic() < self.refuse_until:
            return web.json_response({"code": -1001, "msg": "Internal error; unable to process your request."},
                                     status=503)
        if entry is None or entry.expires <= time.monotonic():
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        queue: asyncio.Queue[str] = asyncio.Queue()
        account = self.state.account(entry.account)

        def listener(market: str, event: dict[str, Any]) -> None:
            if market == entry.market and self.sockets.get(socket) is entry:
                queue.put_nowait(json.dumps(event))

        self.sockets[socket] = entry
        self.connections += 1
        account.listeners.append(listener)

        async def pump() -> None:
            while True:
                await socket.send_str(await queue.get())

        sender = asyncio.create_task(pump())
        try:
            async for message in socket:
                if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            account.listeners.remove(listener)
            self.sockets.pop(socket, None)
        return socket
