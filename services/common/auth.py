"""Caller identity and entitlements on every RPC (docs/access.md, docs/operations.md).

**Identity.** A call names its principal by

- a bearer token, ``authorization: Bearer <JWT>`` metadata: a JWT verified with PyJWT
  against the public keys in ``TESSERA_JWT_PUBLIC_KEY_FILES`` (comma-separated PEM
  files; an Ed25519 key verifies ``EdDSA``, an EC P-256 key ``ES256``, an RSA key
  ``RS256``) and, when ``TESSERA_JWT_HMAC_KEY_FILE`` names a shared key (at least 32
  bytes), ``HS256``. ``iss`` must equal ``TESSERA_JWT_ISSUER``, ``aud`` name
  ``TESSERA_JWT_AUDIENCE``, and ``exp``, ``iat`` and ``sub`` must be present; ``exp`` and
  ``nbf`` are checked with ``TESSERA_JWT_LEEWAY_SECONDS`` (default 30) of clock skew.
  The principal is ``sub``. A verified token is cached by its exact text until it
  expires: a client that keeps its token costs one dict lookup per call. The key files
  are reloaded when they change (:class:`TokenVerifier`): keys rotate without a restart;
- else the mutual-TLS client certificate (``TESSERA_TLS_CA_FILE`` makes the port require
  one): its URI subject alternative name (``spiffe://tessera/oms``), else its first DNS
  name.

No identity: ``UNAUTHENTICATED`` ``IDENTITY_MISSING``; a token that does not verify:
``UNAUTHENTICATED`` ``IDENTITY_INVALID`` (its ErrorInfo's ``problem`` says why: expired,
audience, issuer, signature, ...).

**Entitlements.** ``TESSERA_ENTITLEMENTS_FILE`` (YAML or JSON) gives each principal its
roles and, for a trader, its accounts::

    principals:
      - name: alice
        roles: [trader]
        accounts: [acct-1, acct-2]     # "*": every account
      - name: ops@example.com
        roles: [operator]
      - name: spiffe://tessera/oms
        roles: [service]

The file is checked for a change (its mtime and size) at most once a second, on a
call, and reloaded; a file that no longer parses is logged and the last good one kept.
What each role may call is :mod:`services.common.access`. A refusal is
``PERMISSION_DENIED`` ``NOT_ENTITLED``, counted in ``tessera_not_entitled_total``.

**Without identities.** ``TESSERA_AUTH=none`` turns all of it off: the service says so
at start and every access log line carries ``auth=none``. There is no other way to
run without identities: a service with neither keys nor a client CA, or without an
entitlements file, refuses to start.

**Outgoing.** A service that calls another (the OMS the Exchange, a Risk replica its
peer) presents the token in ``TESSERA_SERVICE_TOKEN_FILE`` when set (re-read when the
file changes); else, where tokens are HS256 with a shared key, one it mints itself for
``TESSERA_SERVICE_PRINCIPAL`` (an hour's, renewed at half-life); else its TLS client
certificate.

Health checks and reflection stay open: they are never registered through here.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

from services.common import access
from services.common.config import ConfigError
from services.domain.errors import DomainError

log = logging.getLogger(__name__)
audit_log = logging.getLogger("tessera.audit")

MODE_VARIABLE = "TESSERA_AUTH"
ENTITLEMENTS_VARIABLE = "TESSERA_ENTITLEMENTS_FILE"
PUBLIC_KEYS_VARIABLE = "TESSERA_JWT_PUBLIC_KEY_FILES"
HMAC_KEY_VARIABLE = "TESSERA_JWT_HMAC_KEY_FILE"
ISSUER_VARIABLE = "TESSERA_JWT_ISSUER"
AUDIENCE_VARIABLE = "TESSERA_JWT_AUDIENCE"
LEEWAY_VARIABLE = "TESSERA_JWT_LEEWAY_SECONDS"
SERVICE_TOKEN_VARIABLE = "TESSERA_SERVICE_TOKEN_FILE"
SERVICE_PRINCIPAL_VARIABLE = "TESSERA_SERVICE_PRINCIPAL"
#: A token a service mints for itself (HS256, with the shared key) lives this long.
SELF_MINTED_LIFETIME = 3600
AUTHORIZATION = "authorization"
_BEARER = "Bearer "
#: Verified tokens kept (a steady client reuses one): the cache is emptied when full.
TOKEN_CACHE_SIZE = 4096
RELOAD_CHECK_SECONDS = 1.0


class NotAuthenticated(DomainError):
    """No identity, or a credential that does not verify (UNAUTHENTICATED)."""

    reason = "IDENTITY_MISSING"


class NotEntitled(DomainError):
    """The caller's roles do not admit the call, or not for this account (PERMISSION_DENIED)."""

    reason = "NOT_ENTITLED"


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who makes the current call: ``via`` is ``token``, ``mtls`` or ``none``."""

    name: str
    via: str


ANONYMOUS = Caller("", "none")
_NO_ROLES: frozenset[str] = frozenset()
#: The current call's (caller, its roles, the accounts it is confined to or None): one
#: context variable, set once per call.
_call_var: contextvars.ContextVar[tuple[Caller, frozenset[str], frozenset[str] | None]] = contextvars.ContextVar(
    "tessera_call", default=(ANONYMOUS, _NO_ROLES, None))


def current_caller() -> Caller:
    return _call_var.get()[0]


def check_account(account: str, what: str = "order") -> None:
    """Refuse (NOT_ENTITLED) when the current call is confined to accounts ``account`` is
    not one of: for a method that names an order by id, called once the stored order is
    loaded."""
    caller, _, allowed = _call_var.get()
    if allowed is not None and account not in allowed:
        raise NotEntitled(f"{caller.name} may not act on account {account!r} (the {what}'s account)",
                          metadata={"principal": caller.name, "account": account})


def confined() -> bool:
    """True when the current call is confined to listed accounts (a trader's)."""
    return _call_var.get()[2] is not None


MAX_COMMENT = 200


def comment_of(value: str, problems: list[Any]) -> str:
    """The free-text ``operator`` field of a privileged request: a comment (optional, at
    most 200 characters, without a NUL); who acted is the authenticated principal."""
    comment = " ".join(value.split())
    if len(comment) > MAX_COMMENT:
        from services.domain.errors import InvalidOrder

        problems.append(InvalidOrder("operator", f"a comment of at most {MAX_COMMENT} characters",
                                     violation="TOO_LONG"))
    else:
        from services.common.convert import check_storable

        check_storable(comment, "operator", problems=problems)
    return comment


def with_comment(reason: str, comment: str) -> str:
    """The reason recorded with a privileged action, the request's comment appended."""
    return f"{reason} (comment: {comment})" if comment else reason


def principal_for_record(comment: str = "") -> str:
    """Who a privileged action is recorded as: the authenticated principal; without
    identities, ``unauthenticated`` (the request's comment goes into the record's text)."""
    caller = _call_var.get()[0]
    return caller.name[:128] if caller.via != "none" else "unauthenticated"


def record_privileged(action: str, **details: Any) -> None:
    """One ``tessera.audit`` log line for a privileged action, with the principal."""
    caller = _call_var.get()[0]
    audit_log.warning("privileged action %s by %s (%s): %s", action, caller.name or "unauthenticated", caller.via,
                      ", ".join(f"{key}={value!r}" for key, value in details.items()))


# -- the entitlements file ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Grant:
    roles: frozenset[str]
    accounts: frozenset[str]
    #: method -> the widest scope the roles give it (ALL, LISTED or None), filled on use.
    scopes: dict[str, str | None] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def all_accounts(self) -> bool:
        return "*" in self.accounts

    def scope(self, rule: "access.Rule") -> str | None:
        """The widest grant the roles give ``rule``'s method; ALL for a trader of "*"."""
        found = self.scopes.get(rule.full_name, "")
        if found != "":
            return found
        scope = None
        for role in self.roles:
            given = rule.grants.get(role)
            if given == access.ALL:
                scope = access.ALL
                break
            scope = scope or given
        if scope == access.LISTED and self.all_accounts:
            scope = access.ALL
        self.scopes[rule.full_name] = scope
        return scope


def parse_entitlements(text: str, source: str = "entitlements") -> dict[str, Grant]:
    """The principals of an entitlements file (YAML or JSON).

    Raises
    ------
    ConfigError
        The text is not such a file; the message says where.
    """
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception as error:  # noqa: BLE001 - any parser failure is a bad file
        raise ConfigError(f"{source}: not YAML or JSON ({type(error).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("principals"), list):
        raise ConfigError(f"{source}: expected a mapping with a 'principals' list")
    grants: dict[str, Grant] = {}
    for index, entry in enumerate(data["principals"]):
        where = f"{source}: principals[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ConfigError(f"{where}: needs a name")
        name = entry["name"].strip()
        roles = entry.get("roles") or []
        accounts = entry.get("accounts") or []
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
            raise ConfigError(f"{where} ({name}): roles must be a non-empty list")
        unknown = sorted(set(roles) - set(access.ROLES))
        if unknown:
            raise ConfigError(f"{where} ({name}): unknown role(s) {', '.join(unknown)}; roles are "
                              f"{', '.join(access.ROLES)}")
        if not isinstance(accounts, list) or not all(isinstance(a, str) and a for a in accounts):
            raise ConfigError(f"{where} ({name}): accounts must be a list of account names")
        if access.TRADER in roles and not accounts:
            raise ConfigError(f"{where} ({name}): a trader needs its accounts (\"*\" for all)")
        if name in grants:
            raise ConfigError(f"{where}: {name} is listed twice")
        grants[name] = Grant(frozenset(roles), frozenset(accounts))
    return grants


class Entitlements:
    """The entitlements file, reloaded when it changes (checked at most once a second)."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._stamp = self._stat()
        self.grants = self._load()
        self._checked = clock()

    def _stat(self) -> tuple[int, int]:
        try:
            info = os.stat(self.path)
        except OSError as error:
            raise ConfigError(f"{ENTITLEMENTS_VARIABLE}: cannot read {self.path} "
                              f"({error.strerror or type(error).__name__})") from None
        return info.st_mtime_ns, info.st_size

    def _load(self) -> dict[str, Grant]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ConfigError(f"{ENTITLEMENTS_VARIABLE}: cannot read {self.path} "
                              f"({error.strerror or type(error).__name__})") from None
        return parse_entitlements(text, f"{ENTITLEMENTS_VARIABLE} {self.path}")

    def get(self, principal: str) -> Grant | None:
        now = self.clock()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = now
            self.reload_if_changed()
        return self.grants.get(principal)

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return False
            grants = self._load()
        except ConfigError as error:
            log.error("entitlements not reloaded, the last good file stays in force: %s", error)
            return False
        self._stamp, self.grants = stamp, grants
        log.warning("entitlements reloaded from %s: %d principals", self.path, len(grants))
        return True


# -- bearer tokens -------------------------------------------------------------------------
_KEY_ALGORITHMS = {"Ed25519PublicKey": "EdDSA", "EllipticCurvePublicKey": "ES256", "RSAPublicKey": "RS256"}


def _read_file(variable: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"{variable}: cannot read {path} ({error.strerror or type(error).__name__})") from None


def load_public_key(variable: str, path: str) -> tuple[str, Any]:
    """(algorithm, key) of a PEM public key file."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read_file(variable, path)
    try:
        key = load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"{variable}: {path} holds no PEM public key") from None
    for cls in type(key).__mro__:
        algorithm = _KEY_ALGORITHMS.get(cls.__name__)
        if algorithm:
            if algorithm == "ES256" and getattr(getattr(key, "curve", None), "name", "") != "secp256r1":
                raise ConfigError(f"{variable}: {path}: an EC key must be on P-256 (ES256)")
            return algorithm, key
    raise ConfigError(f"{variable}: {path}: an Ed25519, EC P-256 or RSA public key is needed")


@dataclasses.dataclass(frozen=True)
class KeyFile:
    """A file holding one token key: a PEM public key, or (``shared``) an HS256 secret;
    its name without the extension is the key's id (a token's ``kid``)."""

    variable: str
    path: str
    shared: bool = False

    @property
    def key_id(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def stamp(self) -> tuple[int, int] | None:
        """The file's (mtime, size); None when it is gone."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ConfigError(f"{self.variable}: cannot read {self.path} "
                              f"({error.strerror or type(error).__name__})") from None
        return info.st_mtime_ns, info.st_size

    def load(self) -> tuple[str, str, Any]:
        """(key id, algorithm, key)."""
        if not self.shared:
            return (self.key_id, *load_public_key(self.variable, self.path))
        secret = _read_file(self.variable, self.path).strip()
        if len(secret) < 32:
            raise ConfigError(f"{self.variable}: the key must be at least 32 bytes")
        return self.key_id, "HS256", secret


class TokenVerifier:
    """Verifies bearer tokens (see the module docstring); caches the verified ones.

    Keys read from files (:meth:`from_env`) are reloaded when a file changes (its mtime
    and size, checked at most once a second, on a call), so keys rotate without a
    restart: a Kubernetes Secret's files replaced in place. A reload forgets every cached
    verification, so a token of a key taken out is refused from then on; a file that no
    longer holds a key is logged and the last good keys stay in force."""

    def __init__(self, keys: Sequence[tuple[str, str, Any]], *, issuer: str, audience: str,
                 leeway: float = 30.0, clock: Callable[[], float] = time.time, files: Sequence[KeyFile] = (),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.clock = clock
        self.files = list(files)
        self.monotonic = monotonic
        self._cache: dict[str, tuple[Caller, float]] = {}
        self._use(list(keys))
        self._stamps: list[tuple[int, int] | None] = [file.stamp() for file in self.files]
        self._checked = monotonic()

    def _use(self, keys: list[tuple[str, str, Any]]) -> None:
        self.keys = keys  # (key id, algorithm, key)
        self.algorithms = sorted({algorithm for _, algorithm, _ in keys})
        self._cache.clear()

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *,
                 monotonic: Callable[[], float] = time.monotonic) -> "TokenVerifier | None":
        files = [KeyFile(PUBLIC_KEYS_VARIABLE, path)
                 for path in filter(None, (p.strip() for p in environ.get(PUBLIC_KEYS_VARIABLE, "").split(",")))]
        hmac_path = environ.get(HMAC_KEY_VARIABLE, "").strip()
        if hmac_path:
            files.append(KeyFile(HMAC_KEY_VARIABLE, hmac_path, shared=True))
        if not files:
            return None
        keys = [file.load() for file in files]
        issuer = environ.get(ISSUER_VARIABLE, "").strip()
        audience = environ.get(AUDIENCE_VARIABLE, "").strip()
        if not issuer or not audience:
            raise ConfigError(f"{ISSUER_VARIABLE} and {AUDIENCE_VARIABLE} must be set with the token keys")
        raw_leeway = environ.get(LEEWAY_VARIABLE, "").strip() or "30"
        try:
            leeway = float(raw_leeway)
        except ValueError:
            leeway = math.nan
        if not math.isfinite(leeway) or leeway < 0:  # NaN or infinity: no token would ever expire
            raise ConfigError(f"{LEEWAY_VARIABLE} must be a number of seconds (0 or more), got {raw_leeway!r}")
        return cls(keys, issuer=issuer, audience=audience, leeway=leeway, files=files, monotonic=monotonic)

    def reload_if_changed(self) -> bool:
        """Reload the keys when one of their files changed (True when reloaded). A file
        that is gone drops its key; one that holds no key, or no key left at all, keeps
        the last good keys in force."""
        try:
            stamps = [file.stamp() for file in self.files]
            if stamps == self._stamps:
                return False
            keys = [file.load() for file, stamp in zip(self.files, stamps) if stamp is not None]
            if not keys:
                raise ConfigError("every token key file is gone: "
                                  + ", ".join(file.path for file in self.files))
        except ConfigError as error:
            log.error("token keys not reloaded, the last good keys stay in force: %s", error)
            return False
        self._stamps = stamps
        self._use(keys)
        log.warning("token keys reloaded: %s", ", ".join(f"{key_id} ({algorithm})" for key_id, algorithm, _ in keys))
        return True

    def verify(self, token: str) -> str:
        """The token's principal (``sub``)."""
        return self.caller(token).name

    def caller(self, token: str) -> Caller:
        """The token's caller (its ``sub``, via ``token``); ``token`` may carry its
        ``Bearer `` prefix (the metadata value as it arrived: the cache's key).

        Raises
        ------
        NotAuthenticated
            ``IDENTITY_INVALID``, its metadata's ``problem`` saying why.
        """
        if self.files and self.monotonic() - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = self.monotonic()
            self.reload_if_changed()
        hit = self._cache.get(token)
        if hit is not None and hit[1] + self.leeway > self.clock():
            return hit[0]
        key_text = token
        if token.startswith(_BEARER):
            token = token[len(_BEARER):].strip()
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("malformed", "the bearer token is not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise _invalid("algorithm", f"the bearer token's algorithm {str(algorithm)[:16]!r} is not accepted "
                                        f"(accepted: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        candidates = [key for key_id, alg, key in self.keys if alg == algorithm and (kid is None or key_id == kid)]
        if not candidates:
            candidates = [key for _, alg, key in self.keys if alg == algorithm]
        claims = None
        failure: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(token, key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                                    leeway=self.leeway, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
                break
            except jwt.InvalidSignatureError as error:
                failure = error
            except jwt.InvalidTokenError as error:
                failure = error
                break
        if claims is None:
            raise _token_problem(failure) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _invalid("subject", "the bearer token names no subject")
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.clear()
        caller = Caller(subject, "token")
        self._cache[key_text] = (caller, float(claims["exp"]))
        return caller


def _invalid(problem: str, message: str) -> NotAuthenticated:
    return NotAuthenticated(message, reason="IDENTITY_INVALID", metadata={"problem": problem})


def _token_problem(error: Exception | None) -> NotAuthenticated:
    import jwt

    table = (
        (jwt.ExpiredSignatureError, "expired", "the bearer token has expired"),
        (jwt.InvalidAudienceError, "audience", "the bearer token is for another audience"),
        (jwt.InvalidIssuerError, "issuer", "the bearer token has another issuer"),
        (jwt.ImmatureSignatureError, "not_yet_valid", "the bearer token is not valid yet"),
        (jwt.MissingRequiredClaimError, "claims", "the bearer token lacks a required claim"),
        (jwt.InvalidSignatureError, "signature", "the bearer token's signature does not verify"),
    )
    for kind, problem, message in table:
        if isinstance(error, kind):
            if problem == "claims":
                message = f"{message} ({getattr(error, 'claim', '')})"
            return _invalid(problem, message)
    return _invalid("malformed", "the bearer token does not verify")


# -- the authorizer ------------------------------------------------------------------------
Guard = Callable[[Any, Sequence[tuple[str, Any]], Any], Caller]


def _extractor(path: str) -> Callable[[Any], list[str]] | None:
    if path == "order.account":
        return lambda m: [m.order.account]
    if path == "orders[].account":
        return lambda m: [o.account for o in m.orders]
    if path == "orders[].order.account":
        return lambda m: [o.order.account for o in m.orders]
    if path in ("account", "target_account_uid"):
        return lambda m: [getattr(m, path)]
    return None  # "stored" (the servicer checks), or no account


class Authorizer:
    """Identity and entitlements for one process (see the module docstring)."""

    def __init__(self, *, verifier: TokenVerifier | None = None, entitlements: Entitlements | None = None,
                 mtls: bool = False, enabled: bool = True) -> None:
        self.enabled = enabled
        self.verifier = verifier
        self.entitlements = entitlements
        self.mtls = mtls

    @classmethod
    def disabled(cls) -> "Authorizer":
        return cls(enabled=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Authorizer":
        """The process's authorizer.

        Raises
        ------
        ConfigError
            ``TESSERA_AUTH`` is neither unset, ``required`` nor ``none``; or identities
            are required and there is no way to verify one, or no entitlements file.
        """
        mode = environ.get(MODE_VARIABLE, "").strip().lower() or "required"
        if mode == "none":
            return cls.disabled()
        if mode != "required":
            raise ConfigError(f"{MODE_VARIABLE} must be 'required' (the default) or 'none', got {mode!r}")
        verifier = TokenVerifier.from_env(environ)
        mtls = bool(environ.get("TESSERA_TLS_CA_FILE", "").strip() and environ.get("TESSERA_TLS_CERT_FILE", "").strip())
        if verifier is None and not mtls:
            raise ConfigError(
                f"callers cannot be identified: set {PUBLIC_KEYS_VARIABLE} (or {HMAC_KEY_VARIABLE}) with "
                f"{ISSUER_VARIABLE} and {AUDIENCE_VARIABLE} for bearer tokens, or TESSERA_TLS_CA_FILE for mutual "
                f"TLS; or run without identities with {MODE_VARIABLE}=none")
        path = environ.get(ENTITLEMENTS_VARIABLE, "").strip()
        if not path:
            raise ConfigError(f"{ENTITLEMENTS_VARIABLE} must name the entitlements file (or {MODE_VARIABLE}=none)")
        return cls(verifier=verifier, entitlements=Entitlements(path), mtls=mtls)

    def describe(self) -> str:
        if not self.enabled:
            return "identities OFF (TESSERA_AUTH=none): every caller may call every method"
        ways = []
        if self.verifier is not None:
            ways.append(f"bearer tokens ({', '.join(self.verifier.algorithms)}; issuer {self.verifier.issuer}, "
                        f"audience {self.verifier.audience})")
        if self.mtls:
            ways.append("mutual-TLS client certificates")
        assert self.entitlements is not None
        return (f"identities required: {' or '.join(ways)}; entitlements from {self.entitlements.path} "
                f"({len(self.entitlements.grants)} principals)")

    # -- per call ----------------------------------------------------------------------------
    def identify(self, metadata: Sequence[tuple[str, Any]], context: Any) -> Caller:
        for key, value in metadata:
            if key == AUTHORIZATION:
                if self.verifier is None or not isinstance(value, str) or not value.startswith(_BEARER):
                    raise _invalid("scheme", "the authorization metadata must be 'Bearer <JWT>' (and this "
                                             "service verifies no tokens)" if self.verifier is None else
                                   "the authorization metadata must be 'Bearer <JWT>'")
                return self.verifier.caller(value)
        if self.mtls:
            name = certificate_principal(context)
            if name:
                return Caller(name, "mtls")
        raise NotAuthenticated("no identity: present a bearer token (authorization: Bearer <JWT>)"
                               + (" or a client certificate" if self.mtls else ""))

    def guard(self, method: str, request_class: Any = None) -> Guard | None:
        """The check of ``method``'s calls; None without identities. A method the table
        does not list is open to no role. ``request_class``: the message to parse a
        request that arrives as bytes (only when its accounts must be read)."""
        if not self.enabled:
            return None
        rule = access.BY_METHOD.get(method) or access.Rule("", method, {})
        extract = _extractor(rule.account)
        stored = rule.account == "stored"
        short = method.rsplit("/", 1)[-1]
        entitlements = self.entitlements
        assert entitlements is not None

        def check(request: Any, metadata: Sequence[tuple[str, Any]], context: Any) -> Caller:
            caller = self.identify(metadata, context)
            grant = entitlements.get(caller.name)
            if grant is None:
                _call_var.set((caller, _NO_ROLES, None))
                raise NotEntitled(f"{caller.name} is not in the entitlements file",
                                  metadata={"principal": caller.name, "method": short})
            scope = grant.scope(rule)
            if scope == access.ALL:
                _call_var.set((caller, grant.roles, None))
                return caller
            _call_var.set((caller, grant.roles, grant.accounts))
            if scope is None:
                raise NotEntitled(f"{short} is not open to {caller.name} (roles: {', '.join(sorted(grant.roles))})",
                                  metadata={"principal": caller.name, "method": short})
            if stored or extract is None:
                return caller  # the servicer checks the stored order's account (check_account)
            message = request
            if isinstance(request, (bytes, bytearray)):
                try:
                    message = request_class.FromString(request)
                except Exception:  # noqa: BLE001 - the method itself refuses undecodable bytes
                    return caller
            elif not hasattr(request, "DESCRIPTOR"):
                return caller  # undecodable: refused by the decoder
            for account in extract(message):
                if account not in grant.accounts:
                    if not account:
                        raise NotEntitled(f"{caller.name} trades listed accounts only: name one in the request",
                                          metadata={"principal": caller.name, "method": short})
                    raise NotEntitled(f"{caller.name} may not act on account {account!r}",
                                      metadata={"principal": caller.name, "method": short, "account": account})
            return caller

        return check


def certificate_principal(context: Any) -> str:
    """The principal of the call's client certificate: its URI SAN, else its first DNS name."""
    try:
        properties = context.auth_context() or {}
    except Exception:  # noqa: BLE001 - no TLS on this call
        return ""
    for key in ("peer_uri", "peer_dns"):
        values = properties.get(key)
        if values:
            value = values[0]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    pem = (properties.get("x509_pem_cert") or [b""])[0]
    return _principal_from_pem(pem) if pem else ""


_PEM_PRINCIPALS: dict[bytes, str] = {}


def _principal_from_pem(pem: bytes) -> str:
    found = _PEM_PRINCIPALS.get(pem)
    if found is not None:
        return found
    from cryptography import x509

    try:
        names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        dns = names.get_values_for_type(x509.DNSName)
        found = (uris or dns or [""])[0]
    except (ValueError, x509.ExtensionNotFound):
        found = ""
    if len(_PEM_PRINCIPALS) > 1024:
        _PEM_PRINCIPALS.clear()
    _PEM_PRINCIPALS[pem] = found
    return found


_process: list[Authorizer] = []


def configure(environ: Mapping[str, str] = os.environ) -> Authorizer:
    """Build the process's authorizer from the environment (the servers' start)."""
    authorizer = Authorizer.from_env(environ)
    _process[:] = [authorizer]
    return authorizer


def process_authorizer() -> Authorizer:
    """The authorizer :func:`configure` built (built from the environment on first use)."""
    if not _process:
        configure()
    return _process[0]


def set_process_authorizer(authorizer: Authorizer) -> None:
    _process[:] = [authorizer]


# -- outgoing calls ------------------------------------------------------------------------
class _ServiceToken:
    def __init__(self) -> None:
        self.path = ""
        self.stamp: tuple[int, int] | None = None
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.checked = 0.0

    def get(self) -> tuple[tuple[str, str], ...]:
        path = os.environ.get(SERVICE_TOKEN_VARIABLE, "").strip()
        if not path:
            return self._self_minted()
        now = time.monotonic()
        if path == self.path and now - self.checked < RELOAD_CHECK_SECONDS:
            return self.metadata
        self.checked = now
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size)
            if path != self.path or stamp != self.stamp:
                with open(path, encoding="utf-8") as handle:
                    token = handle.read().strip()
                self.path, self.stamp = path, stamp
                self.metadata = ((AUTHORIZATION, _BEARER + token),) if token else ()
        except OSError as error:
            log.error("%s: cannot read %s (%s)", SERVICE_TOKEN_VARIABLE, path, error.strerror)
        return self.metadata


    def _self_minted(self) -> tuple[tuple[str, str], ...]:
        principal = os.environ.get(SERVICE_PRINCIPAL_VARIABLE, "").strip()
        key_path = os.environ.get(HMAC_KEY_VARIABLE, "").strip()
        if not principal or not key_path:
            return ()
        now = time.time()
        if self.metadata and now < self.checked:
            return self.metadata
        import jwt

        try:
            key = _read_file(HMAC_KEY_VARIABLE, key_path).strip()
        except ConfigError as error:
            log.error("cannot mint the service token: %s", error)
            return self.metadata
        claims = {"sub": principal, "iss": os.environ.get(ISSUER_VARIABLE, "").strip(),
                  "aud": os.environ.get(AUDIENCE_VARIABLE, "").strip(), "iat": int(now),
                  "exp": int(now + SELF_MINTED_LIFETIME)}
        self.metadata = ((AUTHORIZATION, _BEARER + jwt.encode(claims, key, algorithm="HS256")),)
        self.checked = now + SELF_MINTED_LIFETIME / 2  # renewed at half-life
        return self.metadata


_service_token = _ServiceToken()


def service_metadata() -> tuple[tuple[str, str], ...]:
    """The ``authorization`` metadata a service presents to another (empty without a
    ``TESSERA_SERVICE_TOKEN_FILE``: its TLS client certificate speaks for it)."""
    return _service_token.get()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION, _BEARER + token),) if token else ()


def dump_json(grants: Mapping[str, Grant]) -> str:
    """An entitlements file (JSON) holding ``grants``."""
    return json.dumps({"principals": [
        {"name": name, "roles": sorted(grant.roles), **({"accounts": sorted(grant.accounts)} if grant.accounts else {})}
        for name, grant in grants.items()]}, indent=2) + "\n"
