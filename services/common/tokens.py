"""Risk-token verification as the OMS and the Exchange service both apply it."""

from __future__ import annotations

import hashlib
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
    keyring: "core_ext.KeyRing", token: str | None, order: Order, *, ttl_seconds: int, now: float | None = None
) -> "core_ext.VerifyResult":
    """Verify ``token`` against ``order``'s economic fields at ``now`` (epoch seconds;
    default: the wall clock).

    Raises
    ------
    TokenRejected
        With the verifier's reason code (``TOKEN_EXPIRED``, ...) as its reason.
    """
    result = core_ext.verify_token(keyring, token, order.token_body(), time.time() if now is None else now,
                                   ttl_seconds)
    if not result.ok:
        raise TokenRejected(_TOKEN_MESSAGES.get(result.reason, "risk token refused"), reason=result.reason)
    return result


# -- the OMS's per-call credential towards the Exchange service ---------------------------
# Clients hold risk tokens, so a risk token alone must not let them reach a venue
# behind the OMS. The OMS signs each Exchange call with the same key ring over a
# body that no risk token can have (risk token bodies start with b"tessera.order.v1").
OMS_CREDENTIAL_METADATA = "tessera-oms-credential"
_CALL_BODY_PREFIX = b"tessera.oms-call.v1\n"


def _call_body(method: str, risk_token: str) -> bytes:
    return _CALL_BODY_PREFIX + method.encode() + b"\n" + risk_token.encode()


def batch_tokens(risk_tokens: list[str]) -> str:
    """What the OMS's credential for a batch call signs in place of one risk token: a
    digest of the batch's tokens, in order (a batch's call cannot be replayed with
    other orders)."""
    return "batch:" + hashlib.sha256("\n".join(risk_tokens).encode()).hexdigest()


def oms_call_metadata(keyring: "core_ext.KeyRing", method: str, risk_token: str = "", *,
                      now: float | None = None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata proving the call comes from an OMS holding the key ring (signed at
    ``now``, epoch seconds; default: the wall clock)."""
    credential = core_ext.sign_token(keyring, _call_body(method, risk_token), int(time.time() if now is None else now))
    return ((OMS_CREDENTIAL_METADATA, credential),)


def verify_oms_call(
    keyring: "core_ext.KeyRing", metadata: object, method: str, risk_token: str = "", *, ttl_seconds: int = 60,
    now: float | None = None,
) -> None:
    """Raise :class:`TokenRejected` (reason ``CALLER_NOT_OMS``) unless the OMS signed this
    call (checked at ``now``, epoch seconds; default: the wall clock)."""
    presented = None
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == OMS_CREDENTIAL_METADATA:
            presented = value if isinstance(value, str) else None
    result = core_ext.verify_token(keyring, presented, _call_body(method, risk_token),
                                   time.time() if now is None else now, ttl_seconds)
    if not result.ok:
        raise TokenRejected(
            f"only the OMS may call {method} ({result.reason.lower().replace('_', ' ')})", reason="CALLER_NOT_OMS",
            metadata={"method": method},
        )
