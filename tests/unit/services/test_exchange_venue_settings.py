"""The Exchange's venue-setting calls (SetLeverage, SetMarginMode, SetPositionMode): only
the OMS's credential admits them (operators change settings through the OMS, which stores
them), and each is audited with its principal."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import core_ext
from services.common import access
from services.common.tokens import oms_call_metadata
from services.exchange.engine import ExchangeEngine
from services.exchange.servicer import ExchangeServicer
from tessera.common.v1 import types_pb2 as common_pb
from tessera.exchange.v1 import exchange_pb2

KEYRING = core_ext.KeyRing("k1", b"exchange-settings-test-secret-0123456789")


class LiveSettings:
    """A live provider's setting calls, answering what they were asked."""

    mode = "LIVE"

    async def set_leverage(self, symbol, leverage, *, account=None):
        return leverage

    async def set_margin_mode(self, symbol, mode, *, account=None):
        return mode

    async def set_position_mode(self, hedge, *, account=None):
        return hedge


class Context:
    def __init__(self, metadata):
        self.metadata = metadata

    def invocation_metadata(self):
        return self.metadata

    async def abort(self, code, details="", trailing_metadata=()):
        raise AssertionError(f"refused: {code} {details}")


REQUESTS = {
    "SetLeverage": exchange_pb2.SetLeverageRequest(symbol="BTCUSDT", leverage="5", account="desk-a"),
    "SetMarginMode": exchange_pb2.SetMarginModeRequest(symbol="BTCUSDT", margin_mode=common_pb.MARGIN_MODE_ISOLATED,
                                                       account="desk-a"),
    "SetPositionMode": exchange_pb2.SetPositionModeRequest(account="desk-a", hedge_mode=True),
}


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_each_venue_setting_change_at_the_exchange_is_audited(method, caplog):
    servicer = ExchangeServicer(ExchangeEngine(KEYRING, LiveSettings(), credentials_since=int(time.time())))
    request = REQUESTS[method]

    with caplog.at_level(logging.WARNING, logger="tessera.audit"):
        asyncio.run(getattr(servicer, method)(request, Context(oms_call_metadata(KEYRING, method, request))))

    (record,) = [r for r in caplog.records if r.name == "tessera.audit"]
    assert record.getMessage().startswith(f"privileged action {method} by ")
    assert "account='desk-a'" in record.getMessage()


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_only_the_oms_may_change_a_venue_setting_at_the_exchange(method):
    rule = access.BY_METHOD[f"/{access.EXCHANGE}/{method}"]
    assert dict(rule.grants) == {access.SERVICE: access.ALL} and rule.privileged

