"""The simulated venue's authentication: V1 API keys (HMAC) and V3 API wallets (EIP-712).

V1 (``/fapi/v1``, ``/api/v1``): the ``X-MBX-APIKEY`` header names the account; the
signature is the HMAC-SHA256 of ``totalParams`` (query string, then body) with its
secret; ``timestamp`` must be within ``recvWindow``. User-stream requests need the key only.

V3 (``/fapi/v3``, ``/api/v3``): the parameters carry ``user``, ``signer``, ``nonce`` and
``signature`` (query string for GET, query or form body otherwise); the signature is
checked by recovering its signer from the EIP-712 typed data of the message as sent (the
text before ``&signature=``, in whatever order the client sent it) with eth-account,
and the signer must be an API wallet registered for ``user``. The nonce must be within
10 s of the venue's clock and not among the user's last 100 ("V3 Nonce Mechanism").
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import time
import urllib.parse
from typing import Any, Mapping

from .state import VenueError, now_ms

API_KEY_HEADER = "X-MBX-APIKEY"
NONCE_WINDOW_US = 10_000_000
NONCES_KEPT = 100


def _typed_data(message: str, chain_id: int) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {"name": "AsterSignTransaction", "version": "1", "chainId": chain_id,
                   "verifyingContract": "0x0000000000000000000000000000000000000000"},
        "message": {"msg": message},
    }


def recover_signer(message: str, signature: str, chain_id: int) -> str | None:
    """The address whose key signed ``message`` (None: not a valid signature)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    try:
        return Account.recover_message(encode_typed_data(full_message=_typed_data(message, chain_id)),
                                       signature=signature)
    except Exception:  # noqa: BLE001 - any malformed signature is the same refusal
        return None


class Authenticator:
    """Who may call: V1 keys and V3 API wallets, each mapped to an account of the venue."""

    def __init__(self, *, chain_id: int = 1666) -> None:
        self.chain_id = chain_id
        self._keys: dict[str, tuple[bytes, str]] = {}
        self._wallets: dict[str, tuple[str, set[str]]] = {}  # user (lower) -> (account, signers (lower))
        self._nonces: dict[str, list[int]] = {}

    def add_api_key(self, api_key: str, secret: str, account: str) -> None:
        self._keys[api_key] = (secret.encode(), account)

    def add_wallet(self, user: str, signer: str, account: str | None = None) -> str:
        """Register ``signer`` as an API wallet of ``user``; the account is ``user`` unless named."""
        name, signers = self._wallets.setdefault(user.lower(), (account or user, set()))
        signers.add(signer.lower())
        return name

    def revoke_wallet(self, user: str, signer: str) -> None:
        """Refuse ``signer`` for ``user`` from now on (-1002), as the venue does once an API
        wallet is removed; the account and its orders stay."""
        wallet = self._wallets.get(user.lower())
        if wallet is not None:
            wallet[1].discard(signer.lower())

    # -- V1 ---------------------------------------------------------------------------------------
    def verify_v1(self, headers: Mapping[str, str], raw_query: str, body: str, *, key_only: bool
                  ) -> tuple[str, dict[str, str]]:
        entry = self._keys.get(headers.get(API_KEY_HEADER, ""))
        if entry is None:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        secret, account = entry
        if key_only:
            return account, dict(urllib.parse.parse_qsl(raw_query + body, keep_blank_values=True))
        total = raw_query + body
        payload, marker, signature = total.rpartition("&signature=")
        if not marker or "&" in signature:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
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
        return account, params

    # -- V3 ---------------------------------------------------------------------------------------
    def verify_v3(self, raw_query: str, body: str) -> tuple[str, dict[str, str]]:
        carrier = body if "signature=" in body else raw_query
        message, marker, signature = carrier.rpartition("&signature=")
        if not marker or "&" in signature or not signature:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        params = dict(urllib.parse.parse_qsl(message, keep_blank_values=True))
        for name in ("user", "signer", "nonce"):
            if not params.get(name):
                raise VenueError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        recovered = recover_signer(message, signature, self.chain_id)
        if recovered is None or recovered.lower() != params["signer"].lower():
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        wallet = self._wallets.get(params["user"].lower())
        if wallet is None or recovered.lower() not in wallet[1]:
            raise VenueError(401, -1002, "You are not authorized to execute this request.")
        try:
            nonce = int(params["nonce"])
        except ValueError:
            raise VenueError(400, -1102, "Mandatory parameter 'nonce' was not sent, was empty/null, or malformed.") from None
        self._take_nonce(params["user"].lower(), nonce)
        return wallet[0], params

    def _take_nonce(self, user: str, nonce: int) -> None:
        if abs(nonce - int(time.time() * 1_000_000)) > NONCE_WINDOW_US:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        seen = self._nonces.setdefault(user, [])
        index = bisect.bisect_left(seen, nonce)
        if index < len(seen) and seen[index] == nonce:
            raise VenueError(400, -4225, "Nonce Expired")  # already used: a duplicate request
        if len(seen) >= NONCES_KEPT:
            if nonce < seen[0]:
                raise VenueError(400, -4225, "Nonce Expired")
            seen.pop(0)
            index = bisect.bisect_left(seen, nonce)
        seen.insert(index, nonce)
