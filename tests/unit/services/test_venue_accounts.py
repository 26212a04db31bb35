"""The venue accounts registry: its file format, secrets from files only, the checks Risk
and the Exchange make with it, and reloading when a file changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.common.venue_accounts import RegistryError, VenueAccounts, reload_seconds
from services.domain import MarketType
from services.domain.errors import PreconditionFailed
from services.exchange.aster.credentials import credentials_from_mapping

USER = "0x2222222222222222222222222222222222222222"
SIGNER = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
PRIVATE_KEY = "0x" + "01" * 32
API_KEY = "registry-api-key-0123"
API_SECRET = "registry-secret-0123456789abcdef"


def write(tmp_path: Path, accounts: dict) -> Path:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": accounts}))
    return path


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    (tmp_path / "alpha.key").write_text(PRIVATE_KEY + "\n")
    (tmp_path / "beta.api-key").write_text(API_KEY)
    (tmp_path / "beta.secret").write_text(API_SECRET)
    return write(tmp_path, {
        "alpha": {"venue": "aster", "market_types": ["FUTURES", "SPOT"], "user": USER, "signer": SIGNER,
                  "private_key_file": "alpha.key", "chain_id": 714},
        "beta": {"venue": "aster", "market_types": ["FUTURES"], "api_key_file": "beta.api-key",
                 "secret_file": str(tmp_path / "beta.secret")},
    })


def test_each_account_gets_its_venue_markets_and_credentials_read_from_its_files(registry_file):
    registry = VenueAccounts(registry_file, credentials=credentials_from_mapping)

    alpha, beta = registry.get("alpha"), registry.get("beta")
    assert alpha.api == "v3" and alpha.market_types == {MarketType.FUTURES, MarketType.SPOT}
    assert alpha.credentials.user == USER and alpha.credentials.signer == SIGNER
    assert alpha.credentials.chain_id == 714
    assert beta.api == "v1" and beta.market_types == {MarketType.FUTURES}
    assert beta.credentials.api_key == API_KEY
    assert registry.credentials_for("beta") is beta.credentials
    assert registry.credentials_for("gamma") is None
    shown = repr(registry.accounts) + repr(alpha.credentials) + repr(beta.credentials)
    assert PRIVATE_KEY[2:] not in shown and API_SECRET not in shown


def test_risk_reads_the_registry_without_opening_a_key_file(registry_file, tmp_path):
    for name in ("alpha.key", "beta.api-key", "beta.secret"):
        (tmp_path / name).unlink()

    registry = VenueAccounts(registry_file, credentials=None)

    assert registry.get("alpha").credentials is None and registry.get("alpha").api == "v3"
    assert sorted(registry.accounts) == ["alpha", "beta"]


def test_an_order_of_an_unknown_account_or_another_venue_or_market_is_refused(registry_file):
    registry = VenueAccounts(registry_file, credentials=None)

    assert registry.check("alpha", "aster", MarketType.SPOT).account == "alpha"
    with pytest.raises(PreconditionFailed) as unknown:
        registry.check("someone-else", "aster", MarketType.FUTURES)
    with pytest.raises(PreconditionFailed) as venue:
        registry.check("alpha", "binance", MarketType.FUTURES)
    with pytest.raises(PreconditionFailed) as market:
        registry.check("beta", "aster", MarketType.SPOT)

    assert unknown.value.reason == "ACCOUNT_NOT_CONFIGURED"
    assert unknown.value.metadata == {"account": "someone-else"}
    assert venue.value.reason == "VENUE_NOT_CONFIGURED" and market.value.reason == "VENUE_NOT_CONFIGURED"
    assert venue.value.metadata == {"account": "alpha", "venue": "binance"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"venue": "aster", "user": USER, "signer": SIGNER, "private_key": PRIVATE_KEY},
     "give private_key_file instead of private_key"),
    ({"venue": "aster", "api_key": API_KEY, "secret_file": "s"}, "give api_key_file instead of api_key"),
    ({"venue": "binance", "api_key_file": "k", "secret_file": "s"}, "venue must be one of aster"),
    ({"venue": "aster", "market_types": ["OPTIONS"], "api_key_file": "k", "secret_file": "s"},
     "market_types must list FUTURES and/or SPOT"),
    ({"venue": "aster", "user": USER, "private_key_file": "k"}, "missing signer"),
    ({"venue": "aster", "user": USER, "signer": SIGNER, "private_key_file": "k", "api_key_file": "x"},
     "one of the two"),
    ({"venue": "aster", "api_key_file": "k", "secret_file": "s", "colour": "red"}, "unknown fields colour"),
])
def test_a_registry_with_an_inline_secret_or_a_bad_entry_is_refused_without_showing_a_value(tmp_path, entry,
                                                                                            message):
    path = write(tmp_path, {"acct": entry})

    with pytest.raises(RegistryError) as refused:
        VenueAccounts(path, credentials=None)

    assert message in str(refused.value) and "'acct'" in str(refused.value)
    assert PRIVATE_KEY not in str(refused.value) and API_KEY not in str(refused.value)


def test_a_key_file_that_is_missing_or_padded_or_does_not_match_the_signer_is_refused(tmp_path):
    path = write(tmp_path, {"alpha": {"venue": "aster", "user": USER, "signer": SIGNER,
                                      "private_key_file": "alpha.key"}})
    with pytest.raises(RegistryError, match="private_key_file .* cannot be read"):
        VenueAccounts(path, credentials=credentials_from_mapping)
    (tmp_path / "alpha.key").write_text(" " + PRIVATE_KEY)
    with pytest.raises(RegistryError, match="surrounding whitespace"):
        VenueAccounts(path, credentials=credentials_from_mapping)
    (tmp_path / "alpha.key").write_text("0x" + "02" * 32)
    with pytest.raises(RegistryError) as wrong:
        VenueAccounts(path, credentials=credentials_from_mapping)
    assert "does not belong to the signer" in str(wrong.value) and "02" * 32 not in str(wrong.value)


def test_the_registry_is_reloaded_when_it_or_a_key_file_changes_and_kept_when_the_new_one_is_bad(registry_file,
                                                                                               tmp_path):
    registry = VenueAccounts(registry_file, credentials=credentials_from_mapping)
    old_beta = registry.get("beta").credentials
    assert registry.refresh() is False and registry.loads == 1

    (tmp_path / "beta.api-key").write_text("rotated-api-key-0123")
    os.utime(tmp_path / "beta.api-key", ns=(1, 1))  # another modification time, whatever the clock
    assert registry.refresh() is True
    assert registry.get("beta").credentials.api_key == "rotated-api-key-0123"
    assert registry.get("beta").credentials is not old_beta

    document = json.loads(registry_file.read_text())
    (tmp_path / "gamma.api-key").write_text("gamma-api-key-0123")
    document["accounts"]["gamma"] = dict(document["accounts"]["beta"], api_key_file="gamma.api-key")
    registry_file.write_text(json.dumps(document))
    assert registry.refresh() is True and sorted(registry.accounts) == ["alpha", "beta", "gamma"]

    registry_file.write_text("{not json")
    assert registry.refresh() is False
    assert sorted(registry.accounts) == ["alpha", "beta", "gamma"]  # the previous registry stays


def test_a_key_file_rotated_while_the_registry_loads_is_read_again_at_the_next_refresh(registry_file, tmp_path):
    rotated = []

    def rotating_on_first_read(values, *, label=None):
        # The Secret is updated after beta's key file was read, before the load ends.
        if label == "v1:beta" and not rotated:
            (tmp_path / "beta.api-key").write_text("rotated-api-key-0123")
            os.utime(tmp_path / "beta.api-key", ns=(1, 1))  # another modification time, whatever the clock
            rotated.append(True)
        return credentials_from_mapping(values, label=label)

    registry = VenueAccounts(registry_file, credentials=rotating_on_first_read)
    assert rotated and registry.get("beta").credentials.api_key == API_KEY  # what the load read

    assert registry.refresh() is True  # the rotated file is not taken as the one in memory
    assert registry.get("beta").credentials.api_key == "rotated-api-key-0123"


def test_a_registry_that_is_not_json_names_the_file_and_the_reload_interval_must_be_positive(tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text("accounts: []")
    with pytest.raises(RegistryError, match="is not JSON"):
        VenueAccounts(path, credentials=None)
    assert VenueAccounts.from_environ({}, credentials=None) is None
    assert reload_seconds({}) == 5.0
    with pytest.raises(RegistryError):
        reload_seconds({"TESSERA_VENUE_ACCOUNTS_RELOAD_SECONDS": "0"})


def test_the_single_account_of_the_environment_is_a_registry_of_one_that_never_reloads():
    single = VenueAccounts.from_environ({"TESSERA_EXECUTION_MODE": "LIVE", "ASTER_ACCOUNT_ID": "acct-1"},
                                        single_account=True)

    assert single is not None and list(single.accounts) == ["acct-1"]
    assert single.check("acct-1", "aster", MarketType.SPOT).credentials is None  # Risk never holds credentials
    with pytest.raises(PreconditionFailed) as refused:
        single.check("acct-2", "aster", MarketType.FUTURES)
    assert refused.value.reason == "ACCOUNT_NOT_CONFIGURED"
    assert single.refresh() is False
    with pytest.raises(RegistryError, match="ASTER_ACCOUNT_ID"):
        VenueAccounts.single("not an account")


def test_two_accounts_on_one_venue_account_are_refused_naming_both_and_no_secret(tmp_path):
    """One venue account holds one position per symbol: two Tessera accounts on it would
    share it (and the venue's fills and orders) while each kept a ledger of its own."""
    (tmp_path / "a.key").write_text(PRIVATE_KEY)
    (tmp_path / "b.key").write_text("0x" + "02" * 32)
    same_user = write(tmp_path, {
        "alpha": {"venue": "aster", "user": USER, "signer": SIGNER, "private_key_file": "a.key"},
        "gamma": {"venue": "aster", "user": USER.upper().replace("0X", "0x"), "signer": SIGNER,
                  "private_key_file": "b.key"},
    })
    with pytest.raises(RegistryError) as refused:
        VenueAccounts(same_user, credentials=None)  # Risk: from the registry alone
    assert "'alpha'" in str(refused.value) and "'gamma'" in str(refused.value)
    assert "same venue account" in str(refused.value)
    # The same user on the testnet is another venue account.
    on_testnet = json.loads(same_user.read_text())
    on_testnet["accounts"]["gamma"]["chain_id"] = 714
    same_user.write_text(json.dumps(on_testnet))
    assert set(VenueAccounts(same_user, credentials=None).accounts) == {"alpha", "gamma"}

    (tmp_path / "k1").write_text(API_KEY)
    (tmp_path / "k2").write_text(API_KEY)
    (tmp_path / "s1").write_text(API_SECRET)
    same_key = write(tmp_path, {
        "beta": {"venue": "aster", "api_key_file": "k1", "secret_file": "s1"},
        "delta": {"venue": "aster", "api_key_file": "k2", "secret_file": "s1"},
    })
    with pytest.raises(RegistryError) as refused:
        VenueAccounts(same_key, credentials=credentials_from_mapping)  # the Exchange reads the keys
    assert "'beta'" in str(refused.value) and "'delta'" in str(refused.value)
    assert API_KEY not in str(refused.value) and API_SECRET not in str(refused.value)
