"""SetVenueSetting's request checks: exactly one setting, a leverage from 1 to 125, a
position mode for the account (no symbol), every bad field reported at once."""

from __future__ import annotations

import contextvars

import pytest

from services.domain import MarginMode
from services.domain.errors import InvalidOrder
from services.oms.venue_settings import parse_request
from tessera.common.v1 import types_pb2 as common_pb
from tessera.oms.v1 import oms_pb2


def request(**fields):
    return oms_pb2.SetVenueSettingRequest(**{"account": "desk-a", "operator": "ops", **fields})


def fields_of(error: InvalidOrder) -> set[str]:
    return {violation.field for violation in error.violations}


@pytest.mark.parametrize(("given", "expected"), [
    ({"symbol": "BTCUSDT", "leverage": "5"}, {"leverage": 5, "symbol": "BTCUSDT"}),
    ({"symbol": "BTCUSDT", "margin_mode": common_pb.MARGIN_MODE_CROSSED},
     {"margin_mode": MarginMode.CROSSED, "symbol": "BTCUSDT"}),
    ({"position_mode": "HEDGE"}, {"position_mode": "HEDGE", "symbol": ""}),
])
def test_each_kind_of_setting_is_read_with_its_account_and_the_caller_as_operator(given, expected):
    # Who changes it is the caller's principal ("unauthenticated" outside a call with an
    # identity); the request's operator field is only a comment.
    parsed = contextvars.Context().run(parse_request, request(**given))  # outside any call
    assert parsed == {"account": "desk-a", "operator": "unauthenticated",
                                               "comment": "ops", **expected}


@pytest.mark.parametrize(("given", "bad"), [
    ({"symbol": "BTCUSDT"}, {"setting"}),
    ({"symbol": "BTCUSDT", "leverage": "5", "position_mode": "HEDGE"}, {"setting"}),
    ({"symbol": "BTCUSDT", "leverage": "126"}, {"leverage"}),
    ({"symbol": "BTCUSDT", "leverage": "2.5"}, {"leverage"}),
    ({"symbol": "btc usdt", "leverage": "0"}, {"symbol", "leverage"}),
    ({"symbol": "BTCUSDT", "position_mode": "SIDEWAYS"}, {"symbol", "position_mode"}),
    ({"leverage": "5", "symbol": "BTCUSDT", "operator": "x" * 201}, {"operator"}),  # a comment of at most 200
])
def test_bad_fields_are_each_named(given, bad):
    with pytest.raises(InvalidOrder) as refused:
        parse_request(request(**given))
    assert fields_of(refused.value) == bad
