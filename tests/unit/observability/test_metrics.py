"""The Prometheus metrics: the hooks, what the store counts at commit, the trading
state read at scrape time, the metrics port settings and the /metrics endpoint."""

from __future__ import annotations

import datetime as dt
import urllib.request
from decimal import Decimal
from typing import Any, Iterator

import pytest
from order_factory import build_order
from prometheus_client import REGISTRY

from services.common import errors
from services.common.config import ConfigError
from services.common.observability import metrics
from services.common.server import DEFAULT_METRICS_PORTS, metrics_port
from services.domain import OrderStatus, TradingState
from services.domain import errors as domain
from services.exchange.aster.errors import VenueInDoubt
from services.store import Store


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def no_trading_state_collector() -> Iterator[None]:
    yield
    metrics.watch_trading_state(None)


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path}/metrics.db")
    try:
        yield store
    finally:
        store.dispose()


def test_committed_events_count_by_status_and_time_submit_to_fill() -> None:
    before = {s: value("tessera_orders_total", status=s) for s in ("SUBMITTED", "FILLED")}
    fills_before = value("tessera_submit_to_fill_seconds_count")
    sum_before = value("tessera_submit_to_fill_seconds_sum")
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    metrics.events_committed([{"order_id": "o-m1", "to_status": "SUBMITTED", "event_time": t0}])
    metrics.events_committed([{"order_id": "o-m1", "to_status": "FILLED", "event_time": t0 + dt.timedelta(seconds=2)}])
    # A fill of an order this process never submitted: counted, not timed.
    metrics.events_committed([{"order_id": "o-other", "to_status": "FILLED", "event_time": t0}])
    assert value("tessera_orders_total", status="SUBMITTED") - before["SUBMITTED"] == 1
    assert value("tessera_orders_total", status="FILLED") - before["FILLED"] == 2
    assert value("tessera_submit_to_fill_seconds_count") - fills_before == 1
    assert value("tessera_submit_to_fill_seconds_sum") - sum_before == pytest.approx(2.0)


def _database(store: Store, seen: list) -> "Database":
    from services.store.database import Database

    def report(events) -> None:
        seen.append(list(events))
        metrics.events_committed(events)

    return Database(store, on_events=report)


async def _writer_busy(db: "Database", gate: Any) -> Any:
    """A call that holds the writer until ``gate`` is set; returns (its future) once the
    writer has taken it, so what is queued next waits for the next batch."""
    import asyncio
    import threading

    started = threading.Event()

    def hold(uow) -> None:
        started.set()
        gate.wait(10)

    held = asyncio.ensure_future(db.run(hold))
    if not await asyncio.to_thread(started.wait, 10):
        raise AssertionError("the writer never took the first call")
    return held


def test_the_writer_counts_events_only_once_committed(store: Store) -> None:
    import asyncio
    import threading

    from services.store.order_sets import NEW_ORDERS

    seen: list = []
    db = _database(store, seen)
    start = value("tessera_orders_total", status="PENDING"), value("tessera_orders_total", status="APPROVED")
    order = build_order()
    order.record_creation()
    order.transition(OrderStatus.APPROVED)
    gate, committed = threading.Event(), threading.Event()

    async def scenario() -> None:
        held = await _writer_busy(db, gate)  # the writer is busy: nothing committed
        write = asyncio.ensure_future(db.write(NEW_ORDERS, order))
        await asyncio.sleep(0)  # the task's first step queues the write
        assert (value("tessera_orders_total", status="PENDING"),
                value("tessera_orders_total", status="APPROVED")) == start
        gate.set()
        await held
        await write

    try:
        asyncio.run(scenario())
    finally:
        db.close()
    assert (value("tessera_orders_total", status="PENDING") - start[0],
            value("tessera_orders_total", status="APPROVED") - start[1]) == (1, 1)
    assert [status for batch in seen for _, status, _ in batch] == ["PENDING", "APPROVED"]


def test_a_call_that_fails_in_a_shared_batch_takes_its_events_along(store: Store) -> None:
    import asyncio
    import threading

    seen: list = []
    db = _database(store, seen)
    start = value("tessera_orders_total", status="PENDING")
    kept, dropped = build_order(), build_order()
    kept.record_creation()
    dropped.record_creation()
    gate = threading.Event()

    def add_then_fail(uow) -> None:
        uow.orders.add(dropped)
        raise ValueError("refused")

    async def scenario() -> list:
        held = await _writer_busy(db, gate)
        calls = [asyncio.ensure_future(db.run(add_then_fail)), asyncio.ensure_future(db.run(lambda uow: uow.orders.add(kept)))]
        await asyncio.sleep(0)  # each task's first step queues its call
        gate.set()
        await held
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        outcomes = asyncio.run(scenario())
    finally:
        db.close()
    assert isinstance(outcomes[0], ValueError) and outcomes[1] is None
    assert value("tessera_orders_total", status="PENDING") - start == 1
    assert [order_id for batch in seen for order_id, _, _ in batch] == [kept.order_id]


