"""Risk-token verification as the OMS and the Exchange service both apply it."""

from __future__ import annotations

import time

import core_ext
from services.domain import Order
from services.domain.errors import TokenRejected

_TOKEN_MESSAGES = {
    "TOKEN_MISSING": "no risk token: orders must be approved by the Risk service",
    "TOKEN_MALFORMED": "the risk token is malformed",
    "TOKEN_UNKNOWN_KEY": "the risk token names an unknown signing key",
    "TOKEN_BAD_SIGNATURE": "the risk token's signature does not verify",
    "TOKEN_EXPIRED": "the risk token has expired",
    "TOKEN_NOT_YET_VALID": "the risk token is issued in the future",
    "TOKEN_FIELDS_CHANGED": "the order's fields differ from the ones the risk token signs",
}


def verify_or_raise(
    keyring: "core_ext.KeyRing", token: str | None, order: Order, *, ttl_seconds: int
) -> "core_ext.VerifyResult":
    """Verify ``token`` against ``order``'s economic fields.

    Raises
    ------
    TokenRejected
        With the verifier's reason code (``TOKEN_EXPIRED``, ...) as its reason.
    """
    result = core_ext.verify_token(keyring, token, order.token_body(), time.time(), ttl_seconds)
    if not result.ok:
        raise TokenRejected(_TOKEN_MESSAGES.get(result.reason, "risk token refused"), reason=result.reason)
    return result
