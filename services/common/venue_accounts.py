"""The venue accounts: which Tessera account trades at which venue, in which markets, with
which credentials.

One JSON file (``TESSERA_VENUE_ACCOUNTS_FILE``; deployed, a file of a Kubernetes Secret):

.. code-block:: json

    {"accounts": {
       "alpha": {"venue": "aster", "market_types": ["FUTURES", "SPOT"],
                 "user": "0x…", "signer": "0x…", "private_key_file": "alpha.key"},
       "beta":  {"venue": "aster", "market_types": ["FUTURES"],
                 "api_key_file": "beta.api-key", "secret_file": "beta.secret"}}}

An account has V3 credentials (``user`` and ``signer``, the addresses, and the API
wallet's ``private_key_file``; ``chain_id`` 1666, or 714 on testnet) or V1 ones
(``api_key_file``, ``secret_file``). Every secret is read from a file, never from the
registry itself (a secret written inline is refused); a relative path is relative to the
registry's directory. Each Tessera account needs a venue account of its own (the venue
keeps one position per symbol per venue account, which two ledgers would each claim):
two accounts with the same V3 ``user`` on the same chain, or the same V1 API key, are
refused (the API key compared where it is read: the Exchange). Risk reads the registry without the credentials (it never opens a
key file); the Exchange reads both, building each account's credentials with the factory
it passes (:func:`services.exchange.aster.credentials.credentials_from_mapping`: this
module knows files and fields, not signing).

:class:`VenueAccounts` holds the registry in memory: a lookup is a dict lookup, never a
file read, so the order path does not touch the disk. :meth:`VenueAccounts.refresh`
reloads it when the registry or one of its key files changed (their modification time,
size or inode: a Kubernetes Secret update swaps a symlink); the services call it every
``TESSERA_VENUE_ACCOUNTS_RELOAD_SECONDS`` (5 s). A registry that no longer parses is
logged (never a value) and the one in memory stays.

Without a registry, a live Exchange trades for the one account ``ASTER_ACCOUNT_ID`` names;
Risk reads that as a registry of one entry (:meth:`VenueAccounts.single`), so that it
refuses the same orders the Exchange would, before anything is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from services.domain import MarketType
from services.domain.errors import PreconditionFailed

log = logging.getLogger(__name__)

VARIABLE = "TESSERA_VENUE_ACCOUNTS_FILE"
RELOAD_VARIABLE = "TESSERA_VENUE_ACCOUNTS_RELOAD_SECONDS"
#: Without a registry, the one Tessera account a live Exchange's credentials trade for.
SINGLE_ACCOUNT_VARIABLE = "ASTER_ACCOUNT_ID"
#: The venue of that single account (the Exchange's credentials are Aster's).
SINGLE_ACCOUNT_VENUE = "aster"
VENUES = frozenset({"aster"})
#: The EIP-712 chainId of Aster's mainnet (714 on testnet), when an account names none.
MAINNET_CHAIN_ID = 1666
_ACCOUNT = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_SECRET_FIELDS = {"private_key": "private_key_file", "api_key": "api_key_file", "secret": "secret_file"}
_FIELDS = frozenset({"venue", "market_types", "user", "signer", "chain_id", *_SECRET_FIELDS.values()})


class RegistryError(ValueError):
    """The registry cannot be used; the message names the file, the account and the field,
    never a secret."""


@dataclasses.dataclass(frozen=True)
class VenueAccount:
    """One Tessera account at its venue. ``credentials`` is None when the registry was read
    without them (Risk)."""

    account: str
    venue: str
    market_types: frozenset[MarketType]
    api: str  # "v1" or "v3"; "environment": the single account of ASTER_ACCOUNT_ID (its credentials unread)
    credentials: Any = None

    def __repr__(self) -> str:  # never the credentials' secrets (theirs hide them too)
        markets = ",".join(sorted(m.value for m in self.market_types))
        return f"VenueAccount({self.account}, venue={self.venue}, markets={markets}, api={self.api})"


def _read_secret(base: Path, account: str, field: str, value: Any) -> tuple[str, tuple[Any, ...]]:
    """The secret in the file ``value`` names, and the file's mark (see :func:`_fingerprint`)
    as it was before it was read: a change made while it is read is seen by the next refresh."""
    if not isinstance(value, str) or not value:
        raise RegistryError(f"account {account!r}: {field} must name a file")
    path = Path(value) if os.path.isabs(value) else base / value
    (mark,) = _fingerprint([path])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryError(f"account {account!r}: {field} {str(path)!r} cannot be read ({error.strerror})") from None
    if text.endswith("\n"):
        text = text[:-1]
    if not text or text.strip() != text:
        raise RegistryError(f"account {account!r}: {field} {str(path)!r} is empty or has surrounding whitespace")
    return text, mark


#: Builds an account's credentials from its fields (``user``, ``signer``, ``private_key``,
#: ``chain_id``; or ``api_key``, ``secret``) and a label; raises ValueError naming fields only.
CredentialsFactory = Callable[..., Any]


def parse(document: Any, base: Path, *, credentials: CredentialsFactory | None
          ) -> tuple[dict[str, VenueAccount], list[tuple[Any, ...]]]:
    """The accounts of a registry document, and the marks of the key files it read (each
    taken before the file was read).

    Raises
    ------
    RegistryError
        What is wrong, by account and field (never a value of a secret).
    """
    if not isinstance(document, dict) or not isinstance(document.get("accounts"), dict):
        raise RegistryError('the registry must be a JSON object with an "accounts" object')
    accounts: dict[str, VenueAccount] = {}
    files: list[tuple[Any, ...]] = []
    holders: dict[tuple[Any, ...], str] = {}  # venue account -> the first Tessera account on it
    for name, entry in document["accounts"].items():
        if not _ACCOUNT.match(name):
            raise RegistryError(f"account {name!r} is not an account name (^[A-Za-z0-9._:@-]{{1,128}}$)")
        if not isinstance(entry, dict):
            raise RegistryError(f"account {name!r} must be an object")
        inline = sorted(field for field in _SECRET_FIELDS if field in entry)
        if inline:
            raise RegistryError(f"account {name!r}: secrets are read from files: give "
                                f"{', '.join(_SECRET_FIELDS[f] for f in inline)} instead of {', '.join(inline)}")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise RegistryError(f"account {name!r}: unknown fields {', '.join(unknown)}")
        venue = entry.get("venue")
        if venue not in VENUES:
            raise RegistryError(f"account {name!r}: venue must be one of {', '.join(sorted(VENUES))}")
        markets = entry.get("market_types", ["FUTURES"])
        try:
            market_types = frozenset(MarketType(str(m).upper()) for m in markets)
        except (ValueError, TypeError):
            raise RegistryError(f"account {name!r}: market_types must list FUTURES and/or SPOT") from None
        if not market_types or not isinstance(markets, list):
            raise RegistryError(f"account {name!r}: market_types must list FUTURES and/or SPOT")
        v3 = any(field in entry for field in ("user", "signer", "private_key_file"))
        v1 = any(field in entry for field in ("api_key_file", "secret_file"))
        if v3 == v1:
            raise RegistryError(f"account {name!r}: give V3 (user, signer, private_key_file) or V1 "
                                "(api_key_file, secret_file) credentials, one of the two")
        needed = ("user", "signer", "private_key_file") if v3 else ("api_key_file", "secret_file")
        missing = [field for field in needed if not entry.get(field)]
        if missing:
            raise RegistryError(f"account {name!r}: missing {', '.join(missing)}")
        built = None
        if credentials is not None:
            built, read = _credentials(name, entry, base, v3, credentials)
            files += read
        accounts[name] = VenueAccount(name, venue, market_types, "v3" if v3 else "v1", built)
        # One venue account per Tessera account: the venue keeps one position per symbol
        # (and one set of orders and fills) for it, which two ledgers would each claim.
        if v3:
            at_venue: tuple[Any, ...] = (venue, entry.get("chain_id", MAINNET_CHAIN_ID), str(entry["user"]).lower())
            shown = f"user {entry['user']} on {venue}, chain {at_venue[1]}"
        else:
            at_venue = (venue, "v1", getattr(built, "api_key", None) or name)  # the key only where it was read
            shown = f"the same API key on {venue}"
        first = holders.setdefault(at_venue, name)
        if first != name:
            raise RegistryError(f"accounts {first!r} and {name!r} are the same venue account ({shown}): "
                                "give each Tessera account a venue account of its own")
    return accounts, files


def _credentials(name: str, entry: Mapping[str, Any], base: Path, v3: bool,
                 factory: CredentialsFactory) -> tuple[Any, list[tuple[Any, ...]]]:
    try:
        if v3:
            key, mark = _read_secret(base, name, "private_key_file", entry["private_key_file"])
            chain = entry.get("chain_id", MAINNET_CHAIN_ID)
            if not isinstance(chain, int) or isinstance(chain, bool):
                raise RegistryError(f"account {name!r}: chain_id must be a number (1666 mainnet, 714 testnet)")
            fields = {"user": str(entry["user"]), "signer": str(entry["signer"]), "private_key": key,
                      "chain_id": str(chain)}
            return factory(fields, label=None), [mark]
        api_key, key_mark = _read_secret(base, name, "api_key_file", entry["api_key_file"])
        secret, secret_mark = _read_secret(base, name, "secret_file", entry["secret_file"])
        return factory({"api_key": api_key, "secret": secret}, label=f"v1:{name}"), [key_mark, secret_mark]
    except RegistryError:
        raise
    except ValueError as error:  # the credentials' own messages name fields, never values
        raise RegistryError(f"account {name!r}: {error}") from None


def _fingerprint(paths: list[Path]) -> tuple[Any, ...]:
    marks = []
    for path in paths:
        try:
            stat = os.stat(path)
            marks.append((str(path), stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            marks.append((str(path), None))
    return tuple(marks)


class VenueAccounts:
    """The registry in memory (see the module). ``get`` is a dict lookup."""

    def __init__(self, path: str | os.PathLike[str], *, credentials: CredentialsFactory | None = None) -> None:
        """``credentials``: the factory of each account's credentials (the Exchange's);
        None reads the registry without opening a key file (Risk)."""
        self.path: Path | None = Path(path)
        self.credentials = credentials
        self.accounts: dict[str, VenueAccount] = {}
        self._files: list[Path] = []
        self._fingerprint: tuple[Any, ...] = ()
        self.loads = 0
        self.load()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, credentials: CredentialsFactory | None = None,
                     single_account: bool = False) -> "VenueAccounts | None":
        """The registry ``TESSERA_VENUE_ACCOUNTS_FILE`` names; None when unset.

        ``single_account`` (Risk): without a registry, a live deployment
        (``TESSERA_EXECUTION_MODE=live``) with ``ASTER_ACCOUNT_ID`` trades for that one
        account only (the Exchange refuses every other): a registry of that one entry,
        at Aster, futures and spot, so that Risk refuses the others
        (``ACCOUNT_NOT_CONFIGURED``, ``VENUE_NOT_CONFIGURED``) before anything is stored,
        as the Exchange would. Paper and shadow mode trade any account: None."""
        path = environ.get(VARIABLE, "")
        if path:
            return cls(path, credentials=credentials)
        account = environ.get(SINGLE_ACCOUNT_VARIABLE, "").strip()
        live = (environ.get("TESSERA_EXECUTION_MODE", "") or "paper").strip().lower() == "live"
        if single_account and live and account:
            return cls.single(account)
        return None

    @classmethod
    def single(cls, account: str, venue: str = SINGLE_ACCOUNT_VENUE,
               market_types: frozenset[MarketType] = frozenset(MarketType)) -> "VenueAccounts":
        """A registry of one account, held in memory (no file: nothing to reload), without
        credentials.

        Raises
        ------
        RegistryError
            ``account`` is not an account name.
        """
        if not _ACCOUNT.match(account):
            raise RegistryError(f"{SINGLE_ACCOUNT_VARIABLE} {account!r} is not an account name "
                                "(^[A-Za-z0-9._:@-]{1,128}$)")
        registry = cls.__new__(cls)
        registry.path, registry.credentials = None, None
        registry.accounts = {account: VenueAccount(account, venue, market_types, "environment")}
        registry._files, registry._fingerprint, registry.loads = [], (), 1
        return registry

    def load(self) -> None:
        """Read the registry now.

        Raises
        ------
        RegistryError
            It cannot be read or is invalid (the accounts in memory are kept).
        """
        if self.path is None:
            return  # held in memory (single)
        fingerprint = _fingerprint([self.path])
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as error:
            raise RegistryError(f"{VARIABLE} {str(self.path)!r} cannot be read ({error.strerror})") from None
        except ValueError as error:
            raise RegistryError(f"{VARIABLE} {str(self.path)!r} is not JSON (line {getattr(error, 'lineno', '?')})"
                                ) from None
        accounts, marks = parse(document, self.path.parent, credentials=self.credentials)
        self.accounts, self._files = accounts, [Path(mark[0]) for mark in marks]
        self._fingerprint = fingerprint + tuple(marks)
        self.loads += 1

    def refresh(self) -> bool:
        """Reload when the registry or a key file it read changed; True when it reloaded.
        A registry that no longer loads is logged and the accounts in memory stay."""
        if self.path is None or _fingerprint([self.path, *self._files]) == self._fingerprint:
            return False
        try:
            self.load()
        except RegistryError as error:
            log.error("venue accounts not reloaded, the previous ones stay: %s", error)
            return False
        log.info("venue accounts reloaded: %d accounts", len(self.accounts))
        return True

    async def watch(self, interval_seconds: float, stop: asyncio.Event | None = None) -> None:
        """:meth:`refresh` every ``interval_seconds`` until ``stop`` is set (or cancelled)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)
            if not stop.is_set():
                await asyncio.to_thread(self.refresh)

    def get(self, account: str) -> VenueAccount | None:
        return self.accounts.get(account)

    def check(self, account: str, venue: str, market_type: MarketType) -> VenueAccount:
        """The account of an order, if it may trade ``venue``'s ``market_type``.

        Raises
        ------
        PreconditionFailed
            ``ACCOUNT_NOT_CONFIGURED``: the registry has no such account;
            ``VENUE_NOT_CONFIGURED``: the account trades at another venue, or not in
            this market.
        """
        found = self.accounts.get(account)
        if found is None:
            raise PreconditionFailed(f"account {account!r} is not configured in the venue accounts",
                                     reason="ACCOUNT_NOT_CONFIGURED", metadata={"account": account})
        if venue != found.venue or market_type not in found.market_types:
            raise PreconditionFailed(
                f"account {account!r} is not configured for {market_type.value} at venue {venue!r}",
                reason="VENUE_NOT_CONFIGURED", metadata={"account": account, "venue": venue})
        return found

    def credentials_for(self, account: str) -> Any:
        found = self.accounts.get(account)
        return found.credentials if found is not None else None


def reload_seconds(environ: Mapping[str, str]) -> float:
    value = environ.get(RELOAD_VARIABLE, "") or "5"
    try:
        seconds = float(value)
    except ValueError:
        raise RegistryError(f"{RELOAD_VARIABLE} must be a number of seconds") from None
    if not seconds > 0:
        raise RegistryError(f"{RELOAD_VARIABLE} must be positive")
    return seconds
