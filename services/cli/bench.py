"""``tessera bench``: the order path against its floors, measured in one run.

Starts what it measures as real processes and drives it from this process with asyncio
gRPC clients:

* **the bare chain** (:mod:`services.cli.bare_chain`): three plain ``grpc.aio`` servers in
  three processes exchanging the order path's own messages in its shape (client ->
  Risk-like ``ValidateOrder``; client -> OMS-like ``SubmitOrder`` -> Exchange-like
  ``ExecuteOrder``; and the batch shape, ``ValidateOrders`` then ``SubmitOrders`` ->
  ``ExecuteOrders``), with no interceptors, no database and no logic: the transport's
  floor. Beside it the **hop**, one ``ValidateOrder`` on the bare Risk-like server with and
  without Tessera's observers (request ids, trace context, metrics, the access log), at
  the highest concurrency: what the observers cost a hop. These run for the whole
  benchmark; their repetitions are interleaved with Tessera's, each just before it, so a
  floor and what is judged against it are measured seconds apart;
* **Tessera** (Risk, OMS, Exchange in paper mode) on each database in turn, a fresh one
  per run (a SQLite file in a temporary directory, per synchronous mode; a new PostgreSQL
  database, dropped afterwards): the **round trip** (``ValidateOrder`` then ``SubmitOrder``
  until FILLED) at 1, 8 and 32 orders in flight, and the **batch** (``ValidateOrders`` then
  ``SubmitOrders`` of the approved orders); and on the same database, at the start of each
  repetition, the **empty durable commit** (one row UPDATEd, COMMIT, on a connection of the
  services' own engine): the database's floor;
* **the token check**, in this process: the OMS's whole check from the wire
  (``core_ext.verify_order_request``: order fields -> canonical body -> MAC -> verdict),
  compiled and the pure-Python twin, the bare HMAC under it, and the seed project's own
  ``verify_risk_token`` loaded unchanged from ``--seed PATH`` (a checkout; without it the
  seed's figure is reported as not measured).

Every configuration runs ``--repetitions`` times (at least 3 for a measurement),
interleaved; each figure is the median of its repetitions, with their spread (min-max).
The CPU time of every process (``/proc/PID/stat``, before and after each configuration)
gives the CPU per order per process. Each target of ``docs/benchmarks.md`` is reported
as measured, its floor from the same run, the ratio, what is wanted and met or missed.
``--json`` writes everything, ``--docs`` rewrites the results section of
``docs/benchmarks.md``, ``--plot`` draws the latency distributions (matplotlib, the
``bench`` extra). ``--smoke`` runs a few orders per configuration and two repetitions:
a check that everything runs and reports, not a measurement.

Every order is a 0.01 BTCUSDT futures market order, spread over ``ACCOUNTS`` accounts,
alternating buy and sell per account so positions stay flat and every risk control
(open orders, order rate, position, exposure, leverage, daily loss) runs with the
default limits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Sequence

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from .bench_floor import BareChain, CpuMeter, commit_floor, token_figures, tree_state
from .client import EXIT_ERROR, EXIT_OK, err
from .stack import Stack, StackError, client_token, ephemeral_secret, tail

#: Client -> Risk, client -> OMS, OMS -> Exchange.
RPC_HOPS = 3
#: Durable commits on an order's path at 1 in flight (Risk's decision, the OMS's claim, its fills).
COMMITS_PER_ORDER = 3
ACCOUNTS = 64
CALL_TIMEOUT = 30.0
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASES = ("sqlite", "postgres")
BARE = "bare chain"
OBSERVED = "bare chain, observed"
PROCESSES = ("oms", "risk", "exchange", "client")
RESULTS_BEGIN = "<!-- bench:results:begin -->"
RESULTS_END = "<!-- bench:results:end -->"

# The targets (issue 10; docs/benchmarks.md).
TARGET_SINGLE_SHARE = {"sqlite": 0.60, "postgres": 0.50}  # of the bare chain's orders/s at 32 in flight
TARGET_P50_RATIO = 1.5  # x (bare chain p50 + 3 x empty durable commit p50), 1 in flight
TARGET_BATCH_OPS = {"sqlite": 20_000.0, "postgres": 10_000.0}
TARGET_CPU_SINGLE_US = 2000.0
TARGET_CPU_BATCH_US = 100.0
TARGET_VERIFY_SECONDS = 1e-6
TARGET_SEED_SPEEDUP = 4.0
TARGET_OBSERVER_SHARE = 0.10  # the observers' cost, of a bare hop

#: The figures issue 10 started from (7dc5e2d, the machine quiet), for the before/after table.
BEFORE = {
    "p50_1": ("9.1 ms", "bare chain 1.7 ms + 3 x commit 0.22 ms = 2.36 ms (3.9x)"),
    "single_sqlite": ("220 orders/s", "bare chain 1,650 orders/s (13%)"),
    "single_postgres": ("140 orders/s", "bare chain 1,650 orders/s (9%)"),
    "batch_sqlite": ("330 orders/s", "SQLite alone inserts about 220,000 rows/s batched"),
    "batch_postgres": ("130 orders/s", "-"),
    "cpu_single": ("about 10 ms", "-"),
    "token": ("2.7 us", "the seed's verify 2.6-2.7 us (1.0x)"),
}


# -- measurements -----------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of sorted values."""
    if not sorted_values:
        return float("nan")
    position = (len(sorted_values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclasses.dataclass
class Series:
    """One repetition of one configuration: per-operation latencies (seconds) over a wall
    time, and the CPU seconds each process spent meanwhile."""

    database: str
    kind: str  # round_trip | validate | submit | batch | validate_batch | submit_batch | hop | commit
    concurrency: int
    latencies: list[float] = dataclasses.field(default_factory=list)
    operations: int = 0  # orders (calls, commits) completed
    wall_seconds: float = 0.0
    errors: int = 0
    batch_size: int = 0
    first_error: str = ""
    repetition: int = 0
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        cpu = {name: seconds / self.operations * 1e6 for name, seconds in self.cpu.items()} if self.operations else {}
        return {
            "database": self.database,
            "kind": self.kind,
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
            "repetition": self.repetition,
            "samples": len(ordered),
            "operations": self.operations,
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_seconds": self.wall_seconds,
            "p50_ms": percentile(ordered, 0.50) * 1e3,
            "p95_ms": percentile(ordered, 0.95) * 1e3,
            "p99_ms": percentile(ordered, 0.99) * 1e3,
            "mean_ms": (statistics.fmean(ordered) * 1e3) if ordered else float("nan"),
            "max_ms": (ordered[-1] * 1e3) if ordered else float("nan"),
            "ops_per_second": self.operations / self.wall_seconds if self.wall_seconds > 0 else 0.0,
            "cpu_us_per_op": cpu,
            "cpu_us_per_op_sum": sum(cpu.values()) if cpu else float("nan"),
        }


#: The figures of a row that are medians of the repetitions, each with its spread.
MEDIAN_FIELDS = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "ops_per_second", "cpu_us_per_op_sum")


def _median_spread(values: list[float]) -> tuple[float, list[float]]:
    finite = [v for v in values if v == v]
    if not finite:
        return float("nan"), [float("nan"), float("nan")]
    return statistics.median(finite), [min(finite), max(finite)]


def aggregate(series: Iterable[Series]) -> list[dict[str, Any]]:
    """One row per configuration (database, kind, in flight, batch size), the bare chain's
    first, the others in the order first measured: each figure the median of the
    repetitions, ``<figure>_spread`` their [min, max]."""
    groups: dict[tuple[str, str, int, int], list[dict[str, Any]]] = {}
    for s in series:
        groups.setdefault((s.database, s.kind, s.concurrency, s.batch_size), []).append(s.summary())
    rows = []
    for (database, kind, concurrency, batch_size), summaries in groups.items():
        row: dict[str, Any] = {
            "database": database, "kind": kind, "concurrency": concurrency, "batch_size": batch_size,
            "repetitions": len(summaries),
            "samples": sum(x["samples"] for x in summaries),
            "operations": sum(x["operations"] for x in summaries),
            "errors": sum(x["errors"] for x in summaries),
            "first_error": next((x["first_error"] for x in summaries if x["first_error"]), ""),
            "per_repetition": [{k: x[k] for k in ("repetition", *MEDIAN_FIELDS, "cpu_us_per_op", "operations",
                                                  "wall_seconds")} for x in summaries],
        }
        for field in MEDIAN_FIELDS:
            row[field], row[f"{field}_spread"] = _median_spread([x[field] for x in summaries])
        processes = sorted({p for x in summaries for p in x["cpu_us_per_op"]}, key=_process_order)
        row["cpu_us_per_op"] = {p: _median_spread([x["cpu_us_per_op"].get(p, float("nan")) for x in summaries])[0]
                                for p in processes}
        rows.append(row)
    rank = {BARE: 0, OBSERVED: 1}
    return sorted(rows, key=lambda r: rank.get(r["database"], 2))  # the floors first; otherwise as measured


def _process_order(name: str) -> int:
    return PROCESSES.index(name) if name in PROCESSES else len(PROCESSES)


# -- progress ---------------------------------------------------------------------------
class Progress:
    """One status line on stderr: rewritten in place on a terminal, a line every few
    seconds otherwise (logs, CI)."""

    def __init__(self, stream: Any = sys.stderr, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0
        self._label = ""
        self._done = ""

    def update(self, label: str, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        finished = done >= total
        if finished and self._done == label:
            return
        if finished:
            self._done = label
        if not finished and now - self._last < (0.2 if self.tty else 5.0) and label == self._label:
            return
        self._last, self._label = now, label
        text = f"  {label}: {done}/{total}"
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if finished else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
            self.stream.flush()


# -- orders -----------------------------------------------------------------------------
class Orders:
    """Distinct market orders, spread over accounts, alternating sides per account."""

    def __init__(self, run_id: str, accounts: int = ACCOUNTS) -> None:
        self.run_id = run_id
        self.accounts = accounts
        self.count = 0

    def next(self) -> pb.OrderIntent:
        index = self.count
        self.count += 1
        account = index % self.accounts
        buy = (index // self.accounts) % 2 == 0
        return pb.OrderIntent(
            account=f"bench-{self.run_id}-{account:03d}",
            venue="aster",
            market_type=pb.MARKET_TYPE_FUTURES,
            symbol="BTCUSDT",
            side=pb.SIDE_BUY if buy else pb.SIDE_SELL,
            order_type=pb.ORDER_TYPE_MARKET,
            quantity="0.01",
            time_in_force=pb.TIME_IN_FORCE_GTC,
        )

    def batch(self, size: int) -> list[pb.OrderIntent]:
        return [self.next() for _ in range(size)]


class OrderFailed(Exception):
    pass


# -- the drivers --------------------------------------------------------------------------
@dataclasses.dataclass
class Clients:
    risk: Any
    oms: Any
    channels: list[grpc.aio.Channel]
    #: The caller's identity (its bearer token), sent with every call of the order path.
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def connect(cls, addresses: dict[str, str], token: str = "") -> "Clients":
        """Stubs for what ``addresses`` has of ``risk`` and ``oms`` (the others None), calling
        with ``token`` (a bearer token) when given."""
        channels = {role: grpc.aio.insecure_channel(addresses[role]) for role in ("risk", "oms") if role in addresses}
        return cls(
            risk=risk_pb2_grpc.RiskServiceStub(channels["risk"]) if "risk" in channels else None,
            oms=oms_pb2_grpc.OrderManagementServiceStub(channels["oms"]) if "oms" in channels else None,
            channels=list(channels.values()),
            metadata=(("authorization", f"Bearer {token}"),) if token else (),
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def _drive(
    total: int,
    concurrency: int,
    operation: Callable[[], Awaitable[int]],
    series: Series,
    progress: Progress,
    label: str,
) -> None:
    """Run ``operation`` ``total`` times with ``concurrency`` in flight; record each
    one's latency. ``operation`` returns how many orders it completed."""
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < total:
            issued += 1
            started = time.perf_counter()
            try:
                done = await operation()
            except (grpc.aio.AioRpcError, OrderFailed) as error:
                series.errors += 1
                if not series.first_error:
                    series.first_error = _describe(error)
                continue
            series.latencies.append(time.perf_counter() - started)
            series.operations += done
            progress.update(label, len(series.latencies) + series.errors, total)

    progress.update(label, 0, total)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    series.wall_seconds = time.perf_counter() - started
    progress.update(label, total, total)


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)


async def _hop(risk: Any, orders: Orders) -> int:
    """One hop: a ValidateOrder, its answer not looked at (the bare server's is canned)."""
    await risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=orders.next()), timeout=CALL_TIMEOUT)
    return 1


async def _round_trip(clients: Clients, orders: Orders, split: dict[str, list[float]] | None = None) -> int:
    started = time.perf_counter()
    decision = await clients.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=orders.next()), timeout=CALL_TIMEOUT,
                                              metadata=clients.metadata)
    validated = time.perf_counter()
    if decision.order.status != pb.ORDER_STATUS_APPROVED:
        raise OrderFailed(f"risk did not approve: {[v.code for v in decision.violations]}")
    answer = await clients.oms.SubmitOrder(
        oms_pb2.SubmitOrderRequest(order=decision.order, risk_token=decision.risk_token), timeout=CALL_TIMEOUT,
        metadata=clients.metadata,
    )
    order = answer.order
    while order.status in (pb.ORDER_STATUS_SUBMITTED, pb.ORDER_STATUS_ACCEPTED, pb.ORDER_STATUS_PARTIALLY_FILLED):
        await asyncio.sleep(0.001)  # not FILLED in the answer: follow it until it is
        order = (await clients.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=order.order_id), timeout=CALL_TIMEOUT,
                                            metadata=clients.metadata)).order
    if order.status != pb.ORDER_STATUS_FILLED:
        raise OrderFailed(f"order ended {pb.OrderStatus.Name(order.status)}")
    if split is not None:
        finished = time.perf_counter()
        split["validate"].append(validated - started)
        split["submit"].append(finished - validated)
    return 1


