"""The simulated venue's HTTP face: Aster's REST paths, authentication, weights and faults.

aiohttp serves it (the same library as Tessera's venue client, see
:mod:`services.exchange.aster.transport`). ``/fapi/v1/...`` is the futures market,
``/api/v1/...`` the spot market; ``/_sim/...`` is the control surface tests use
(unauthenticated: the simulator listens on loopback only).

Faults (``POST /_sim/faults`` with ``{"kind": ..., "method": ..., "path": ..., "count": n}``)
apply to the next matching requests:

``timeout``        hold the request ``delay`` seconds, then drop it unprocessed
``drop_response``  process the request, then hold the answer ``delay`` seconds and drop it
``error_5xx``      answer ``status`` (default 503) without processing (``processed: true`` processes first)
``rate_limit_429`` answer 429 with ``Retry-After``
``ban_418``        answer 418 with ``Retry-After``, and every request until it has passed
``late_fill``      accept an order now, match it ``delay`` seconds later
``bad_timestamp``  answer ``-1021`` (timestamp outside the receive window)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable

from aiohttp import web

from .state import VenueError, VenueState, now_ms

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-MBX-APIKEY"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
PREFIXES = {"/fapi/v1": "futures", "/api/v1": "spot"}
#: Paths that change orders or settings: shadow mode must never reach them.
ORDER_ENDPOINTS = {("POST", "/order"), ("DELETE", "/order"), ("DELETE", "/allOpenOrders"), ("POST", "/leverage"), ("POST", "/marginType")}
WEIGHTS = {"/userTrades": 5, "/exchangeInfo": 1, "/depth": 2}

Handler = Callable[["VenueSimulator", str, dict[str, str]], Awaitable[Any]]


@dataclasses.dataclass
class Fault:
    kind: str
    method: str | None = None
    path: str | None = None
    count: int = 1
    delay: float = 30.0
    status: int = 503
    retry_after: int = 1
    processed: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path is None or path.endswith(self.path))


class VenueSimulator:
    """The venue's state plus everything about talking to it."""

    def __init__(
        self,
        state: VenueState,
        *,
        api_key: str,
        api_secret: str,
        weight_limit: int = 2400,
    ) -> None:
        self.state = state
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.weight_limit = weight_limit
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        # Order placements received per client order id, faulted ones included: "sent twice" is > 1.
        self.placements: dict[str, int] = {}
        self.forbid_orders = False
        self.violations: list[str] = []
        self.banned_until = 0.0
        self._weight_minute = 0
        self._weight_used = 0
        self._lock = asyncio.Lock()

    # -- the pieces of every request --------------------------------------------------------------
    def _use_weight(self, weight: int) -> int:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _verify(self, request: web.Request, raw_query: str, body: str) -> dict[str, str]:
        """Check the API key, the signature over totalParams and the timestamp."""
        if request.headers.get(API_KEY_HEADER) != self.api_key:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        total = raw_query + body
        payload, marker, signature = total.rpartition("&signature=")
        if not marker or "&" in signature:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        params = dict(urllib.parse.parse_qsl(payload, keep_blank_values=True))
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise VenueError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.") from None
        server = now_ms()
        if not (timestamp < server + 1000 and server - timestamp <= recv_window):
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return params

    # -- dispatch -----------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        prefix = next((p for p in PREFIXES if path.startswith(p + "/")), None)
        if prefix is None:
            return _error(404, -1, f"no such endpoint {path}")
        market, endpoint = PREFIXES[prefix], path[len(prefix):]
        method = request.method
        raw_query = request.rel_url.raw_query_string
        body = (await request.text()) if request.can_read_body else ""
        self.requests.append({"method": method, "path": path, "time": time.time()})
        if (method, endpoint) == ("POST", "/order"):
            sent = dict(urllib.parse.parse_qsl(raw_query + "&" + body, keep_blank_values=True))
            client_order_id = sent.get("newClientOrderId", "")
            self.placements[client_order_id] = self.placements.get(client_order_id, 0) + 1
        headers = {WEIGHT_HEADER: str(self._use_weight(WEIGHTS.get(endpoint, 1)))}
        if (method, endpoint) in ORDER_ENDPOINTS and self.forbid_orders:
            self.violations.append(f"{method} {path}")
            return _error(403, -1, "order endpoints are forbidden on this venue (shadow mode must never call them)", headers)
        if time.monotonic() < self.banned_until:
            retry = max(1, int(self.banned_until - time.monotonic()) + 1)
            return _error(418, -1003, "Way too many requests; IP banned.", {**headers, "Retry-After": str(retry)})
        if self._weight_used > self.weight_limit:
            return _error(429, -1003, "Too many requests.", {**headers, "Retry-After": "1"})
        fault = self._take_fault(method, path)
        if fault is not None:
            answer = await self._apply_fault(fault, request, market, endpoint, raw_query, body, headers)
            if answer is not None:
                return answer
        return await self._serve(request, market, endpoint, raw_query, body, headers, fault)

    async def _apply_fault(self, fault, request, market, endpoint, raw_query, body, headers) -> web.StreamResponse | None:
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
            raise web.HTTPGatewayTimeout()
        if fault.kind == "drop_response":
            await self._serve(request, market, endpoint, raw_query, body, headers, None)
            await asyncio.sleep(fault.delay)
            raise web.HTTPGatewayTimeout()
        if fault.kind == "error_5xx":
            if fault.processed:
                await self._serve(request, market, endpoint, raw_query, body, headers, None)
            return _error(fault.status, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.", headers)
        if fault.kind == "rate_limit_429":
            return _error(429, -1003, "Too many requests; please use the websocket for live updates.", {**headers, "Retry-After": str(fault.retry_after)})
        if fault.kind == "ban_418":
            self.banned_until = time.monotonic() + fault.retry_after
            return _error(418, -1003, "Way too many requests; IP banned.", {**headers, "Retry-After": str(fault.retry_after)})
        if fault.kind == "bad_timestamp":
            return _error(400, -1021, "Timestamp for this request is outside of the recvWindow.", headers)
        return None  # late_fill: handled while serving

    async def _serve(self, request, market, endpoint, raw_query, body, headers, fault) -> web.StreamResponse:
        route = ROUTES.get((request.method, endpoint))
        if route is None:
            return _error(404, -1, f"no such endpoint {request.method} {request.path}", headers)
        handler, signed = route
        try:
            if signed:
                params = self._verify(request, raw_query, body)
            else:
                params = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
            async with self._lock:
                self.state.run_due()
                payload = await handler(self, market, params, fault)
        except VenueError as error:
            return _error(error.http_status, error.code, error.msg, headers)
        return web.json_response(payload, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers or {})


# -- endpoints ------------------------------------------------------------------------------------
async def _ping(sim, market, params, fault):
    return {}


async def _time(sim, market, params, fault):
    return {"serverTime": now_ms()}


async def _exchange_info(sim, market, params, fault):
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": sim.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "symbols": [spec.exchange_info() for spec in sim.state.specs.values()],
    }


