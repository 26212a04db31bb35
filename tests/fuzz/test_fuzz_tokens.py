"""Property-based fuzzing of the risk token's parser and verifier, the canonical encoding
and the OMS call credential, against both implementations (see :mod:`token_targets`).
``make fuzz`` adds a coverage-guided run of the same targets (atheris)."""

from __future__ import annotations

import string

import token_targets as targets
from fuzz_support import EXAMPLES, count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from services.common.tokens import oms_call_metadata

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_.=+/ \x00"
EDITS = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400), st.text(TOKEN_ALPHABET, max_size=4)), max_size=4)


@fuzz_settings(EXAMPLES * 10)
@given(st.one_of(st.text(max_size=400), st.text(TOKEN_ALPHABET, max_size=250), st.none(), st.binary(max_size=80),
                 st.integers(), st.just("v1." * 200)))
def test_any_token_text_gets_an_answer_and_both_implementations_agree(token):
    count("token:arbitrary")
    targets.check_token(token)


@fuzz_settings(EXAMPLES * 10)
@given(st.booleans(), EDITS)
def test_a_mutated_token_never_verifies(old_key, edits):
    count("token:mutated")
    valid = targets.valid_tokens()[1 if old_key else 0]
    mutated = targets.mutate(valid, edits)
    reason = targets.check_token(mutated)
    assert (reason == "OK") == (mutated in targets.valid_tokens())


@fuzz_settings(EXAMPLES * 10)
@given(st.one_of(st.text(max_size=60), st.from_regex(r"[+-]?\d{0,45}(\.\d{0,45})?", fullmatch=True),
                 st.decimals(allow_nan=True).map(str), st.integers().map(str)))
def test_canonical_decimal_is_canonical_or_refuses_the_same_way_in_both(text):
    count("encoding:canonical_decimal")
    targets.check_decimal(text)


@fuzz_settings(EXAMPLES * 10)
@given(st.integers(0, 3), st.lists(st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, 1000),
                                             st.integers(0, 255)), min_size=1, max_size=4))
def test_a_request_off_the_wire_verifies_only_as_an_order_that_was_signed(which, edits):
    count("token:wire_request")
    request = bytearray(targets.wire_requests()[0][which])
    for action, at, byte in edits:
        at %= len(request) + (action == "insert")
        if action == "set" and request:
            request[at % len(request)] = byte
        elif action == "insert":
            request.insert(at, byte)
        elif request:
            del request[at % len(request)]
    targets.check_wire_request(bytes(request))


@fuzz_settings(EXAMPLES)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_request_get_an_answer_and_both_implementations_agree(data):
    count("token:wire_bytes")
    targets.check_wire_request(data)


def test_the_wire_seeds_verify():
    assert [targets.check_wire_request(request) for request in targets.wire_requests()[0]] == ["OK"] * 4


_VALUE = st.one_of(st.none(), st.booleans(), st.text(max_size=20), st.integers(), st.decimals(allow_nan=True),
                   st.floats(), st.binary(max_size=8))


@fuzz_settings(EXAMPLES * 5)
@given(st.fixed_dictionaries({}, optional={name: _VALUE for name in targets.FIELDS}).map(
    lambda random: {**targets.FIELDS, **random}))
def test_the_order_body_encoding_agrees_in_both_or_refuses_alike(fields):
    count("encoding:order_body")
    targets.check_order_body(fields)


@fuzz_settings(EXAMPLES * 5)
@given(st.sampled_from(["ExecuteOrder", "CancelOrder", "QueryOrder"]), st.data())
def test_the_oms_call_credential_accepts_only_what_the_oms_signed_for_that_call(method, data):
    count("credential:oms_call")
    genuine = oms_call_metadata(targets.RING, method)[0][1]
    foreign = oms_call_metadata(targets.RING, "CancelAllOrders" if method != "CancelAllOrders" else "CancelOrder")[0][1]
    value = st.one_of(st.text(max_size=80), st.just(genuine), st.just(foreign), st.binary(max_size=20),
                      st.just(targets.mutate(genuine, data.draw(EDITS))))
    key = st.one_of(st.just("tessera-oms-credential"), st.text(max_size=30))
    metadata = data.draw(st.lists(st.tuples(key, value), max_size=4))
    accepted = targets.check_call_credential(metadata, method, {genuine})
    if accepted:
        assert [v for k, v in metadata if k == "tessera-oms-credential"][-1] == genuine
