"""Which Risk replica owns which account: a deterministic map over a StatefulSet's ordinals.

Risk decides from memory, so each account must be decided by one replica. Replicas are
the pods of a Kubernetes StatefulSet (``risk-0``, ``risk-1``, ...): replica ``i`` of
``n`` owns the accounts whose shard is ``i``::

    shard(account) = int.from_bytes(SHA-256(account as UTF-8)[:8], "big") % n

Nothing else coordinates them: the map is a pure function of the account and the
replica count, the same on every replica and in any client that wants to send an
account's orders straight to its owner. A request that reaches another replica is
forwarded to the owner (``TESSERA_RISK_PEERS`` names every replica's address), or
refused with ``FAILED_PRECONDITION`` ``NOT_ACCOUNT_OWNER`` naming the owner when no
address is known or it was forwarded once already.

Configuration: ``TESSERA_RISK_SHARDS`` (the replica count, default 1),
``TESSERA_RISK_SHARD`` (this replica's ordinal; default: the ordinal at the end of the
host name, ``risk-2`` -> 2, as a StatefulSet names its pods, read whenever there are
several replicas or ``TESSERA_RISK_PEERS`` is set, so that a pod of a set scaled past
its count refuses to start even when the count is 1), ``TESSERA_RISK_PEERS``
(one address per ordinal, comma-separated, or a template with ``{ordinal}``, e.g.
``risk-{ordinal}.risk-headless.tessera.svc:50051``, the per-pod DNS names a headless
Service gives a StatefulSet's pods; ``{shard}`` is the same placeholder).

Changing the replica count moves accounts between replicas: every replica restarts with
the new count and loads the accounts it now owns, and no replica with the old count may
decide while one with the new count does (an account would be decided by two replicas,
each checking its limits against only what it approved). The replicas enforce that
through the store (:meth:`services.risk.engine.RiskEngine.check_in`: no replica decides
while one seen within the lease runs with another count); stopping them all first keeps
the time refused shortest (docs/risk-sharding.md, "Changing the replica count").
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from collections.abc import Mapping

from services.common.config import ConfigError

#: Metadata a forwarding replica adds: the receiver must own the account, not forward again.
FORWARDED_METADATA = "tessera-risk-forwarded"
_ORDINAL = re.compile(r"-(\d+)$")
#: What a ``TESSERA_RISK_PEERS`` template replaces with each replica's ordinal.
_PLACEHOLDERS = ("{ordinal}", "{shard}")


def shard_of(account: str, shards: int) -> int:
    """The ordinal of the replica that owns ``account`` among ``shards``."""
    if shards <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(account.encode("utf-8")).digest()[:8], "big") % shards


@dataclasses.dataclass(frozen=True)
class Sharding:
    """This replica's place in the map, and how to reach the others."""

    shard: int = 0
    shards: int = 1
    peers: tuple[str, ...] = ()

    def owner(self, account: str) -> int:
        return shard_of(account, self.shards)

    def owns(self, account: str) -> bool:
        return self.shards <= 1 or shard_of(account, self.shards) == self.shard

    def address(self, shard: int) -> str | None:
        return self.peers[shard] if shard < len(self.peers) else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], hostname: str | None = None) -> "Sharding":
        """Read ``TESSERA_RISK_SHARDS``, ``TESSERA_RISK_SHARD`` and ``TESSERA_RISK_PEERS``.

        Raises
        ------
        ConfigError
            A count or ordinal that is not a number, an ordinal outside the count, or a
            peer list of another length; the message names the variable.
        """
        shards = _number(environ, "TESSERA_RISK_SHARDS", "1")
        if shards < 1:
            raise ConfigError("TESSERA_RISK_SHARDS must be at least 1")
        raw = environ.get("TESSERA_RISK_SHARD", "").strip()
        peers_raw = environ.get("TESSERA_RISK_PEERS", "").strip()
        if raw:
            shard = _number(environ, "TESSERA_RISK_SHARD", raw)
        elif shards == 1 and not peers_raw:
            shard = 0  # one process outside a StatefulSet: no ordinal to read
        else:
            # A StatefulSet's pod (peers configured), even of a count of one: risk-1 of a
            # set scaled past its TESSERA_RISK_SHARDS must refuse, not decide as replica 0.
            name = hostname if hostname is not None else socket.gethostname()
            found = _ORDINAL.search(name)
            if found is None:
                raise ConfigError(
                    f"TESSERA_RISK_SHARD is not set and the host name {name!r} ends in no ordinal "
                    "(a StatefulSet pod is named <set>-<ordinal>)"
                )
            shard = int(found.group(1))
        if not 0 <= shard < shards:
            raise ConfigError(f"TESSERA_RISK_SHARD={shard} is outside the {shards} replicas of TESSERA_RISK_SHARDS")
        if not peers_raw:
            peers: tuple[str, ...] = ()
        elif any(placeholder in peers_raw for placeholder in _PLACEHOLDERS):
            peers = tuple(_expand(peers_raw, i) for i in range(shards))
        else:
            peers = tuple(p.strip() for p in peers_raw.split(","))
            if len(peers) != shards or not all(peers):
                raise ConfigError(f"TESSERA_RISK_PEERS must name {shards} addresses (one per replica), "
                                  f"got {len(peers)}")
        return cls(shard, shards, peers)


def check_forwarding_identity(environ: Mapping[str, str], sharding: Sharding) -> None:
    """Refuse to start a replica that would forward orders (several replicas, peers known)
    where identities are required and it has none to present: the owner would refuse
    every forwarded order, for a fault of the deployment, not of the caller.

    A replica forwards with its service token (``TESSERA_SERVICE_TOKEN_FILE``, or one it
    mints with ``TESSERA_SERVICE_PRINCIPAL`` and ``TESSERA_JWT_HMAC_KEY_FILE``), else its
    TLS client certificate (``TESSERA_TLS_CERT_FILE`` with ``TESSERA_TLS_CA_FILE``).

    Raises
    ------
    ConfigError
        Naming what to set.
    """
    if sharding.shards <= 1 or not sharding.peers:
        return
    if environ.get("TESSERA_AUTH", "").strip().lower() == "none":
        return

    def given(*names: str) -> bool:
        return all(environ.get(name, "").strip() for name in names)

    if (given("TESSERA_SERVICE_TOKEN_FILE") or given("TESSERA_SERVICE_PRINCIPAL", "TESSERA_JWT_HMAC_KEY_FILE")
            or given("TESSERA_TLS_CA_FILE", "TESSERA_TLS_CERT_FILE")
            or given("TESSERA_EXCHANGE_TLS_CA_FILE", "TESSERA_EXCHANGE_TLS_CERT_FILE")):
        return
    raise ConfigError(
        "TESSERA_RISK_PEERS is set and identities are required, but this replica has no identity to forward "
        "orders with: set TESSERA_SERVICE_TOKEN_FILE (or TESSERA_SERVICE_PRINCIPAL with TESSERA_JWT_HMAC_KEY_FILE), "
        "or a TLS client certificate (TESSERA_TLS_CERT_FILE with TESSERA_TLS_CA_FILE); its principal needs the "
        "service role")


def _expand(template: str, ordinal: int) -> str:
    for placeholder in _PLACEHOLDERS:
        template = template.replace(placeholder, str(ordinal))
    return template


def _number(environ: Mapping[str, str], name: str, default: str) -> int:
    raw = environ.get(name, "").strip() or default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


__all__ = ["FORWARDED_METADATA", "Sharding", "check_forwarding_identity", "shard_of"]