async def _ticker_price(sim, market, params, fault):
    book = sim.state.book(market, params.get("symbol", ""))
    return {"symbol": book.spec.symbol, "price": str(book.last), "time": now_ms()}


async def _book_ticker(sim, market, params, fault):
    book = sim.state.book(market, params.get("symbol", ""))
    bid, ask = book.bids[0], book.asks[0]
    return {
        "symbol": book.spec.symbol,
        "bidPrice": str(bid.price),
        "bidQty": str(bid.quantity),
        "askPrice": str(ask.price),
        "askQty": str(ask.quantity),
        "time": now_ms(),
    }


async def _depth(sim, market, params, fault):
    book = sim.state.book(market, params.get("symbol", ""))
    limit = int(params.get("limit", "500"))
    return {
        "lastUpdateId": now_ms(),
        "E": now_ms(),
        "T": now_ms(),
        "bids": [[str(level.price), str(level.quantity)] for level in book.bids[:limit]],
        "asks": [[str(level.price), str(level.quantity)] for level in book.asks[:limit]],
    }


async def _new_order(sim, market, params, fault):
    late = fault.delay if fault is not None and fault.kind == "late_fill" else None
    return sim.state.place(market, params, late_fill_after=late).to_json()


async def _query_order(sim, market, params, fault):
    return sim.state.find(market, params.get("symbol", ""), params.get("orderId"), params.get("origClientOrderId")).to_json()


async def _cancel_order(sim, market, params, fault):
    return sim.state.cancel(market, params.get("symbol", ""), params.get("orderId"), params.get("origClientOrderId")).to_json()


async def _cancel_all(sim, market, params, fault):
    sim.state.cancel_all(market, params.get("symbol", ""))
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def _open_orders(sim, market, params, fault):
    return [order.to_json() for order in sim.state.open_orders(market, params.get("symbol"))]


async def _user_trades(sim, market, params, fault):
    def number(name: str) -> int | None:
        return int(params[name]) if params.get(name) else None

    return sim.state.user_trades(
        market,
        params.get("symbol", ""),
        order_id=number("orderId"),
        from_id=number("fromId"),
        limit=min(1000, number("limit") or 500),
    )


