"""The seed's "prepare" functions: venue requests built without I/O.

Every function returns a :class:`VenueRequest`, a plain immutable value (method, path,
parameters in order, whether it must be signed, its request weight). A signer
(:mod:`.signing`) adds ``timestamp``, ``recvWindow`` and ``signature``; a transport
(:mod:`.transport`) sends it. Unit tests pin the exact requests these functions build.

Paths are written as Aster's V1 paths (``/fapi/v1``, ``/api/v1``); the signer moves
them to ``/fapi/v3`` and ``/api/v3`` for V3 credentials (:func:`versioned_path`): the
two versions share endpoints and parameters and differ in authentication.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from decimal import Decimal
from typing import Iterable

from services.common.convert import format_decimal
from services.domain import MarketType, Order, OrderType, Side, TimeInForce
from services.domain.errors import PreconditionFailed

from .rules import FittedOrder, SymbolRules, fit_order

FUTURES_PREFIX = "/fapi/v1"
SPOT_PREFIX = "/api/v1"
_V3_PREFIXES = (("/fapi/v1/", "/fapi/v3/"), ("/fapi/v2/", "/fapi/v3/"), ("/api/v1/", "/api/v3/"))

#: Venue order types for Tessera's (a stop-limit order is Aster's ``STOP``; trailing stops
#: are futures only).
ORDER_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP_MARKET: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP",
    OrderType.TAKE_PROFIT: "TAKE_PROFIT",
    OrderType.TAKE_PROFIT_MARKET: "TAKE_PROFIT_MARKET",
    OrderType.TRAILING_STOP_MARKET: "TRAILING_STOP_MARKET",
}
#: Post-only is Aster's ``GTX`` time in force (good till crossing: it rests), so only a
#: GTC order can be post-only at the venue; IOC and FOK post-only orders are refused.
POST_ONLY_TIME_IN_FORCE = "GTX"


@dataclasses.dataclass(frozen=True)
class VenueRequest:
    """One REST request, before signing.

    ``params`` keep their order: the signature covers the exact query string.
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    signed: bool = False
    weight: int = 1
    #: A V1 user-stream request (``listenKey``): the API key header only, no signature.
    #: V3 signs these as any other.
    key_only: bool = False
    #: Counts against the account's order rate limit (``X-MBX-ORDER-COUNT-*``).
    places_order: bool = False
    #: Market data a caller asked for (``GetTicker``): sent only within
    #: :data:`~services.exchange.aster.limits.MARKET_DATA_SHARE` of the minute's request
    #: weight, refused past it, so such calls never hold back the orders.
    market_data: bool = False

    @property
    def idempotent(self) -> bool:
        """Reads may be retried; anything that changes state at the venue never is."""
        return self.method == "GET"

    @property
    def is_trading(self) -> bool:
        """True for every request that can change an order, a position or a setting."""
        return self.method != "GET"

    def query_string(self) -> str:
        return urllib.parse.urlencode(self.params)

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def versioned_path(path: str, api: str) -> str:
    """``path`` for API version ``api`` (``"v1"`` or ``"v3"``)."""
    if api == "v3":
        for v1, v3 in _V3_PREFIXES:
            if path.startswith(v1):
                return v3 + path[len(v1):]
    return path


def market_of(path: str) -> MarketType:
    return MarketType.SPOT if path.startswith("/api/") else MarketType.FUTURES


def prefix_for(market_type: MarketType) -> str:
    return SPOT_PREFIX if market_type is MarketType.SPOT else FUTURES_PREFIX