async def _batch(clients: Clients, orders: Orders, size: int, split: dict[str, list[float]]) -> int:
    started = time.perf_counter()
    decisions = await clients.risk.ValidateOrders(
        risk_pb2.ValidateOrdersRequest(orders=orders.batch(size)), timeout=CALL_TIMEOUT * 4,
        metadata=clients.metadata,
    )
    validated = time.perf_counter()
    approved = [r for r in decisions.results if r.order.status == pb.ORDER_STATUS_APPROVED]
    if len(approved) != size:
        rejected = next((r for r in decisions.results if r.order.status != pb.ORDER_STATUS_APPROVED), None)
        detail = "" if rejected is None else f" ({rejected.error.message or [v.code for v in rejected.violations]})"
        raise OrderFailed(f"risk approved {len(approved)} of {size}{detail}")
    answer = await clients.oms.SubmitOrders(
        oms_pb2.SubmitOrdersRequest(
            orders=[oms_pb2.SubmitOrderRequest(order=r.order, risk_token=r.risk_token) for r in approved]
        ),
        timeout=CALL_TIMEOUT * 4, metadata=clients.metadata,
    )
    finished = time.perf_counter()
    filled = sum(1 for r in answer.results if r.order.status == pb.ORDER_STATUS_FILLED)
    if filled != size:
        other = next((r for r in answer.results if r.order.status != pb.ORDER_STATUS_FILLED), None)
        detail = "" if other is None else f" ({other.error.message or pb.OrderStatus.Name(other.order.status)})"
        raise OrderFailed(f"{filled} of {size} orders FILLED{detail}")
    split["validate_batch"].append(validated - started)
    split["submit_batch"].append(finished - validated)
    return size


