"""The order aggregate: transitions and their events, fills (VWAP, overfill), the token binding."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core_ext
from services.domain import MarketType, Order, OrderStatus, OrderType, Side, TimeInForce, WorkingType
from services.domain.errors import OverfillError
from services.domain.order import event_label, is_fill_after_close

S = OrderStatus


def snapshot(order: Order) -> dict:
    """Every field of the order, the pending events included (copied)."""
    state = dataclasses.asdict(order)
    state["new_events"] = [dataclasses.asdict(e) for e in order.new_events]
    return state


# -- transitions ---------------------------------------------------------------------------
def test_record_creation_is_event_one_entering_pending_at_order_time(make_order):
    order = make_order()

    event = order.record_creation()

    assert (event.sequence, event.from_status, event.to_status, event.reason) == (1, None, S.PENDING, "created")
    assert event.event_time == order.order_time
    assert order.new_events == [event]
    assert order.last_sequence == 1


def test_each_transition_appends_one_event_with_the_next_sequence(make_order):
    order = make_order()
    order.record_creation()
    times = [dt.datetime(2025, 1, 1, 0, 0, s, tzinfo=dt.timezone.utc) for s in (1, 2, 3, 4)]

    for status, at in zip((S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED), times):
        order.transition(status, reason=f"to {status.value}", at=at, payload={"n": status.value})

    assert [e.sequence for e in order.new_events] == [1, 2, 3, 4, 5]
    assert [(e.from_status, e.to_status) for e in order.new_events[1:]] == [
        (S.PENDING, S.APPROVED),
        (S.APPROVED, S.SUBMITTED),
        (S.SUBMITTED, S.ACCEPTED),
        (S.ACCEPTED, S.PARTIALLY_FILLED),
    ]
    assert [e.event_time for e in order.new_events[1:]] == times
    assert order.new_events[-1].reason == "to PARTIALLY_FILLED"
    assert order.new_events[-1].payload == {"n": "PARTIALLY_FILLED"}
    assert (order.status, order.last_sequence, order.updated_time) == (S.PARTIALLY_FILLED, 5, times[-1])


def test_transition_returns_the_event_it_appended(make_order):
    order = make_order()
    order.record_creation()

    event = order.transition(S.APPROVED, reason="risk: approved")

    assert order.new_events[-1] is event
    assert event.order_id == order.order_id


def test_sequences_continue_from_the_loaded_last_sequence(make_order):
    # An order loaded from the store carries last_sequence and no pending events.
    order = make_order(status=S.SUBMITTED, last_sequence=3)

    event = order.transition(S.ACCEPTED)

    assert event.sequence == 4
    assert order.last_sequence == 4


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PENDING, S.SUBMITTED),
        (S.PENDING, S.FILLED),
        (S.APPROVED, S.FILLED),
        (S.APPROVED, S.ACCEPTED),
        (S.SUBMITTED, S.APPROVED),
        (S.ACCEPTED, S.SUBMITTED),
        (S.FILLED, S.CANCELLED),
        (S.FILLED, S.PARTIALLY_FILLED),
        (S.CANCELLED, S.PARTIALLY_FILLED),
        (S.REJECTED, S.APPROVED),
        (S.EXPIRED, S.SUBMITTED),
        (S.PENDING_CANCEL, S.PENDING_CANCEL),
    ],
)
def test_illegal_transition_raises_naming_both_states_and_changes_nothing(order_in, current, target):
    order = order_in(current)
    before = snapshot(order)

    with pytest.raises(core_ext.IllegalTransition) as raised:
        order.transition(target)

    assert (raised.value.current, raised.value.target) == (current.value, target.value)
    assert f"{current.value} -> {target.value}" in str(raised.value)
    assert snapshot(order) == before


@pytest.mark.parametrize("previous", [S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED])
def test_pending_cancel_returns_to_exactly_the_state_before_it(order_in, previous):
    order = order_in(previous)
    order.transition(S.PENDING_CANCEL)
    assert order.previous_status is previous

    event = order.transition(previous, reason="cancel refused")

    assert (event.from_status, event.to_status) == (S.PENDING_CANCEL, previous)
    assert order.status is previous
    assert order.previous_status is None


@pytest.mark.parametrize(
    ("previous", "other"),
    [(S.SUBMITTED, S.ACCEPTED), (S.ACCEPTED, S.SUBMITTED)],
)
def test_pending_cancel_cannot_return_to_an_open_state_it_did_not_come_from(order_in, previous, other):
    order = order_in(previous)
    order.transition(S.PENDING_CANCEL)
    before = snapshot(order)

    with pytest.raises(core_ext.IllegalTransition):
        order.transition(other)

    assert snapshot(order) == before
    assert order.previous_status is previous


def test_pending_cancel_without_a_recorded_previous_state_cannot_roll_back(make_order):
    # As loaded from a row whose previous_status is NULL.
    order = make_order(status=S.PENDING_CANCEL, previous_status=None, last_sequence=4)

    with pytest.raises(core_ext.IllegalTransition):
        order.transition(S.ACCEPTED)

    assert order.status is S.PENDING_CANCEL


def test_a_second_cancel_request_after_a_refusal_rolls_back_again(order_in):
    order = order_in(S.ACCEPTED)
    order.transition(S.PENDING_CANCEL)
    order.transition(S.ACCEPTED)

    order.transition(S.PENDING_CANCEL)
    order.transition(S.ACCEPTED)

    assert [e.to_status for e in order.new_events[-4:]] == [S.PENDING_CANCEL, S.ACCEPTED] * 2


# -- fills -----------------------------------------------------------------------------------
def test_partial_fills_accumulate_a_volume_weighted_average_price(order_in):
    order = order_in(S.SUBMITTED, quantity=Decimal("10"), price=Decimal("102"))

    order.apply_fill(Decimal("2"), Decimal("100"))
    assert (order.status, order.filled_quantity, order.average_fill_price) == (
        S.PARTIALLY_FILLED,
        Decimal("2"),
        Decimal("100"),
    )

    order.apply_fill(Decimal("3"), Decimal("101.5"))
    # (200 + 304.5) / 5
    assert (order.status, order.filled_quantity, order.average_fill_price) == (
        S.PARTIALLY_FILLED,
        Decimal("5"),
        Decimal("100.9"),
    )

    order.apply_fill(Decimal("5"), Decimal("99.9"))
    # (200 + 304.5 + 499.5) / 10
    assert (order.status, order.filled_quantity, order.average_fill_price) == (
        S.FILLED,
        Decimal("10"),
        Decimal("100.4"),
    )
    assert order.remaining_quantity == 0
    assert [(e.to_status, e.reason) for e in order.new_events[-3:]] == [
        (S.PARTIALLY_FILLED, "fill"),
        (S.PARTIALLY_FILLED, "fill"),
        (S.FILLED, "fill"),
    ]


def test_vwap_keeps_small_decimal_quantities_exact(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("0.3"))

    order.apply_fill(Decimal("0.1"), Decimal("0.1"))
    order.apply_fill(Decimal("0.2"), Decimal("0.4"))

    # (0.01 + 0.08) / 0.3 == 0.3 exactly; binary floats would give 0.30000000000000004.
    assert order.filled_quantity == Decimal("0.3")
    assert order.average_fill_price == Decimal("0.3")
    assert order.status is S.FILLED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value="0.001", max_value="50", places=3),
            st.decimals(min_value="0.01", max_value="100000", places=2),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_vwap_equals_total_notional_over_total_quantity(order_in, fills):
    total = sum((q for q, _ in fills), Decimal(0))
    order = order_in(S.SUBMITTED, quantity=total)

    for quantity, price in fills:
        order.apply_fill(quantity, price)

    with localcontext() as exact:
        exact.prec = 100
        expected = sum((q * p for q, p in fills), Decimal(0)) / total
    assert order.filled_quantity == total
    assert order.status is S.FILLED
    # The running average is computed in the default 28-digit context: equal to the
    # exact VWAP far below any price increment.
    assert abs(order.average_fill_price - expected) < Decimal("1e-18")
    assert min(p for _, p in fills) <= order.average_fill_price <= max(p for _, p in fills)


def test_fill_of_exactly_the_remaining_quantity_fills_the_order(order_in):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity, order.average_fill_price = Decimal("0.4"), Decimal("10")

    order.apply_fill(Decimal("0.6"), Decimal("10"))

    assert order.status is S.FILLED
    assert order.filled_quantity == Decimal("1")


@pytest.mark.parametrize("first_fill", [None, Decimal("0.6")])
def test_overfill_raises_and_leaves_quantity_status_and_events_unchanged(order_in, first_fill):
    order = order_in(S.ACCEPTED, quantity=Decimal("1"))
    if first_fill is not None:
        order.apply_fill(first_fill, Decimal("100"))
    before = snapshot(order)

    with pytest.raises(OverfillError) as raised:
        order.apply_fill(Decimal("1") - (first_fill or 0) + Decimal("0.000001"), Decimal("100"))

    assert raised.value.reason == "OVERFILL"
    assert snapshot(order) == before


@pytest.mark.parametrize(("quantity", "price"), [("0", "100"), ("-1", "100"), ("1", "0"), ("1", "-5")])
def test_non_positive_fill_is_refused_without_change(order_in, quantity, price):
    order = order_in(S.ACCEPTED)
    before = snapshot(order)

    with pytest.raises(OverfillError):
        order.apply_fill(Decimal(quantity), Decimal(price))

    assert snapshot(order) == before


@pytest.mark.parametrize("status", [S.PENDING, S.APPROVED, S.CANCELLED, S.REJECTED, S.EXPIRED])
def test_fill_on_an_order_that_cannot_take_fills_raises_illegal_transition_without_change(order_in, status):
    order = order_in(status)
    before = snapshot(order)

    with pytest.raises(core_ext.IllegalTransition):
        order.apply_fill(Decimal("0.5"), Decimal("100"))

    assert snapshot(order) == before


def test_fill_during_pending_cancel_is_applied(order_in):
    # The fill may cross the cancel request on the wire (design §4).
    order = order_in(S.PENDING_CANCEL)

    order.apply_fill(Decimal("0.5"), Decimal("100"))

    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_quantity == Decimal("0.5")


# -- fills after close -------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.CANCELLED, S.EXPIRED])
def test_a_fill_after_close_adds_the_fill_and_keeps_the_status_with_an_event_from_it_to_itself(order_in, status):
    order = order_in(status, quantity=Decimal("1"))
    order.filled_quantity, order.average_fill_price = Decimal("0.4"), Decimal("100")  # filled before the close
    last = order.last_sequence
    at = dt.datetime(2025, 3, 4, 6, 0, tzinfo=dt.timezone.utc)

    event = order.apply_fill_after_close(Decimal("0.2"), Decimal("103"), at=at, payload={"trade_id": "t-late"})

    assert order.status is status
    assert (order.filled_quantity, order.average_fill_price) == (Decimal("0.6"), Decimal("101"))  # (40 + 20.6) / 0.6
    assert (event.from_status, event.to_status, event.reason) == (status, status, "fill after close")
    assert (event.sequence, event.event_time, event.payload) == (last + 1, at, {"trade_id": "t-late"})
    assert order.new_events[-1] is event and order.last_sequence == last + 1 and order.updated_time == at


@pytest.mark.parametrize("status", [S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED,
                                    S.PENDING_CANCEL, S.REJECTED])
def test_a_fill_after_close_on_an_order_not_cancelled_or_expired_raises_without_change(order_in, status):
    order = order_in(status)
    before = snapshot(order)

    with pytest.raises(core_ext.IllegalTransition):
        order.apply_fill_after_close(Decimal("0.5"), Decimal("100"))

    assert snapshot(order) == before


@pytest.mark.parametrize("quantity, price", [("0.7", "100"), ("0", "100"), ("0.1", "0")])
def test_a_fill_after_close_that_would_overfill_or_is_not_positive_raises_without_change(order_in, quantity, price):
    order = order_in(S.CANCELLED, quantity=Decimal("1"))
    order.filled_quantity, order.average_fill_price = Decimal("0.4"), Decimal("100")
    before = snapshot(order)

    with pytest.raises(OverfillError):
        order.apply_fill_after_close(Decimal(quantity), Decimal(price))

    assert snapshot(order) == before


# -- fills owed ----------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [S.CANCELLED, S.EXPIRED])
def test_a_close_at_the_venue_with_more_executed_than_filled_leaves_the_rest_owed(order_in, status):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity = Decimal("0.2")

    event = order.close_at_venue(status, reason="venue: cancelled", venue_executed=Decimal("0.6"))

    assert (order.status, event.from_status, event.to_status) == (status, S.PARTIALLY_FILLED, status)
    assert event.payload == {"venue_executed_quantity": "0.6"}
    assert (order.venue_executed_quantity, order.fills_owed) == (Decimal("0.6"), Decimal("0.4"))


@pytest.mark.parametrize("executed", [None, "0.2", "0.1"])
def test_a_close_at_the_venue_with_every_fill_recorded_owes_nothing(order_in, executed):
    order = order_in(S.PARTIALLY_FILLED, quantity=Decimal("1"))
    order.filled_quantity = Decimal("0.2")

    event = order.close_at_venue(S.CANCELLED, venue_executed=None if executed is None else Decimal(executed))

    assert event.payload == {} and order.venue_executed_quantity is None and order.fills_owed == 0


@pytest.mark.parametrize("target", [S.FILLED, S.REJECTED, S.PENDING_CANCEL])
def test_a_close_at_the_venue_is_cancelled_or_expired_only_and_changes_nothing_otherwise(order_in, target):
    order = order_in(S.ACCEPTED, quantity=Decimal("1"))
    before = snapshot(order)

    with pytest.raises(core_ext.IllegalTransition):
        order.close_at_venue(target, venue_executed=Decimal("0.5"))

    assert snapshot(order) == before and order.venue_executed_quantity is None


def test_the_fills_owed_stay_until_the_fills_after_close_make_them_up(order_in):
    order = order_in(S.ACCEPTED, quantity=Decimal("1"))
    order.close_at_venue(S.CANCELLED, venue_executed=Decimal("0.5"))

    order.apply_fill_after_close(Decimal("0.3"), Decimal("100"), payload={"trade_id": "t-1"})
    partly = (order.venue_executed_quantity, order.fills_owed)
    order.apply_fill_after_close(Decimal("0.2"), Decimal("100"), payload={"trade_id": "t-2"})

    assert partly == (Decimal("0.5"), Decimal("0.2"))
    assert (order.venue_executed_quantity, order.fills_owed, order.filled_quantity) == (None, 0, Decimal("0.5"))


@pytest.mark.parametrize("from_status, to_status, payload, expected", [
    (S.CANCELLED, S.CANCELLED, {"trade_id": "t"}, True),
    ("EXPIRED", "EXPIRED", {"trade_id": "t", "quantity": "1"}, True),
    (S.PENDING_CANCEL, S.CANCELLED, {"trade_id": "t"}, False),  # a transition
    (S.CANCELLED, S.CANCELLED, {"quarantine_scope": "symbol:BTCUSDT"}, False),  # a note
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, {"trade_id": "t"}, False),  # a fill that is a transition
    (S.REJECTED, S.REJECTED, {"trade_id": "t"}, False),
    (S.FILLED, S.FILLED, {"trade_id": "t"}, False),
    (S.CANCELLED, S.CANCELLED, None, False),
])
def test_an_event_is_a_fill_after_close_only_from_a_cancelled_or_expired_status_to_itself_with_a_trade(
    from_status, to_status, payload, expected
):
    assert is_fill_after_close(from_status, to_status, payload) is expected
    assert event_label(from_status, to_status, payload) == ("FILL_AFTER_CLOSE" if expected else S(to_status).value)


# -- the token binding -------------------------------------------------------------------------
ECONOMIC_CHANGES = {
    "order_id": "00000000-0000-4000-8000-000000000000",
    "client_order_id": "another-client-id",
    "account": "acct-2",
    "venue": "other-venue",
    "market_type": MarketType.SPOT,
    "symbol": "ETHUSDT",
    "side": Side.SELL,
    "order_type": OrderType.STOP_LIMIT,
    "quantity": Decimal("1.50000001"),
    "price": Decimal("50000.01"),
    "stop_price": Decimal("49000"),
    "time_in_force": TimeInForce.IOC,
    "reduce_only": True,
    "post_only": True,
    "leverage": Decimal("3"),
    "close_position": True,
    "working_type": WorkingType.MARK_PRICE,
    "price_protect": True,
    "activation_price": Decimal("51000"),
    "callback_rate": Decimal("0.5"),
    "quote_order_qty": Decimal("100"),
}


def test_the_economic_changes_cover_every_field_the_token_signs():
    assert set(ECONOMIC_CHANGES) == set(core_ext.ORDER_FIELDS)


@pytest.mark.parametrize(("field", "value"), sorted(ECONOMIC_CHANGES.items()), ids=sorted(ECONOMIC_CHANGES))
def test_same_economics_detects_a_change_of_each_economic_field(make_order, field, value):
    order = make_order(leverage=Decimal("5"))
    changed = dataclasses.replace(order, **{field: value})

    assert order.same_economics(dataclasses.replace(order))
    assert not order.same_economics(changed)
    assert not changed.same_economics(order)
    assert order.token_body() != changed.token_body()


@pytest.mark.parametrize("field", ["price", "stop_price", "leverage", "quantity", "working_type", "activation_price",
                                   "callback_rate", "quote_order_qty"])
def test_same_economics_tells_an_absent_optional_field_from_a_present_one(make_order, field):
    order = make_order(order_type=OrderType.STOP_LIMIT, stop_price=Decimal("49000"), leverage=Decimal("5"),
                       working_type=WorkingType.CONTRACT_PRICE, activation_price=Decimal("1"),
                       callback_rate=Decimal("1"), quote_order_qty=Decimal("1"))

    assert not order.same_economics(dataclasses.replace(order, **{field: None}))


def test_an_order_without_a_quantity_is_filled_when_the_venue_says_so(make_order):
    order = make_order(order_type=OrderType.TAKE_PROFIT_MARKET, quantity=None, price=None,
                       stop_price=Decimal("55000"), side=Side.SELL, close_position=True)
    order.record_creation()
    for step in (S.APPROVED, S.SUBMITTED, S.ACCEPTED):
        order.transition(step)

    order.apply_fill(Decimal("2"), Decimal("55000"))
    assert (order.status, order.filled_quantity, order.remaining_quantity) == (S.PARTIALLY_FILLED, Decimal("2"), None)
    order.apply_fill(Decimal("0.5"), Decimal("55010"), complete=True)
    assert (order.status, order.filled_quantity) == (S.FILLED, Decimal("2.5"))
    assert order.average_fill_price == (Decimal("2") * 55000 + Decimal("0.5") * 55010) / Decimal("2.5")


def test_quantity_at_sizes_the_orders_the_venue_sizes(make_order):
    closing = make_order(quantity=None, order_type=OrderType.STOP_MARKET, price=None, stop_price=Decimal("45000"),
                         side=Side.SELL, close_position=True)
    quoted = make_order(quantity=None, market_type=MarketType.SPOT, order_type=OrderType.MARKET, price=None,
                        leverage=None, quote_order_qty=Decimal("100"))

    assert closing.quantity_at(Decimal("2.5")) == Decimal("2.5")      # a SELL closes the long
    assert closing.quantity_at(Decimal("-2.5")) == 0                   # and nothing of a short
    assert closing.quantity_at(Decimal(0)) == 0
    assert quoted.quantity_at(Decimal(0), Decimal("50")) == Decimal(2)
    assert quoted.quantity_at(Decimal(0)) is None
    assert quoted.notional == Decimal("100")
    assert make_order().quantity_at(Decimal("-7")) == Decimal("1.5")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", S.FILLED),
        ("previous_status", S.ACCEPTED),
        ("filled_quantity", Decimal("1")),
        ("average_fill_price", Decimal("49999")),
        ("remote_order_id", "venue-123"),
        ("version", 7),
        ("last_sequence", 9),
        ("reject_reasons", ["MAX_QUANTITY_EXCEEDED"]),
        ("token_nonce", "0" * 32),
        ("updated_time", dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)),
        ("order_time", dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)),
        ("raw_venue_payload", {"x": 1}),
    ],
)
def test_same_economics_ignores_non_economic_fields(make_order, field, value):
    order = make_order()

    assert order.same_economics(dataclasses.replace(order, **{field: value}))


@pytest.mark.parametrize(
    ("field", "spelling_a", "spelling_b"),
    [
        ("quantity", "1.50", "1.5"),
        ("quantity", "1.5000000", "1.5"),
        ("price", "50000.00", "50000"),
        ("price", "5E+4", "50000"),
        ("leverage", "10.0", "10"),
    ],
)
def test_equal_decimals_in_different_spellings_give_the_same_token_body(make_order, field, spelling_a, spelling_b):
    order = make_order(leverage=Decimal("10"))
    a = dataclasses.replace(order, **{field: Decimal(spelling_a)})
    b = dataclasses.replace(order, **{field: Decimal(spelling_b)})

    assert a.token_body() == b.token_body()
    assert a.same_economics(b)


def test_new_ids_are_version_7_uuids_that_sort_in_the_order_they_were_made(monkeypatch):
    import uuid

    from services.domain import new_id
    from services.domain import order as order_module

    now = [1_800_000_000_000_000_000]  # nanoseconds
    monkeypatch.setattr(order_module.time, "time_ns", lambda: now[0])
    made = []
    for _ in range(200):
        made.append(new_id())
        now[0] += 1_000_000  # one millisecond later
    parsed = [uuid.UUID(text) for text in made]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == text for u, text in zip(parsed, made))
    assert made == sorted(made)  # time-ordered: the store's keys grow at their right edge
    assert parsed[0].int >> 80 == 1_800_000_000_000  # the milliseconds, in the first 48 bits
    same_millisecond = {new_id() for _ in range(1000)}
    assert len(same_millisecond) == 1000  # 74 random bits: distinct within one millisecond