def _order_params(order: Order, rules: SymbolRules | None, reference_price: Decimal | None
                  ) -> tuple[list[tuple[str, str]], FittedOrder]:
    if order.time_in_force is TimeInForce.GTD:
        raise PreconditionFailed(
            "time_in_force GTD: Aster has no good-till-date orders", reason="ORDER_NOT_REPRESENTABLE"
        )
    if order.post_only and order.time_in_force is not TimeInForce.GTC:
        # The venue's post-only is GTX, which rests what it does not fill: an IOC or FOK
        # post-only order would be sent as another order (one that rests).
        raise PreconditionFailed(
            f"post_only with time_in_force {order.time_in_force.value}: the venue's post-only (GTX) rests, "
            "it cannot be IOC or FOK", reason="ORDER_NOT_REPRESENTABLE"
        )
    fitted = fit_order(order, rules, reference_price)
    params = [
        ("symbol", order.symbol),
        ("side", order.side.value),
        ("type", ORDER_TYPES[order.order_type]),
    ]
    if order.order_type.needs_price:
        params.append(("timeInForce", POST_ONLY_TIME_IN_FORCE if order.post_only else order.time_in_force.value))
    if fitted.quantity is not None:
        params.append(("quantity", format_decimal(fitted.quantity)))
    if order.quote_order_qty is not None:
        params.append(("quoteOrderQty", format_decimal(order.quote_order_qty)))
    if fitted.price is not None:
        params.append(("price", format_decimal(fitted.price)))
    if fitted.stop_price is not None:
        params.append(("stopPrice", format_decimal(fitted.stop_price)))
    return params, fitted


def position_side(order: Order, hedge_mode: bool) -> str | None:
    """The ``positionSide`` of a futures order: none in one-way mode (the venue's
    ``BOTH``); in hedge mode the side of the position it opens (BUY: ``LONG``) or, when
    reduce-only or closing the position, the side it closes (SELL: ``LONG``)."""
    if not hedge_mode:
        return None
    opens_long = order.side is Side.BUY
    if order.reduce_only or order.close_position:
        opens_long = not opens_long
    return "LONG" if opens_long else "SHORT"


def prepare_futures_order(
    order: Order,
    rules: SymbolRules | None = None,
    *,
    hedge_mode: bool = False,
    reference_price: Decimal | None = None,
) -> VenueRequest:
    """``POST /fapi/v1/order`` for ``order``; ``newClientOrderId`` is its client order id.

    With ``rules`` the quantity and prices are fitted to the symbol's filters first;
    ``reference_price`` (the mark price) checks a market order's notional and a limit
    price's distance from it (MIN_NOTIONAL, PERCENT_PRICE). In hedge mode the order
    carries ``positionSide`` and never ``reduceOnly`` (the venue refuses it there: the
    position side says what it closes). A close-position order carries
    ``closePosition=true`` and neither ``quantity`` nor ``reduceOnly``; a trailing stop
    ``callbackRate`` and, when set, ``activationPrice``; a conditional order the
    ``workingType`` and ``priceProtect=TRUE`` the order set (nothing when unset: the
    venue's defaults, CONTRACT_PRICE and FALSE). Only what Risk signed is sent.

    Raises
    ------
    PreconditionFailed
        Reason ``ORDER_NOT_REPRESENTABLE``: the order cannot be sent as it is.
    """
    params, fitted = _order_params(order, rules, reference_price)
    if fitted.activation_price is not None:
        params.append(("activationPrice", format_decimal(fitted.activation_price)))
    if order.callback_rate is not None:
        params.append(("callbackRate", format_decimal(order.callback_rate)))
    side = position_side(order, hedge_mode)
    if side is not None:
        params.append(("positionSide", side))
    elif order.reduce_only:
        params.append(("reduceOnly", "true"))
    if order.close_position:
        params.append(("closePosition", "true"))
    if order.working_type is not None:
        params.append(("workingType", order.working_type.value))
    if order.price_protect:
        params.append(("priceProtect", "TRUE"))
    params += [("newClientOrderId", order.client_order_id), ("newOrderRespType", "RESULT")]
    return VenueRequest("POST", f"{FUTURES_PREFIX}/order", tuple(params), signed=True, places_order=True)