@dataclasses.dataclass
class Plan:
    orders: int
    concurrency: tuple[int, ...]
    batch_size: int
    batches: int
    warmup: int
    repetitions: int = 3
    commits: int = 200
    batch_in_flight: int = 1
    token_seconds: float = 0.02  # per timing of the token checks (seven timings per figure)
    hop_calls: int = 5000  # per hop configuration and repetition (a hop is short: more calls, steadier CPU figures)
    bare_batch_factor: int = 10  # the bare chain runs this many times the batches (each takes milliseconds)


async def _configuration(
    series: Series, total: int, concurrency: int, operation: Callable[[], Awaitable[int]],
    progress: Progress, label: str, meter: CpuMeter | None,
) -> Series:
    if meter is not None:
        meter.start()
    await _drive(total, concurrency, operation, series, progress, label)
    if meter is not None:
        series.cpu = meter.stop()
    return series


async def _order_path(
    label: str, clients: Clients, orders: Orders, plan: Plan, repetition: int, progress: Progress,
    meter: CpuMeter | None,
) -> list[Series]:
    """One repetition of the round trips at each concurrency and of the batches."""
    results: list[Series] = []
    tag = f" (repetition {repetition + 1}/{plan.repetitions})"
    for concurrency in plan.concurrency:
        split: dict[str, list[float]] = {"validate": [], "submit": []}
        trip = await _configuration(
            Series(label, "round_trip", concurrency, repetition=repetition), plan.orders, concurrency,
            lambda: _round_trip(clients, orders, split), progress, f"{label} round trip, {concurrency} in flight{tag}",
            meter)
        results.append(trip)
        for kind in ("validate", "submit"):
            results.append(Series(label, kind, concurrency, split[kind], trip.operations, trip.wall_seconds,
                                  repetition=repetition))
    if plan.batches:
        split = {"validate_batch": [], "submit_batch": []}
        batch = await _configuration(
            Series(label, "batch", plan.batch_in_flight, batch_size=plan.batch_size, repetition=repetition),
            plan.batches, plan.batch_in_flight, lambda: _batch(clients, orders, plan.batch_size, split), progress,
            f"{label} batches of {plan.batch_size}{tag}", meter)
        results.append(batch)
        for kind in ("validate_batch", "submit_batch"):
            results.append(Series(label, kind, plan.batch_in_flight, split[kind], batch.operations, sum(split[kind]),
                                  batch_size=plan.batch_size, repetition=repetition))
    return results


async def _warm_up(label: str, clients: Clients, orders: Orders, plan: Plan, progress: Progress) -> None:
    """Channels, caches and code paths warmed, not recorded; a failure here stops the run."""
    warm = Series(label, "warmup", 1)
    await _drive(plan.warmup, 4, lambda: _round_trip(clients, orders), warm, progress, f"{label} warm-up")
    if plan.batches:
        split: dict[str, list[float]] = {"validate_batch": [], "submit_batch": []}
        await _drive(1, 1, lambda: _batch(clients, orders, min(plan.batch_size, 100), split), warm, progress,
                     f"{label} warm-up (batch)")
    if warm.errors:
        raise OrderFailed(f"{label}: the warm-up failed: {warm.first_error}")


class ChainDriver:
    """Drives the bare chain and the observed Risk-like server from one event loop."""

    def __init__(self, bare: BareChain, observed: BareChain, plan: Plan, progress: Progress) -> None:
        self.plan, self.progress = plan, progress
        self.clients = Clients.connect(bare.addresses)
        self.observed_clients = Clients.connect(observed.addresses)
        self.orders = Orders(uuid.uuid4().hex[:8])
        available = CpuMeter.available()
        self.meter = CpuMeter({**bare.pids, "client": os.getpid()}) if available else None
        self.hop_meters = {
            BARE: CpuMeter({"risk": bare.pids["risk"], "client": os.getpid()}) if available else None,
            OBSERVED: CpuMeter({"risk": observed.pids["risk"], "client": os.getpid()}) if available else None,
        }
        self.hop_stubs = {BARE: self.clients.risk, OBSERVED: self.observed_clients.risk}

    async def warm_up(self) -> None:
        await _warm_up(BARE, self.clients, self.orders, self.plan, self.progress)
        warm = Series(OBSERVED, "warmup", 1)
        await _drive(self.plan.warmup, 4, lambda: _hop(self.observed_clients.risk, self.orders), warm, self.progress,
                     f"{OBSERVED} warm-up")
        if warm.errors:
            raise OrderFailed(f"{OBSERVED}: the warm-up failed: {warm.first_error}")

    async def repetition(self, repetition: int, tag: int) -> list[Series]:
        """The chain's round trips and batches, then the hop on the bare and the observed
        server (alternately first); ``tag`` numbers the repetition in the whole run."""
        plan = self.plan
        chain_plan = dataclasses.replace(plan, batches=plan.batches * plan.bare_batch_factor)
        results = await _order_path(BARE, self.clients, self.orders, chain_plan, repetition, self.progress, self.meter)
        in_flight = max(plan.concurrency)
        labels = (BARE, OBSERVED) if tag % 2 == 0 else (OBSERVED, BARE)
        for label in labels:
            stub = self.hop_stubs[label]
            results.append(await _configuration(
                Series(label, "hop", in_flight, repetition=repetition), plan.hop_calls, in_flight,
                lambda stub=stub: _hop(stub, self.orders), self.progress,
                f"{label} hop, {in_flight} in flight (repetition {repetition + 1}/{plan.repetitions})",
                self.hop_meters[label]))
        for series in results:
            series.repetition = tag
        return results

    async def close(self) -> None:
        await self.clients.close()
        await self.observed_clients.close()


