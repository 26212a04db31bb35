"""``tessera bench``: the order round trip, the batch RPCs and the transport floor, measured.

Starts the stack as real processes (Risk, OMS, Exchange in paper mode) on each database
in turn, a fresh one per run (a SQLite file in a temporary directory; a new PostgreSQL
database, dropped afterwards), and drives it from this process with asyncio gRPC clients:

* **echo**: ``grpc.health.v1.Health/Check`` on the OMS's own server (same server setup,
  same process): the transport floor;
* **round trip**: ``ValidateOrder`` (Risk) then ``SubmitOrder`` (OMS, which calls the
  Exchange) until the order is FILLED, at 1, 8 and 32 orders in flight;
* **batch**: ``ValidateOrders`` then ``SubmitOrders`` of the approved orders, a batch at a
  time.

It reports p50, p95, p99 and orders (calls) per second, the round trip against the
floor (``RPC_HOPS`` hops x echo p50), the machine, and whether each target of
``docs/benchmarks.md`` is met. ``--json`` writes everything measured, ``--docs`` rewrites
the results section of ``docs/benchmarks.md`` and ``--plot`` draws the latency
distributions (needs the ``bench`` extra: matplotlib). ``--smoke`` runs a few orders per
configuration: a check that everything runs and reports, not a measurement.

Every order is a 0.01 BTCUSDT futures market order, spread over ``ACCOUNTS`` accounts,
alternating buy and sell per account so positions stay flat and every risk control
(open orders, order rate, position, exposure, leverage, daily loss) runs with the
default limits.
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any, Awaitable, Callable, Iterable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from .client import EXIT_ERROR, EXIT_OK, err
from .stack import Stack, StackError, client_token, ephemeral_secret, tail

#: Client -> Risk, client -> OMS, OMS -> Exchange.
RPC_HOPS = 3
ACCOUNTS = 64
CALL_TIMEOUT = 30.0
DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASES = ("sqlite", "postgres")
RESULTS_BEGIN = "<!-- bench:results:begin -->"
RESULTS_END = "<!-- bench:results:end -->"

# The targets (docs/benchmarks.md).
TARGET_VERIFY_SECONDS = 1e-6
TARGET_VERIFY_SPEEDUP = 4.0
TARGET_FLOOR_RATIO = 1.25
TARGET_SINGLE_OPS = 1000.0
TARGET_BATCH_OPS = 20_000.0
TARGET_POSTGRES_OPS = 1000.0


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
    """One measured configuration: per-operation latencies (seconds) over a wall time."""

    database: str
    kind: str  # echo | round_trip | validate | submit | validate_batch | submit_batch | batch
    concurrency: int
    latencies: list[float] = dataclasses.field(default_factory=list)
    operations: int = 0  # orders (calls for echo) completed
    wall_seconds: float = 0.0
    errors: int = 0
    batch_size: int = 0
    first_error: str = ""

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "database": self.database,
            "kind": self.kind,
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
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
        }


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
    health: Any
    channels: list[grpc.aio.Channel]
    #: The caller's identity (its bearer token), sent with every call of the order path.
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def connect(cls, addresses: dict[str, str], token: str = "") -> "Clients":
        risk_channel = grpc.aio.insecure_channel(addresses["risk"])
        oms_channel = grpc.aio.insecure_channel(addresses["oms"])
        return cls(
            risk=risk_pb2_grpc.RiskServiceStub(risk_channel),
            oms=oms_pb2_grpc.OrderManagementServiceStub(oms_channel),
            health=health_pb2_grpc.HealthStub(oms_channel),
            channels=[risk_channel, oms_channel],
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


async def _echo(clients: Clients) -> int:
    await clients.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
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
    batch_in_flight: int = 1


async def measure(database: str, addresses: dict[str, str], plan: Plan, progress: Progress,
                  token: str = "") -> list[Series]:
    clients = Clients.connect(addresses, token)
    orders = Orders(uuid.uuid4().hex[:8])
    results: list[Series] = []
    try:
        # Warm-up: channels, the services' caches and code paths; not recorded.
        warm = Series(database, "warmup", 1)
        await _drive(plan.warmup, 4, lambda: _round_trip(clients, orders), warm, progress, f"{database} warm-up")
        await _drive(plan.warmup, 4, lambda: _echo(clients), warm, progress, f"{database} warm-up (echo)")
        if warm.errors:
            raise OrderFailed(f"the warm-up failed: {warm.first_error}")
        for concurrency in plan.concurrency:
            echo = Series(database, "echo", concurrency)
            await _drive(plan.orders, concurrency, lambda: _echo(clients), echo, progress,
                         f"{database} echo, {concurrency} in flight")
            split: dict[str, list[float]] = {"validate": [], "submit": []}
            trip = Series(database, "round_trip", concurrency)
            await _drive(plan.orders, concurrency, lambda: _round_trip(clients, orders, split), trip, progress,
                         f"{database} round trip, {concurrency} in flight")
            results += [echo, trip]
            for kind in ("validate", "submit"):
                results.append(Series(database, kind, concurrency, split[kind], trip.operations, trip.wall_seconds))
        if plan.batches:
            split = {"validate_batch": [], "submit_batch": []}
            batch = Series(database, "batch", plan.batch_in_flight, batch_size=plan.batch_size)
            await _drive(plan.batches, plan.batch_in_flight, lambda: _batch(clients, orders, plan.batch_size, split),
                         batch, progress, f"{database} batches of {plan.batch_size}")
            results.append(batch)
            for kind in ("validate_batch", "submit_batch"):
                part = Series(database, kind, plan.batch_in_flight, split[kind], batch.operations,
                              sum(split[kind]), batch_size=plan.batch_size)
                results.append(part)
    finally:
        await clients.close()
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
    kind: str, plan: Plan, admin_url: str, progress: Progress, synchronous: str = "FULL"
) -> tuple[str, list[Series], dict[str, str]]:
    """Measure one database on a fresh stack; returns its label, the series and its settings."""
    label = sqlite_label(synchronous) if kind == "sqlite" else kind
    with tempfile.TemporaryDirectory(prefix=f"tessera-bench-{kind}-") as workdir:
        with Database(kind, Path(workdir), admin_url, synchronous) as database:
            progress.note(f"{label}: starting the stack")
            env = stack_environment()
            env["TESSERA_SQLITE_SYNCHRONOUS"] = synchronous
            stack = Stack(database_url=database.url, env=env, log_dir=Path(workdir) / "logs")
            with stack:
                try:
                    series = asyncio.run(measure(label, stack.addresses, plan, progress, client_token(stack.env)))
                except BaseException:
                    progress.note(stack.logs(lines=20))
                    raise
            return label, series, database.settings


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


def machine() -> dict[str, Any]:
    import core_ext

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
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


def floor_ratios(rows: list[dict[str, Any]]) -> None:
    """Each round trip's p50 over ``RPC_HOPS`` x the echo p50 at the same concurrency."""
    for row in rows:
        if row["kind"] in ("round_trip", "validate", "submit"):
            echo = _find(rows, row["database"], "echo", row["concurrency"])
            hops = {"round_trip": RPC_HOPS, "validate": 1, "submit": 2}[row["kind"]]
            row["hops"] = hops
            row["floor_p50_ms"] = hops * echo["p50_ms"] if echo else float("nan")
            row["floor_ratio"] = row["p50_ms"] / row["floor_p50_ms"] if echo and echo["p50_ms"] else float("nan")


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