def prepare_spot_order(
    order: Order, rules: SymbolRules | None = None, *, reference_price: Decimal | None = None
) -> VenueRequest:
    """``POST /api/v1/order`` for ``order`` (see :func:`prepare_futures_order`)."""
    if order.reduce_only:
        raise PreconditionFailed("reduce_only: spot orders cannot be reduce-only", reason="ORDER_NOT_REPRESENTABLE")
    futures_only = [name for name, value in (
        ("TRAILING_STOP_MARKET", order.order_type is OrderType.TRAILING_STOP_MARKET),
        ("close_position", order.close_position), ("working_type", order.working_type is not None),
        ("price_protect", order.price_protect)) if value]
    if futures_only:
        raise PreconditionFailed(f"{', '.join(futures_only)}: futures only, not on spot",
                                 reason="ORDER_NOT_REPRESENTABLE")
    params, _ = _order_params(order, rules, reference_price)
    params += [("newClientOrderId", order.client_order_id), ("newOrderRespType", "RESULT")]
    return VenueRequest("POST", f"{SPOT_PREFIX}/order", tuple(params), signed=True, places_order=True)


def prepare_order(
    order: Order,
    rules: SymbolRules | None = None,
    *,
    hedge_mode: bool = False,
    reference_price: Decimal | None = None,
) -> VenueRequest:
    if order.market_type is MarketType.SPOT:
        return prepare_spot_order(order, rules, reference_price=reference_price)
    return prepare_futures_order(order, rules, hedge_mode=hedge_mode, reference_price=reference_price)


def prepare_cancel_order(
    symbol: str, client_order_id: str, market_type: MarketType = MarketType.FUTURES
) -> VenueRequest:
    """``DELETE /order`` by the client order id (Tessera's id at the venue)."""
    params = (("symbol", symbol), ("origClientOrderId", client_order_id))
    return VenueRequest("DELETE", f"{prefix_for(market_type)}/order", params, signed=True)


