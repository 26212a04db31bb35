"""The seed's "prepare" functions: venue requests built without I/O.

Every function returns a :class:`VenueRequest`, a plain immutable value (method, path,
parameters in order, whether it must be signed, its request weight). A signer
(:mod:`.signing`) adds ``timestamp``, ``recvWindow`` and ``signature``; a transport
(:mod:`.transport`) sends it. Unit tests pin the exact requests these functions build.

Paths follow Aster's futures API (``/fapi/v1``) and spot API (``/api/v1``).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Iterable

from services.common.convert import format_decimal
from services.domain import MarketType, Order, OrderType, TimeInForce
from services.domain.errors import PreconditionFailed

from .rules import SymbolRules, fit_order

FUTURES_PREFIX = "/fapi/v1"
SPOT_PREFIX = "/api/v1"

#: Venue order types for Tessera's, per market (a stop-limit order is Aster's ``STOP``).
ORDER_TYPES = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP_MARKET: "STOP_MARKET",
    OrderType.STOP_LIMIT: "STOP",
}
#: Post-only is Aster's ``GTX`` time in force.
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


def prefix_for(market_type: MarketType) -> str:
    return SPOT_PREFIX if market_type is MarketType.SPOT else FUTURES_PREFIX


def _order_params(order: Order, rules: SymbolRules | None) -> list[tuple[str, str]]:
    if order.time_in_force is TimeInForce.GTD:
        raise PreconditionFailed(
            "time_in_force GTD: Aster has no good-till-date orders", reason="ORDER_NOT_REPRESENTABLE"
        )
    fitted = fit_order(order, rules)
    params = [
        ("symbol", order.symbol),
        ("side", order.side.value),
        ("type", ORDER_TYPES[order.order_type]),
    ]
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        params.append(("timeInForce", POST_ONLY_TIME_IN_FORCE if order.post_only else order.time_in_force.value))
    params.append(("quantity", format_decimal(fitted.quantity)))
    if fitted.price is not None:
        params.append(("price", format_decimal(fitted.price)))
    if fitted.stop_price is not None:
        params.append(("stopPrice", format_decimal(fitted.stop_price)))
    return params


def prepare_futures_order(order: Order, rules: SymbolRules | None = None) -> VenueRequest:
    """``POST /fapi/v1/order`` for ``order``; ``newClientOrderId`` is its client order id.

    With ``rules`` the quantity and prices are fitted to the symbol's filters first.

    Raises
    ------
    PreconditionFailed
        Reason ``ORDER_NOT_REPRESENTABLE``: the order cannot be sent as it is.
    """
    params = _order_params(order, rules)
    if order.reduce_only:
        params.append(("reduceOnly", "true"))
    params += [("newClientOrderId", order.client_order_id), ("newOrderRespType", "RESULT")]
    return VenueRequest("POST", f"{FUTURES_PREFIX}/order", tuple(params), signed=True)


def prepare_spot_order(order: Order, rules: SymbolRules | None = None) -> VenueRequest:
    """``POST /api/v1/order`` for ``order`` (see :func:`prepare_futures_order`)."""
    if order.reduce_only:
        raise PreconditionFailed("reduce_only: spot orders cannot be reduce-only", reason="ORDER_NOT_REPRESENTABLE")
    params = _order_params(order, rules)
    params += [("newClientOrderId", order.client_order_id), ("newOrderRespType", "RESULT")]
    return VenueRequest("POST", f"{SPOT_PREFIX}/order", tuple(params), signed=True)


def prepare_order(order: Order, rules: SymbolRules | None = None) -> VenueRequest:
    builder = prepare_spot_order if order.market_type is MarketType.SPOT else prepare_futures_order
    return builder(order, rules)


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
    limit: int = 1000,
) -> VenueRequest:
    """``GET /userTrades``: the account's trades on a symbol, of one order or from a trade id."""
    params: list[tuple[str, str]] = [("symbol", symbol)]
    if venue_order_id is not None:
        params.append(("orderId", str(venue_order_id)))
    if from_id is not None:
        params.append(("fromId", str(from_id)))
    params.append(("limit", str(limit)))
    return VenueRequest("GET", f"{prefix_for(market_type)}/userTrades", tuple(params), signed=True, weight=5)


def prepare_ticker_price(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/ticker/price", (("symbol", symbol),))


def prepare_book_ticker(symbol: str, market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/ticker/bookTicker", (("symbol", symbol),))


def prepare_depth(symbol: str, market_type: MarketType = MarketType.FUTURES, limit: int = 20) -> VenueRequest:
    weight = 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return VenueRequest(
        "GET", f"{prefix_for(market_type)}/depth", (("symbol", symbol), ("limit", str(limit))), weight=weight
    )


def prepare_exchange_info(market_type: MarketType = MarketType.FUTURES) -> VenueRequest:
    return VenueRequest("GET", f"{prefix_for(market_type)}/exchangeInfo")