async def _leverage(sim, market, params, fault):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    try:
        leverage = int(params.get("leverage", ""))
    except ValueError:
        raise VenueError(400, -4028, "Leverage is not valid") from None
    if not 1 <= leverage <= 125:
        raise VenueError(400, -4028, f"Leverage {leverage} is not valid")
    sim.state.leverage[symbol] = leverage
    return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}


async def _margin_type(sim, market, params, fault):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    margin_type = params.get("marginType", "")
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise VenueError(400, -1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
    if sim.state.margin_types.get(symbol, "CROSSED") == margin_type:
        raise VenueError(400, -4046, "No need to change margin type.")
    sim.state.margin_types[symbol] = margin_type
    return {"code": 200, "msg": "success"}


ROUTES: dict[tuple[str, str], tuple[Any, bool]] = {
    ("GET", "/ping"): (_ping, False),
    ("GET", "/time"): (_time, False),
    ("GET", "/exchangeInfo"): (_exchange_info, False),
    ("GET", "/ticker/price"): (_ticker_price, False),
    ("GET", "/ticker/bookTicker"): (_book_ticker, False),
    ("GET", "/depth"): (_depth, False),
    ("POST", "/order"): (_new_order, True),
    ("GET", "/order"): (_query_order, True),
    ("DELETE", "/order"): (_cancel_order, True),
    ("DELETE", "/allOpenOrders"): (_cancel_all, True),
    ("GET", "/openOrders"): (_open_orders, True),
    ("GET", "/userTrades"): (_user_trades, True),
    ("POST", "/leverage"): (_leverage, True),
    ("POST", "/marginType"): (_margin_type, True),
}


# -- the control surface ------------------------------------------------------------------------
def _control_routes(sim: VenueSimulator) -> list[web.RouteDef]:
    async def add_fault(request: web.Request) -> web.Response:
        spec = await request.json()
        items = spec if isinstance(spec, list) else [spec]
        for item in items:
            sim.faults.append(Fault(**item))
        return web.json_response({"faults": len(sim.faults)})

    async def clear_faults(request: web.Request) -> web.Response:
        sim.faults.clear()
        sim.banned_until = 0.0
        return web.json_response({"faults": 0})

    async def set_price(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            price = Decimal(str(body["price"]))
            async with sim._lock:
                sim.state.set_price(body.get("market"), body["symbol"], price)
        except (KeyError, InvalidOperation, VenueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"symbol": body["symbol"], "price": str(price)})

    async def orders(request: web.Request) -> web.Response:
        async with sim._lock:
            sim.state.run_due()
            return web.json_response([o.to_json() | {"market": o.market} for o in sim.state.orders.values()])

    async def trades(request: web.Request) -> web.Response:
        return web.json_response(sim.state.trades)

    async def requests(request: web.Request) -> web.Response:
        return web.json_response(sim.requests)

    async def placements(request: web.Request) -> web.Response:
        return web.json_response(sim.placements)

    async def forbid(request: web.Request) -> web.Response:
        body = await request.json()
        sim.forbid_orders = bool(body.get("forbid", True))
        return web.json_response({"forbid": sim.forbid_orders})

    async def violations(request: web.Request) -> web.Response:
        return web.json_response(sim.violations)

    async def forget(request: web.Request) -> web.Response:
        """The venue loses an order (data loss, an out-of-band purge): for discrepancy tests."""
        body = await request.json()
        async with sim._lock:
            chosen = [o for o in sim.state.orders.values() if o.client_order_id == body.get("clientOrderId")]
            for order in chosen:
                del sim.state.orders[order.order_id]
                sim.state.by_client_id.pop((order.market, order.symbol, order.client_order_id), None)
        return web.json_response({"forgotten": len(chosen)})

    async def settings(request: web.Request) -> web.Response:
        return web.json_response({"leverage": sim.state.leverage, "margin_types": sim.state.margin_types})

    return [
        web.post("/_sim/faults", add_fault),
        web.delete("/_sim/faults", clear_faults),
        web.post("/_sim/price", set_price),
        web.get("/_sim/orders", orders),
        web.get("/_sim/trades", trades),
        web.get("/_sim/requests", requests),
        web.get("/_sim/placements", placements),
        web.post("/_sim/forbid_orders", forbid),
        web.get("/_sim/violations", violations),
        web.get("/_sim/settings", settings),
        web.post("/_sim/forget", forget),
    ]


def build_app(sim: VenueSimulator, *, due_interval: float = 0.05) -> web.Application:
    app = web.Application()
    app.add_routes(_control_routes(sim))
    app.router.add_route("*", "/{tail:(fapi|api)/.*}", sim.handle)

    async def run_due_forever(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(due_interval)
                async with sim._lock:
                    sim.state.run_due()

        task = asyncio.create_task(loop(), name="venue-sim-due")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(run_due_forever)
    return app