def prepare_cancel_all(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    """``DELETE /allOpenOrders`` for one symbol."""
    return VenueRequest("DELETE", f"{prefix_for(market_type)}/allOpenOrders", (("symbol", symbol),), signed=True)


def prepare_emergency_cancel_all(
    symbols: Iterable[str], market_type: MarketType = MarketType.FUTURES
) -> tuple[VenueRequest, ...]:
    """The kill switch: one cancel-all per symbol, each symbol once, in name order."""
    return tuple(prepare_cancel_all(symbol, market_type) for symbol in sorted(set(symbols)))


def prepare_set_leverage(symbol: str, leverage: int) -> VenueRequest:
    """``POST /fapi/v1/leverage`` (futures only)."""
    return VenueRequest(
        "POST", f"{FUTURES_PREFIX}/leverage", (("symbol", symbol), ("leverage", str(int(leverage)))), signed=True
    )


def prepare_set_margin_type(symbol: str, margin_type: str) -> VenueRequest:
    """``POST /fapi/v1/marginType`` with ``ISOLATED`` or ``CROSSED`` (futures only)."""
    return VenueRequest(
        "POST", f"{FUTURES_PREFIX}/marginType", (("symbol", symbol), ("marginType", margin_type)), signed=True
    )


def prepare_query_order(
    symbol: str, client_order_id: str, market_type: MarketType = MarketType.FUTURES
) -> VenueRequest:
    """``GET /order`` by client order id: the venue's view of one order."""
    params = (("symbol", symbol), ("origClientOrderId", client_order_id))
    return VenueRequest("GET", f"{prefix_for(market_type)}/order", params, signed=True)


def prepare_open_orders(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/openOrders", (("symbol", symbol),), signed=True)


def prepare_user_trades(
    symbol: str,
    market_type: MarketType = MarketType.FUTURES,
    *,
    venue_order_id: int | None = None,
    from_id: int | None = None,
    start_time_ms: int | None = None,
    limit: int = 1000,
) -> VenueRequest:
    """``GET /userTrades``: the account's trades on a symbol, from a trade id or a time.

    The futures endpoint takes ``symbol``, ``startTime``/``endTime``, ``fromId`` and
    ``limit``; it has no ``orderId`` (the trades it returns name their order). Spot also
    takes ``orderId``. ``fromId`` cannot go with a time.

    Raises
    ------
    ValueError
        ``orderId`` asked of the futures endpoint, or ``fromId`` with a start time.
    """
    if venue_order_id is not None and market_type is not MarketType.SPOT:
        raise ValueError("futures userTrades has no orderId parameter; read by fromId or startTime")
    if from_id is not None and start_time_ms is not None:
        raise ValueError("userTrades: fromId cannot be sent with startTime")
    params: list[tuple[str, str]] = [("symbol", symbol)]
    if venue_order_id is not None:
        params.append(("orderId", str(venue_order_id)))
    if from_id is not None:
        params.append(("fromId", str(from_id)))
    if start_time_ms is not None:
        params.append(("startTime", str(start_time_ms)))
    params.append(("limit", str(limit)))
    return VenueRequest("GET", f"{prefix_for(market_type)}/userTrades", tuple(params), signed=True, weight=5)


def prepare_countdown_cancel_all(symbol: str, countdown_ms: int) -> VenueRequest:
    """``POST /fapi/v1/countdownCancelAll``: the venue cancels every open order of
    ``symbol`` unless called again within ``countdown_ms`` (0 stops the timer). Futures
    only; weight 10."""
    if countdown_ms < 0:
        raise ValueError("countdown_ms must be 0 (stop) or positive")
    return VenueRequest(
        "POST", f"{FUTURES_PREFIX}/countdownCancelAll",
        (("symbol", symbol), ("countdownTime", str(int(countdown_ms)))), signed=True, weight=10,
    )


def prepare_position_mode() -> VenueRequest:
    """``GET /fapi/v1/positionSide/dual``: hedge (``true``) or one-way mode, for every symbol."""
    return VenueRequest("GET", f"{FUTURES_PREFIX}/positionSide/dual", signed=True, weight=30)


def prepare_set_position_mode(hedge: bool) -> VenueRequest:
    """``POST /fapi/v1/positionSide/dual`` with ``dualSidePosition`` ``true`` (hedge) or ``false``."""
    return VenueRequest(
        "POST", f"{FUTURES_PREFIX}/positionSide/dual",
        (("dualSidePosition", "true" if hedge else "false"),), signed=True,
    )


def prepare_position_risk(symbol: str | None = None) -> VenueRequest:
    """``GET /fapi/v2/positionRisk`` (Aster's V1 API has it in v2 only; an API wallet's
    is ``/fapi/v3/positionRisk``): positions with their leverage and margin type, one row
    per symbol in one-way mode, per side (``LONG``, ``SHORT``) in hedge mode."""
    params = (("symbol", symbol),) if symbol else ()
    return VenueRequest("GET", "/fapi/v2/positionRisk", params, signed=True, weight=5)


def prepare_mark_price(symbol: str) -> VenueRequest:
    """``GET /fapi/v1/premiumIndex``: the mark price (PERCENT_PRICE, MIN_NOTIONAL of market orders)."""
    return VenueRequest("GET", f"{FUTURES_PREFIX}/premiumIndex", (("symbol", symbol),))


def prepare_listen_key(market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    """``POST /listenKey``: the account's user-data stream key (the active one if any)."""
    return VenueRequest("POST", f"{prefix_for(market_type)}/listenKey", signed=True, key_only=True)


def prepare_keepalive_listen_key(listen_key: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    """``PUT /listenKey``: 60 more minutes. Futures names no key (one per account); spot does."""
    params = (("listenKey", listen_key),) if market_type is MarketType.SPOT else ()
    return VenueRequest("PUT", f"{prefix_for(market_type)}/listenKey", params, signed=True, key_only=True)


def prepare_close_listen_key(listen_key: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    """``DELETE /listenKey``: close the stream."""
    params = (("listenKey", listen_key),) if market_type is MarketType.SPOT else ()
    return VenueRequest("DELETE", f"{prefix_for(market_type)}/listenKey", params, signed=True, key_only=True)


def prepare_ticker_price(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/ticker/price", (("symbol", symbol),))


def prepare_book_ticker(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/ticker/bookTicker", (("symbol", symbol),),
                        market_data=True)


def prepare_depth(symbol: str, market_type: MarketType = MarketType.FUTURES, limit: int = 20) -> VenueRequest:
    weight = 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return VenueRequest(
        "GET", f"{prefix_for(market_type)}/depth", (("symbol", symbol), ("limit", str(limit))), weight=weight
    )


def prepare_exchange_info(market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/exchangeInfo")
