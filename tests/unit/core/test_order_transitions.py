"""The order state machine: every pair of statuses, against the one table, in both twins."""

from __future__ import annotations

import itertools

import pytest

from core_ext import IllegalTransition
from core_ext.transitions import ORDER_STATUSES, ROLLBACK_TARGETS, TERMINAL_STATUSES, TRANSITIONS

LEGAL_PAIRS = [(c, t) for c in ORDER_STATUSES for t in sorted(TRANSITIONS[c])]
ILLEGAL_PAIRS = [
    (c, t) for c, t in itertools.product(ORDER_STATUSES, repeat=2) if t not in TRANSITIONS[c]
]


def test_table_matches_design_section_4():
    assert ORDER_STATUSES == (
        "PENDING", "APPROVED", "REJECTED", "SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED",
        "FILLED", "PENDING_CANCEL", "CANCELLED", "EXPIRED",
    )
    assert TRANSITIONS["PENDING"] == {"APPROVED", "REJECTED"}
    assert TRANSITIONS["APPROVED"] == {"SUBMITTED", "CANCELLED", "EXPIRED"}
    assert TRANSITIONS["SUBMITTED"] == {
        "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELLED", "REJECTED", "EXPIRED",
    }
    assert TRANSITIONS["ACCEPTED"] == {"PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELLED", "EXPIRED"}
    assert TRANSITIONS["PARTIALLY_FILLED"] == {
        "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELLED", "EXPIRED",
    }
    assert TRANSITIONS["PENDING_CANCEL"] == {"CANCELLED", "PARTIALLY_FILLED", "FILLED"}
    assert ROLLBACK_TARGETS == {"PENDING_CANCEL": {"SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED"}}
    assert TERMINAL_STATUSES == {"REJECTED", "FILLED", "CANCELLED", "EXPIRED"}


@pytest.mark.parametrize(("current", "target"), LEGAL_PAIRS)
def test_every_legal_transition_returns_the_target(impl, current, target):
    assert impl.transition(current, target) == target
    assert impl.can_transition(current, target) is True


def test_every_illegal_pair_raises_illegal_transition_naming_both_states(impl):
    assert len(ILLEGAL_PAIRS) == 100 - len(LEGAL_PAIRS)
    for current, target in ILLEGAL_PAIRS:
        with pytest.raises(IllegalTransition) as caught:
            impl.transition(current, target)
        assert str(caught.value) == f"illegal order transition {current} -> {target}"
        assert (caught.value.current, caught.value.target) == (current, target)
        assert isinstance(caught.value, ValueError)
        assert impl.can_transition(current, target) is False


@pytest.mark.parametrize("status", ORDER_STATUSES)
def test_terminal_statuses_have_no_way_out_and_others_do(impl, status):
    assert impl.is_terminal(status) is (status in TERMINAL_STATUSES)
    if impl.is_terminal(status):
        assert not any(impl.can_transition(status, t, p) for t in ORDER_STATUSES for p in ORDER_STATUSES)


@pytest.mark.parametrize("previous", sorted(ROLLBACK_TARGETS["PENDING_CANCEL"]))
def test_refused_cancel_returns_pending_cancel_to_the_previous_state(impl, previous):
    assert impl.transition("PENDING_CANCEL", previous, previous=previous) == previous
    assert impl.can_transition("PENDING_CANCEL", previous, previous) is True


def test_rollback_needs_the_matching_previous_state(impl):
    for target in ("SUBMITTED", "ACCEPTED"):
        with pytest.raises(IllegalTransition, match=f"PENDING_CANCEL -> {target}"):
            impl.transition("PENDING_CANCEL", target)
        with pytest.raises(IllegalTransition):
            impl.transition("PENDING_CANCEL", target, previous="PARTIALLY_FILLED" if target == "ACCEPTED" else "ACCEPTED")
    # a status that was never the one before PENDING_CANCEL is not a rollback target
    for previous in ("APPROVED", "PENDING", "REJECTED", "PENDING_CANCEL"):
        with pytest.raises(IllegalTransition):
            impl.transition("PENDING_CANCEL", previous, previous=previous)


def test_previous_is_ignored_outside_pending_cancel(impl):
    with pytest.raises(IllegalTransition):
        impl.transition("ACCEPTED", "SUBMITTED", previous="SUBMITTED")
    assert impl.transition("ACCEPTED", "FILLED", previous="garbage") == "FILLED"


def test_fill_after_cancel_request_is_legal(impl):
    assert impl.transition("PENDING_CANCEL", "FILLED") == "FILLED"
    assert impl.transition("PENDING_CANCEL", "PARTIALLY_FILLED") == "PARTIALLY_FILLED"


@pytest.mark.parametrize(
    ("current", "target", "unknown"),
    [("SHIPPED", "FILLED", "'SHIPPED'"), ("FILLED", "filled", "'filled'"), ("", "PENDING", "''"),
     (None, "PENDING", "None"), ("PENDING", 3, "3"), (["PENDING"], "APPROVED", "['PENDING']")],
)
def test_unknown_statuses_raise_illegal_transition(impl, current, target, unknown):
    with pytest.raises(IllegalTransition) as caught:
        impl.transition(current, target)
    assert str(caught.value) == f"illegal order transition {current} -> {target} (unknown order status {unknown})"
    assert impl.can_transition(current, target) is False


def test_is_terminal_rejects_unknown_status(impl):
    with pytest.raises(ValueError, match="unknown order status 'DONE'"):
        impl.is_terminal("DONE")
