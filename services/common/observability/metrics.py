"""Prometheus metrics: the definitions, the one-line hooks the engines call, and the
``/metrics`` HTTP endpoint each service serves on its own port.

Every metric lives in ``prometheus_client``'s default registry, next to the process
collector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...). The
hooks never raise: a metric must never fail an order.

docs/operations.md, "Metrics", lists every series with what it means and example
PromQL; keep the two in step.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from bisect import bisect_left
from collections import OrderedDict, deque
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from services.domain.order import FILL_AFTER_CLOSE, event_label

log = logging.getLogger(__name__)

#: Set by :func:`services.common.server.run` (``risk``, ``oms``, ``exchange``).
SERVICE = {"name": "tessera"}

ORDERS = Counter(
    "tessera_orders",
    "Order transitions committed to the store, by the status entered (PENDING counts created orders).",
    ["status"],
)
RISK_REJECTIONS = Counter(
    "tessera_risk_rejections",
    "Orders Risk rejected, by violated control (an order with two violations counts once under each).",
    ["reason"],
)
TOKEN_FAILURES = Counter(
    "tessera_token_failures",
    "Refused risk tokens and OMS call credentials, by reason and by the service that refused them.",
    ["reason", "service"],
)
NOT_ENTITLED = Counter(
    "tessera_not_entitled",
    "Calls refused PERMISSION_DENIED NOT_ENTITLED (the caller's roles do not admit the method, or not for the "
    "account), by service and method.",
    ["service", "method"],
)
VENUE_ERRORS = Counter(
    "tessera_venue_errors",
    "Errors from the venue connection (shadow and live modes), by reason code; each attempt counts.",
    ["code"],
)

KILL_SWITCH_FAILURES = Counter(
    "tessera_kill_switch_failures",
    "What the kill switch's venue-wide cancel (EmergencyCancelAll) still could not cancel after its last attempt: "
    "one per account or symbol left, by reason (EXCHANGE_UNAVAILABLE: the Exchange service did not answer).",
    ["reason"],
)
# The venue connection's health (live mode), set by the Exchange: its user-data streams
# (services/exchange/aster/user_stream.py) and its dead-man switch heartbeat
# (services/exchange/providers/live.py).
VENUE_USER_STREAM = Gauge(
    "tessera_venue_user_stream_connected",
    "1 while the user-data stream of a venue account (the account key, never a credential) and market is "
    "connected; 0 while it is down and fills are polled from REST instead (the fallback).",
    ["account", "market"],
)
DEADMAN_FAILURES = Counter(
    "tessera_venue_deadman_failures",
    "Dead-man switch heartbeats (countdownCancelAll) that failed to re-arm the venue's countdown, by reason code.",
    ["reason"],
)
DEADMAN_FAILING = Gauge(
    "tessera_venue_deadman_consecutive_failures",
    "Dead-man switch heartbeats failed in a row (0 after one that re-armed every armed symbol).",
)


class RpcDurations(Collector):
    """``tessera_rpc_duration_seconds{service,method,code}``: a histogram, as
    ``prometheus_client.Histogram`` exposes one (``_bucket{le}``, ``_count``, ``_sum``),
    kept for the observer's one observation per call. An observation is queued (an
    append) and counted into its buckets with the others queued, at each scrape and every
    ``fold_every`` observations: one bisection per observation in a pass over them,
    instead of a label look-up, a scan of the buckets and a lock per value in each call."""

    name = "tessera_rpc_duration_seconds"
    documentation = "Server-side duration of gRPC calls, by service, full method name and status code."
    labelnames = ("service", "method", "code")

    def __init__(self, buckets: Iterable[float], fold_every: int = 1024) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self.fold_every = fold_every
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        self._series: dict[tuple[str, str, str], list[Any]] = {}  # labels -> [counts per bucket, sum]
        self._queue: deque[tuple[tuple[str, str, str], float]] = deque()  # appended and drained thread-safely
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    def observe(self, labels: tuple[str, str, str], seconds: float) -> None:
        queue = self._queue
        queue.append((labels, seconds))
        if len(queue) >= self.fold_every:
            self.fold()

    def observe_many(self, observations: Iterable[tuple[tuple[str, str, str], float]]) -> None:
        """``(labels, seconds)`` observations, counted in now (after those queued)."""
        self.fold()
        with self._lock:
            self._count(observations)

    def before_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (which brings in observations held elsewhere) before each scrape."""
        self._hooks.append(hook)

    def fold(self) -> None:
        """Count the queued observations into their series."""
        queue = self._queue
        if not queue:
            return
        popleft = queue.popleft

        def queued() -> Iterator[tuple[tuple[str, str, str], float]]:
            while True:
                try:
                    yield popleft()
                except IndexError:
                    return

        with self._lock:
            self._count(queued())

    def _count(self, observations: Iterable[tuple[tuple[str, str, str], float]]) -> None:
        """Count ``observations`` into their series (the lock held)."""
        bounds, series_of = self.bounds, self._series
        for labels, seconds in observations:
            series = series_of.get(labels)
            if series is None:
                series = series_of[labels] = [[0] * (len(bounds) + 1), 0.0]
            series[0][bisect_left(bounds, seconds)] += 1  # the first bound >= seconds (le: at most)
            series[1] += seconds

    def describe(self) -> list[Any]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        for hook in self._hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - the scrape goes on with what is counted
                log.debug("an RPC duration source failed", exc_info=True)
        self.fold()
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(labels, list(counts), total) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in snapshot:
            family.add_metric(list(labels), list(zip(self._le, itertools.accumulate(counts))), total)
        yield family


