"""The fill tracker against a real store: de-duplication, anomalies, VWAP, late and duplicate reports."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from services.domain import LiquiditySide, Order, OrderStatus, TradingState, utcnow
from services.domain.execution import ExecutionReport, Fill
from services.oms.fill_tracker import apply_report
from services.store import Store

S = OrderStatus


def report(order: Order, status: OrderStatus, fill: Fill | None = None, **overrides: Any) -> ExecutionReport:
    fields: dict[str, Any] = dict(
        order_id=order.order_id,
        client_order_id=order.client_order_id,
        venue=order.venue,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        order_status=status,
        transact_time=utcnow(),
        fill=fill,
    )
    fields.update(overrides)
    return ExecutionReport(**fields)


def fill(quantity: str, price: str, trade_id: str | None = None) -> Fill:
    return Fill(
        trade_id=trade_id or f"t-{uuid.uuid4().hex[:12]}",
        quantity=Decimal(quantity),
        price=Decimal(price),
        commission=Decimal("0.01"),
        commission_asset="USDT",
        liquidity_side=LiquiditySide.TAKER,
    )


def apply(store: Store, execution_report: ExecutionReport):
    """Apply one report in its own committed unit of work, as the OMS does."""
    with store.uow() as uow:
        result = apply_report(uow, execution_report)
        uow.commit()
    return result


def load(store: Store, order_id: str):
    """(order, events, trades, anomalies of the order) as committed."""
    with store.uow(read_only=True) as uow:
        return (
            uow.orders.get(order_id),
            uow.orders.events(order_id),
            uow.trades.for_order(order_id),
            uow.anomalies.list(order_id=order_id),
        )


def test_the_same_trade_id_applied_twice_records_one_trade_and_one_fill(store, stored_order):
    order = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    partial = report(order, S.PARTIALLY_FILLED, fill("0.4", "65000", trade_id="venue-trade-1"))

    _, first = apply(store, partial)
    after_first = load(store, order.order_id)
    again_order, again = apply(store, partial)

    stored, events, trades, anomalies = load(store, order.order_id)
    assert first is not None and again is None
    assert [t.trade_id for t in trades] == ["venue-trade-1"]
    assert stored.filled_quantity == Decimal("0.4")
    assert [e.to_status for e in events].count(S.PARTIALLY_FILLED) == 1
    assert stored.version == after_first[0].version  # the duplicate wrote nothing
    assert anomalies == []
    assert again_order.filled_quantity == Decimal("0.4")


def test_the_same_trade_id_in_a_report_with_another_status_is_still_a_duplicate(store, stored_order):
    order = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.4", "65000", trade_id="venue-trade-1")))

    apply(store, report(order, S.FILLED, fill("0.4", "65000", trade_id="venue-trade-1")))

    stored, _, trades, _ = load(store, order.order_id)
    assert (stored.status, stored.filled_quantity, len(trades)) == (S.PARTIALLY_FILLED, Decimal("0.4"), 1)


def test_a_trade_id_another_order_holds_is_an_anomaly_not_a_duplicate_and_applies_nothing(store, stored_order):
    first = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    second = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    apply(store, report(first, S.PARTIALLY_FILLED, fill("0.4", "65000", trade_id="BTCUSDT:7:BUY")))

    apply(store, report(second, S.PARTIALLY_FILLED, fill("0.3", "65001", trade_id="BTCUSDT:7:BUY")))

    stored, _, trades, anomalies = load(store, second.order_id)
    assert (stored.status, stored.filled_quantity, trades) == (S.ACCEPTED, Decimal(0), [])
    assert [a.kind for a in anomalies] == ["TRADE_ID_CLASH"]
    assert first.order_id in anomalies[0].detail


def test_a_fill_stored_under_its_earlier_venue_trade_id_is_a_duplicate_when_reported_again(store, stored_order):
    """Live venue trades were stored under the venue's number alone (``spot-`` and the
    number on spot) before their ids named the symbol and the side: a fill stored so and
    reported again after the upgrade is the same fill, applied once."""
    order = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    other = stored_order(S.ACCEPTED, quantity=Decimal("1"), symbol="ETHUSDT")
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.4", "65000", trade_id="1042")))
    apply(store, report(other, S.PARTIALLY_FILLED, fill("0.2", "3200", trade_id="77")))

    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.4", "65000", trade_id="BTCUSDT:1042:BUY")))
    apply(store, report(other, S.PARTIALLY_FILLED, fill("0.3", "3201", trade_id="ETHUSDT:1042:BUY")))

    stored, _, trades, anomalies = load(store, order.order_id)
    assert (stored.filled_quantity, [t.trade_id for t in trades], anomalies) == (Decimal("0.4"), ["1042"], [])
    stored, _, trades, anomalies = load(store, other.order_id)  # another order's number 1042: its own fill
    assert stored.filled_quantity == Decimal("0.5") and anomalies == []
    assert sorted(t.trade_id for t in trades) == ["77", "ETHUSDT:1042:BUY"]


def test_overfill_records_an_anomaly_and_no_trade_and_quarantines_the_symbol(store, stored_order):
    order = stored_order(S.ACCEPTED, quantity=Decimal("1"))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.6", "65000")))
    before, before_events, _, _ = load(store, order.order_id)

    _, trade = apply(store, report(order, S.FILLED, fill("0.5", "65000", trade_id="too-much")))
    _, again = apply(store, report(order, S.FILLED, fill("0.5", "65000", trade_id="too-much")))  # the same report

    stored, events, trades, anomalies = load(store, order.order_id)
    assert trade is None and again is None
    assert len(trades) == 1 and trades[0].trade_id != "too-much"  # only the first fill
    assert (stored.status, stored.filled_quantity, stored.average_fill_price) == (
        before.status,
        before.filled_quantity,
        before.average_fill_price,
    )
    # One note, no transition: the order stays as it was; its history says why the symbol halted.
    assert events[:-1] == before_events
    note = events[-1]
    assert (note.from_status, note.to_status) == (before.status, before.status)
    assert note.payload == {"quarantine_scope": f"symbol:{order.symbol}", "anomaly": "OVERFILL"}
    (anomaly,) = anomalies  # recorded once, though reported twice
    assert (anomaly.kind, anomaly.order_id, anomaly.venue) == ("OVERFILL", order.order_id, "paper")
    assert anomaly.payload["trade_id"] == "too-much"
    assert anomaly.observed_time.utcoffset() == dt.timedelta(0)
    with store.uow(read_only=True) as uow:
        quarantine = uow.trading_state.get(f"symbol:{order.symbol}")
        everything = uow.trading_state.get()
    assert (quarantine.state, quarantine.operator) == (TradingState.HALTED, "fill-tracker")
    assert order.order_id in quarantine.reason
    assert everything.state is TradingState.ACTIVE  # the other symbols trade on


def test_report_for_an_unknown_order_records_an_anomaly_and_nothing_else(store, make_order):
    ghost = make_order()  # never stored

    order, trade = apply(store, report(ghost, S.FILLED, fill("0.01", "65000", trade_id="ghost-trade")))

    assert (order, trade) == (None, None)
    with store.uow(read_only=True) as uow:
        anomalies = uow.anomalies.list()
        assert uow.trades.get("paper", "ghost-trade") is None
        assert uow.orders.get(ghost.order_id) is None
    (anomaly,) = anomalies
    assert anomaly.kind == "UNKNOWN_ORDER"
    assert ghost.order_id in anomaly.detail
    assert anomaly.payload["trade_id"] == "ghost-trade"


@pytest.mark.parametrize("status", [S.CANCELLED, S.EXPIRED])
def test_a_fill_after_the_order_closed_is_recorded_in_full_and_the_order_stays_closed(store, stored_order, status):
    order = stored_order(status, quantity=Decimal("0.01"))
    before = load(store, order.order_id)

    applied, trade = apply(store, report(order, S.PARTIALLY_FILLED, fill("0.004", "65000", trade_id="late-fill")))
    _, again = apply(store, report(order, S.PARTIALLY_FILLED, fill("0.004", "65000", trade_id="late-fill")))

    stored, events, trades, anomalies = load(store, order.order_id)
    assert trade is not None and again is None  # the second report is a duplicate
    assert [(t.trade_id, t.quantity, t.price) for t in trades] == [("late-fill", Decimal("0.004"), Decimal("65000"))]
    assert (stored.status, stored.filled_quantity, stored.average_fill_price) == (status, Decimal("0.004"),
                                                                                  Decimal("65000"))
    assert applied.status is status and stored.version == before[0].version + 1
    assert events[:-1] == before[1]
    late = events[-1]
    assert (late.sequence, late.from_status, late.to_status, late.reason) == (len(events), status, status,
                                                                              "fill after close")
    assert late.payload["trade_id"] == "late-fill" and stored.last_sequence == late.sequence
    assert anomalies == []


def test_a_fill_on_a_rejected_order_records_an_anomaly_and_keeps_the_order_as_it_was(store, stored_order):
    order = stored_order(S.REJECTED)
    before = load(store, order.order_id)

    _, trade = apply(store, report(order, S.PARTIALLY_FILLED, fill("0.005", "65000", trade_id="ghost-fill")))

    stored, events, trades, anomalies = load(store, order.order_id)
    assert trade is None and trades == []
    assert (stored.status, stored.filled_quantity, stored.version) == (S.REJECTED, Decimal(0), before[0].version)
    assert events == before[1]
    (anomaly,) = anomalies
    assert anomaly.kind == "FILL_ON_CLOSED_ORDER"
    assert anomaly.payload["trade_id"] == "ghost-fill"


def test_a_fill_on_an_order_cancelled_before_it_was_sent_records_an_anomaly(store, stored_order):
    order = stored_order(S.APPROVED)
    with store.uow() as uow:
        unsent = uow.orders.get(order.order_id)
        unsent.transition(S.CANCELLED, reason="cancel requested before submission")
        uow.orders.save(unsent)
        uow.commit()
    before = load(store, order.order_id)

    _, trade = apply(store, report(order, S.FILLED, fill("0.01", "65000", trade_id="never-sent")))

    stored, events, trades, anomalies = load(store, order.order_id)
    assert trade is None and trades == [] and events == before[1]
    assert (stored.status, stored.filled_quantity) == (S.CANCELLED, Decimal(0))
    assert [a.kind for a in anomalies] == ["FILL_ON_CLOSED_ORDER"]


def test_a_fill_after_close_beyond_the_quantity_is_an_overfill_that_quarantines_the_symbol(store, stored_order):
    order = stored_order(S.CANCELLED, quantity=Decimal("0.01"))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.008", "65000", trade_id="late-1")))

    _, trade = apply(store, report(order, S.PARTIALLY_FILLED, fill("0.004", "65000", trade_id="late-2")))

    stored, events, trades, anomalies = load(store, order.order_id)
    assert trade is None and [t.trade_id for t in trades] == ["late-1"]
    assert (stored.status, stored.filled_quantity) == (S.CANCELLED, Decimal("0.008"))
    assert [a.kind for a in anomalies] == ["OVERFILL"]
    assert events[-1].payload == {"quarantine_scope": f"symbol:{order.symbol}", "anomaly": "OVERFILL"}
    with store.uow(read_only=True) as uow:
        assert uow.trading_state.get(f"symbol:{order.symbol}").state is TradingState.HALTED


def test_partial_fills_then_the_final_fill_move_the_order_to_filled_with_the_exact_vwap(store, stored_order):
    order = stored_order(S.SUBMITTED, quantity=Decimal("10"), price=Decimal("102"))

    statuses = []
    for quantity, price, status in (("2", "100", S.PARTIALLY_FILLED), ("3", "101.5", S.PARTIALLY_FILLED),
                                    ("5", "99.9", S.FILLED)):
        apply(store, report(order, status, fill(quantity, price)))
        statuses.append(load(store, order.order_id)[0].status)

    stored, _, trades, anomalies = load(store, order.order_id)
    assert statuses == [S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED]
    assert stored.filled_quantity == Decimal("10")
    assert stored.average_fill_price == Decimal("100.4")  # (200 + 304.5 + 499.5) / 10
    assert [(t.quantity, t.price) for t in trades] == [
        (Decimal("2"), Decimal("100")),
        (Decimal("3"), Decimal("101.5")),
        (Decimal("5"), Decimal("99.9")),
    ]
    assert all(t.order_id == order.order_id and t.side is order.side for t in trades)
    assert anomalies == []


def test_trade_rows_carry_the_fill_and_the_order_identity(store, stored_order):
    order = stored_order(S.ACCEPTED)
    the_fill = fill("0.01", "64999.5", trade_id="t-full")
    at = dt.datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)

    apply(store, report(order, S.FILLED, the_fill, transact_time=at, raw_payload={"venue": "x"}))

    (trade,) = load(store, order.order_id)[2]
    assert (trade.trade_id, trade.venue, trade.account, trade.symbol, trade.client_order_id) == (
        "t-full", "paper", order.account, order.symbol, order.client_order_id,
    )
    assert (trade.quantity, trade.price, trade.commission, trade.commission_asset) == (
        Decimal("0.01"), Decimal("64999.5"), Decimal("0.01"), "USDT",
    )
    assert trade.liquidity_side is LiquiditySide.TAKER
    assert trade.trade_time == at
    assert trade.raw_payload == {"venue": "x"}


def test_late_accepted_after_filled_is_ignored(store, stored_order):
    order = stored_order(S.SUBMITTED)
    apply(store, report(order, S.FILLED, fill("0.01", "65000")))
    before = load(store, order.order_id)

    result, trade = apply(store, report(order, S.ACCEPTED))

    after = load(store, order.order_id)
    assert trade is None
    assert result.status is S.FILLED
    assert (after[0].status, after[0].version) == (S.FILLED, before[0].version)
    assert after[1] == before[1]
    assert after[3] == []  # not an anomaly either: the order already knows more


def test_duplicate_status_report_changes_nothing(store, stored_order):
    order = stored_order(S.SUBMITTED)
    apply(store, report(order, S.ACCEPTED))
    before = load(store, order.order_id)

    apply(store, report(order, S.ACCEPTED))

    after = load(store, order.order_id)
    assert (after[0].status, after[0].version, after[1]) == (S.ACCEPTED, before[0].version, before[1])


def test_duplicate_accepted_during_pending_cancel_keeps_the_cancel_pending(store, stored_order):
    # The ACCEPTED report arrives twice (ExecuteOrder's answer and the report stream);
    # if the second copy lands after a cancel request it is not the venue refusing the
    # cancel, and must not undo PENDING_CANCEL ("applying one again changes nothing").
    order = stored_order(S.PENDING_CANCEL)
    before = load(store, order.order_id)

    apply(store, report(order, S.ACCEPTED))

    after = load(store, order.order_id)
    assert after[0].status is S.PENDING_CANCEL
    assert after[1] == before[1]


def test_cancelled_report_completes_a_pending_cancel(store, stored_order):
    order = stored_order(S.PENDING_CANCEL)

    apply(store, report(order, S.CANCELLED, reason="cancelled"))

    stored, events, _, _ = load(store, order.order_id)
    assert stored.status is S.CANCELLED
    assert (events[-1].from_status, events[-1].to_status, events[-1].reason) == (
        S.PENDING_CANCEL, S.CANCELLED, "cancelled",
    )
    assert stored.previous_status is None


def test_an_expired_report_closes_a_pending_cancel_as_cancelled(store, stored_order):
    # The venue expired the order (its GTD time, say) while a cancel whose answer was lost
    # was pending: the order is closed, not left PENDING_CANCEL for good (the table has no
    # PENDING_CANCEL -> EXPIRED); the event keeps the venue's word.
    order = stored_order(S.PENDING_CANCEL)

    apply(store, report(order, S.EXPIRED, cumulative_quantity=Decimal("0")))

    stored, events, _, _ = load(store, order.order_id)
    assert stored.status is S.CANCELLED and stored.previous_status is None
    assert (events[-1].from_status, events[-1].to_status, events[-1].reason) == (
        S.PENDING_CANCEL, S.CANCELLED, "venue: expired",
    )


def test_fill_crossing_a_pending_cancel_is_applied(store, stored_order):
    order = stored_order(S.PENDING_CANCEL)

    _, trade = apply(store, report(order, S.PARTIALLY_FILLED, fill("0.004", "65000")))

    stored = load(store, order.order_id)[0]
    assert trade is not None
    assert (stored.status, stored.filled_quantity) == (S.PARTIALLY_FILLED, Decimal("0.004"))


def test_the_venues_remote_order_id_is_recorded(store, stored_order):
    order = stored_order(S.SUBMITTED)

    apply(store, report(order, S.ACCEPTED, remote_order_id="venue-777"))

    assert load(store, order.order_id)[0].remote_order_id == "venue-777"


def test_a_status_report_the_order_already_has_still_records_a_new_remote_order_id(store, stored_order):
    order = stored_order(S.ACCEPTED)

    apply(store, report(order, S.ACCEPTED, remote_order_id="venue-888"))

    stored, events, _, _ = load(store, order.order_id)
    assert stored.remote_order_id == "venue-888"
    assert events[-1].to_status is S.ACCEPTED and len(events) == 4


def test_events_are_written_in_order_with_contiguous_sequences(store, stored_order):
    order = stored_order(S.SUBMITTED, quantity=Decimal("1"))

    apply(store, report(order, S.ACCEPTED, remote_order_id="venue-1"))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.25", "65000")))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("0.25", "65010")))
    apply(store, report(order, S.FILLED, fill("0.5", "65020")))

    stored, events, trades, _ = load(store, order.order_id)
    assert [e.to_status for e in events] == [
        S.PENDING, S.APPROVED, S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED,
    ]
    assert [e.sequence for e in events] == list(range(1, 8))
    assert all(later.from_status is earlier.to_status for earlier, later in zip(events, events[1:]))
    assert stored.last_sequence == 7
    assert [e.payload.get("trade_id") for e in events[4:]] == [t.trade_id for t in trades]
    assert stored.average_fill_price == Decimal("65012.5")  # (16250 + 16252.5 + 32510) / 1


@pytest.mark.parametrize("status", [S.REJECTED, S.EXPIRED, S.CANCELLED])
def test_terminal_status_report_closes_a_submitted_order_with_the_venues_reason(store, stored_order, status):
    order = stored_order(S.SUBMITTED)

    apply(store, report(order, status, reason="VENUE_SAYS_NO"))

    stored, events, _, _ = load(store, order.order_id)
    assert stored.status is status
    assert events[-1].reason == "VENUE_SAYS_NO"


def test_the_average_fill_price_answered_after_a_fill_is_the_one_every_later_read_answers(store, stored_order):
    """A VWAP with more decimals than the store keeps (195002 / 3) is answered as the store
    keeps it (18 places, half-even): the answer of the call that applied the fill and every
    later read say the same price."""
    from services.common import convert

    order = stored_order(S.ACCEPTED, quantity=Decimal("3"))
    apply(store, report(order, S.PARTIALLY_FILLED, fill("1", "65000")))

    applied, _ = apply(store, report(order, S.FILLED, fill("2", "65001")))

    stored = load(store, order.order_id)[0]
    answered, read = (convert.order_to_proto(o).average_fill_price for o in (applied, stored))
    assert answered == read == "65000.666666666666666667"
