"""Venue credentials, one value per venue account: V1 (API key + HMAC secret) or V3 (API wallet).

Aster has two authentication schemes, chosen per account, not per process:

- **V1** (legacy, ``/fapi/v1``, ``/api/v1``): an API key in the ``X-MBX-APIKEY`` header
  and an HMAC-SHA256 signature keyed with its secret. New V1 keys cannot be created
  since 2026-03-25; existing ones keep working.
- **V3** (``/fapi/v3``, ``/api/v3``): the main account's wallet address (``user``), an
  API wallet address (``signer``) registered for it, and the API wallet's private key,
  which signs every request as EIP-712 typed data (see :mod:`.signing`).

A registry of venue accounts hands one of these objects to the adapter per order
(:class:`~services.exchange.providers.live.LiveProvider` takes it per call). Neither
class ever shows a secret: not in a repr, a str, an error message or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from typing import Callable, Mapping, Union

V1 = "v1"
V3 = "v3"

#: EIP-712 ``chainId`` of Aster's signing domain: 1666 on mainnet, 714 on testnet (Aster's
#: V3 futures and spot docs and their testnet twins). An off-chain signing identifier.
MAINNET_CHAIN_ID = 1666
TESTNET_CHAIN_ID = 714


class HmacCredentials:
    """A V1 API key and its secret; the repr shows neither."""

    api = V1
    __slots__ = ("api_key", "_secret", "account_key")

    def __init__(self, api_key: str, secret: str, *, label: str | None = None) -> None:
        if not api_key or not secret:
            raise ValueError("an API key and its secret are both required")
        self.api_key = api_key
        self._secret = secret.encode()
        # What order counts and logs may name: never the key itself.
        self.account_key = label or "v1:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]

    def sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HmacCredentials(account={self.account_key}, api_key=<hidden>, secret=<hidden>)"

    __str__ = __repr__


class NonceSource:
    """V3 nonces: the current time in microseconds, strictly increasing.

    Aster keeps the last 100 nonces of each user and refuses a repeated one, and one
    more than 10 s away from its clock; two requests in the same microsecond (or a
    clock that stepped back) still get distinct, increasing nonces. The transport gives
    the time as the venue's (``now_us``: our clock plus the offset it measured), so the
    nonces of a restarted process, or of one whose wall clock stepped, go on from the
    venue's time rather than from a local clock the venue does not share.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self, now_us: int | None = None) -> int:
        """The next nonce: ``now_us`` (default: this source's clock), or one more than the
        last nonce when that is not below it."""
        with self._lock:
            now = int(self.clock() * 1_000_000) if now_us is None else int(now_us)
            self._last = max(now, self._last + 1)
            return self._last


_USER_NONCES: dict[str, NonceSource] = {}
_USER_NONCES_LOCK = threading.Lock()


def user_nonces(user: str) -> NonceSource:
    """The one nonce source of this process for the venue user ``user`` (an address).

    The venue keeps the last nonces per user, whichever API wallet signed them, so every
    credentials object of one user shares one increasing source: credentials loaded
    again (the venue accounts registry reloaded, a key rotated) and two API wallets of
    one user go on from the last nonce sent, even on a clock that stepped back."""
    key = user.lower()
    with _USER_NONCES_LOCK:
        source = _USER_NONCES.get(key)
        if source is None:
            source = _USER_NONCES[key] = NonceSource()
        return source