def test_a_fill_after_close_is_counted_as_such_and_not_as_a_status_entered(store: Store) -> None:
    import asyncio
    from decimal import Decimal

    from services.domain import Trade
    from services.store.order_sets import FILLS, Fill

    seen: list = []
    db = _database(store, seen)
    order = build_order(quantity=Decimal("1"))
    order.record_creation()
    for status in (OrderStatus.APPROVED, OrderStatus.SUBMITTED, OrderStatus.CANCELLED):
        order.transition(status)
    db.run_sync(lambda uow: uow.orders.add(order))
    start = value("tessera_fills_after_close_total"), value("tessera_orders_total", status="CANCELLED")

    def late(uow, trade_id: str) -> None:  # through a unit of work, as the fill tracker writes
        stored = uow.orders.get(order.order_id)
        stored.apply_fill_after_close(Decimal("0.1"), Decimal("100"), payload={"trade_id": trade_id,
                                                                              "quantity": "0.1", "price": "100"})
        uow.orders.save(stored)

    def trade(trade_id: str) -> Trade:
        return Trade(trade_id, order.venue, order.order_id, order.account, order.symbol, order.side, Decimal("0.1"),
                     Decimal("100"), order.order_time)

    try:
        asyncio.run(db.run(late, "t-uow"))
        stored = db.read_sync(lambda uow: uow.orders.get(order.order_id))  # and through the fills' set write
        sequence = stored.last_sequence
        stored.apply_fill_after_close(Decimal("0.1"), Decimal("100"), payload={"trade_id": "t-set", "quantity": "0.1",
                                                                               "price": "100"})
        asyncio.run(db.write(FILLS, Fill(stored, sequence, [trade("t-set")])))
    finally:
        db.close()
    assert (value("tessera_fills_after_close_total") - start[0],
            value("tessera_orders_total", status="CANCELLED") - start[1]) == (2, 0)
    assert [status for batch in seen[-2:] for _, status, _ in batch] == ["FILL_AFTER_CLOSE", "FILL_AFTER_CLOSE"]


def test_risk_rejections_count_each_reason() -> None:
    before = value("tessera_risk_rejections_total", reason="MAX_NOTIONAL_EXCEEDED")
    metrics.risk_rejected(["MAX_NOTIONAL_EXCEEDED", "PRICE_BAND_EXCEEDED"])
    assert value("tessera_risk_rejections_total", reason="MAX_NOTIONAL_EXCEEDED") - before == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (domain.TokenRejected("expired", reason="TOKEN_EXPIRED"), "TOKEN_EXPIRED"),
        (domain.TokenRejected("not the OMS", reason="CALLER_NOT_OMS"), "CALLER_NOT_OMS"),
        (domain.TokenReplayed("again"), "TOKEN_ALREADY_USED"),
    ],
)
def test_token_failures_are_counted_where_they_become_statuses(error: Exception, reason: str) -> None:
    metrics.SERVICE["name"] = "oms"
    before = value("tessera_token_failures_total", reason=reason, service="oms")
    errors.describe(error)
    assert value("tessera_token_failures_total", reason=reason, service="oms") - before == 1


def test_other_errors_are_not_token_failures() -> None:
    total = sum(s.value for m in REGISTRY.collect() if m.name == "tessera_token_failures" for s in m.samples
                if s.name.endswith("_total"))
    errors.describe(domain.InvalidOrder("quantity", "required"))
    assert sum(s.value for m in REGISTRY.collect() if m.name == "tessera_token_failures" for s in m.samples
               if s.name.endswith("_total")) == total


def test_venue_errors_are_counted_by_reason_and_passed_through() -> None:
    before = value("tessera_venue_errors_total", code="VENUE_TIMEOUT")
    error = VenueInDoubt("no answer", reason="VENUE_TIMEOUT")
    assert metrics.venue_error(error) is error
    assert value("tessera_venue_errors_total", code="VENUE_TIMEOUT") - before == 1