# Unary RPCs of Tessera take about a millisecond on loopback; streams last as long as
# the client follows them (their own method label keeps them apart).
RPC_DURATION = RpcDurations(
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REGISTRY.register(RPC_DURATION)
FILLS_AFTER_CLOSE = Counter(
    "tessera_fills_after_close",
    "Fills the venue reported for an order already CANCELLED or EXPIRED, recorded on it (the fill crossed the "
    "cancel or the expiry on the wire; the order stays closed). Not counted in tessera_orders_total.",
)
SUBMIT_TO_FILL = Histogram(
    "tessera_submit_to_fill_seconds",
    "Time from the OMS accepting an order (APPROVED -> SUBMITTED) to its FILLED transition, "
    "observed by the OMS replica that submitted it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

STORE_COMMIT_ITEMS = Histogram(
    "tessera_store_commit_items",
    "Writes per group commit of this process's store writer (a set write's orders, claims, fills or "
    "executions; a unit of work one): the commits per order are their inverse.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 5000),
)
_STORE_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
STORE_WRITE_WAIT = Histogram(
    "tessera_store_write_wait_seconds",
    "Time the store writer waited to begin a group commit: on SQLite for its turn and the file's write lock, "
    "which the services' writers hold one after the other.",
    buckets=_STORE_SECONDS,
)
STORE_WRITE_HELD = Histogram(
    "tessera_store_write_held_seconds",
    "Time from a group commit's begin to the end of its commit (on SQLite the file's write lock held all along).",
    buckets=_STORE_SECONDS,
)

#: ``tessera_trading_state`` values.
TRADING_STATE_VALUES = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}

# order id -> when this process submitted it (for tessera_submit_to_fill_seconds).
_SUBMITTED: "OrderedDict[str, dt.datetime]" = OrderedDict()
_SUBMITTED_LIMIT = 100_000
_submitted_lock = threading.Lock()
_TERMINAL = frozenset({"FILLED", "REJECTED", "CANCELLED", "EXPIRED"})


def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status))


# -- hooks --------------------------------------------------------------------------------
def _order_submitted(order_id: str, at: dt.datetime) -> None:
    """This process moved ``order_id`` to SUBMITTED: start its submit-to-fill clock."""
    with _submitted_lock:
        _SUBMITTED[order_id] = at
        while len(_SUBMITTED) > _SUBMITTED_LIMIT:
            _SUBMITTED.popitem(last=False)


_order_children: dict[str, Any] = {}


def store_committed(items: int, waited: float, held: float) -> None:
    """A group commit of this process's store writer (see :mod:`services.store.database`):
    the writes it carried, the seconds it waited to begin, the seconds it held the write."""
    try:
        STORE_COMMIT_ITEMS.observe(items)
        STORE_WRITE_WAIT.observe(waited)
        STORE_WRITE_HELD.observe(held)
    except Exception:  # noqa: BLE001 - a metric never fails a commit
        log.debug("store commit not counted", exc_info=True)