def evaluate(rows: list[dict[str, Any]], micro: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Each target: what it asks, what was measured, met or not (None: not measured)."""
    targets: list[dict[str, Any]] = []

    def add(name: str, wanted: str, measured: str, met: bool | None) -> None:
        targets.append({"target": name, "wanted": wanted, "measured": measured, "met": met})

    verify = micro.get("verify_token", {})
    if "cython" in verify and "python" in verify:
        compiled, twin = verify["cython"], verify["python"]
        add("compiled token verification", "<= 1 us", f"{compiled * 1e6:.2f} us",
            compiled <= TARGET_VERIFY_SECONDS)
        add("compiled vs pure-Python verification", ">= 4x", f"{twin / compiled:.1f}x",
            twin / compiled >= TARGET_VERIFY_SPEEDUP)
    for database in DATABASES:
        trip = _find(rows, database, "round_trip", 1)
        if trip is not None:
            add(f"{database}: round trip p50 vs {RPC_HOPS} x echo p50 (1 in flight)", f"<= {TARGET_FLOOR_RATIO}x",
                f"{trip['floor_ratio']:.2f}x ({trip['p50_ms']:.2f} ms vs {trip['floor_p50_ms']:.2f} ms)",
                trip["floor_ratio"] <= TARGET_FLOOR_RATIO)
        singles = [r for r in rows if r["database"] == database and r["kind"] == "round_trip"]
        if singles:
            best = max(singles, key=lambda r: r["ops_per_second"])
            wanted = TARGET_SINGLE_OPS if database == "sqlite" else TARGET_POSTGRES_OPS
            add(f"{database}: orders/s, single-order RPCs", f">= {wanted:,.0f}/s",
                f"{best['ops_per_second']:,.0f}/s ({best['concurrency']} in flight)", best["ops_per_second"] >= wanted)
        batch = _find(rows, database, "batch")
        if batch is not None and database == "sqlite":
            add(f"{database}: orders/s through the batch RPCs", f">= {TARGET_BATCH_OPS:,.0f}/s",
                f"{batch['ops_per_second']:,.0f}/s (batches of {batch['batch_size']})",
                batch["ops_per_second"] >= TARGET_BATCH_OPS)
    return targets


_KIND_LABELS = {
    "echo": "echo (Health/Check)",
    "round_trip": "round trip",
    "validate": "  ValidateOrder",
    "submit": "  SubmitOrder",
    "batch": "batch",
    "validate_batch": "  ValidateOrders",
    "submit_batch": "  SubmitOrders",
}


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: the command, the machine, the tables, the targets."""
    m = report["machine"]
    lines = [
        f"Measured {m['when']} with:",
        "",
        "```sh",
        report["command"],
        "```",
        "",
        f"- machine: {m['cores']} cores, {m['cpu']}, {m['os']}; load average before the run "
        f"{', '.join(map(str, m['load_before']))}, after {', '.join(map(str, m.get('load_after', [])))}",
        f"- Python {m['python']} (core: {m['implementation']}); "
        + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
    ]
    for database, settings in report["databases"].items():
        lines.append(f"- {database}: " + ", ".join(f"{k} {v}" for k, v in settings.items()))
    plan = report["plan"]
    lines += [
        f"- {plan['orders']} orders (echo: calls) per configuration after {plan['warmup']} warm-up orders; "
        f"{plan['batches']} batches of {plan['batch_size']}",
        "",
        "| database | what | in flight | p50 ms | p95 ms | p99 ms | orders/s | floor (hops x echo p50) | vs floor | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        label = _KIND_LABELS.get(row["kind"], row["kind"])
        if row["kind"] == "batch" or row["kind"].endswith("_batch"):
            label += f" of {row['batch_size']}"
        ops = _fmt(row["ops_per_second"], 0) if row["kind"] not in ("validate", "submit") else ""
        if row["kind"] == "echo":
            ops += " calls/s"
        floor = f"{row['hops']} x = {_fmt(row['floor_p50_ms'])}" if "hops" in row else ""
        ratio = f"{_fmt(row['floor_ratio'])}x" if "floor_ratio" in row else ""
        lines.append(
            f"| {row['database']} | {label} | {row['concurrency']} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} "
            f"| {_fmt(row['p99_ms'])} | {ops} | {floor} | {ratio} | {row['errors']} |"
        )
    if report.get("micro"):
        micro = report["micro"]
        floor = next(iter(micro.get("hmac_floor", {}).values()), float("nan"))
        lines += ["", "Micro-benchmarks (pytest-benchmark medians of `tests/bench`, the same run):", "",
                  "| operation | compiled | pure Python | compiled speed-up | compiled vs the HMAC floor |",
                  "|---|---:|---:|---:|---:|"]
        for group in ("sign_token", "verify_token", "transition"):
            values = micro.get(group, {})
            if not values:
                continue
            compiled, twin = values.get("cython", float("nan")), values.get("python", float("nan"))
            versus = f"{compiled / floor:.1f}x" if group != "transition" else ""
            lines.append(f"| {group} | {compiled * 1e6:.3f} us | {twin * 1e6:.3f} us | {twin / compiled:.1f}x | {versus} |")
        lines.append(f"| HMAC-SHA256 floor: the compiled core's pre-keyed OpenSSL context, nothing else "
                     f"(`_token_c.hmac_floor`) | {floor * 1e6:.3f} us | | | |")
        python_hmac = next(iter(micro.get("hmac_python", {}).values()), None)
        if python_hmac is not None:
            lines.append(f"| the same HMAC through Python's `hmac` (pre-keyed context: copy, update, digest) "
                         f"| | {python_hmac * 1e6:.3f} us | | |")
    lines += ["", "| target | wanted | measured | |", "|---|---|---|---|"]
    for target in report["targets"]:
        verdict = {True: "met", False: "**missed**", None: "-"}[target["met"]]
        lines.append(f"| {target['target']} | {target['wanted']} | {target['measured']} | {verdict} |")
    if report.get("plot"):
        lines += ["", f"![latency distributions]({report['plot_link']})"]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], series: list[Series], path: Path) -> bool:
    """The latency distributions (empirical CDFs, log time axis), one panel per database."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        err("no matplotlib: install the bench extra (pip install -e '.[bench]') for the plot")
        return False
    databases = list(dict.fromkeys(s.database for s in series))
    figure, axes = plt.subplots(1, len(databases), figsize=(6.5 * len(databases), 5.6), squeeze=False, sharey=True)
    colours = {1: "tab:blue", 8: "tab:orange", 32: "tab:red"}
    for axis, database in zip(axes[0], databases):
        for s in series:
            if s.database != database or not s.latencies or s.kind not in ("echo", "round_trip", "batch"):
                continue
            values = sorted(x * 1e3 for x in s.latencies)
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            if s.kind == "batch":
                label, style, colour = f"batch of {s.batch_size} (per batch)", "-", "tab:green"
            else:
                label = f"{'echo' if s.kind == 'echo' else 'round trip'}, {s.concurrency} in flight"
                style, colour = ("--" if s.kind == "echo" else "-"), colours.get(s.concurrency, "tab:gray")
            axis.step(values, fractions, where="post", linestyle=style, color=colour, label=label)
        axis.set_xscale("log")
        axis.set_xlabel("latency (ms, log scale)")
        axis.set_title(f"{database} ({report['machine']['cores']} cores, loopback)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    axes[0][0].set_ylabel("fraction of calls at or below")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
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


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--databases", default="sqlite,postgres",
                        help="which stores, comma-separated: sqlite, postgres (default %(default)s)")
    parser.add_argument("--sqlite-synchronous", default=(os.environ.get("TESSERA_SQLITE_SYNCHRONOUS") or "FULL").upper(),
                        metavar="MODE[,MODE]", help="SQLite synchronous modes to measure, each on its own stack, e.g. "
                        "FULL,NORMAL (default: TESSERA_SQLITE_SYNCHRONOUS, else FULL: the services' default); the "
                        "targets are judged on FULL")
    parser.add_argument("--orders", type=int, default=1000, help="orders (echo: calls) per configuration (default %(default)s)")
    parser.add_argument("--concurrency", type=_counts, default=(1, 8, 32), metavar="N,N,...",
                        help="orders in flight (default 1,8,32)")
    parser.add_argument("--batch-size", type=int, default=1000, help="orders per batch RPC (default %(default)s)")
    parser.add_argument("--batches", type=int, default=5, help="batches per database (0: none; default %(default)s)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up orders, not recorded (default %(default)s)")
    parser.add_argument("--postgres-admin-url", default=os.environ.get("TESSERA_BENCH_POSTGRES_ADMIN_URL")
                        or DEFAULT_POSTGRES_ADMIN_URL, metavar="URL",
                        help="a PostgreSQL database to create (and drop) the benchmark's database from "
                        "(env TESSERA_BENCH_POSTGRES_ADMIN_URL, default %(default)s)")
    parser.add_argument("--micro-json", metavar="PATH", help="pytest-benchmark JSON of tests/bench to include")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw the latency distributions as a PNG (needs matplotlib)")
    parser.add_argument("--docs", metavar="PATH", help="rewrite the results section of this Markdown file")
    parser.add_argument("--smoke", action="store_true",
                        help="a few orders per configuration: checks that everything runs, measures nothing")
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
                    batches=min(args.batches, 2) or 1, warmup=min(args.warmup, 4))
    else:
        plan = Plan(orders=args.orders, concurrency=args.concurrency, batch_size=args.batch_size,
                    batches=args.batches, warmup=args.warmup)
    progress = Progress(quiet=args.quiet)
    report: dict[str, Any] = {
        "command": "tessera bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["bench"]
        else "tessera bench",
        "machine": machine(),
        "plan": dataclasses.asdict(plan),
        "smoke": args.smoke,
        "databases": {},
    }
    if os.environ.get("TESSERA_BENCH_COMMAND"):
        report["command"] = os.environ["TESSERA_BENCH_COMMAND"]
    progress.note(f"tessera bench: {', '.join(databases)}; {plan.orders} orders per configuration, "
                  f"{', '.join(map(str, plan.concurrency))} in flight, {plan.batches} batches of {plan.batch_size}"
                  + (" (smoke run: not a measurement)" if args.smoke else ""))
    series: list[Series] = []
    runs = [("sqlite", mode) for mode in modes] if "sqlite" in databases else []
    runs += [("postgres", "FULL")] if "postgres" in databases else []
    for kind, mode in runs:
        try:
            label, measured, settings = run_database(kind, plan, args.postgres_admin_url, progress, mode)
        except (StackError, OrderFailed, OSError) as error:
            err(f"{kind}: {error}")
            return EXIT_ERROR
        except Exception as error:  # noqa: BLE001 - e.g. PostgreSQL unreachable: say which database
            err(f"{kind}: {type(error).__name__}: {tail(str(error), 5)}")
            return EXIT_ERROR
        series += measured
        report["databases"][label] = settings
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    report["machine"]["load_after"] = [round(x, 2) for x in load]
    rows = [s.summary() for s in series]
    floor_ratios(rows)
    report["results"] = rows
    report["micro"] = micro_results(args.micro_json)
    report["targets"] = evaluate(rows, report["micro"])
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