async def measure(
    database: str, addresses: dict[str, str], plan: Plan, progress: Progress, pids: dict[str, int] | None = None,
    floor: Callable[[], list[float]] | None = None, chain: tuple[BareChain, BareChain] | None = None,
    chain_tag: int = 0, token: str = "",
) -> list[Series]:
    """Tessera on one database. Each repetition: the empty durable commits (``floor``), the
    bare chain's configurations and hops (``chain``: the floor measured beside Tessera,
    seconds apart), then Tessera's round trips and batches."""
    clients = Clients.connect(addresses, token)
    orders = Orders(uuid.uuid4().hex[:8])
    meter = CpuMeter({**(pids or {}), "client": os.getpid()}) if pids and CpuMeter.available() else None
    driver = ChainDriver(*chain, plan, progress) if chain is not None else None
    results: list[Series] = []
    try:
        if driver is not None:
            await driver.warm_up()
        await _warm_up(database, clients, orders, plan, progress)
        for repetition in range(plan.repetitions):
            if floor is not None:
                progress.note(f"  {database} empty durable commits (repetition {repetition + 1}/{plan.repetitions})")
                latencies = await asyncio.to_thread(floor)
                results.append(Series(database, "commit", 1, latencies, len(latencies), sum(latencies),
                                      repetition=chain_tag + repetition))
            if driver is not None:
                results += await driver.repetition(repetition, chain_tag + repetition)
            measured = await _order_path(database, clients, orders, plan, repetition, progress, meter)
            for series in measured:  # numbered as the floors measured just before them: paired in the report
                series.repetition = chain_tag + repetition
            results += measured
    finally:
        await clients.close()
        if driver is not None:
            await driver.close()
    return results