class WalletCredentials:
    """A V3 API wallet: ``user`` (main account address), ``signer`` (the API wallet's
    address) and the API wallet's private key. The repr shows the addresses, which are
    public, and never the key. Nonces come from ``nonces``, by default the source this
    process keeps for ``user`` (:func:`user_nonces`), shared by all its credentials.

    Raises
    ------
    ValueError
        A field is missing, an address is malformed, or the private key does not belong
        to ``signer`` (the message names no key material).
    """

    api = V3
    __slots__ = ("user", "signer", "chain_id", "nonces", "_account", "account_key")

    def __init__(
        self,
        user: str,
        signer: str,
        private_key: str,
        *,
        chain_id: int = MAINNET_CHAIN_ID,
        nonces: NonceSource | None = None,
    ) -> None:
        from eth_account import Account
        from eth_utils import is_address, to_checksum_address

        if not user or not signer or not private_key:
            raise ValueError("a V3 API wallet needs user, signer and the signer's private key")
        for name, value in (("user", user), ("signer", signer)):
            if not is_address(value):
                raise ValueError(f"{name} is not an address (0x followed by 40 hex digits)")
        try:
            account = Account.from_key(private_key)
        except Exception:  # noqa: BLE001 - the library's message may quote the key
            raise ValueError("the API wallet's private key is malformed") from None
        if account.address != to_checksum_address(signer):
            raise ValueError(f"the private key does not belong to the signer {to_checksum_address(signer)}")
        self.user = to_checksum_address(user)
        self.signer = account.address
        self.chain_id = int(chain_id)
        self.nonces = nonces or user_nonces(self.user)
        self._account = account
        self.account_key = "v3:" + self.user

    def sign_typed_data(self, typed_data: dict) -> str:
        """The 0x-prefixed hex ECDSA signature of EIP-712 ``typed_data``."""
        from eth_account.messages import encode_typed_data

        signed = self._account.sign_message(encode_typed_data(full_message=typed_data))
        return "0x" + bytes(signed.signature).hex()

    def __repr__(self) -> str:
        return f"WalletCredentials(user={self.user}, signer={self.signer}, chain_id={self.chain_id}, private_key=<hidden>)"

    __str__ = __repr__


VenueCredentials = Union[HmacCredentials, WalletCredentials]


def credentials_from_mapping(values: Mapping[str, str], *, label: str | None = None) -> VenueCredentials:
    """Credentials from a mapping with either V3 fields (``user``, ``signer``,
    ``private_key``, optional ``chain_id``) or V1 fields (``api_key``, ``secret``).

    Raises
    ------
    ValueError
        Neither set is complete, or both are given (the message names fields, never values).
    """
    v3 = [name for name in ("user", "signer", "private_key") if values.get(name)]
    v1 = [name for name in ("api_key", "secret") if values.get(name)]
    if v3 and v1:
        raise ValueError("give either V3 (user, signer, private_key) or V1 (api_key, secret) credentials, not both")
    if v3:
        missing = sorted({"user", "signer", "private_key"} - set(v3))
        if missing:
            raise ValueError(f"V3 credentials lack {', '.join(missing)}")
        chain_id = int(values.get("chain_id") or MAINNET_CHAIN_ID)
        return WalletCredentials(values["user"], values["signer"], values["private_key"], chain_id=chain_id)
    missing = sorted({"api_key", "secret"} - set(v1))
    if missing and v1:
        raise ValueError(f"V1 credentials lack {', '.join(missing)}")
    if missing:
        raise ValueError("no venue credentials: give V3 (user, signer, private_key) or V1 (api_key, secret)")
    return HmacCredentials(values["api_key"], values["secret"], label=label)


#: The environment of a single venue account (until a registry of accounts replaces it):
#: V3 wins when any of its variables is set.
V3_VARIABLES = ("ASTER_USER", "ASTER_SIGNER", "ASTER_SIGNER_PRIVATE_KEY")
V1_VARIABLES = ("ASTER_API_KEY", "ASTER_API_SECRET")


def missing_variables(environ: Mapping[str, str]) -> list[str]:
    """The credential variables a live Exchange still needs (names only)."""
    if any(environ.get(name) for name in V3_VARIABLES):
        return [name for name in V3_VARIABLES if not environ.get(name)]
    return [name for name in V1_VARIABLES if not environ.get(name)]


def credentials_from_environ(environ: Mapping[str, str]) -> VenueCredentials:
    """V3 credentials from ``ASTER_USER``, ``ASTER_SIGNER``, ``ASTER_SIGNER_PRIVATE_KEY``
    (``ASTER_CHAIN_ID``: 1666, or 714 on testnet), else V1 from ``ASTER_API_KEY`` and
    ``ASTER_API_SECRET``.

    Raises
    ------
    ValueError
        A variable is missing or malformed (named, its value never shown).
    """
    if any(environ.get(name) for name in V3_VARIABLES):
        chain = environ.get("ASTER_CHAIN_ID", "") or str(MAINNET_CHAIN_ID)
        if not chain.isdigit():
            raise ValueError("ASTER_CHAIN_ID must be a number (1666 mainnet, 714 testnet)")
        return credentials_from_mapping({
            "user": environ.get("ASTER_USER", ""), "signer": environ.get("ASTER_SIGNER", ""),
            "private_key": environ.get("ASTER_SIGNER_PRIVATE_KEY", ""), "chain_id": chain,
        })
    return HmacCredentials(environ.get("ASTER_API_KEY", ""), environ.get("ASTER_API_SECRET", ""))
