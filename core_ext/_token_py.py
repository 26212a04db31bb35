"""Risk token, pure-Python twin of ``_token_c`` (design §3, ``docs/token.md``).

Same API and the same results as the compiled module, including error messages;
``tests/unit/core/test_twins_agree.py`` checks that with random inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal

from core_ext import keys
from core_ext.errors import CanonicalEncodingError
from core_ext.token_format import (
    BODY_PREFIX,
    BOOL_FIELDS,
    DECIMAL_FIELDS,
    MAX_DECIMAL_DIGITS,
    MAX_TOKEN_LENGTH,
    NONCE_ERROR,
    NOT_A_DECIMAL,
    OK,
    BATCH_ERROR,
    REQUEST_INVALID,
    WIRE_ENUMS,
    WIRE_FIELD_NUMBERS,
    WIRE_ORDER_FIELD,
    WIRE_TOKEN_FIELD,
    OPTIONAL_FIELDS,
    ORDER_FIELDS,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EXPIRED,
    TOKEN_FIELDS_CHANGED,
    TOKEN_MALFORMED,
    TOKEN_MISSING,
    TOKEN_NOT_YET_VALID,
    TOKEN_UNKNOWN_KEY,
    TOKEN_VERSION,
    TOO_MANY_DIGITS,
    check_issued_at,
    check_verify_window,
    preview,
    type_name,
)

__all__ = [
    "KeyRing",
    "VerifyResult",
    "canonical_decimal",
    "canonical_order_body",
    "sign_token",
    "verify_order_request",
    "verify_order_requests",
    "verify_token",
]

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_NONCE = re.compile("[0-9a-f]{32}")
# 32 bytes in unpadded base64url: 43 characters, the last one carrying 4 bits
# (its 2 low bits zero), so exactly one spelling per digest.
_B64_32 = "[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
_TOKEN = re.compile(
    rf"{TOKEN_VERSION}\.([A-Za-z0-9_-]{{1,32}})\.(0|[1-9][0-9]{{0,11}})\.([0-9a-f]{{32}})"
    rf"\.({_B64_32})\.({_B64_32})"
)


def canonical_decimal(s: str) -> str:
    """Return the canonical spelling of a plain decimal number.

    Accepts an optional sign, digits, and an optional "." with digits (".5" and
    "5." too); drops "+", leading zeros of the integer part (one "0" stays),
    trailing zeros of the fraction, a bare "."; "-0" becomes "0".

    Raises
    ------
    CanonicalEncodingError
        Not a str, not plain decimal notation (exponent, whitespace, NaN, ...), or
        more than 40 significant digits.
    """
    if not isinstance(s, str):
        raise CanonicalEncodingError(f"decimal must be a str, got {type_name(s)}")
    n = len(s)
    i = 0
    negative = False
    if n and (s[0] == "-" or s[0] == "+"):
        negative = s[0] == "-"
        i = 1
    start = i
    while i < n and "0" <= s[i] <= "9":
        i += 1
    integer = s[start:i]
    fraction = ""
    if i < n and s[i] == ".":
        i += 1
        start = i
        while i < n and "0" <= s[i] <= "9":
            i += 1
        fraction = s[start:i]
    if i != n or not (integer or fraction):
        raise CanonicalEncodingError(f"{NOT_A_DECIMAL}: {preview(s)}")
    integer = integer.lstrip("0")
    fraction = fraction.rstrip("0")
    if len(integer) + len(fraction) > MAX_DECIMAL_DIGITS:
        raise CanonicalEncodingError(f"{TOO_MANY_DIGITS}: {preview(s)}")
    if not (integer or fraction):
        return "0"
    text = integer or "0"
    if fraction:
        text = f"{text}.{fraction}"
    return f"-{text}" if negative else text


def _field_text(name: str, value: object) -> str:
    """Return the text of one field before UTF-8 encoding (raises naming the field)."""
    if name in DECIMAL_FIELDS:
        if value is None:
            return ""
        if isinstance(value, str):
            text = value
        elif isinstance(value, Decimal):
            text = format(value, "f")
        elif isinstance(value, int) and not isinstance(value, bool):
            text = str(int(value))
        else:
            raise CanonicalEncodingError(
                f"must be a decimal str, int or Decimal, got {type_name(value)}", name
            )
        if text == "":
            return ""
        try:
            return canonical_decimal(text)
        except CanonicalEncodingError as exc:
            raise CanonicalEncodingError(str(exc), name) from None
    if name in BOOL_FIELDS:
        if value is True or (isinstance(value, str) and value == "true"):
            return "true"
        if value is False or (isinstance(value, str) and value == "false"):
            return "false"
        raise CanonicalEncodingError(f'must be a bool or "true"/"false", got {preview(value)}', name)
    if not isinstance(value, str):
        raise CanonicalEncodingError(f"must be a str, got {type_name(value)}", name)
    if _CONTROL.search(value):
        raise CanonicalEncodingError("contains a control character", name)
    return value


def canonical_order_body(fields: Mapping[str, object]) -> bytes:
    """Return the canonical encoding of an order's economic fields (the signed body).

    ``b"tessera.order.v2"`` followed by one netstring ``<len>:<utf-8 value>,`` per
    field of ``ORDER_FIELDS``, in that order. Keys not in ``ORDER_FIELDS`` are ignored.

    Raises
    ------
    CanonicalEncodingError
        A required field is missing, a value has the wrong type, is not a plain
        decimal (decimal fields), contains a control character or is not valid
        UTF-8 (lone surrogates). The error names the field.
    """
    parts = [BODY_PREFIX]
    for name in ORDER_FIELDS:
        try:
            value = fields[name]
        except KeyError:
            if name not in OPTIONAL_FIELDS:
                raise CanonicalEncodingError("missing", name) from None
            value = None
        text = _field_text(name, value)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise CanonicalEncodingError("not encodable as UTF-8", name) from None
        parts.append(b"%d:%s," % (len(data), data))
    return b"".join(parts)


class VerifyResult:
    """Outcome of :func:`verify_token` (immutable).

    ``ok`` is True only with reason ``"OK"``. ``key_id``, ``issued_at`` and
    ``nonce`` are taken from the token once it parsed (None for
    TOKEN_MISSING / TOKEN_MALFORMED); before TOKEN_NOT_YET_VALID they are unauthenticated.
    """

    __slots__ = ("ok", "reason", "key_id", "issued_at", "nonce")

    def __init__(self, reason: str, key_id: str | None = None, issued_at: int | None = None,
                 nonce: str | None = None) -> None:
        object.__setattr__(self, "ok", reason == OK)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "issued_at", issued_at)
        object.__setattr__(self, "nonce", nonce)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VerifyResult is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("VerifyResult is immutable")

    def _key(self) -> tuple:
        return (self.ok, self.reason, self.key_id, self.issued_at, self.nonce)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifyResult):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __bool__(self) -> bool:
        return self.ok

    def __reduce__(self) -> tuple:
        return (VerifyResult, (self.reason, self.key_id, self.issued_at, self.nonce))

    def __repr__(self) -> str:
        return (f"VerifyResult(ok={self.ok!r}, reason={self.reason!r}, key_id={self.key_id!r}, "
                f"issued_at={self.issued_at!r}, nonce={self.nonce!r})")


class KeyRing:
    """HMAC keys of the risk token: the current one signs, all of them verify.

    Parameters
    ----------
    current_key_id : str
        Id of the signing key, ``[A-Za-z0-9_-]{1,32}``.
    current_secret : bytes
        At least 32 bytes.
    previous : sequence of (str, bytes)
        Keys still accepted for verification (rotation).

    Raises
    ------
    KeyConfigError
        Invalid key id, short secret or duplicate key id. Never shows a secret.
    """

    __slots__ = ("_secrets", "_current_key_id")

    def __init__(self, current_key_id: str, current_secret: bytes,
                 previous: Sequence[tuple[str, bytes]] = ()) -> None:
        material = keys.check_key_material(current_key_id, current_secret, previous)
        self._secrets = dict(material)
        self._current_key_id = material[0][0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "KeyRing":
        """Build the key ring from ``AIS_RISK_HMAC_*`` variables (see ``core_ext.keys``).

        Raises
        ------
        KeyConfigError
            Missing, empty or short secret, or invalid key id; names the variable.
        """
        (current_id, current_secret), *previous = keys.read_key_material_from_env(
            os.environ if environ is None else environ
        )
        return cls(current_id, current_secret, previous)

    @property
    def current_key_id(self) -> str:
        """Id of the key new tokens are signed with."""
        return self._current_key_id

    def key_ids(self) -> tuple[str, ...]:
        """Ids of all accepted keys, the current one first."""
        return tuple(self._secrets)

    def __repr__(self) -> str:
        return f"KeyRing(current_key_id={self._current_key_id!r}, key_ids={self.key_ids()!r})"

    def __reduce__(self):
        raise TypeError("KeyRing cannot be pickled (it holds secrets)")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check_keyring_and_body(keyring: object, body: object) -> None:
    if not isinstance(keyring, KeyRing):
        raise TypeError(f"keyring must be a KeyRing, got {type_name(keyring)}")
    if not isinstance(body, bytes):
        raise TypeError(f"body must be bytes, got {type_name(body)}")


def sign_token(keyring: KeyRing, body: bytes, issued_at: int, nonce: str | None = None) -> str:
    """Return a token ``v2.<kid>.<iat>.<nonce>.<digest>.<sig>`` for an order body.

    Parameters
    ----------
    keyring : KeyRing
        Signs with its current key.
    body : bytes
        ``canonical_order_body(order)``.
    issued_at : int
        Unix seconds, ``0 <= issued_at <= 999999999999``.
    nonce : str, optional
        32 lowercase hex characters; random (16 bytes from a CSPRNG) when None.

    Raises
    ------
    TypeError, ValueError
        Wrong argument types, issued_at out of range, or a malformed nonce.
    """
    _check_keyring_and_body(keyring, body)
    iat = check_issued_at(issued_at)
    if nonce is None:
        nonce = secrets.token_hex(16)
    elif not isinstance(nonce, str) or _NONCE.fullmatch(nonce) is None:
        raise ValueError(NONCE_ERROR)
    key_id = keyring._current_key_id
    header = f"{TOKEN_VERSION}.{key_id}.{iat}.{nonce}.{_b64(hashlib.sha256(body).digest())}"
    signature = hmac.digest(keyring._secrets[key_id], header.encode("ascii"), "sha256")
    return f"{header}.{_b64(signature)}"


def verify_token(keyring: KeyRing, token: str | None, body: bytes, now: float,
                 ttl_seconds: int = 300, skew_seconds: int = 5) -> VerifyResult:
    """Check a token against an order body; never raises on any ``token`` value.

    Checks, in order: missing, malformed, unknown key, signature (constant time),
    not yet valid (``iat > now + skew``), expired (``now >= iat + ttl + skew``),
    fields changed (body digest differs).

    Returns
    -------
    VerifyResult
        ``ok`` and a reason code (see ``core_ext.token_format.REASONS``).

    Raises
    ------
    TypeError, ValueError
        Only for caller errors: keyring/body of the wrong type, ``now`` not a
        finite number, a window not an int in ``[0, 1e9]``.
    """
    _check_keyring_and_body(keyring, body)
    now_f = check_verify_window(now, ttl_seconds, skew_seconds)
    if token is None or (isinstance(token, str) and token == ""):
        return VerifyResult(TOKEN_MISSING)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        return VerifyResult(TOKEN_MALFORMED)
    match = _TOKEN.fullmatch(token)
    if match is None:
        return VerifyResult(TOKEN_MALFORMED)
    key_id, iat_text, nonce, digest, signature = match.groups()
    issued_at = int(iat_text)
    secret = keyring._secrets.get(key_id)
    if secret is None:
        return VerifyResult(TOKEN_UNKNOWN_KEY, key_id, issued_at, nonce)
    header = token[: len(token) - len(signature) - 1]
    expected = _b64(hmac.digest(secret, header.encode("ascii"), "sha256"))
    if not hmac.compare_digest(expected, signature):
        return VerifyResult(TOKEN_BAD_SIGNATURE, key_id, issued_at, nonce)
    if issued_at > now_f + skew_seconds:
        return VerifyResult(TOKEN_NOT_YET_VALID, key_id, issued_at, nonce)
    if now_f >= issued_at + ttl_seconds + skew_seconds:
        return VerifyResult(TOKEN_EXPIRED, key_id, issued_at, nonce)
    if not hmac.compare_digest(_b64(hashlib.sha256(body).digest()), digest):
        return VerifyResult(TOKEN_FIELDS_CHANGED, key_id, issued_at, nonce)
    return VerifyResult(OK, key_id, issued_at, nonce)


# --------------------------------------------------------------------------- from the wire
# The request as it arrived (SubmitOrderRequest, ExecuteOrderRequest: the order in field
# 1, the token in field 2): a protobuf wire-format reader just wide enough for them.
_MAX_FIELD_NUMBER = (1 << 29) - 1
_TEXT_FIELDS = frozenset(WIRE_FIELD_NUMBERS[name] for name in ORDER_FIELDS
                         if name not in WIRE_ENUMS and name not in BOOL_FIELDS)
_NUMBER_FIELDS = frozenset(WIRE_FIELD_NUMBERS[name] for name in ORDER_FIELDS
                           if name in WIRE_ENUMS or name in BOOL_FIELDS)


class _Malformed(Exception):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """The varint at ``data[i]`` and the offset after it (at most 10 bytes, 64 bits)."""
    value = shift = 0
    for count in range(10):
        if i >= len(data):
            raise _Malformed
        byte = data[i]
        i += 1
        if count == 9 and byte > 1:
            raise _Malformed
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    raise _Malformed


def _wire_fields(data: bytes):
    """Yield ``(field number, wire type, value)``: an int for varints, the bytes of a
    length-delimited field, None for fixed-width ones. Groups are refused, and so is a
    tag not in its shortest encoding (protobuf's pure-Python runtime takes such a tag
    for an unknown field: the order would not be the one it parses)."""
    i, n = 0, len(data)
    while i < n:
        start = i
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > _MAX_FIELD_NUMBER or (i - start > 1 and data[i - 1] == 0):
            raise _Malformed
        if wire == 0:
            value, i = _varint(data, i)
            yield number, wire, value
        elif wire == 2:
            length, i = _varint(data, i)
            if length > n - i:
                raise _Malformed
            yield number, wire, data[i:i + length]
            i += length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if width > n - i:
                raise _Malformed
            i += width
            yield number, wire, None
        else:
            raise _Malformed


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def _netstring(value: bytes) -> bytes:
    return b"%d:%s," % (len(value), value)


def _wire_order_body(texts: dict[int, bytes], numbers: dict[int, int]) -> bytes | None:
    """The canonical body of the order's bound fields as read off the wire (the string
    fields as the bytes that arrived); None when they have no canonical encoding."""
    parts = [BODY_PREFIX]
    for name in ORDER_FIELDS:
        number = WIRE_FIELD_NUMBERS[name]
        if name in WIRE_ENUMS:
            text = WIRE_ENUMS[name].get(_int32(numbers.get(number, 0)))
            if text is None:
                return None
            parts.append(_netstring(text.encode("ascii")))
        elif name in BOOL_FIELDS:
            parts.append(_netstring(b"true" if numbers.get(number, 0) != 0 else b"false"))
        elif name in DECIMAL_FIELDS:
            raw = texts.get(number, b"")
            if raw and not raw.isascii():
                return None
            try:
                parts.append(_netstring(canonical_decimal(raw.decode("ascii")).encode("ascii") if raw else b""))
            except CanonicalEncodingError:
                return None
        else:
            parts.append(_netstring(texts.get(number, b"")))
    return b"".join(parts)


def _read_order_request(data: bytes) -> tuple[bytes | None, str | None]:
    """(the order's canonical body or None, the token or None when it is not ASCII)."""
    texts: dict[int, bytes] = {}
    numbers: dict[int, int] = {}
    token = b""
    for number, wire, value in _wire_fields(data):
        if number == WIRE_ORDER_FIELD and wire == 2:
            # Repeated occurrences of a message field merge: each field's last value wins.
            for inner, inner_wire, inner_value in _wire_fields(value):
                if inner in _TEXT_FIELDS:
                    if inner_wire == 2:
                        texts[inner] = inner_value
                elif inner in _NUMBER_FIELDS and inner_wire == 0:
                    numbers[inner] = inner_value
        elif number == WIRE_TOKEN_FIELD and wire == 2:
            token = value
    body = _wire_order_body(texts, numbers)
    return body, token.decode("ascii") if token.isascii() else None


def verify_order_request(keyring: KeyRing, data: bytes, now: float, ttl_seconds: int = 300,
                         skew_seconds: int = 5) -> VerifyResult:
    """:func:`verify_token` from a serialized ``SubmitOrderRequest`` or
    ``ExecuteOrderRequest`` (the order in field 1, the token in field 2), as it came
    off the wire: the canonical body is built from the order's bound fields (enums by
    name, decimals normalised) without parsing the message into objects.

    Returns the same verdicts as :func:`verify_token`, or ``REQUEST_INVALID`` when the
    bytes are not a well-formed message or the order has no canonical encoding
    (then validate it field by field to say what is wrong).

    Raises
    ------
    TypeError, ValueError
        Only for caller errors, as :func:`verify_token`.
    """
    _check_keyring_and_body(keyring, data)
    check_verify_window(now, ttl_seconds, skew_seconds)
    try:
        body, token = _read_order_request(data)
    except _Malformed:
        return VerifyResult(REQUEST_INVALID)
    if body is None:
        return VerifyResult(REQUEST_INVALID)
    if token is None:
        return VerifyResult(TOKEN_MALFORMED)
    return verify_token(keyring, token, body, now, ttl_seconds, skew_seconds)


def verify_order_requests(keyring: KeyRing, data: bytes, now: float, ttl_seconds: int = 300,
                          skew_seconds: int = 5) -> list[VerifyResult]:
    """:func:`verify_order_request` for each request of a serialized batch
    (``SubmitOrdersRequest``, ``ExecuteOrdersRequest``: the requests in field 1), in order.

    Raises
    ------
    ValueError
        The batch itself is not a well-formed message (or a caller error, as
        :func:`verify_token`).
    """
    _check_keyring_and_body(keyring, data)
    check_verify_window(now, ttl_seconds, skew_seconds)
    try:
        items = [value for number, wire, value in _wire_fields(data) if number == 1 and wire == 2]
    except _Malformed:
        raise ValueError(BATCH_ERROR) from None
    return [verify_order_request(keyring, item, now, ttl_seconds, skew_seconds) for item in items]
