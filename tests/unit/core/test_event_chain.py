"""The order-event hash: both twins give the same bytes and hashes, for every payload.

The compiled twin encodes the usual events itself and hands anything else to the Python
twin; these tests hold both to one encoding (JSON with sorted keys, ASCII escapes) and
check known values, so a change to either is caught.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


AT = dt.datetime(2026, 12, 6, 19, 40, 20, 123456, tzinfo=dt.timezone.utc)


class Status(str, enum.Enum):
    SUBMITTED = "SUBMITTED"


def _event(**changes):
    event = dict(order_id="0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22", sequence=3, event_time=AT,
                 from_status="APPROVED", to_status="SUBMITTED", reason="oms: risk token verified",
                 payload={"token_key_id": "k1", "token_nonce": "0" * 32})
    event.update(changes)
    return event


@pytest.fixture(scope="module")
def twins(implementations):
    return implementations


def test_the_encoding_is_json_with_sorted_keys_behind_the_version(impl):
    encoded = impl.canonical_event(prev_hash="ab" * 32, **_event(payload={"b": 1, "a": [True, None, "x"]}))
    assert encoded == (b"tessera.order-event.v1\n"
                       b'["0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22",3,"2026-12-06T19:40:20.123456Z","APPROVED",'
                       b'"SUBMITTED","oms: risk token verified",{"a":[true,null,"x"],"b":1},"' + b"ab" * 32 + b'"]')
    assert impl.event_hash("ab" * 32, **_event(payload={"b": 1, "a": [True, None, "x"]})) == hashlib.sha256(
        encoded).hexdigest()


@pytest.mark.parametrize(
    "changes",
    [
        {"payload": {}}, {"payload": None}, {"from_status": None}, {"reason": ""}, {"reason": None},
        {"to_status": Status.SUBMITTED}, {"payload": {"quantity": Decimal("0.010")}},
        {"payload": {"price": 65000.0, "ratio": 0.5}}, {"payload": {"at": AT}}, {"payload": {1: "x"}},
        {"payload": {"text": 'quote " backslash \\ newline \n tab \t del \x7f nul \x00 é € 𝄞'}},
        {"reason": "ünïcödé reason\u2028"}, {"payload": {"nested": {"z": [1, [2, {"y": (3, 4)}]], "a": False}}},
        {"event_time": AT.astimezone(dt.timezone(dt.timedelta(hours=2)))},
        {"event_time": AT.replace(tzinfo=None)}, {"event_time": AT.replace(year=999)},
        {"payload": {"big": 10**30, "negative": -7}}, {"sequence": True},
    ],
    ids=repr,
)
def test_the_twins_agree_on_unusual_events(twins, changes):
    compiled, python = twins
    event = _event(**changes)
    for prev in (None, "cd" * 32):
        assert compiled.canonical_event(prev_hash=prev, **event) == python.canonical_event(prev_hash=prev, **event)
        assert compiled.event_hash(prev, **event) == python.event_hash(prev, **event)


def test_the_escapes_are_pythons_json(impl):
    text = 'a"b\\c\nd\x7fe\x01é𝄞'
    encoded = impl.canonical_event(prev_hash=None, **_event(reason=text))
    assert json.dumps(text, ensure_ascii=True).encode() in encoded


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.text(max_size=12),
                       st.decimals(allow_nan=False, allow_infinity=False, places=4),
                       st.floats(allow_nan=False, allow_infinity=False))
_payload = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                        max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.dictionaries(st.text(max_size=8), _payload, max_size=5), reason=st.text(max_size=20),
       sequence=st.integers(1, 10**6), micro=st.integers(0, 999_999))
def test_the_twins_agree_on_any_payload(twins, payload, reason, sequence, micro):
    compiled, python = twins
    event = _event(payload=payload, reason=reason, sequence=sequence, event_time=AT.replace(microsecond=micro))
    assert compiled.event_hash(None, **event) == python.event_hash(None, **event)