def events_committed(events: Iterable[Any]) -> None:
    """Order events a transaction has just committed (the store's writer reports them,
    see :mod:`services.store.database`): ``(order_id, label, event_time)`` tuples (the
    label of :func:`services.domain.order.event_label`: the status entered, or
    ``FILL_AFTER_CLOSE``), ``order_events_ts`` rows or ``services.domain.OrderEvent``
    objects."""
    try:
        for event in events:
            if isinstance(event, tuple):
                order_id, status, at = event
                status = _status_name(status)
            elif isinstance(event, dict):  # an order_events_ts row
                order_id, at = event["order_id"], event["event_time"]
                status = event_label(event.get("from_status"), event["to_status"], event.get("payload"))
            else:
                order_id, status, at = event.order_id, event_label(event.from_status, event.to_status,
                                                                   event.payload), event.event_time
            if status == FILL_AFTER_CLOSE:
                FILLS_AFTER_CLOSE.inc()  # no status entered
                continue
            child = _order_children.get(status)
            if child is None:
                child = _order_children[status] = ORDERS.labels(status)
            child.inc()
            if status == "SUBMITTED":
                _order_submitted(order_id, at)
            elif status in _TERMINAL:
                with _submitted_lock:
                    submitted = _SUBMITTED.pop(order_id, None)
                if submitted is not None and status == "FILLED":
                    SUBMIT_TO_FILL.observe(max(0.0, (at - submitted).total_seconds()))
    except Exception:  # noqa: BLE001 - never fail a committed transaction over a metric
        log.debug("order metrics not recorded", exc_info=True)


def risk_rejected(reasons: Iterable[str]) -> None:
    for reason in reasons:
        RISK_REJECTIONS.labels(reason).inc()


def token_failure(reason: str) -> None:
    TOKEN_FAILURES.labels(reason, SERVICE["name"]).inc()


def not_entitled(method: str) -> None:
    NOT_ENTITLED.labels(SERVICE["name"], method).inc()


def venue_error(error: BaseException) -> BaseException:
    """Count ``error`` (by its reason code) and return it: ``raise venue_error(e)``."""
    VENUE_ERRORS.labels(str(getattr(error, "reason", None) or type(error).__name__)).inc()
    return error


def kill_switch_failures(reasons: Iterable[str]) -> None:
    """Count what a kill switch left uncancelled at the venue, one per account or symbol."""
    try:
        for reason in reasons:
            KILL_SWITCH_FAILURES.labels(reason).inc()
    except Exception:  # noqa: BLE001 - a metric must never fail the kill switch
        log.debug("kill switch metrics not recorded", exc_info=True)


def user_stream_state(account: str, market: str, connected: bool | None) -> None:
    """The user-data stream of ``account`` (a venue account key) on ``market`` is connected,
    down (False: the REST polling fallback), or closed (None: its series is removed)."""
    try:
        if connected is None:
            VENUE_USER_STREAM.remove(account, market)
        else:
            VENUE_USER_STREAM.labels(account, market).set(1 if connected else 0)
    except Exception:  # noqa: BLE001 - never fail the stream over a metric (a series never set: KeyError)
        log.debug("user-stream metric not recorded", exc_info=True)


def deadman_heartbeat(error: BaseException | None) -> None:
    """One dead-man switch heartbeat ended: re-armed (None) or failed with ``error``."""
    try:
        if error is None:
            DEADMAN_FAILING.set(0)
        else:
            DEADMAN_FAILURES.labels(str(getattr(error, "reason", None) or type(error).__name__)).inc()
            DEADMAN_FAILING.inc()
    except Exception:  # noqa: BLE001 - the heartbeat must outlive its metric
        log.debug("dead-man metric not recorded", exc_info=True)


def rpc_finished(method: str, code: str, seconds: float) -> None:
    RPC_DURATION.observe((SERVICE["name"], method, code), seconds)