def test_the_user_stream_gauge_is_set_per_account_and_market_and_removed_when_closed() -> None:
    labels = {"account": "v3:0xunit", "market": "SPOT"}
    metrics.user_stream_state("v3:0xunit", "SPOT", False)
    assert REGISTRY.get_sample_value("tessera_venue_user_stream_connected", labels) == 0
    metrics.user_stream_state("v3:0xunit", "SPOT", True)
    assert REGISTRY.get_sample_value("tessera_venue_user_stream_connected", labels) == 1
    metrics.user_stream_state("v3:0xunit", "SPOT", None)
    assert REGISTRY.get_sample_value("tessera_venue_user_stream_connected", labels) is None
    metrics.user_stream_state("v3:0xunit", "SPOT", None)  # closed twice: no error


def test_dead_man_heartbeat_failures_are_counted_by_reason_and_a_success_ends_the_run() -> None:
    before = value("tessera_venue_deadman_failures_total", reason="VENUE_TIMEOUT")
    metrics.deadman_heartbeat(None)
    metrics.deadman_heartbeat(VenueInDoubt("no answer", reason="VENUE_TIMEOUT"))
    metrics.deadman_heartbeat(VenueInDoubt("no answer", reason="VENUE_TIMEOUT"))
    assert value("tessera_venue_deadman_failures_total", reason="VENUE_TIMEOUT") - before == 2
    assert value("tessera_venue_deadman_consecutive_failures") == 2
    metrics.deadman_heartbeat(None)
    assert value("tessera_venue_deadman_consecutive_failures") == 0
    assert value("tessera_venue_deadman_failures_total", reason="VENUE_TIMEOUT") - before == 2


def test_rpc_durations_by_service_method_and_code() -> None:
    metrics.SERVICE["name"] = "risk"
    labels = {"service": "risk", "method": "/tessera.risk.v1.RiskService/ValidateOrder", "code": "OK"}
    before = value("tessera_rpc_duration_seconds_count", **labels)
    metrics.rpc_finished(labels["method"], "OK", 0.0007)
    assert value("tessera_rpc_duration_seconds_count", **labels) - before == 1
    assert value("tessera_rpc_duration_seconds_bucket", **labels, le="0.001") - before >= 1


def test_trading_state_is_read_from_the_store_at_each_scrape(store: Store) -> None:
    metrics.watch_trading_state(store)
    assert value("tessera_trading_state", scope="global") == 0  # never set: ACTIVE
    with store.uow() as uow:
        uow.trading_state.set(TradingState.HALTED, "alice", "incident")
        uow.trading_state.set(TradingState.REDUCING, "reconciler", "quarantine", scope="symbol:BTCUSDT")
        uow.commit()
    assert value("tessera_trading_state", scope="global") == 2
    assert value("tessera_trading_state", scope="symbol:BTCUSDT") == 1


def test_a_store_outage_leaves_the_trading_state_out_of_the_scrape() -> None:
    class Down:
        def uow(self, read_only: bool = False):  # type: ignore[no-untyped-def]
            raise OSError("database down")

    metrics.watch_trading_state(Down())
    assert REGISTRY.get_sample_value("tessera_trading_state", {"scope": "global"}) is None
    assert "tessera_rpc_duration_seconds" in {m.name for m in REGISTRY.collect()}  # the rest is scraped


def scrape(collector: metrics.OrderHealthCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect() for sample in family.samples}


def test_orders_in_doubt_and_the_oldest_ones_wait_are_read_from_the_store(store: Store) -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    collector = metrics.OrderHealthCollector(store, clock=lambda: now)
    assert scrape(collector)[("tessera_orders_in_doubt", ())] == 0
    assert scrape(collector)[("tessera_order_in_doubt_oldest_seconds", ())] == 0
    with store.uow() as uow:
        for status, seconds_ago in ((OrderStatus.SUBMITTED, 90), (OrderStatus.SUBMITTED, 5),
                                    (OrderStatus.ACCEPTED, 600), (OrderStatus.FILLED, 900)):
            uow.orders.add(build_order(status=status, updated_time=now - dt.timedelta(seconds=seconds_ago)))
        uow.commit()
    samples = scrape(collector)
    assert samples[("tessera_orders_in_doubt", ())] == 2  # SUBMITTED only: ACCEPTED has the venue's answer
    assert samples[("tessera_order_in_doubt_oldest_seconds", ())] == 90