# -- databases and the stack ------------------------------------------------------------------
class Database:
    """A fresh database for one run: a SQLite file, or a new PostgreSQL database."""

    def __init__(self, kind: str, workdir: Path, admin_url: str, synchronous: str = "FULL") -> None:
        self.kind = kind
        self.synchronous = synchronous
        self.workdir = workdir
        self.admin_url = admin_url
        self.url = ""
        self.name = ""
        self.settings: dict[str, str] = {}

    def __enter__(self) -> "Database":
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'bench.db'}"
            self.settings = {
                "sqlite": sqlite3.sqlite_version,
                "journal_mode": "WAL",
                "synchronous": f"{self.synchronous} (TESSERA_SQLITE_SYNCHRONOUS)",
            }
            return self
        from sqlalchemy import create_engine, text

        from services.store.engine import normalize_url

        admin = normalize_url(self.admin_url)
        self.name = f"tessera_bench_{uuid.uuid4().hex[:12]}"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{self.name}"'))
                for setting in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "commit_delay"):
                    self.settings[setting] = str(connection.execute(text(f"SHOW {setting}")).scalar())
        finally:
            engine.dispose()
        self.url = admin.set(database=self.name).render_as_string(hide_password=False)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.kind != "postgres" or not self.name:
            return
        from sqlalchemy import create_engine, text

        from services.store.engine import normalize_url

        engine = create_engine(normalize_url(self.admin_url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            engine.dispose()


def stack_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment (so TESSERA_SQLITE_SYNCHRONOUS, TESSERA_RISK_* and the like
    apply), in paper mode, with an ephemeral key and without a configured database."""
    env = dict(os.environ if base is None else base)
    for name in ("TESSERA_DATABASE_URL", "AIS_RISK_HMAC_SECRET_FILE", "AIS_RISK_HMAC_KEY_ID",
                 "AIS_RISK_HMAC_SECRET_PREVIOUS", "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE",
                 "AIS_RISK_HMAC_KEY_ID_PREVIOUS"):
        env.pop(name, None)
    env["AIS_RISK_HMAC_SECRET"] = ephemeral_secret()
    env["TESSERA_EXECUTION_MODE"] = "paper"
    env.setdefault("TESSERA_PRICES", "BTCUSDT=65000,ETHUSDT=3200,SOLUSDT=150")
    return env


def sqlite_label(synchronous: str) -> str:
    """How results on SQLite in a mode are labelled: the default (FULL) is plain "sqlite"."""
    return "sqlite" if synchronous == "FULL" else f"sqlite-{synchronous.lower()}"


def run_database(
    kind: str, plan: Plan, admin_url: str, progress: Progress, synchronous: str = "FULL",
    chain: tuple[BareChain, BareChain] | None = None, chain_tag: int = 0,
) -> tuple[str, list[Series], dict[str, str]]:
    """Measure one database on a fresh stack (and the bare chain beside it, with ``chain``);
    returns its label, the series and its settings."""
    label = sqlite_label(synchronous) if kind == "sqlite" else kind
    with tempfile.TemporaryDirectory(prefix=f"tessera-bench-{kind}-") as workdir:
        with Database(kind, Path(workdir), admin_url, synchronous) as database:
            progress.note(f"{label}: starting the stack")
            env = stack_environment()
            env["TESSERA_SQLITE_SYNCHRONOUS"] = synchronous
            # The commit floor on the same database: on SQLite a file beside the stack's (the
            # same disk and settings, without contending for the stack's write lock).
            floor_url = f"sqlite:///{Path(workdir) / 'commit-floor.db'}" if kind == "sqlite" else database.url

            def floor() -> list[float]:
                return commit_floor(kind, floor_url, synchronous, plan.commits)

            stack = Stack(database_url=database.url, env=env, log_dir=Path(workdir) / "logs")
            with stack:
                pids = {name: process.pid for name, process in stack.processes.items() if process.pid}
                try:
                    series = asyncio.run(measure(label, stack.addresses, plan, progress, pids, floor, chain, chain_tag,
                                                 token=client_token(stack.env)))
                except BaseException:
                    progress.note(stack.logs(lines=20))
                    raise
            settings = dict(database.settings)
            settings["load average at the start"] = ", ".join(f"{x:.2f}" for x in _load())
            return label, series, settings


@contextlib.contextmanager
def bare_chain(progress: Progress) -> Iterator[tuple[BareChain, BareChain]]:
    """The bare chain (three processes) and an observed Risk-like server beside it, for
    the whole run."""
    env = stack_environment()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-bare-") as workdir:
        progress.note(f"{BARE}: starting its three servers, and an observed Risk-like one")
        try:
            with BareChain(Path(workdir), env=env) as bare, \
                    BareChain(Path(workdir), observed=True, roles=("risk",), env=env) as observed:
                yield bare, observed
        except BaseException:
            for path in sorted(Path(workdir).glob("*.stderr.log")):
                text = tail(path.read_text(errors="replace"), 10)
                if text:
                    progress.note(f"{path.name}: {text}")
            raise


def _load() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


# -- the machine ------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


#: The checkout the services run from (every stack the benchmark starts imports it afresh).
TREE = Path(__file__).resolve().parents[2]


def tree_line(before: dict[str, str], after: dict[str, str]) -> str:
    """The report's line on what was measured (see :func:`bench_floor.tree_state`)."""
    if not before.get("commit"):
        return "- tree: not a git work tree"
    line = f"- tree: {before['commit']}" + (f", with uncommitted changes ({before['changes'][:10]})"
                                            if before.get("changes") else ", clean")
    if after != before:
        line += ("; **the tree changed while the benchmark ran**: stacks started after the change ran another "
                 "program, so these figures mix two")
    return line


def machine() -> dict[str, Any]:
    import core_ext

    load = _load()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": core_ext.IMPLEMENTATION,
        "libraries": {name: _version(name) for name in
                      ("grpcio", "protobuf", "sqlalchemy", "psycopg", "cython", "uvloop")},
        "sqlite": sqlite3.sqlite_version,
        "load_before": [round(x, 2) for x in load],
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- the report -----------------------------------------------------------------------------
def _find(rows: list[dict[str, Any]], database: str, kind: str, concurrency: int | None = None) -> dict[str, Any] | None:
    for row in rows:
        if row["database"] == database and row["kind"] == kind and (concurrency is None or row["concurrency"] == concurrency):
            return row
    return None


def _finite(*values: float) -> bool:
    return all(v == v and v not in (float("inf"), float("-inf")) for v in values)


def floor_columns(rows: list[dict[str, Any]]) -> None:
    """Each of Tessera's rows against the bare chain's same configuration: p50 over the bare
    p50 (``vs_bare_p50``) and orders/s as a share of the bare chain's (``share_of_bare_ops``)."""
    for row in rows:
        if row["database"] in (BARE, OBSERVED) or row["kind"] in ("commit", "hop"):
            continue
        bare = _find(rows, BARE, row["kind"], row["concurrency"])
        if bare is None:
            continue
        row["vs_bare_p50"] = row["p50_ms"] / bare["p50_ms"] if bare["p50_ms"] else float("nan")
        if row["kind"] in ("round_trip", "batch"):
            row["share_of_bare_ops"] = (row["ops_per_second"] / bare["ops_per_second"]
                                        if bare["ops_per_second"] else float("nan"))


def token_summary(token: dict[str, Any] | None) -> dict[str, Any]:
    """Median seconds and [min, max] per token measurement."""
    if not token:
        return {}
    return {name: dict(zip(("median", "spread"), _median_spread(values)))
            for name, values in token.get("seconds", {}).items()}


def micro_results(path: str | None) -> dict[str, Any]:
    """The micro-benchmarks' medians (pytest-benchmark JSON of tests/bench) by group and name."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    medians: dict[str, dict[str, float]] = {}
    for bench in data.get("benchmarks", []):
        group = bench.get("group") or "-"
        impl = (bench.get("params") or {}).get("implementation") or bench.get("extra_info", {}).get("implementation") or bench["name"]
        medians.setdefault(group, {})[impl] = bench["stats"]["median"]
    return medians


def paired(ratio: Callable[..., float], *rows: dict[str, Any] | None) -> float:
    """The median over the repetitions all ``rows`` have (matched by number: a floor and
    what is judged against it measured seconds apart) of ``ratio(entry, entry, ...)``;
    NaN when they share none. On a busy machine this is steadier than the ratio of the
    medians: both sides of each ratio met the same load."""
    if any(row is None for row in rows):
        return float("nan")
    entries = [{e["repetition"]: e for e in row.get("per_repetition", [])} for row in rows]  # type: ignore[union-attr]
    common = sorted(set(entries[0]).intersection(*entries[1:]))
    values = [ratio(*(e[tag] for e in entries)) for tag in common]
    values = [v for v in values if _finite(v)]
    return statistics.median(values) if values else float("nan")


def _divide(a: float, b: float) -> float:
    return a / b if b and _finite(a, b) else float("nan")


def _or(value: float, fallback: float) -> float:
    return value if _finite(value) else fallback


_NAMES = {"sqlite": "SQLite FULL", "sqlite-normal": "SQLite NORMAL", "postgres": "PostgreSQL"}


def evaluate(rows: list[dict[str, Any]], token: dict[str, Any], seed_note: str = "") -> list[dict[str, Any]]:
    """Each target: measured and its floor from the same run (medians of the repetitions),
    the ratio (the median of the per-repetition ratios, each repetition against the floor
    measured just before it: :func:`paired`), what is wanted, met (None: not measured)."""
    targets: list[dict[str, Any]] = []

    def add(name: str, measured: str, floor: str, ratio: str, wanted: str, met: bool | None,
            values: tuple[float, float, float] | None = None) -> None:
        entry = {"target": name, "measured": measured, "floor": floor, "ratio": ratio, "wanted": wanted, "met": met}
        if values is not None:
            entry["measured_value"], entry["floor_value"], entry["ratio_value"] = values
        targets.append(entry)

    trips = [r["concurrency"] for r in rows if r["database"] == BARE and r["kind"] == "round_trip"]
    top = max(trips) if trips else 0
    bare_top, bare_one = _find(rows, BARE, "round_trip", top), _find(rows, BARE, "round_trip", 1)
    bare_batch = _find(rows, BARE, "batch")
    for database in ("sqlite", "postgres"):
        name = _NAMES[database]
        trip_top, trip_one = _find(rows, database, "round_trip", top), _find(rows, database, "round_trip", 1)
        commit, batch = _find(rows, database, "commit"), _find(rows, database, "batch")
        if trip_top is not None and bare_top is not None:
            share = _or(paired(lambda t, b: _divide(t["ops_per_second"], b["ops_per_second"]), trip_top, bare_top),
                        trip_top["ops_per_second"] / bare_top["ops_per_second"])
            wanted = TARGET_SINGLE_SHARE[database]
            add(f"{name}: single-order throughput, {top} in flight", f"{trip_top['ops_per_second']:,.0f} orders/s",
                f"bare chain {bare_top['ops_per_second']:,.0f} orders/s", f"{share:.0%}", f">= {wanted:.0%}",
                share >= wanted, (trip_top["ops_per_second"], bare_top["ops_per_second"], share))
        if trip_one is not None and bare_one is not None and commit is not None:
            floor = bare_one["p50_ms"] + COMMITS_PER_ORDER * commit["p50_ms"]
            ratio = _or(paired(lambda t, b, c: _divide(t["p50_ms"], b["p50_ms"] + COMMITS_PER_ORDER * c["p50_ms"]),
                               trip_one, bare_one, commit), trip_one["p50_ms"] / floor)
            add(f"{name}: round trip p50, 1 in flight", f"{trip_one['p50_ms']:.2f} ms",
                f"bare chain {bare_one['p50_ms']:.2f} ms + {COMMITS_PER_ORDER} x commit {commit['p50_ms']:.3f} ms "
                f"= {floor:.2f} ms", f"{ratio:.2f}x", f"<= {TARGET_P50_RATIO}x", ratio <= TARGET_P50_RATIO,
                (trip_one["p50_ms"], floor, ratio))
        if batch is not None:
            wanted_ops = TARGET_BATCH_OPS[database]
            floor_text, share = "-", float("nan")
            if bare_batch is not None:
                share = _or(paired(lambda t, b: _divide(t["ops_per_second"], b["ops_per_second"]), batch, bare_batch),
                            batch["ops_per_second"] / bare_batch["ops_per_second"])
                floor_text = f"bare chain {bare_batch['ops_per_second']:,.0f} orders/s"
            add(f"{name}: batches of {batch['batch_size']:,}", f"{batch['ops_per_second']:,.0f} orders/s", floor_text,
                f"{share:.1%}" if _finite(share) else "-", f">= {wanted_ops:,.0f} orders/s",
                batch["ops_per_second"] >= wanted_ops,
                (batch["ops_per_second"], bare_batch["ops_per_second"] if bare_batch else float("nan"), share))
        for row, bare, wanted_us, what in ((trip_top, bare_top, TARGET_CPU_SINGLE_US, f"single, {top} in flight"),
                                           (batch, bare_batch, TARGET_CPU_BATCH_US, "batches")):
            if row is None or not _finite(row["cpu_us_per_op_sum"]):
                continue
            floor_us = bare["cpu_us_per_op_sum"] if bare is not None else float("nan")
            ratio = _or(paired(lambda t, b: _divide(t["cpu_us_per_op_sum"], b["cpu_us_per_op_sum"]), row, bare),
                        row["cpu_us_per_op_sum"] / floor_us if _finite(floor_us) and floor_us else float("nan"))
            add(f"{name}: CPU per order, four processes summed ({what})", f"{row['cpu_us_per_op_sum']:,.0f} us",
                f"bare chain {floor_us:,.0f} us" if _finite(floor_us) else "-",
                f"{ratio:.1f}x" if _finite(ratio) else "-", f"<= {wanted_us:,.0f} us",
                row["cpu_us_per_op_sum"] <= wanted_us, (row["cpu_us_per_op_sum"], floor_us, ratio))
    figures = token_summary(token)
    compiled, hmac_floor, seed = (figures.get(k, {}).get("median") for k in ("compiled", "hmac_floor", "seed"))
    if compiled is not None:
        floor_text = f"the HMAC alone {hmac_floor * 1e6:.3f} us" if hmac_floor else "-"
        ratio = compiled / hmac_floor if hmac_floor else float("nan")
        add("the OMS's token check from the wire, compiled", f"{compiled * 1e6:.3f} us", floor_text,
            f"{ratio:.1f}x" if _finite(ratio) else "-", f"<= {TARGET_VERIFY_SECONDS * 1e6:.0f} us",
            compiled <= TARGET_VERIFY_SECONDS, (compiled * 1e6, (hmac_floor or float("nan")) * 1e6, ratio))
        if seed is not None:
            speedup = seed / compiled
            add("the same, against the seed's verify_risk_token", f"{compiled * 1e6:.3f} us",
                f"the seed's verify {seed * 1e6:.3f} us", f"{speedup:.1f}x faster",
                f">= {TARGET_SEED_SPEEDUP:.0f}x faster", speedup >= TARGET_SEED_SPEEDUP,
                (compiled * 1e6, seed * 1e6, speedup))
        else:
            add("the same, against the seed's verify_risk_token", f"{compiled * 1e6:.3f} us",
                f"not measured ({seed_note or 'no --seed'})", "-", f">= {TARGET_SEED_SPEEDUP:.0f}x faster", None)
    bare_hop, observed_hop = _find(rows, BARE, "hop"), _find(rows, OBSERVED, "hop")
    if bare_hop is not None and observed_hop is not None:
        cost = _or(paired(lambda o, b: _divide(o["p50_ms"], b["p50_ms"]), observed_hop, bare_hop),
                   observed_hop["p50_ms"] / bare_hop["p50_ms"]) - 1
        add(f"the observers' cost per hop, {bare_hop['concurrency']} in flight: p50",
            f"{observed_hop['p50_ms']:.2f} ms", f"bare hop {bare_hop['p50_ms']:.2f} ms", f"{cost:+.0%}",
            f"<= +{TARGET_OBSERVER_SHARE:.0%}", cost <= TARGET_OBSERVER_SHARE,
            (observed_hop["p50_ms"], bare_hop["p50_ms"], cost))
        observed_cpu = observed_hop["cpu_us_per_op"].get("risk", float("nan"))
        bare_cpu = bare_hop["cpu_us_per_op"].get("risk", float("nan"))
        if _finite(observed_cpu, bare_cpu) and bare_cpu:
            cost = _or(paired(lambda o, b: _divide(o["cpu_us_per_op"].get("risk", float("nan")),
                                                   b["cpu_us_per_op"].get("risk", float("nan"))),
                              observed_hop, bare_hop), observed_cpu / bare_cpu) - 1
            add(f"the observers' cost per hop, {bare_hop['concurrency']} in flight: server CPU per call",
                f"{observed_cpu:,.0f} us", f"bare hop {bare_cpu:,.0f} us", f"{cost:+.0%}",
                f"<= +{TARGET_OBSERVER_SHARE:.0%}", cost <= TARGET_OBSERVER_SHARE, (observed_cpu, bare_cpu, cost))
    return targets


_KIND_LABELS = {
    "round_trip": "round trip",
    "validate": "  ValidateOrder",
    "submit": "  SubmitOrder",
    "batch": "batch",
    "validate_batch": "  ValidateOrders",
    "submit_batch": "  SubmitOrders",
    "hop": "hop (ValidateOrder)",
    "commit": "empty durable commit",
}


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if not _finite(value) else f"{value:,.{digits}f}"


def _spread(row: dict[str, Any], field: str, digits: int = 2) -> str:
    value, (low, high) = row[field], row.get(f"{field}_spread", [float("nan")] * 2)
    if not _finite(value):
        return "-"
    if row.get("repetitions", 1) < 2 or not _finite(low, high):
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} ({_fmt(low, digits)}-{_fmt(high, digits)})"


def _before_after(report: dict[str, Any]) -> list[str]:
    rows, targets = report["results"], {t["target"]: t for t in report["targets"]}

    def target(prefix: str) -> dict[str, Any] | None:
        return next((t for name, t in targets.items() if name.startswith(prefix)), None)

    def now(prefix: str) -> tuple[str, str]:
        t = target(prefix)
        return ("not measured", "") if t is None else (t["measured"], f"{t['floor']} ({t['ratio']})")

    top = max((r["concurrency"] for r in rows if r["kind"] == "round_trip"), default=32)
    lines = ["| figure | before (issue 10, 7dc5e2d) | its floor then | now | its floor now (ratio) |",
             "|---|---:|---|---:|---|"]
    for label, key, prefix in (
        ("round trip p50, 1 in flight, SQLite FULL", "p50_1", "SQLite FULL: round trip p50"),
        (f"single-order throughput, {top} in flight, SQLite", "single_sqlite", "SQLite FULL: single-order"),
        ("the same on PostgreSQL", "single_postgres", "PostgreSQL: single-order"),
        ("batches of 1,000, SQLite", "batch_sqlite", "SQLite FULL: batches"),
        ("batches of 1,000, PostgreSQL", "batch_postgres", "PostgreSQL: batches"),
        ("CPU per order, four processes, single, SQLite", "cpu_single", "SQLite FULL: CPU per order, four processes summed (single"),
        ("the OMS's token check, compiled", "token", "the same, against the seed"),
    ):
        before, floor_then = BEFORE[key]
        measured, floor_now = now(prefix)
        lines.append(f"| {label} | {before} | {floor_then} | {measured} | {floor_now} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: the command, the machine, the targets, before and after,
    every configuration's medians with their spread, the token checks."""
    m = report["machine"]
    plan = report["plan"]
    lines = [
        f"Measured {m['when']} with:",
        "",
        "```sh",
        report["command"],
        "```",
        "",
        f"- machine: {m['cores']} cores, {m['cpu']}, {m['os']}, shared with other work; load average before the run "
        f"{', '.join(map(str, m['load_before']))}, after {', '.join(map(str, m.get('load_after', [])))}",
        f"- Python {m['python']} (core: {m['implementation']}); "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
    ]
    if "tree" in report:
        lines.append(tree_line(report["tree"]["before"], report["tree"].get("after", report["tree"]["before"])))
    for database, settings in report["databases"].items():
        lines.append(f"- {database}: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    seed = report.get("seed")
    lines.append(f"- the seed: `{seed['function']}` from {seed['path']}"
                 + (f" at {seed['commit']}" if seed.get("commit") else "") + ", unchanged"
                 if seed else f"- the seed: not measured ({report.get('seed_note') or 'no --seed'})")
    lines += [
        f"- {plan['repetitions']} repetitions, interleaved, each of: {plan['orders']} orders per configuration, "
        f"{plan['batches']} batches of {plan['batch_size']} ({plan['batches'] * plan['bare_batch_factor']} for the "
        f"bare chain), {plan['hop_calls']} calls per hop, {plan['commits']} empty commits; {plan['warmup']} warm-up "
        "orders first, not recorded. Every figure is the median of the repetitions, (min-max) their spread; "
        "CPU per order is CPU time (`/proc/PID/stat`) over orders completed.",
        "",
        "**Targets** (measured and floor: medians of the repetitions; ratio: the median of the ratios of each "
        "repetition to the floor measured seconds before it):",
        "",
        "| target | measured | floor (same run) | ratio | wanted | |",
        "|---|---:|---|---:|---|---|",
    ]
    for target in report["targets"]:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[target["met"]]
        lines.append(f"| {target['target']} | {target['measured']} | {target['floor']} | {target['ratio']} "
                     f"| {target['wanted']} | {verdict} |")
    lines += ["", "**Before and after** (before: the figures issue 10 gives, measured at 7dc5e2d with the machine "
              "quiet; now: this run):", ""]
    lines += _before_after(report)
    lines += [
        "",
        "**Every configuration** (medians of the repetitions; the bare chain first):",
        "",
        "| database | what | in flight | p50 ms | p95 ms | p99 ms | orders/s | share of the bare chain's orders/s "
        "| p50 vs the bare chain | CPU us/order: OMS | Risk | Exchange | client | sum | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        label = _KIND_LABELS.get(row["kind"], row["kind"])
        if row["kind"] == "batch" or row["kind"].endswith("_batch"):
            label += f" of {row['batch_size']:,}"
        ops = _spread(row, "ops_per_second", 0) if row["kind"] not in ("validate", "submit") else ""
        if row["kind"] in ("hop", "commit"):
            ops += " calls/s" if row["kind"] == "hop" else " commits/s"
        if row["kind"].endswith("_batch"):
            ops = _fmt(row["ops_per_second"], 0)
        share = f"{row['share_of_bare_ops']:.1%}" if _finite(row.get("share_of_bare_ops", float("nan"))) else ""
        versus = f"{row['vs_bare_p50']:.2f}x" if _finite(row.get("vs_bare_p50", float("nan"))) else ""
        cpu = row.get("cpu_us_per_op", {})
        cells = [_fmt(cpu[p], 0) if p in cpu else "" for p in PROCESSES]
        total = _spread(row, "cpu_us_per_op_sum", 0) if cpu else ""
        digits = 3 if row["kind"] == "commit" else 2
        lines.append(
            f"| {row['database']} | {label} | {row['concurrency']} | {_spread(row, 'p50_ms', digits)} "
            f"| {_fmt(row['p95_ms'], digits)} | {_fmt(row['p99_ms'], digits)} | {ops} | {share} | {versus} "
            f"| {' | '.join(cells)} | {total} | {row['errors']} |"
        )
    token = token_summary(report.get("token"))
    if token:
        lines += ["", "**The token check** (this process, interleaved; CPU time per call, `time.thread_time`: "
                  "the median of the repetitions, each the median of seven timings):", "", "| check | per call | spread |", "|---|---:|---:|"]
        names = {
            "compiled": "the OMS's check from the wire, compiled (`core_ext.verify_order_request` on a serialized "
                        "SubmitOrderRequest: order fields -> canonical body -> MAC -> verdict)",
            "python": "the same, the pure-Python twin",
            "hmac_floor": "HMAC-SHA256 of the token's signed bytes on the compiled core's pre-keyed OpenSSL context, "
                          "nothing else (`_token_c.hmac_floor`)",
            "seed": "the seed's `verify_risk_token(token, order_id)`, unchanged (HMAC-SHA256 hexdigest over "
                    "`order_id:timestamp:key_id`, Python's `hmac`; binds only the order id)",
        }
        for name in ("compiled", "python", "hmac_floor", "seed"):
            if name in token:
                low, high = token[name]["spread"]
                lines.append(f"| {names[name]} | {token[name]['median'] * 1e6:.3f} us "
                             f"| {low * 1e6:.3f}-{high * 1e6:.3f} us |")
    if report.get("micro"):
        micro = report["micro"]
        floor = next(iter(micro.get("hmac_floor", {}).values()), float("nan"))
        lines += ["", "Micro-benchmarks (pytest-benchmark medians of `tests/bench`, the same `make bench`):", "",
                  "| operation | compiled | pure Python | compiled speed-up | compiled vs the HMAC floor |",
                  "|---|---:|---:|---:|---:|"]
        for group in ("sign_token", "verify_token", "transition"):
            values = micro.get(group, {})
            if not values:
                continue
            compiled, twin = values.get("cython", float("nan")), values.get("python", float("nan"))
            versus = f"{compiled / floor:.1f}x" if group != "transition" else ""
            lines.append(f"| {group} | {compiled * 1e6:.3f} us | {twin * 1e6:.3f} us | {twin / compiled:.1f}x | {versus} |")
        lines.append(f"| HMAC-SHA256 floor (`_token_c.hmac_floor`) | {floor * 1e6:.3f} us | | | |")
    if report.get("plot"):
        lines += ["", f"![latency distributions]({report['plot_link']})"]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], series: list[Series], path: Path) -> bool:
    """The latency distributions (empirical CDFs, log time axis, the repetitions pooled),
    one panel per database and one for the bare chain."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        err("no matplotlib: install the bench extra (pip install -e '.[bench]') for the plot")
        return False
    pooled: dict[tuple[str, str, int, int], list[float]] = {}
    for s in series:
        if s.kind in ("round_trip", "batch", "hop") and s.latencies:
            database = BARE if s.database == OBSERVED else s.database
            pooled.setdefault((database, s.kind if s.database != OBSERVED else "hop-observed", s.concurrency,
                               s.batch_size), []).extend(s.latencies)
    databases = list(dict.fromkeys(key[0] for key in pooled))
    figure, axes = plt.subplots(1, len(databases), figsize=(5.2 * len(databases), 5.6), squeeze=False, sharey=True)
    colours = {1: "tab:blue", 8: "tab:orange", 32: "tab:red"}
    for axis, database in zip(axes[0], databases):
        for (name, kind, concurrency, batch_size), latencies in pooled.items():
            if name != database:
                continue
            values = sorted(x * 1e3 for x in latencies)
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            if kind == "batch":
                label, style, colour = f"batch of {batch_size} (per batch)", "-", "tab:green"
            elif kind.startswith("hop"):
                label = f"hop{', observed' if kind == 'hop-observed' else ''}, {concurrency} in flight"
                style, colour = ":" if kind == "hop-observed" else "--", "tab:purple"
            else:
                label, style, colour = f"round trip, {concurrency} in flight", "-", colours.get(concurrency, "tab:gray")
            axis.step(values, fractions, where="post", linestyle=style, color=colour, label=label)
        axis.set_xscale("log")
        axis.set_xlabel("latency (ms, log scale)")
        axis.set_title(f"{database} ({report['machine']['cores']} cores, loopback)", fontsize=9)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    axes[0][0].set_ylabel("fraction of calls at or below")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_docs(path: Path, section: str) -> None:
    """Replace the results between the markers in ``path`` (append them when missing)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{RESULTS_BEGIN}\n{section}{RESULTS_END}"
    pattern = re.compile(re.escape(RESULTS_BEGIN) + ".*?" + re.escape(RESULTS_END), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


# -- the command ------------------------------------------------------------------------------
def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive number")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--databases", default="sqlite,postgres",
                        help="which stores, comma-separated: sqlite, postgres (default %(default)s)")
    parser.add_argument("--sqlite-synchronous", default=(os.environ.get("TESSERA_SQLITE_SYNCHRONOUS") or "FULL").upper(),
                        metavar="MODE[,MODE]", help="SQLite synchronous modes to measure, each on its own stack, e.g. "
                        "FULL,NORMAL (default: TESSERA_SQLITE_SYNCHRONOUS, else FULL: the services' default); the "
                        "targets are judged on FULL")
    parser.add_argument("--orders", type=_positive, default=1000,
                        help="orders (calls) per configuration and repetition (default %(default)s)")
    parser.add_argument("--repetitions", type=_positive, default=3,
                        help="repetitions of every configuration; each figure is their median (default %(default)s)")
    parser.add_argument("--concurrency", type=_counts, default=(1, 8, 32), metavar="N,N,...",
                        help="orders in flight (default 1,8,32; the hop runs at the highest)")
    parser.add_argument("--batch-size", type=_positive, default=1000, help="orders per batch RPC (default %(default)s)")
    parser.add_argument("--batches", type=int, default=2,
                        help="batches per database and repetition (0: none; default %(default)s)")
    parser.add_argument("--hop-calls", type=_positive, default=5000,
                        help="calls per hop configuration and repetition, with and without the observers "
                        "(default %(default)s)")
    parser.add_argument("--commits", type=_positive, default=200,
                        help="empty durable commits per database and repetition (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up orders, not recorded (default %(default)s)")
    parser.add_argument("--seed", metavar="PATH", default=os.environ.get("TESSERA_BENCH_SEED") or None,
                        help="a checkout of the seed project (kmshihab7878/Autonomous-Investment-Swarm): its "
                        "verify_risk_token is measured beside Tessera's token check, unchanged (env "
                        "TESSERA_BENCH_SEED; without it that figure is reported as not measured)")
    parser.add_argument("--no-bare-chain", dest="bare_chain", action="store_false",
                        help="skip the bare chain (then no target has its transport floor)")
    parser.add_argument("--postgres-admin-url", default=os.environ.get("TESSERA_BENCH_POSTGRES_ADMIN_URL")
                        or DEFAULT_POSTGRES_ADMIN_URL, metavar="URL",
                        help="a PostgreSQL database to create (and drop) the benchmark's database from "
                        "(env TESSERA_BENCH_POSTGRES_ADMIN_URL, default %(default)s)")
    parser.add_argument("--micro-json", metavar="PATH", help="pytest-benchmark JSON of tests/bench to include")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw the latency distributions as a PNG (needs matplotlib)")
    parser.add_argument("--docs", metavar="PATH", help="rewrite the results section of this Markdown file")
    parser.add_argument("--smoke", action="store_true",
                        help="a few orders per configuration, two repetitions: checks that everything runs, "
                        "measures nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_bench(args: argparse.Namespace) -> int:
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = [d for d in databases if d not in DATABASES]
    if unknown or not databases:
        err(f"--databases: expected sqlite and/or postgres, got {args.databases!r}")
        return 2
    modes = [m.strip().upper() for m in args.sqlite_synchronous.split(",") if m.strip()]
    if not modes or any(m not in ("FULL", "NORMAL", "EXTRA", "OFF") for m in modes):
        err(f"--sqlite-synchronous: expected FULL, NORMAL, EXTRA or OFF, got {args.sqlite_synchronous!r}")
        return 2
    if args.smoke:
        plan = Plan(orders=min(args.orders, 12), concurrency=args.concurrency, batch_size=min(args.batch_size, 10),
                    batches=min(args.batches, 1) or 1, warmup=min(args.warmup, 4),
                    repetitions=min(args.repetitions, 2), commits=min(args.commits, 10), token_seconds=0.001,
                    hop_calls=min(args.hop_calls, 12), bare_batch_factor=1)
    else:
        plan = Plan(orders=args.orders, concurrency=args.concurrency, batch_size=args.batch_size,
                    batches=args.batches, warmup=args.warmup, repetitions=args.repetitions, commits=args.commits,
                    hop_calls=args.hop_calls)
    progress = Progress(quiet=args.quiet)
    report: dict[str, Any] = {
        "command": "tessera bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"]
        else "tessera bench",
        "machine": machine(),
        "tree": {"before": tree_state(TREE)},
        "plan": dataclasses.asdict(plan),
        "smoke": args.smoke,
        "databases": {},
    }
    if os.environ.get("TESSERA_BENCH_COMMAND"):
        report["command"] = os.environ["TESSERA_BENCH_COMMAND"]
    if report["tree"]["before"].get("changes"):
        progress.note(f"the tree {TREE} has uncommitted changes: the report says so; leave it alone until the run "
                      "ends (every stack imports it afresh)")
    progress.note(f"tessera bench: the bare chain, {', '.join(databases)}; {plan.repetitions} repetitions of "
                  f"{plan.orders} orders per configuration, {', '.join(map(str, plan.concurrency))} in flight, "
                  f"{plan.batches} batches of {plan.batch_size}" + (" (smoke run: not a measurement)" if args.smoke else ""))
    series: list[Series] = []
    runs = [("sqlite", mode) for mode in modes] if "sqlite" in databases else []
    runs += [("postgres", "FULL")] if "postgres" in databases else []
    with contextlib.ExitStack() as resources:
        chain = None
        if args.bare_chain:
            try:
                chain = resources.enter_context(bare_chain(progress))
            except (StackError, OSError, grpc.FutureTimeoutError) as error:
                err(f"{BARE}: {error}")
                return EXIT_ERROR
        for index, (kind, mode) in enumerate(runs):
            try:
                label, measured, settings = run_database(kind, plan, args.postgres_admin_url, progress, mode,
                                                         chain, index * plan.repetitions)
            except (StackError, OrderFailed, OSError) as error:
                err(f"{kind}: {error}")
                return EXIT_ERROR
            except Exception as error:  # noqa: BLE001 - e.g. PostgreSQL unreachable: say which database
                err(f"{kind}: {type(error).__name__}: {tail(str(error), 5)}")
                return EXIT_ERROR
            series += measured
            report["databases"][label] = settings
    progress.note("the token checks")
    report["seed_note"] = "" if args.seed else "no --seed given"
    try:
        token = token_figures(plan.repetitions, args.seed, progress.note, plan.token_seconds)
    except (OSError, ImportError) as error:
        err(f"--seed {args.seed}: {type(error).__name__}: {error}")
        return EXIT_ERROR
    report["token"] = token
    report["seed"] = token.get("seed")
    report["machine"]["load_after"] = [round(x, 2) for x in _load()]
    report["tree"]["after"] = tree_state(TREE)
    if report["tree"]["after"] != report["tree"]["before"]:
        err("the tree changed while the benchmark ran: its figures mix two programs (see the report)")
    rows = aggregate(series)
    floor_columns(rows)
    report["results"] = rows
    report["micro"] = micro_results(args.micro_json)
    report["targets"] = evaluate(rows, token, report["seed_note"])
    if args.plot:
        path = Path(args.plot)
        if plot(report, series, path):
            report["plot"] = str(path)
            report["plot_link"] = (os.path.relpath(path, Path(args.docs).parent) if args.docs else str(path))
    section = markdown(report)
    print(section, end="")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if args.docs:
        write_docs(Path(args.docs), section)
    failed = sum(row["errors"] for row in rows)
    if failed:
        err(f"{failed} operations failed (see the errors column)")
        return EXIT_ERROR
    return EXIT_OK