# -- the trading state, read from the store at scrape time ---------------------------------
class TradingStateCollector(Collector):
    """``tessera_trading_state{scope}``: 0 ACTIVE, 1 REDUCING, 2 HALTED, for the global
    scope (always) and every symbol with a state of its own. Read from the store at each
    scrape, so every replica reports the state every replica obeys."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []  # collected lazily: no store read at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "tessera_trading_state",
            "Trading state per scope as the store holds it: 0 ACTIVE, 1 REDUCING, 2 HALTED.",
            labels=["scope"],
        )
        try:
            with self.store.uow(read_only=True) as uow:
                stored = uow.trading_state.states()
        except Exception:  # noqa: BLE001 - a store outage must not break the scrape
            log.warning("tessera_trading_state: the store could not be read")
            return
        states = {"global": "ACTIVE", **{scope: state.value for scope, state in stored.items()}}
        for scope, state in sorted(states.items()):
            family.add_metric([scope], TRADING_STATE_VALUES.get(state, -1))
        yield family


class OrderHealthCollector(Collector):
    """What the alerts need from the store, read at each scrape (no hook in the order
    path): ``tessera_orders_in_doubt`` (SUBMITTED orders: sent, no venue answer yet),
    ``tessera_order_in_doubt_oldest_seconds`` (how long the oldest of them has been
    SUBMITTED; 0 when there is none), ``tessera_orders_fills_owed`` (CANCELLED and EXPIRED
    orders whose close said the venue executed more than they have filled: fills still
    owed) and ``tessera_execution_anomalies_total{kind}`` (anomalies recorded: refused
    venue reports, the reconciler's quarantines and owed fills it could not bring in).
    Store-wide, like the trading state: every replica reports the same values."""

    def __init__(self, store: Any, clock: Any = None) -> None:
        self.store = store
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    def describe(self) -> list[Any]:
        return []  # collected lazily: no store read at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        try:
            with self.store.uow(read_only=True) as uow:
                count, oldest = uow.orders.in_doubt()
                owing = uow.orders.count_owing_fills()
                kinds = uow.anomalies.count_by_kind()
        except Exception:  # noqa: BLE001 - a store outage must not break the scrape
            log.warning("order health metrics: the store could not be read")
            return
        age = max(0.0, (self.clock() - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("tessera_orders_in_doubt",
                                "Orders SUBMITTED to the venue without an answer yet (store-wide).", value=count)
        yield GaugeMetricFamily("tessera_order_in_doubt_oldest_seconds",
                                "Seconds the oldest SUBMITTED order has waited for the venue's answer; 0 when none.",
                                value=age)
        yield GaugeMetricFamily("tessera_orders_fills_owed",
                                "CANCELLED and EXPIRED orders still owing fills the venue said it executed "
                                "(store-wide).", value=owing)
        anomalies = CounterMetricFamily("tessera_execution_anomalies",
                                        "Execution anomalies recorded in the store, by kind (refused venue reports, "
                                        "reconciler quarantines).", labels=["kind"])
        for kind, number in sorted(kinds.items()):
            anomalies.add_metric([kind], number)
        yield anomalies


_collector_lock = threading.Lock()
_store_collectors: list[Collector] = []


def watch_trading_state(store: Any) -> None:
    """Report what is read from ``store`` at scrape time: ``tessera_trading_state`` and
    the order health (:class:`OrderHealthCollector`). Risk and the OMS call this once;
    None stops reporting them."""
    with _collector_lock:
        while _store_collectors:
            REGISTRY.unregister(_store_collectors.pop())
        if store is not None:
            _store_collectors.extend([TradingStateCollector(store), OrderHealthCollector(store)])
            for collector in _store_collectors:
                REGISTRY.register(collector)


# -- what a Risk replica holds in memory, read at scrape time ---------------------------------
class RiskBookCollector(Collector):
    """``tessera_risk_book_accounts`` and ``tessera_risk_book_positions``: the accounts and
    positions in this Risk replica's book (the accounts of its shard it has loaded or
    decided since it started), and ``tessera_risk_shards``, the replica count it was
    started with (``shard`` label: its own ordinal). Read from the book at each scrape
    (no hook on the order path); the sum over replicas is every account Risk holds."""

    def __init__(self, book: Any, shard: int, shards: int) -> None:
        self.book = book
        self.shard = str(shard)
        self.shards = shards

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            accounts = list(self.book.accounts.values())  # a copy: the event loop keeps adding
            positions = sum(len(account.positions) for account in accounts)
        except Exception:  # noqa: BLE001 - never break the scrape
            log.debug("risk book metrics not read", exc_info=True)
            return
        for name, text, value in (
            ("tessera_risk_book_accounts", "Accounts in this Risk replica's book (its shard's, loaded or decided).",
             len(accounts)),
            ("tessera_risk_book_positions", "Positions in this Risk replica's book.", positions),
            ("tessera_risk_shards", "The Risk replica count this replica was started with (TESSERA_RISK_SHARDS); "
             "shard: its own ordinal.", self.shards),
        ):
            family = GaugeMetricFamily(name, text, labels=["shard"])
            family.add_metric([self.shard], value)
            yield family


_book_collector: list[Collector] = []


def watch_risk_book(book: Any, shard: int, shards: int) -> None:
    """Report ``book`` (a :class:`services.risk.book.Book`) at scrape time; Risk calls this once."""
    with _collector_lock:
        while _book_collector:
            REGISTRY.unregister(_book_collector.pop())
        _book_collector.append(RiskBookCollector(book, shard, shards))
        REGISTRY.register(_book_collector[0])


# -- exposition -----------------------------------------------------------------------------
class MetricsServer:
    """``/metrics`` over HTTP on a thread of its own (a busy event loop still answers)."""

    def __init__(self, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host)
        self.host = host
        self.port = int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


__all__ = [
    "MetricsServer",
    "OrderHealthCollector",
    "RiskBookCollector",
    "SERVICE",
    "TRADING_STATE_VALUES",
    "deadman_heartbeat",
    "events_committed",
    "kill_switch_failures",
    "risk_rejected",
    "rpc_finished",
    "token_failure",
    "user_stream_state",
    "venue_error",
    "watch_risk_book",
    "watch_trading_state",
]