def test_the_closed_orders_still_owing_fills_are_counted_from_the_store(store: Store) -> None:
    collector = metrics.OrderHealthCollector(store)
    assert scrape(collector)[("tessera_orders_fills_owed", ())] == 0
    with store.uow() as uow:
        for status, executed in ((OrderStatus.CANCELLED, "0.4"), (OrderStatus.EXPIRED, "1"),
                                 (OrderStatus.CANCELLED, None), (OrderStatus.FILLED, None)):
            uow.orders.add(build_order(status=status, venue_executed_quantity=executed and Decimal(executed)))
        uow.commit()
    assert scrape(collector)[("tessera_orders_fills_owed", ())] == 2


def test_execution_anomalies_are_counted_by_kind_from_the_store(store: Store) -> None:
    collector = metrics.OrderHealthCollector(store)
    assert not any(name == "tessera_execution_anomalies_total" for name, _ in scrape(collector))
    with store.uow() as uow:
        uow.anomalies.record("OVERFILL", "aster", None, "more than ordered")
        uow.anomalies.record("OVERFILL", "aster", None, "again")
        uow.anomalies.record("RECONCILE_DISCREPANCY", "aster", None, "quarantined")
        uow.commit()
    samples = scrape(collector)
    assert samples[("tessera_execution_anomalies_total", (("kind", "OVERFILL"),))] == 2
    assert samples[("tessera_execution_anomalies_total", (("kind", "RECONCILE_DISCREPANCY"),))] == 1


def test_watching_the_store_reports_the_order_health_with_the_trading_state(store: Store) -> None:
    metrics.watch_trading_state(store)
    assert value("tessera_orders_in_doubt") == 0
    assert REGISTRY.get_sample_value("tessera_order_in_doubt_oldest_seconds") == 0
    metrics.watch_trading_state(None)
    assert REGISTRY.get_sample_value("tessera_orders_in_doubt") is None


def test_a_store_outage_leaves_the_order_health_out_of_the_scrape() -> None:
    class Down:
        def uow(self, read_only: bool = False):  # type: ignore[no-untyped-def]
            raise OSError("database down")

    assert list(metrics.OrderHealthCollector(Down()).collect()) == []


def test_metrics_ports_per_service_generic_free_and_off() -> None:
    assert metrics_port("risk", {}) == ("TESSERA_RISK_METRICS_PORT", DEFAULT_METRICS_PORTS["risk"])
    assert DEFAULT_METRICS_PORTS == {"risk": 9101, "oms": 9102, "exchange": 9103}
    assert metrics_port("oms", {"TESSERA_METRICS_PORT": "0"}) == ("TESSERA_METRICS_PORT", 0)
    assert metrics_port("oms", {"TESSERA_OMS_METRICS_PORT": "9200", "TESSERA_METRICS_PORT": "0"})[1] == 9200
    assert metrics_port("exchange", {"TESSERA_EXCHANGE_METRICS_PORT": "off"})[1] is None
    with pytest.raises(ConfigError, match="TESSERA_RISK_METRICS_PORT"):
        metrics_port("risk", {"TESSERA_RISK_METRICS_PORT": "ninety"})
    with pytest.raises(ConfigError, match="TESSERA_METRICS_PORT"):
        metrics_port("risk", {"TESSERA_METRICS_PORT": "70000"})


def test_the_metrics_endpoint_serves_the_registry() -> None:
    server = metrics.MetricsServer("127.0.0.1", 0)
    try:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
            content_type = answer.headers["Content-Type"]
    finally:
        server.close()
    assert content_type.startswith("text/plain")
    for name in ("tessera_orders_total", "tessera_rpc_duration_seconds", "tessera_submit_to_fill_seconds",
                 "process_cpu_seconds_total"):
        assert name in text


def test_rpc_durations_are_exposed_as_a_prometheus_histogram_of_the_same_buckets() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    buckets = (0.0005, 0.001, 0.0025, 0.01)
    ours, theirs = metrics.RpcDurations(buckets, fold_every=3), CollectorRegistry()
    reference = Histogram("tessera_rpc_duration_seconds", metrics.RpcDurations.documentation,
                          ["service", "method", "code"], buckets=buckets, registry=theirs)
    registry = CollectorRegistry()
    registry.register(ours)
    for labels, seconds in ((("risk", "/a/B", "OK"), 0.0005), (("risk", "/a/B", "OK"), 0.0007),
                            (("risk", "/a/B", "OK"), 0.5), (("risk", "/a/B", "UNKNOWN"), 0.002),
                            (("oms", "/a/C", "OK"), 0.0001)):
        ours.observe(labels, seconds)
        reference.labels(*labels).observe(seconds)

    def exposed(reg: CollectorRegistry) -> list[str]:
        return sorted(line for line in generate_latest(reg).decode().splitlines() if "_created" not in line)

    assert exposed(registry) == exposed(theirs)
