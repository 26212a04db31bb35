"""Risk with a venue accounts registry: an order of an account, venue or market the registry
does not hold is refused before anything is stored; the others are decided as before."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from services.common.venue_accounts import VenueAccounts
from services.domain import MarketType
from services.domain.errors import PreconditionFailed
from services.risk.engine import RiskEngine

from svc_harness import LIMITS


def test_risk_refuses_an_order_whose_account_or_venue_is_not_configured_and_stores_nothing(
        db, keyring, store, make_order, tmp_path):
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"accounts": {"desk-a": {
        "venue": "aster", "market_types": ["FUTURES"], "api_key_file": "a.key", "secret_file": "a.secret"}}}))
    risk = RiskEngine(db, keyring, LIMITS, accounts=VenueAccounts(path, credentials=None))

    async def scenario():
        good = await risk.validate(make_order(account="desk-a", venue="aster", quantity=Decimal("0.01")))
        outcomes = await risk.validate_many([
            (make_order(account="someone-else", venue="aster", quantity=Decimal("0.01")), False),
            (make_order(account="desk-a", venue="binance", quantity=Decimal("0.01")), False),
            (make_order(account="desk-a", venue="aster", market_type=MarketType.SPOT, quantity=Decimal("0.01")), False),
        ])
        return good, outcomes

    good, (unknown, venue, spot) = asyncio.run(scenario())

    assert good.token and not good.violations
    assert isinstance(unknown, PreconditionFailed) and unknown.reason == "ACCOUNT_NOT_CONFIGURED"
    assert isinstance(venue, PreconditionFailed) and venue.reason == "VENUE_NOT_CONFIGURED"
    assert isinstance(spot, PreconditionFailed) and spot.reason == "VENUE_NOT_CONFIGURED"
    with store.uow() as uow:
        stored, _ = uow.orders.list(limit=100)
    assert [o.account for o in stored] == ["desk-a"]


def test_in_live_mode_without_a_registry_risk_refuses_every_account_but_the_environments_and_stores_nothing(
        db, keyring, store, make_order):
    accounts = VenueAccounts.from_environ({"TESSERA_EXECUTION_MODE": "live", "ASTER_ACCOUNT_ID": "acct-1"},
                                          single_account=True)
    risk = RiskEngine(db, keyring, LIMITS, accounts=accounts)

    async def scenario():
        good = await risk.validate(make_order(account="acct-1", venue="aster", quantity=Decimal("0.01")))
        outcomes = await risk.validate_many([
            (make_order(account="someone-else", venue="aster", quantity=Decimal("0.01")), False),
            (make_order(account="acct-1", venue="binance", quantity=Decimal("0.01")), False),
        ])
        return good, outcomes

    good, (unknown, venue) = asyncio.run(scenario())

    assert good.token and not good.violations
    assert isinstance(unknown, PreconditionFailed) and unknown.reason == "ACCOUNT_NOT_CONFIGURED"
    assert isinstance(venue, PreconditionFailed) and venue.reason == "VENUE_NOT_CONFIGURED"
    with store.uow() as uow:
        stored, _ = uow.orders.list(limit=100)
    assert [o.account for o in stored] == ["acct-1"]


@pytest.mark.parametrize("environment", [
    {"TESSERA_EXECUTION_MODE": "paper", "ASTER_ACCOUNT_ID": "acct-1"},  # paper and shadow trade any account
    {"TESSERA_EXECUTION_MODE": "shadow", "ASTER_ACCOUNT_ID": "acct-1"},
    {"TESSERA_EXECUTION_MODE": "live", "ASTER_ACCOUNT_ID": ""},
])
def test_outside_single_account_live_mode_risk_holds_no_registry(environment):
    assert VenueAccounts.from_environ(environment, single_account=True) is None
    assert VenueAccounts.from_environ({**environment, "TESSERA_EXECUTION_MODE": "live"}) is None  # the Exchange's
