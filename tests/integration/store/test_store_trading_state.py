"""The kill switch and its audit trail; execution anomalies."""

from __future__ import annotations

from services.domain import TradingState


def test_trading_state_is_active_until_set(store):
    with store.uow() as uow:
        state, reason, operator, updated_time = uow.trading_state.get()
    assert (state, reason, operator, updated_time) == (TradingState.ACTIVE, "", "", None)


def test_set_trading_state_is_read_back_and_audited_newest_first(store):
    with store.uow() as uow:
        uow.trading_state.set(TradingState.REDUCING, operator="alice", reason="drawdown")
        uow.commit()
    with store.uow() as uow:
        uow.trading_state.set("HALTED", operator="bob", reason="venue incident")
        uow.commit()
    with store.uow() as uow:
        current = uow.trading_state.get()
        history = uow.trading_state.history()
        other_scope = uow.trading_state.get("acct-9")
    assert (current.state, current.operator, current.reason) == (TradingState.HALTED, "bob", "venue incident")
    assert current.updated_time is not None and current.updated_time.tzinfo is not None
    assert [(h.from_state, h.to_state, h.operator) for h in history] == [
        (TradingState.REDUCING, TradingState.HALTED, "bob"),
        (TradingState.ACTIVE, TradingState.REDUCING, "alice"),
    ]
    assert other_scope.state is TradingState.ACTIVE


def test_uncommitted_trading_state_change_leaves_no_trace(store):
    with store.uow() as uow:
        uow.trading_state.set(TradingState.HALTED, operator="alice", reason="test")
    with store.uow() as uow:
        assert uow.trading_state.get().state is TradingState.ACTIVE
        assert uow.trading_state.history() == []


def test_anomalies_are_recorded_and_listed_newest_first(store):
    with store.uow() as uow:
        first = uow.anomalies.record("UNKNOWN_ORDER", "paper", None, "no such order", {"q": "1"})
        second = uow.anomalies.record("OVERFILL", "paper", "order-1", "fill of 2 exceeds 1")
        uow.commit()
    with store.uow() as uow:
        anomalies = uow.anomalies.list()
        of_order = uow.anomalies.list(order_id="order-1")
    assert [a.id for a in anomalies] == [second, first]
    assert (anomalies[1].kind, anomalies[1].order_id, anomalies[1].payload) == ("UNKNOWN_ORDER", None, {"q": "1"})
    assert anomalies[0].payload is None and anomalies[0].observed_time.tzinfo is not None
    assert [a.kind for a in of_order] == ["OVERFILL"]
