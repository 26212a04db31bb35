"""Request signing, as Aster defines it for V1 (HMAC-SHA256) and V3 (EIP-712).

**V1** (``/fapi/v1``, ``/api/v1``): the signature is the hex HMAC-SHA256, keyed with
the API secret, of ``totalParams``: the query string exactly as sent, ending in
``recvWindow`` and ``timestamp``; the API key travels in the ``X-MBX-APIKEY`` header.
User-stream requests (``listenKey``) carry the key only.

**V3** (``/fapi/v3``, ``/api/v3``), per Aster's V3 futures and spot docs
("Authentication signature payload", "Example of POST /fapi/v3/order") and the
aster-api-auth-v3 skill:

1. the request's parameters plus ``nonce`` (microseconds), ``user`` and ``signer``,
   as ``key=value`` strings sorted by key (ASCII) and URL-encoded: the message;
2. the EIP-712 typed data: domain ``AsterSignTransaction``, version ``1``, chainId
   1666 (mainnet; 714 on testnet), verifyingContract zero; primary type
   ``Message { string msg }`` with ``msg`` the message;
3. signed with the API wallet's private key (ECDSA, by eth-account), hex;
4. ``signature`` appended last; GET sends it all as the query string, POST, PUT and
   DELETE as an ``application/x-www-form-urlencoded`` body.

Everything sent is exactly what was signed. Everything here is pure but the nonce,
which each :class:`~.credentials.WalletCredentials` draws from its increasing source, at
the venue's time the transport gives (``now_us``); no secret appears in a repr, a log
line or an error message.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from .credentials import HmacCredentials, VenueCredentials, WalletCredentials
from .requests import VenueRequest, versioned_path

API_KEY_HEADER = "X-MBX-APIKEY"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
DEFAULT_RECV_WINDOW_MS = 5000

#: Kept for existing callers: the V1 credentials.
Credentials = HmacCredentials

EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


@dataclasses.dataclass(frozen=True)
class SignedRequest:
    """What goes on the wire: method, path, query string, form body, headers. The repr
    shows the method and the path only: the query and the body carry the signature."""

    method: str
    path: str
    query: str = dataclasses.field(repr=False)
    headers: dict[str, str] = dataclasses.field(repr=False)
    request: VenueRequest = dataclasses.field(repr=False)
    body: str = dataclasses.field(default="", repr=False)

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


def signature_payload(request: VenueRequest, *, timestamp_ms: int, recv_window_ms: int) -> str:
    """V1 ``totalParams`` for a signed request: its parameters, then recvWindow and timestamp."""
    params = [*request.params, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))]
    return urllib.parse.urlencode(params)


def typed_data(message: str, chain_id: int) -> dict[str, Any]:
    """Aster's EIP-712 typed data for one V3 request message."""
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, "Message": [{"name": "msg", "type": "string"}]},
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": ZERO_ADDRESS,
        },
        "message": {"msg": message},
    }


def v3_message(request: VenueRequest, credentials: WalletCredentials, nonce: int) -> str:
    """The V3 message: parameters with nonce, user and signer, sorted by key, URL-encoded."""
    params = {name: str(value) for name, value in request.params}
    params.update(nonce=str(nonce), user=credentials.user, signer=credentials.signer)
    return urllib.parse.urlencode(sorted(params.items()))


def _sign_v1(request: VenueRequest, credentials: HmacCredentials, path: str, timestamp_ms: int,
             recv_window_ms: int) -> SignedRequest:
    headers = {API_KEY_HEADER: credentials.api_key}
    if request.key_only:
        return SignedRequest(request.method, path, request.query_string(), headers, request)
    payload = signature_payload(request, timestamp_ms=timestamp_ms, recv_window_ms=recv_window_ms)
    query = f"{payload}&signature={credentials.sign(payload)}"
    return SignedRequest(request.method, path, query, headers, request)


def _sign_v3(request: VenueRequest, credentials: WalletCredentials, path: str, nonce: int | None,
             now_us: int | None) -> SignedRequest:
    message = v3_message(request, credentials, credentials.nonces.next(now_us) if nonce is None else nonce)
    signed = f"{message}&signature={credentials.sign_typed_data(typed_data(message, credentials.chain_id))}"
    if request.method == "GET":
        return SignedRequest(request.method, path, signed, {}, request)
    return SignedRequest(request.method, path, "", {"Content-Type": FORM_CONTENT_TYPE}, request, body=signed)


def sign_request(
    request: VenueRequest,
    credentials: VenueCredentials | None,
    *,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
    api: str | None = None,
    nonce: int | None = None,
    now_us: int | None = None,
) -> SignedRequest:
    """Authenticate ``request`` with ``credentials`` (V1 or V3, by their type).

    The path follows the credentials' API version (``/fapi/v1/order`` becomes
    ``/fapi/v3/order`` for V3); an unsigned request uses ``api`` (default V1). ``nonce``
    fixes the V3 nonce (tests); otherwise the credentials' nonce source gives the next,
    from ``now_us``: the venue's time in microseconds as the transport knows it (its
    clock plus the measured offset; without it, the local clock).

    Raises
    ------
    ValueError
        A signed request without credentials.
    """
    version = credentials.api if credentials is not None else (api or "v1")
    path = versioned_path(request.path, version)
    if not request.signed:
        return SignedRequest(request.method, path, request.query_string(), {}, request)
    if credentials is None:
        raise ValueError(f"{request.method} {request.path} must be signed, and there are no credentials")
    if isinstance(credentials, WalletCredentials):
        return _sign_v3(request, credentials, path, nonce, now_us)
    return _sign_v1(request, credentials, path, timestamp_ms, recv_window_ms)
