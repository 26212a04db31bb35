"""The simulated venue's HTTP face: Aster's REST paths, authentication, limits and faults.

aiohttp serves it (the same library as Tessera's venue client, see
:mod:`services.exchange.aster.transport`). ``/fapi/v1/...`` and ``/fapi/v3/...`` are
the futures market, ``/api/v1/...`` and ``/api/v3/...`` the spot market: V1 paths take
API keys (HMAC), V3 paths API wallets (EIP-712), see :mod:`.auth`. ``/ws/<listenKey>``
is the user-data stream (:mod:`.streams`). Each key or wallet belongs to an account of
the venue; accounts trade side by side on one market. Every answer carries
``X-MBX-USED-WEIGHT-1M``, every accepted order ``X-MBX-ORDER-COUNT-1M``; over the
published limits the venue answers 429. ``/_sim/...`` is the control surface tests use
(unauthenticated: the simulator listens on loopback only).

Only what Aster documents is accepted: an undocumented parameter (``orderId`` on futures
``userTrades``) is ``-1103``.

Faults (``POST /_sim/faults`` with ``{"kind": ..., "method": ..., "path": ..., "count": n}``)
apply to the next matching requests:

``timeout``        hold the request ``delay`` seconds, then drop it unprocessed
``drop_response``  process the request, then hold the answer ``delay`` seconds and drop it
``error_5xx``      answer ``status`` (default 503) without processing (``processed: true`` processes first)
``error_4xx``      answer ``status`` (a 4xx; 400 when it is not one) with a body carrying no venue error code
                   (a proxy's page), or with ``code`` when given, without processing (``processed: true``
                   processes first)
``garbled_2xx``    process the request, then answer 200 with a body that is not the venue's JSON (a proxy's
                   page)
``rate_limit_429`` answer 429 with ``Retry-After``
``ban_418``        answer 418 with ``Retry-After``, and every request until it has passed
``late_fill``      accept an order now, match it ``delay`` seconds later
``bad_timestamp``  answer ``-1021`` (timestamp outside the receive window)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import urllib.parse
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable

from aiohttp import web

from .auth import Authenticator
from .state import DEFAULT_ACCOUNT, VenueError, VenueState, now_ms
from .streams import Streams

#: Endpoint security: none, the API key only (V1 user streams), or signed.
NONE, KEY, SIGNED = "NONE", "USER_STREAM", "SIGNED"

log = logging.getLogger(__name__)

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
ORDER_COUNT_HEADER = "X-MBX-ORDER-COUNT-1M"
PREFIXES = {
    "/fapi/v1": ("futures", "v1"), "/api/v1": ("spot", "v1"),
    "/fapi/v2": ("futures", "v1"),  # V1 keys' positionRisk (see V1_PATHS)
    "/fapi/v3": ("futures", "v3"), "/api/v3": ("spot", "v3"),
}
#: Where Aster's V1 API serves an endpoint under another version than /fapi/v1 (its
#: documentation: "GET /fapi/v2/positionRisk"); the simulator answers it there only.
V1_PATHS = {"/positionRisk": "/fapi/v2"}
#: Paths that change orders or settings: shadow mode must never reach them.
ORDER_ENDPOINTS = {("POST", "/order"), ("DELETE", "/order"), ("DELETE", "/allOpenOrders"), ("POST", "/leverage"),
                   ("POST", "/marginType"), ("POST", "/countdownCancelAll"), ("POST", "/positionSide/dual")}
WEIGHTS = {"/userTrades": 5, "/exchangeInfo": 1, "/depth": 2, "/positionRisk": 5, "/countdownCancelAll": 10,
           ("GET", "/positionSide/dual"): 30}
#: Parameters each endpoint documents (beyond authentication); anything else is -1103.
DOCUMENTED = {
    ("futures", "/userTrades"): {"symbol", "startTime", "endTime", "fromId", "limit"},
    ("spot", "/userTrades"): {"symbol", "orderId", "startTime", "endTime", "fromId", "limit"},
    # New Order (TRADE), futures: the parameters of the docs' table, by method.
    ("futures", "POST", "/order"): {"symbol", "side", "positionSide", "type", "timeInForce", "quantity", "reduceOnly",
                                    "price", "newClientOrderId", "stopPrice", "closePosition", "activationPrice",
                                    "callbackRate", "workingType", "priceProtect", "newOrderRespType",
                                    "pegPriceType", "pegOffset", "stpMode"},
}
AUTH_PARAMS = {"timestamp", "recvWindow", "signature", "user", "signer", "nonce"}

Handler = Callable[..., Awaitable[Any]]


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
    #: ``error_4xx``: the venue error code its body carries (None: a body without one).
    code: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path is None or path.endswith(self.path))


class VenueSimulator:
    """The venue's state plus everything about talking to it."""

    def __init__(
        self,
        state: VenueState,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        wallets: list[tuple[str, str]] = (),
        weight_limit: int = 2400,
        order_limit: int = 1200,
        chain_id: int = 1666,
        listen_key_ttl: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        #: The clock an IP ban (``ban_418``) lasts on (a test may move its own).
        self.monotonic = monotonic
        self.auth = Authenticator(chain_id=chain_id)
        if api_key and api_secret:
            self.auth.add_api_key(api_key, api_secret, DEFAULT_ACCOUNT)
        for user, signer in wallets:
            self.add_wallet(user, signer)
        self.streams = Streams(state, ttl_seconds=listen_key_ttl)
        self.weight_limit = weight_limit
        self.order_limit = order_limit
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        # Order placements received per client order id, faulted ones included: "sent twice" is > 1.
        self.placements: dict[str, int] = {}
        self.forbid_orders = False
        self.violations: list[str] = []
        self.banned_until = 0.0
        self._weight_minute = 0
        self._weight_used = 0
        self._order_counts: dict[str, tuple[int, int]] = {}
        self._lock = asyncio.Lock()

    def add_api_key(self, api_key: str, secret: str, account: str = DEFAULT_ACCOUNT) -> None:
        """A V1 key for ``account`` (an account of its own per key: several trade side by side)."""
        self.auth.add_api_key(api_key, secret, account)
        self.state.account(account)

    def add_wallet(self, user: str, signer: str, account: str | None = None) -> str:
        """A V3 API wallet ``signer`` of ``user``; the account is ``user`` unless named."""
        name = self.auth.add_wallet(user, signer, account)
        self.state.account(name)
        return name

    # -- the pieces of every request --------------------------------------------------------------
    def _use_weight(self, weight: int) -> int:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    def _count_order(self, account: str) -> int:
        minute = int(time.time() // 60)
        index, count = self._order_counts.get(account, (minute, 0))
        count = (count if index == minute else 0) + 1
        self._order_counts[account] = (minute, count)
        return count

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- dispatch -----------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        prefix = next((p for p in PREFIXES if path.startswith(p + "/")), None)
        if prefix is None:
            return _error(404, -1, f"no such endpoint {path}")
        (market, version), endpoint = PREFIXES[prefix], path[len(prefix):]
        if version == "v1" and market == "futures" and V1_PATHS.get(endpoint, "/fapi/v1") != prefix:
            return _error(404, -1, f"no such endpoint {path}")
        method = request.method
        raw_query = request.rel_url.raw_query_string
        body = (await request.text()) if request.can_read_body else ""
        self.requests.append({"method": method, "path": path, "time": time.time()})
        if (method, endpoint) == ("POST", "/order"):
            sent = dict(urllib.parse.parse_qsl(raw_query + "&" + body, keep_blank_values=True))
            client_order_id = sent.get("newClientOrderId", "")
            self.placements[client_order_id] = self.placements.get(client_order_id, 0) + 1
            # What the placement asked for, without its authentication.
            self.requests[-1]["params"] = {k: v for k, v in sent.items() if k not in AUTH_PARAMS}
        weight = WEIGHTS.get((method, endpoint), WEIGHTS.get(endpoint, 1))
        headers = {WEIGHT_HEADER: str(self._use_weight(weight))}
        if (method, endpoint) in ORDER_ENDPOINTS and self.forbid_orders:
            self.violations.append(f"{method} {path}")
            return _error(403, -1, "order endpoints are forbidden on this venue (shadow mode must never call them)", headers)
        if self.monotonic() < self.banned_until:
            retry = max(1, int(self.banned_until - self.monotonic()) + 1)
            return _error(418, -1003, "Way too many requests; IP banned.", {**headers, "Retry-After": str(retry)})
        if self._weight_used > self.weight_limit:
            return _error(429, -1003, "Too many requests.", {**headers, "Retry-After": "1"})
        fault = self._take_fault(method, path)
        context = _Call(request, market, version, endpoint, raw_query, body, headers)
        if fault is not None:
            answer = await self._apply_fault(fault, context)
            if answer is not None:
                return answer
        return await self._serve(context, fault)

    async def _apply_fault(self, fault: Fault, call: "_Call") -> web.StreamResponse | None:
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
            raise web.HTTPGatewayTimeout()
        if fault.kind == "drop_response":
            await self._serve(call, None)
            await asyncio.sleep(fault.delay)
            raise web.HTTPGatewayTimeout()
        if fault.kind == "error_5xx":
            if fault.processed:
                await self._serve(call, None)
            return _error(fault.status, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.", call.headers)
        if fault.kind == "error_4xx":
            if fault.processed:
                await self._serve(call, None)
            status = fault.status if 400 <= fault.status < 500 else 400
            if fault.code is not None:
                return _error(status, fault.code, "An error the venue's docs do not list.", call.headers)
            return web.Response(status=status, text=f"<html><body>{status}</body></html>", content_type="text/html",
                                headers=call.headers)
        if fault.kind == "garbled_2xx":
            await self._serve(call, None)
            return web.Response(status=200, text="<html><body>OK</body></html>", content_type="text/html",
                                headers=call.headers)
        if fault.kind == "rate_limit_429":
            return _error(429, -1003, "Too many requests; please use the websocket for live updates.", {**call.headers, "Retry-After": str(fault.retry_after)})
        if fault.kind == "ban_418":
            self.banned_until = self.monotonic() + fault.retry_after
            return _error(418, -1003, "Way too many requests; IP banned.", {**call.headers, "Retry-After": str(fault.retry_after)})
        if fault.kind == "bad_timestamp":
            return _error(400, -1021, "Timestamp for this request is outside of the recvWindow.", call.headers)
        return None  # late_fill: handled while serving

    def _authenticate(self, call: "_Call", security: str) -> tuple[str, dict[str, str]]:
        if call.version == "v3":
            return self.auth.verify_v3(call.raw_query, call.body)
        return self.auth.verify_v1(call.request.headers, call.raw_query, call.body, key_only=security == KEY)

    async def _serve(self, call: "_Call", fault: Fault | None) -> web.StreamResponse:
        route = ROUTES.get((call.request.method, call.endpoint))
        if call.market == "spot" and call.endpoint in FUTURES_ONLY:
            route = None
        if route is None:
            return _error(404, -1, f"no such endpoint {call.request.method} {call.request.path}", call.headers)
        handler, security = route
        try:
            if security == NONE:
                account, params = None, dict(urllib.parse.parse_qsl(call.raw_query, keep_blank_values=True))
            else:
                name, params = self._authenticate(call, security)
                account = self.state.account(name)
            documented = DOCUMENTED.get((call.market, call.request.method, call.endpoint),
                                        DOCUMENTED.get((call.market, call.endpoint)))
            if documented is not None and set(params) - documented - AUTH_PARAMS:
                raise VenueError(400, -1103, "An unknown parameter was sent.")
            if (call.request.method, call.endpoint) == ("POST", "/order") and account is not None:
                if self._order_counts.get(account.name, (0, 0))[1] >= self.order_limit and \
                        self._order_counts[account.name][0] == int(time.time() // 60):
                    raise VenueError(429, -1015, f"Too many new orders; current limit is {self.order_limit} "
                                                 "orders per MINUTE.")
            async with self._lock:
                self.state.run_due()
                payload = await handler(self, call.market, params, fault, account)
        except VenueError as error:
            return _error(error.http_status, error.code, error.msg, call.headers)
        headers = call.headers
        if (call.request.method, call.endpoint) == ("POST", "/order") and account is not None:
            headers = {**headers, ORDER_COUNT_HEADER: str(self._count_order(account.name))}
        return web.json_response(payload, headers=headers, dumps=_dumps)


@dataclasses.dataclass
class _Call:
    request: web.Request
    market: str
    version: str
    endpoint: str
    raw_query: str
    body: str
    headers: dict[str, str]


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers or {})


# -- endpoints ------------------------------------------------------------------------------------
async def _ping(sim, market, params, fault, account):
    return {}


async def _time(sim, market, params, fault, account):
    return {"serverTime": now_ms()}


async def _exchange_info(sim, market, params, fault, account):
    return {
        "timezone": "UTC",
        "serverTime": now_ms(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": sim.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": sim.order_limit},
        ],
        "exchangeFilters": [],
        "symbols": [spec.exchange_info(market) for spec in sim.state.specs.values()],
    }


async def _ticker_price(sim, market, params, fault, account):
    book = sim.state.book(market, params.get("symbol", ""))
    return {"symbol": book.spec.symbol, "price": str(book.last), "time": now_ms()}


async def _book_ticker(sim, market, params, fault, account):
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


async def _premium_index(sim, market, params, fault, account):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    mark = sim.state.mark(symbol)
    return {"symbol": symbol, "markPrice": str(mark), "indexPrice": str(mark), "estimatedSettlePrice": str(mark),
            "lastFundingRate": "0", "nextFundingTime": 0, "interestRate": "0", "time": now_ms()}


async def _depth(sim, market, params, fault, account):
    book = sim.state.book(market, params.get("symbol", ""))
    limit = int(params.get("limit", "500"))
    return {
        "lastUpdateId": now_ms(),
        "E": now_ms(),
        "T": now_ms(),
        "bids": [[str(level.price), str(level.quantity)] for level in book.bids[:limit]],
        "asks": [[str(level.price), str(level.quantity)] for level in book.asks[:limit]],
    }


async def _new_order(sim, market, params, fault, account):
    late = fault.delay if fault is not None and fault.kind == "late_fill" else None
    return sim.state.place(account, market, params, late_fill_after=late).to_json()


async def _query_order(sim, market, params, fault, account):
    return sim.state.find(account, market, params.get("symbol", ""), params.get("orderId"),
                          params.get("origClientOrderId")).to_json()


async def _cancel_order(sim, market, params, fault, account):
    return sim.state.cancel(account, market, params.get("symbol", ""), params.get("orderId"),
                            params.get("origClientOrderId")).to_json()


async def _cancel_all(sim, market, params, fault, account):
    sim.state.cancel_all(account, market, params.get("symbol", ""))
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


async def _countdown_cancel_all(sim, market, params, fault, account):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    try:
        countdown = int(params["countdownTime"])
    except (KeyError, ValueError):
        raise VenueError(400, -1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.") from None
    if countdown == 0:
        account.countdowns.pop(symbol, None)
    else:
        account.countdowns[symbol] = time.monotonic() + countdown / 1000
    return {"symbol": symbol, "countdownTime": str(countdown)}


async def _open_orders(sim, market, params, fault, account):
    return [order.to_json() for order in sim.state.open_orders(account, market, params.get("symbol"))]


async def _user_trades(sim, market, params, fault, account):
    def number(name: str) -> int | None:
        return int(params[name]) if params.get(name) else None

    if params.get("fromId") and (params.get("startTime") or params.get("endTime")):
        raise VenueError(400, -1128, "Combination of optional parameters invalid.")
    return sim.state.user_trades(
        account,
        market,
        params.get("symbol", ""),
        order_id=number("orderId"),
        from_id=number("fromId"),
        start_time=number("startTime"),
        end_time=number("endTime"),
        limit=min(1000, number("limit") or 500),
    )


async def _leverage(sim, market, params, fault, account):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    try:
        leverage = int(params.get("leverage", ""))
    except ValueError:
        raise VenueError(400, -4028, "Leverage is not valid") from None
    if not 1 <= leverage <= 125:
        raise VenueError(400, -4028, f"Leverage {leverage} is not valid")
    account.leverage[symbol] = leverage
    return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}


async def _margin_type(sim, market, params, fault, account):
    symbol = sim.state.spec(params.get("symbol", "")).symbol
    margin_type = params.get("marginType", "")
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise VenueError(400, -1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
    if account.margin_types.get(symbol, "CROSSED") == margin_type:
        raise VenueError(400, -4046, "No need to change margin type.")
    if any(o.open and o.symbol == symbol and o.market == "futures" for o in account.orders.values()):
        raise VenueError(400, -4047, "Margin type cannot be changed if there exists open orders.")
    if any(p.amount != 0 for (s, _), p in account.positions.items() if s == symbol):
        raise VenueError(400, -4048, "Margin type cannot be changed if there exists position.")
    account.margin_types[symbol] = margin_type
    return {"code": 200, "msg": "success"}


async def _get_position_mode(sim, market, params, fault, account):
    return {"dualSidePosition": account.dual_side}


async def _set_position_mode(sim, market, params, fault, account):
    value = params.get("dualSidePosition", "").lower()
    if value not in ("true", "false"):
        raise VenueError(400, -1102, "Mandatory parameter 'dualSidePosition' was not sent, was empty/null, or malformed.")
    dual = value == "true"
    if dual == account.dual_side:
        raise VenueError(400, -4059, "No need to change position side.")
    if any(o.open and o.market == "futures" for o in account.orders.values()):
        raise VenueError(400, -4067, "Position side cannot be changed if there exists open orders.")
    if any(p.amount != 0 for p in account.positions.values()):
        raise VenueError(400, -4068, "Position side cannot be changed if there exists position.")
    account.dual_side = dual
    return {"code": 200, "msg": "success"}


async def _position_risk(sim, market, params, fault, account):
    return sim.state.positions(account, params.get("symbol"))


async def _new_listen_key(sim, market, params, fault, account):
    return {"listenKey": sim.streams.create(account.name, market)}


async def _keepalive_listen_key(sim, market, params, fault, account):
    sim.streams.keepalive(account.name, market, params.get("listenKey"))
    return {}


async def _close_listen_key(sim, market, params, fault, account):
    sim.streams.close(account.name, market, params.get("listenKey"))
    return {}


ROUTES: dict[tuple[str, str], tuple[Any, str]] = {
    ("GET", "/ping"): (_ping, NONE),
    ("GET", "/time"): (_time, NONE),
    ("GET", "/exchangeInfo"): (_exchange_info, NONE),
    ("GET", "/ticker/price"): (_ticker_price, NONE),
    ("GET", "/ticker/bookTicker"): (_book_ticker, NONE),
    ("GET", "/premiumIndex"): (_premium_index, NONE),
    ("GET", "/depth"): (_depth, NONE),
    ("POST", "/order"): (_new_order, SIGNED),
    ("GET", "/order"): (_query_order, SIGNED),
    ("DELETE", "/order"): (_cancel_order, SIGNED),
    ("DELETE", "/allOpenOrders"): (_cancel_all, SIGNED),
    ("POST", "/countdownCancelAll"): (_countdown_cancel_all, SIGNED),
    ("GET", "/openOrders"): (_open_orders, SIGNED),
    ("GET", "/userTrades"): (_user_trades, SIGNED),
    ("POST", "/leverage"): (_leverage, SIGNED),
    ("POST", "/marginType"): (_margin_type, SIGNED),
    ("GET", "/positionSide/dual"): (_get_position_mode, SIGNED),
    ("POST", "/positionSide/dual"): (_set_position_mode, SIGNED),
    ("GET", "/positionRisk"): (_position_risk, SIGNED),
    ("POST", "/listenKey"): (_new_listen_key, KEY),
    ("PUT", "/listenKey"): (_keepalive_listen_key, KEY),
    ("DELETE", "/listenKey"): (_close_listen_key, KEY),
}
#: Futures-only endpoints.
FUTURES_ONLY = {"/premiumIndex", "/countdownCancelAll", "/leverage", "/marginType", "/positionSide/dual", "/positionRisk"}


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
            return web.json_response([o.to_json() | {"market": o.market, "account": o.account}
                                      for o in sim.state.orders.values()])

    async def trades(request: web.Request) -> web.Response:
        return web.json_response([t | {"account": name} for name, a in sim.state.accounts.items() for t in a.trades])

    async def set_mark(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            async with sim._lock:
                sim.state.set_mark(body["symbol"], Decimal(str(body["price"])))
        except (KeyError, InvalidOperation, VenueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"symbol": body["symbol"], "mark": str(body["price"])})

    async def place(request: web.Request) -> web.Response:
        """An order placed at the venue by someone else on the account (not through Tessera)."""
        body = await request.json()
        account = sim.state.account(body.pop("account", DEFAULT_ACCOUNT))
        market = body.pop("market", "futures")
        try:
            async with sim._lock:
                order = sim.state.place(account, market, {k: str(v) for k, v in body.items()})
        except VenueError as error:
            return web.json_response({"code": error.code, "msg": error.msg}, status=400)
        return web.json_response(order.to_json())

    async def ws_drop(request: web.Request) -> web.Response:
        return web.json_response({"dropped": await sim.streams.drop_all()})

    async def ws_refuse(request: web.Request) -> web.Response:
        body = await request.json()
        sim.streams.refuse_until = time.monotonic() + float(body.get("seconds", 0))
        dropped = await sim.streams.drop_all() if body.get("drop", True) else 0
        return web.json_response({"refusing_for": body.get("seconds", 0), "dropped": dropped})

    async def ws_expire(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        return web.json_response({"expired": sim.streams.expire(body.get("account"))})

    async def ws_state(request: web.Request) -> web.Response:
        return web.json_response({"connected": len(sim.streams.sockets), "connections": sim.streams.connections,
                                  "listen_keys": len(sim.streams.keys)})

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
                account = sim.state.accounts[order.account]
                del account.orders[order.order_id]
                account.by_client_id.pop((order.market, order.symbol, order.client_order_id), None)
        return web.json_response({"forgotten": len(chosen)})

    async def settings(request: web.Request) -> web.Response:
        name = request.query.get("account", DEFAULT_ACCOUNT)
        account = sim.state.accounts.get(name) or sim.state.account(DEFAULT_ACCOUNT)
        return web.json_response({"leverage": account.leverage, "margin_types": account.margin_types,
                                  "dual_side": account.dual_side,
                                  "positions": {f"{s}:{side}": str(p.amount) for (s, side), p in account.positions.items()}})

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
        web.post("/_sim/mark", set_mark),
        web.post("/_sim/place", place),
        web.post("/_sim/ws/drop", ws_drop),
        web.post("/_sim/ws/refuse", ws_refuse),
        web.post("/_sim/ws/expire", ws_expire),
        web.get("/_sim/ws", ws_state),
    ]


def build_app(sim: VenueSimulator, *, due_interval: float = 0.05) -> web.Application:
    app = web.Application()
    app.add_routes(_control_routes(sim))
    app.router.add_get("/ws/{listen_key}", sim.streams.handle)
    app.router.add_route("*", "/{tail:(fapi|api)/.*}", sim.handle)

    async def run_due_forever(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(due_interval)
                async with sim._lock:
                    sim.state.run_due()
                    sim.streams.expire_due()

        task = asyncio.create_task(loop(), name="venue-sim-due")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.streams.drop_all()

    app.cleanup_ctx.append(run_due_forever)
    return app
