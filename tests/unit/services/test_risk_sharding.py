"""The account -> replica map and its configuration (``services.risk.sharding``)."""

from __future__ import annotations

from collections import Counter

import pytest

from services.common.config import ConfigError
from services.risk.sharding import Sharding, shard_of

ACCOUNTS = [f"acct-{n}" for n in range(3000)]


def test_the_map_is_sha256_of_the_account_modulo_the_replica_count() -> None:
    # Vectors for a client in another language that routes orders to the owner itself:
    # SHA-256("desk-1")[:8] read big-endian is 0xdd9b8562f3ff0dd3.
    assert [shard_of("desk-1", n) for n in (1, 2, 3, 5)] == [0, 1, 0, 4]
    assert [shard_of("desk-2", n) for n in (2, 3, 5)] == [0, 0, 0]
    assert 0xdd9b8562f3ff0dd3 % 7 == shard_of("desk-1", 7)


def test_every_account_has_exactly_one_owner_and_the_shares_are_even() -> None:
    replicas = [Sharding(i, 3) for i in range(3)]
    owners = [[r.shard for r in replicas if r.owns(account)] for account in ACCOUNTS]
    assert all(len(found) == 1 for found in owners)
    shares = Counter(found[0] for found in owners)
    assert set(shares) == {0, 1, 2} and min(shares.values()) > 900  # 1,000 each, give or take


def test_a_template_names_one_peer_per_ordinal() -> None:
    environ = {"TESSERA_RISK_SHARDS": "3", "TESSERA_RISK_PEERS": "risk-{ordinal}.risk-headless.tessera.svc:50051"}
    sharding = Sharding.from_env(environ, hostname="risk-2")
    assert sharding.peers == tuple(f"risk-{i}.risk-headless.tessera.svc:50051" for i in range(3))
    assert (sharding.shard, sharding.shards) == (2, 3)
    legacy = Sharding.from_env({**environ, "TESSERA_RISK_PEERS": "risk-{shard}.peers:50051"}, hostname="risk-0")
    assert legacy.peers == ("risk-0.peers:50051", "risk-1.peers:50051", "risk-2.peers:50051")


def test_a_list_names_the_peers_in_ordinal_order() -> None:
    sharding = Sharding.from_env({"TESSERA_RISK_SHARDS": "2", "TESSERA_RISK_SHARD": "1",
                                  "TESSERA_RISK_PEERS": "127.0.0.1:6001, 127.0.0.1:6002"})
    assert sharding.peers == ("127.0.0.1:6001", "127.0.0.1:6002")
    assert sharding.address(0) == "127.0.0.1:6001" and sharding.address(1) == "127.0.0.1:6002"


def test_the_ordinal_comes_from_the_pod_name_unless_set() -> None:
    assert Sharding.from_env({"TESSERA_RISK_SHARDS": "4"}, hostname="risk-3").shard == 3
    assert Sharding.from_env({"TESSERA_RISK_SHARDS": "4", "TESSERA_RISK_SHARD": "1"}, hostname="risk-3").shard == 1
    assert Sharding.from_env({}, hostname="laptop").shard == 0  # one replica: no ordinal needed


@pytest.mark.parametrize(("environ", "hostname", "names"), [
    ({"TESSERA_RISK_SHARDS": "two"}, "risk-0", "TESSERA_RISK_SHARDS"),
    ({"TESSERA_RISK_SHARDS": "0"}, "risk-0", "TESSERA_RISK_SHARDS"),
    ({"TESSERA_RISK_SHARDS": "2"}, "risk", "TESSERA_RISK_SHARD"),
    ({"TESSERA_RISK_SHARDS": "2"}, "risk-2", "TESSERA_RISK_SHARD=2"),  # a pod the count does not know
    ({"TESSERA_RISK_SHARDS": "3", "TESSERA_RISK_PEERS": "a:1,b:2"}, "risk-0", "TESSERA_RISK_PEERS"),
])
def test_a_bad_configuration_is_refused_naming_the_variable(environ: dict[str, str], hostname: str,
                                                             names: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Sharding.from_env(environ, hostname=hostname)
    assert names in str(refused.value)


def test_a_pod_of_a_statefulset_scaled_past_a_count_of_one_refuses_to_start() -> None:
    """The base manifest (one replica, the peer template) scaled to two pods: risk-1 would
    otherwise take ordinal 0 of 1 and decide every account beside risk-0."""
    environ = {"TESSERA_RISK_SHARDS": "1", "TESSERA_RISK_PEERS": "risk-{ordinal}.risk-headless.tessera.svc:50051"}
    assert Sharding.from_env(environ, hostname="risk-0").shard == 0
    with pytest.raises(ConfigError) as refused:
        Sharding.from_env(environ, hostname="risk-1")
    assert "TESSERA_RISK_SHARD=1 is outside the 1 replicas" in str(refused.value)
    # A single process outside a StatefulSet (no peers) needs no ordinal, whatever its host's name.
    assert Sharding.from_env({"TESSERA_RISK_SHARDS": "1"}, hostname="build-7").shard == 0


SHARDED = {"TESSERA_RISK_SHARDS": "2", "TESSERA_RISK_SHARD": "0",
           "TESSERA_RISK_PEERS": "risk-{ordinal}.risk-headless.tessera.svc:50051",
           "TESSERA_JWT_PUBLIC_KEY_FILES": "/etc/tessera/jwt/public.pem"}


@pytest.mark.parametrize("identity", [
    {"TESSERA_SERVICE_TOKEN_FILE": "/etc/tessera/jwt/service-token"},
    {"TESSERA_SERVICE_PRINCIPAL": "tessera-service", "TESSERA_JWT_HMAC_KEY_FILE": "/etc/tessera/jwt/hmac-key"},
    {"TESSERA_TLS_CA_FILE": "/etc/tls/ca.crt", "TESSERA_TLS_CERT_FILE": "/etc/tls/tls.crt"},
    {"TESSERA_AUTH": "none"},  # the owner asks no identity of anyone
])
def test_a_replica_that_forwards_starts_with_an_identity_to_forward_with(identity: dict[str, str]) -> None:
    from services.risk.sharding import check_forwarding_identity

    check_forwarding_identity({**SHARDED, **identity}, Sharding.from_env({**SHARDED, **identity}))


def test_a_replica_that_would_forward_without_an_identity_the_owner_accepts_refuses_to_start() -> None:
    """Identities required, and nothing to present to the owner: every order for another
    replica's account would be refused. Said at start, naming what to set."""
    from services.risk.sharding import check_forwarding_identity

    with pytest.raises(ConfigError) as refused:
        check_forwarding_identity(SHARDED, Sharding.from_env(SHARDED))
    assert "TESSERA_SERVICE_TOKEN_FILE" in str(refused.value) and "TESSERA_RISK_PEERS" in str(refused.value)
    check_forwarding_identity({"TESSERA_JWT_PUBLIC_KEY_FILES": "k"}, Sharding())  # one replica: never forwards
