"""Risk-token verification as the OMS and the Exchange service both apply it."""

from __future__ import annotations

import collections
import hashlib
import time

import core_ext
from services.common.auth import service_metadata
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
# body that no risk token can have (risk token bodies start with
# core_ext.token_format.BODY_PREFIX, b"tessera.order.v2"):
# the method and the SHA-256 digest of the request's serialized bytes. The token
# format carries a random nonce and the issue time (core_ext.sign_token), so the
# credential is good for that one request, once (the Exchange remembers the nonces it
# accepted until they expire: :class:`ReplayCache`; a restarted Exchange, which forgot
# them, refuses every credential issued before it started), for
# SERVICE_CREDENTIAL_TTL_SECONDS.
OMS_CREDENTIAL_METADATA = "tessera-oms-credential"
_CALL_BODY_PREFIX = b"tessera.oms-call.v2\n"
#: How long a service credential is good for (plus the verifier's clock skew, 5 s).
SERVICE_CREDENTIAL_TTL_SECONDS = 30
#: The most credentials the Exchange remembers at once (each for its lifetime, at most
#: 35 s): a burst past this many calls in 35 s is refused (UNAVAILABLE), never let
#: through unremembered.
REPLAY_CACHE_SIZE = 500_000


def request_bytes(request: object) -> bytes:
    """The serialized request a credential binds (bytes as they are, a message serialized)."""
    if isinstance(request, (bytes, bytearray, memoryview)):
        return bytes(request)
    return request.SerializeToString()  # type: ignore[attr-defined]


def _call_body(method: str, request: bytes) -> bytes:
    return _CALL_BODY_PREFIX + method.encode() + b"\n" + hashlib.sha256(request).digest()


def oms_call_metadata(keyring: "core_ext.KeyRing", method: str, request: object = b"",
                      *, now: float | None = None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata proving the call comes from an OMS holding the key ring: a credential
    for this ``method`` and this ``request`` (a message, or its serialized bytes), once;
    with it, the OMS's identity (its service token; else its TLS client certificate speaks)."""
    issued = int(time.time() if now is None else now)
    credential = core_ext.sign_token(keyring, _call_body(method, request_bytes(request)), issued)
    return ((OMS_CREDENTIAL_METADATA, credential), *service_metadata())


class ReplayCache:
    """The nonces of the service credentials accepted, each until its credential expires.

    Bounded: entries leave in the order they expire (each credential lives the same
    time, so insertion order is expiry order up to the clock skew); when ``capacity``
    credentials are alive at once, the next is refused rather than forgotten."""

    def __init__(self, capacity: int = REPLAY_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._until: dict[str, float] = {}
        self._order: collections.deque[tuple[float, str]] = collections.deque()

    def __len__(self) -> int:
        return len(self._until)

    def _evict(self, now: float) -> None:
        order, until = self._order, self._until
        while order and order[0][0] <= now:
            expiry, nonce = order.popleft()
            if until.get(nonce) == expiry:
                del until[nonce]

    def claim(self, nonce: str, expires_at: float, now: float) -> str | None:
        """Remember ``nonce`` until ``expires_at``; the refusal's reason if it cannot be."""
        self._evict(now)
        if nonce in self._until:
            return "SERVICE_CREDENTIAL_REPLAYED"
        if len(self._until) >= self.capacity:
            return "SERVICE_CREDENTIAL_CACHE_FULL"
        expires_at = max(expires_at, self._order[-1][0] if self._order else 0.0)
        self._until[nonce] = expires_at
        self._order.append((expires_at, nonce))
        return None


#: The refusal of a credential issued before the Exchange that verifies it started (see
#: :func:`verify_oms_call`'s ``not_before``).
SERVICE_CREDENTIAL_BEFORE_START = "SERVICE_CREDENTIAL_BEFORE_START"

_CREDENTIAL_REFUSALS = {
    core_ext.TOKEN_EXPIRED: ("SERVICE_CREDENTIAL_EXPIRED", "the OMS's credential for {method} has expired"),
    core_ext.TOKEN_NOT_YET_VALID: ("SERVICE_CREDENTIAL_EXPIRED",
                                   "the OMS's credential for {method} is issued in the future"),
    core_ext.TOKEN_FIELDS_CHANGED: ("SERVICE_CREDENTIAL_MISMATCH",
                                    "the OMS's credential was signed for another method or request than this "
                                    "{method} call"),
    "SERVICE_CREDENTIAL_REPLAYED": ("SERVICE_CREDENTIAL_REPLAYED",
                                    "the OMS's credential for {method} was used already"),
    "SERVICE_CREDENTIAL_CACHE_FULL": ("SERVICE_CREDENTIAL_CACHE_FULL",
                                      "too many {method} calls at once to remember each credential: retry"),
    SERVICE_CREDENTIAL_BEFORE_START: (SERVICE_CREDENTIAL_BEFORE_START,
                                      "the OMS's credential for {method} was issued before this Exchange service "
                                      "started: send the call again with a fresh one"),
}


def verify_oms_call(
    keyring: "core_ext.KeyRing", metadata: object, method: str, request: object = b"", *,
    replay: ReplayCache | None = None, ttl_seconds: int = SERVICE_CREDENTIAL_TTL_SECONDS,
    now: float | None = None, not_before: float | None = None,
) -> None:
    """Refuse the call unless the OMS signed it, for this ``method`` and ``request``
    (its serialized bytes as received, or a message), and (with ``replay``) only once.

    ``not_before`` (epoch seconds): refuse a credential issued before it. The replay
    cache lives in memory, so a restarted Exchange would take again a credential its
    previous process took; it refuses every credential issued before it started
    instead (see :class:`services.exchange.engine.ExchangeEngine`).

    Raises
    ------
    TokenRejected
        ``CALLER_NOT_OMS`` (no credential, not one, an unknown key, a bad signature),
        ``SERVICE_CREDENTIAL_EXPIRED``, ``SERVICE_CREDENTIAL_MISMATCH`` (signed for another
        method or request), ``SERVICE_CREDENTIAL_BEFORE_START`` (issued before
        ``not_before``), ``SERVICE_CREDENTIAL_REPLAYED`` or ``SERVICE_CREDENTIAL_CACHE_FULL``.
    """
    presented = None
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == OMS_CREDENTIAL_METADATA:
            presented = value if isinstance(value, str) else None
    now = time.time() if now is None else now
    result = core_ext.verify_token(keyring, presented, _call_body(method, request_bytes(request)), now, ttl_seconds)
    reason = result.reason
    if result.ok and not_before is not None and (result.issued_at or 0) < not_before:
        reason = SERVICE_CREDENTIAL_BEFORE_START
    elif result.ok and replay is not None:
        expires = (result.issued_at or 0) + ttl_seconds + core_ext.DEFAULT_SKEW_SECONDS
        reason = replay.claim(result.nonce or "", expires, now) or reason
    if reason == core_ext.OK:
        return
    if reason in _CREDENTIAL_REFUSALS:
        name, message = _CREDENTIAL_REFUSALS[reason]
        raise TokenRejected(message.format(method=method), reason=name, metadata={"method": method})
    raise TokenRejected(
        f"only the OMS may call {method} ({reason.lower().replace('_', ' ')})", reason="CALLER_NOT_OMS",
        metadata={"method": method},
    )
