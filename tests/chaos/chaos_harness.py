"""The chaos run: orders flowing through the real processes on PostgreSQL while the OMS,
the Exchange service and Risk are killed with SIGKILL at random moments and restarted,
and the venue simulator times out, drops answers, fails after processing and fills late.

At the end every order must be terminal, every venue fill stored exactly once, no client
order id sent to the venue twice, nothing at the venue that the OMS did not submit, and
the order events must replay to the stored orders with their hash chains intact:
:func:`services.reliability.check_store` plus :func:`check_against_venue` (the venue
simulator's own record), which ``tessera verify-store --venue-sim`` also runs.

It also measures how many orders reach a venue outcome: the share of the orders pushed
that the venue simulator holds (each placed there, and ended by the venue: filled,
cancelled, expired). The others are closed without reaching a venue, mostly
``REJECTED NOT_AT_VENUE`` (the reconciler found the venue never had an order that got no
answer: the Exchange was killed with it in hand, or the venue dropped it unprocessed).
The run fails when the share of orders that *reached* the venue is below ``min_venue_share``
(95 % for ``make chaos``): those with a venue outcome, and those the venue received and
dropped unprocessed by an injected venue fault (a timeout or a 5xx before processing: the
venue's own outcome, which the OMS rightly leaves in doubt and never resends). Both
shares are reported; what the gate guards is Tessera itself not reaching the venue (an
order refused, or left unsent, because a service restarted).

Used by ``tests/chaos/test_chaos.py`` (a short run in the test command) and by
``make chaos`` (``python tests/chaos/chaos_harness.py --orders 2000``; the figures in
``docs/reliability.md`` come from it). Reproducible: one ``--seed`` decides the orders,
the faults (one per 16 orders done) and when and what to kill (the moments a kill lands in each process's work
still depend on the machine's timing).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import socket
import sys
import threading
import time
import uuid
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (str(ROOT), str(ROOT / "tests" / "e2e")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import grpc
import tessera_e2e as e2e
import venue_harness as vh
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from services.cli.connection import BearerToken
from services.cli.stack import ServiceProcess, Stack, client_token
from services.reliability import VenueRecord, check_against_venue, check_store
from services.store.models import anomalies_table, orders_table
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

SYMBOLS = {  # symbol: (quantities, tick)
    "BTCUSDT": (("0.001", "0.002", "0.005"), Decimal("0.1")),
    "ETHUSDT": (("0.01", "0.02", "0.05"), Decimal("0.01")),
    "SOLUSDT": (("0.1", "0.5", "1"), Decimal("0.01")),
}
NOT_AT_VENUE_REASON = "reconciled: not at venue"  # the reconciler's reason when the venue never had the order
OPEN = ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL", "APPROVED")
RETRY = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CLIENT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500),
                  ("grpc.min_reconnect_backoff_ms", 100)]
FAULTS = (
    {"kind": "timeout", "delay": 2},  # held past the Exchange's venue timeout, then dropped unprocessed
    {"kind": "drop_response", "delay": 2},  # processed, the answer never comes
    {"kind": "error_5xx", "status": 503, "processed": True},  # processed, then a 503
    {"kind": "error_5xx", "status": 502},  # not processed
    {"kind": "late_fill", "delay": 1.0},  # accepted now, filled a second later
)
#: Violations that mean an order (or a fill) was lost, sent twice, or sent unapproved.
LOST = {"LOST", "FILL_NOT_RECORDED", "FILLS_NOT_AT_VENUE", "STATE_MISMATCH", "NOT_TERMINAL", "UNKNOWN_AT_VENUE",
        "FILL_WITHOUT_TRADE", "TRADES_MISMATCH", "LEDGER_MISSING", "REPLAY_MISMATCH"}
DUPLICATED = {"SENT_TWICE", "FILL_RECORDED_TWICE", "FILL_APPLIED_TWICE", "SUBMITTED_TWICE", "TOKEN_REUSED",
              "TRADE_WITHOUT_FILL", "LEDGER_WITHOUT_TRADE"}
UNAPPROVED = {"UNAPPROVED_AT_VENUE", "SUBMITTED_UNAPPROVED"}


@dataclasses.dataclass
class ChaosConfig:
    orders: int = 250
    workers: int = 12
    seed: int = 7
    kills: int = 6  # SIGKILLs, spread over the run by progress, cycling through the three services
    down_for: tuple[float, float] = (0.0, 1.0)  # seconds a killed service stays down
    fault_every_orders: int = 16  # one venue fault per this many orders done (by progress, like the kills)
    settle_timeout: float = 120.0
    pg_admin_url: str = e2e.PG_ADMIN_URL
    work_dir: Path = dataclasses.field(default_factory=lambda: ROOT / "var" / "chaos")
    keep_database: bool = False
    #: The run fails when fewer of the orders pushed reach a venue outcome (0: not checked).
    min_venue_share: float = 0.95


@dataclasses.dataclass
class ChaosResult:
    config: dict[str, Any]
    seconds: float = 0.0
    orders_pushed: int = 0
    client_outcomes: dict[str, int] = dataclasses.field(default_factory=dict)
    stored_statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    submitted: int = 0
    kills: dict[str, int] = dataclasses.field(default_factory=dict)
    faults: dict[str, int] = dataclasses.field(default_factory=dict)
    venue_orders: int = 0
    venue_trades: int = 0
    stored_trades: int = 0
    placements: int = 0
    anomalies: dict[str, int] = dataclasses.field(default_factory=dict)
    violations: list[str] = dataclasses.field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    unapproved: int = 0
    events: int = 0
    #: Orders the venue holds (placed there, ended by the venue), and their share of those pushed.
    venue_outcomes: int = 0
    venue_share: float = 0.0
    #: Orders whose placement the venue received (a venue outcome, or dropped by a venue fault), and their share.
    reached_venue: int = 0
    reached_venue_share: float = 0.0
    #: Orders closed because the venue never had them (REJECTED NOT_AT_VENUE, or CANCELLED while in doubt).
    not_at_venue: int = 0
    #: ...of which the venue received the placement and dropped it unprocessed (a venue fault);
    #: the rest never reached it (the Exchange or the OMS killed with the order in hand).
    not_at_venue_dropped_by_venue: int = 0
    #: The other orders that never reached the venue, by outcome ("REJECTED TOKEN_EXPIRED", "APPROVED", ...).
    not_sent: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def venue_share_ok(self) -> bool:
        return self.reached_venue_share >= float(self.config.get("min_venue_share", 0.0))

    @property
    def ok(self) -> bool:
        return not self.violations and self.venue_share_ok

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"venue_share_ok": self.venue_share_ok, "ok": self.ok}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tick(value: Decimal, tick: Decimal) -> str:
    return str((value / tick).to_integral_value(ROUND_DOWN) * tick)


@dataclasses.dataclass
class OrderSpec:
    index: int
    account: str
    symbol: str
    side: int
    quantity: str
    kind: str  # market | marketable | resting | ioc
    cancel: bool
    twice: bool
    batch: int = -1  # orders with the same batch number go together in one SubmitOrders

    def intent(self) -> pb.OrderIntent:
        price = e2e.PRICES[self.symbol]
        tick = SYMBOLS[self.symbol][1]
        buy = self.side == pb.SIDE_BUY
        fields: dict[str, Any] = dict(
            account=self.account, client_order_id=f"chaos-{self.index:05d}-{uuid.uuid4().hex[:8]}", venue="aster",
            market_type=pb.MARKET_TYPE_FUTURES, symbol=self.symbol, side=self.side, quantity=self.quantity,
            order_type=pb.ORDER_TYPE_MARKET, time_in_force=pb.TIME_IN_FORCE_GTC,
        )
        if self.kind == "marketable":
            fields.update(order_type=pb.ORDER_TYPE_LIMIT, price=_tick(price * Decimal("1.01" if buy else "0.99"), tick))
        elif self.kind == "resting":
            fields.update(order_type=pb.ORDER_TYPE_LIMIT, price=_tick(price * Decimal("0.95" if buy else "1.05"), tick))
        elif self.kind == "ioc":
            fields.update(order_type=pb.ORDER_TYPE_LIMIT, time_in_force=pb.TIME_IN_FORCE_IOC,
                          price=_tick(price * Decimal("0.97" if buy else "1.03"), tick))
        return pb.OrderIntent(**fields)


def order_plan(config: ChaosConfig) -> list[OrderSpec]:
    rng = random.Random(config.seed)
    plan = []
    batch, left_in_batch = -1, 0
    for index in range(config.orders):
        symbol = rng.choice(sorted(SYMBOLS))
        kind = rng.choices(["market", "marketable", "resting", "ioc"], weights=[60, 10, 20, 10])[0]
        if left_in_batch == 0 and rng.random() < 0.04:  # about a fifth of the orders go in batches of 5
            batch, left_in_batch = index, 5
        rng.randrange(16)  # the account draw of earlier runs: a seed still plans the same orders
        plan.append(OrderSpec(
            # The live Exchange without a venue accounts registry trades for one account only.
            index=index, account=vh.LIVE_ACCOUNT, symbol=symbol,
            side=rng.choice([pb.SIDE_BUY, pb.SIDE_SELL]), quantity=rng.choice(SYMBOLS[symbol][0]), kind=kind,
            cancel=kind == "resting" and rng.random() < 0.6, twice=rng.random() < 0.05,
            batch=batch if left_in_batch else -1,
        ))
        left_in_batch = max(0, left_in_batch - 1)
    return plan


class Chaos:
    """Runs one chaos scenario; :meth:`run` returns a :class:`ChaosResult`."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        # One generator per thread of decisions, so the seed alone decides each sequence
        # (a shared one would hand out its numbers in whatever order the threads ran).
        self.rng = random.Random(config.seed * 7919 + 1)  # the kills: when, what, how long down
        self.fault_rng = random.Random(config.seed * 7919 + 2)  # the venue faults, in order
        self.client_rng = random.Random(config.seed * 7919 + 3)  # the clients' pauses before a cancel
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.kills: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.stop_chaos = threading.Event()
        self.restarting = threading.Lock()
        self.stack: Stack | None = None
        self.sim: vh.VenueSim | None = None
        self.restarts = 0
        self.done = 0  # orders the clients have finished with

    # -- infrastructure ----------------------------------------------------------------------
    def _create_database(self) -> str:
        admin = create_engine(self.config.pg_admin_url, isolation_level="AUTOCOMMIT")
        name = f"tessera_chaos_{uuid.uuid4().hex[:10]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self.database_name = name
        return make_url(self.config.pg_admin_url).set(database=name).render_as_string(hide_password=False)

    def _drop_database(self) -> None:
        admin = create_engine(self.config.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)'))
        admin.dispose()

    def _env(self) -> dict[str, str | None]:
        assert self.sim is not None
        return vh.venue_env(
            self.sim, "live",
            TESSERA_VENUE_TIMEOUT_SECONDS="1",
            # The OMS -> Exchange deadline (production: 10 s): long enough to outlast an Exchange
            # restart (2-5 s on a loaded machine), so an order claimed just as the Exchange is
            # killed is sent when it is back; the grace period exceeds it plus the venue timeout.
            TESSERA_EXCHANGE_TIMEOUT_SECONDS="6",
            TESSERA_RECONCILE_INTERVAL_SECONDS="1",
            TESSERA_RECONCILE_GRACE_SECONDS="8",
            ASTER_WEIGHT_LIMIT="10000000",
            TESSERA_RISK_ORDER_RATE_LIMIT="off",
            TESSERA_RISK_MAX_OPEN_ORDERS="off",
            TESSERA_RISK_MAX_POSITION="off",
            TESSERA_RISK_MAX_GROSS_EXPOSURE="off",
            TESSERA_RISK_MAX_LEVERAGE="off",
            TESSERA_RISK_DAILY_LOSS_LIMIT="off",
            # A restarted Exchange reads the leverage and margin mode the venue holds for these
            # before it serves (the OMS sends as soon as it is back; none is refused LEVERAGE_NOT_SET).
            TESSERA_VENUE_SETTINGS_SYMBOLS=",".join(SYMBOLS),
        )

    def _set_up_symbols(self) -> None:
        assert self.stack is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                for symbol in SYMBOLS:
                    vh.set_up_symbol(self.stack, symbol)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _restart(self, name: str) -> None:
        """SIGKILL ``name``, keep it down a moment, start it again on the same port."""
        assert self.stack is not None
        with self.restarting:
            old = self.stack.processes[name]
            old.kill()
            self.kills[name] += 1
            time.sleep(self.rng.uniform(*self.config.down_for))
            self.restarts += 1
            fresh = ServiceProcess(name, old.env, old.log_dir / f"restart-{self.restarts:03d}-{name}",
                                   cwd=old.cwd, python=old.python)
            self.stack.processes[name] = fresh
            fresh.start()
            fresh.wait_ready(60)
            if name == "exchange":
                self._set_up_symbols()  # a new Exchange process knows no leverage or margin mode yet

    # -- the chaos monkeys ------------------------------------------------------------------
    def kill_plan(self) -> list[tuple[int, str]]:
        """(orders done, service) for each kill: random points spread over 5%..90% of the
        run, the services in shuffled rounds so each is killed about as often."""
        config, rng = self.config, self.rng
        span = (0.05 * config.orders, 0.9 * config.orders)
        step = (span[1] - span[0]) / max(1, config.kills)
        services: list[str] = []
        while len(services) < config.kills:
            services += rng.sample(["oms", "exchange", "risk"], 3)
        return [(int(span[0] + step * (k + rng.random())), services[k]) for k in range(config.kills)]

    def _killer(self) -> None:
        for threshold, name in self.kill_plan():
            while self.done < threshold:
                if self.stop_chaos.wait(0.02):
                    return
            self._restart(name)

    def _faulter(self) -> None:
        """A venue fault on the next order placement each ``fault_every_orders`` orders the
        clients finish: the faults per order do not depend on the machine's speed."""
        assert self.sim is not None
        next_at = self.config.fault_every_orders
        while not self.stop_chaos.wait(0.02):
            if self.done < next_at:
                continue
            next_at += self.config.fault_every_orders
            fault = dict(self.fault_rng.choice(FAULTS))
            label = fault["kind"] + ("_processed" if fault.get("processed") else "")
            try:
                self.sim.fault(fault.pop("kind"), method="POST", path="/fapi/v1/order", **fault)
            except OSError:
                continue
            with self.lock:
                self.faults[label] += 1

    # -- the clients ------------------------------------------------------------------------
    def _call(self, fn: Any, request: Any, *, timeout: float = 10.0, attempts: int = 200) -> Any:
        for _ in range(attempts):
            try:
                return fn(request, timeout=timeout)
            except grpc.RpcError as error:
                if error.code() not in RETRY:
                    raise
                time.sleep(0.1)
        raise TimeoutError("the service never came back")

    def _outcome(self, label: str) -> None:
        with self.lock:
            self.outcomes[label] += 1

    def _submit(self, oms: Any, order: pb.Order, token: str) -> str:
        try:
            answer = self._call(oms.SubmitOrder, oms_pb2.SubmitOrderRequest(order=order, risk_token=token))
            return pb.OrderStatus.Name(answer.order.status)
        except grpc.RpcError as error:
            return f"{error.code().name}:{e2e.error_reason(error)}"

    def _one(self, spec: OrderSpec, risk: Any, oms: Any) -> None:
        try:
            answer = self._call(risk.ValidateOrder, risk_pb2.ValidateOrderRequest(order=spec.intent()))
        except grpc.RpcError as error:
            self._outcome(f"validate {error.code().name}")
            return
        if answer.order.status != pb.ORDER_STATUS_APPROVED:
            self._outcome("risk rejected")
            return
        if spec.twice:  # the client sends the same submission twice at once: one goes through
            results: list[str] = []
            threads = [threading.Thread(target=lambda: results.append(self._submit(oms, answer.order, answer.risk_token)))
                       for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            status = sorted(results)[0]
            self._outcome("submitted twice at once")
        else:
            status = self._submit(oms, answer.order, answer.risk_token)
        self._outcome(f"submit {status}")
        if spec.cancel and status in ("ORDER_STATUS_ACCEPTED", "ORDER_STATUS_SUBMITTED"):
            time.sleep(self.client_rng.uniform(0, 0.3))
            try:
                self._call(oms.CancelOrder, oms_pb2.CancelOrderRequest(order_id=answer.order.order_id), attempts=20)
                self._outcome("cancel answered")
            except (grpc.RpcError, TimeoutError) as error:
                self._outcome(f"cancel {getattr(error, 'code', lambda: 'TIMEOUT')()}")

    def _batch(self, specs: list[OrderSpec], risk: Any, oms: Any) -> None:
        """Validate each, then submit the approved ones together (SubmitOrders), retrying the
        whole batch while the OMS is unreachable: what went through is answered again, replayed."""
        approved = []
        for spec in specs:
            try:
                answer = self._call(risk.ValidateOrder, risk_pb2.ValidateOrderRequest(order=spec.intent()))
            except grpc.RpcError as error:
                self._outcome(f"validate {error.code().name}")
                continue
            if answer.order.status == pb.ORDER_STATUS_APPROVED:
                approved.append(oms_pb2.SubmitOrderRequest(order=answer.order, risk_token=answer.risk_token))
            else:
                self._outcome("risk rejected")
        for _ in range(20):  # the items refused as retryable (UNAVAILABLE: nothing sent) are sent again
            if not approved:
                return
            try:
                answer = self._call(oms.SubmitOrders, oms_pb2.SubmitOrdersRequest(orders=approved), timeout=30)
            except grpc.RpcError as error:
                self._outcome(f"batch {error.code().name}")
                return
            retry = []
            for request, result in zip(approved, answer.results):
                if result.HasField("error") and result.error.code == "UNAVAILABLE":
                    self._outcome(f"batch item retried {result.error.reason}")
                    retry.append(request)
                elif result.HasField("error"):
                    self._outcome(f"batch item {result.error.code}:{result.error.reason}")
                else:
                    self._outcome(f"batch item {pb.OrderStatus.Name(result.order.status)}")
            approved = retry
            time.sleep(0.1)
        for _ in approved:
            self._outcome("batch item UNAVAILABLE, given up")

    def _take(self, queue: collections.deque[OrderSpec]) -> list[OrderSpec]:
        """The next order, or the next batch of orders, from the plan."""
        with self.lock:
            first = queue.popleft()
            taken = [first]
            while first.batch >= 0 and queue and queue[0].batch == first.batch:
                taken.append(queue.popleft())
        return taken

    def _channel(self, name: str) -> grpc.Channel:
        """A channel to one of the stack's services, presenting the stack's client token."""
        assert self.stack is not None
        channel = grpc.insecure_channel(self.stack.addresses[name], options=CLIENT_OPTIONS)
        return grpc.intercept_channel(channel, BearerToken(client_token(self.stack.env)))

    def _worker(self, queue: collections.deque[OrderSpec]) -> None:
        assert self.stack is not None
        risk_channel = self._channel("risk")
        oms_channel = self._channel("oms")
        risk, oms = risk_pb2_grpc.RiskServiceStub(risk_channel), oms_pb2_grpc.OrderManagementServiceStub(oms_channel)
        try:
            while True:
                try:
                    specs = self._take(queue)
                except IndexError:
                    return
                try:
                    if len(specs) > 1:
                        self._batch(specs, risk, oms)
                    else:
                        self._one(specs[0], risk, oms)
                except Exception as error:  # noqa: BLE001 - counted, the run goes on
                    self._outcome(f"client error {type(error).__name__}")
                with self.lock:
                    self.done += len(specs)
        finally:
            risk_channel.close()
            oms_channel.close()

    # -- the end ------------------------------------------------------------------------------
    def _open_count(self, engine: Any) -> int:
        with engine.connect() as connection:
            return int(connection.execute(
                select(func.count()).select_from(orders_table).where(orders_table.c.status.in_(OPEN))
            ).scalar_one())

    def _settle(self, engine: Any) -> None:
        """Cancel whatever still works (every symbol, every account) until nothing is open."""
        assert self.stack is not None
        channel = self._channel("oms")
        oms = oms_pb2_grpc.OrderManagementServiceStub(channel)
        deadline = time.monotonic() + self.config.settle_timeout
        try:
            while self._open_count(engine) and time.monotonic() < deadline:
                for symbol in SYMBOLS:
                    try:
                        oms.CancelAllOrders(oms_pb2.CancelAllOrdersRequest(symbol=symbol), timeout=60)
                    except grpc.RpcError:
                        pass
                time.sleep(2.0)
        finally:
            channel.close()

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> ChaosResult:
        config = self.config
        result = ChaosResult(config={k: str(v) for k, v in dataclasses.asdict(config).items()})
        config.work_dir.mkdir(parents=True, exist_ok=True)
        run_dir = config.work_dir / time.strftime("%Y%m%d-%H%M%S")
        url = self._create_database()
        started = time.monotonic()
        try:
            self.sim = vh.VenueSim(run_dir / "venue-sim", "--balance", "1000000000", "--weight-limit", "100000000",
                                   "--order-limit", "100000000", "--depth", "100000")
            ports = {name: free_port() for name in ("risk", "oms", "exchange")}
            self.stack = Stack(database_url=url, env=e2e.base_env(**self._env()), log_dir=run_dir / "logs",
                               ports=ports, startup_timeout=60).start()
            self._set_up_symbols()
            plan = order_plan(config)
            queue = collections.deque(plan)
            workers = [threading.Thread(target=self._worker, args=(queue,), name=f"client-{i}")
                       for i in range(config.workers)]
            monkeys = [threading.Thread(target=self._killer, name="killer"),
                       threading.Thread(target=self._faulter, name="faulter")]
            for thread in [*workers, *monkeys]:
                thread.start()
            for thread in workers:
                thread.join()
            monkeys[0].join(timeout=120)  # the last kill may land as the last orders finish
            self.stop_chaos.set()
            for thread in monkeys:
                thread.join()
            self.sim.clear_faults()
            self._set_up_symbols()
            engine = create_engine(url)
            try:
                self._settle(engine)
                self.stack.stop()
                report = check_store(engine, require_terminal=True)
                record = vh_record(self.sim)
                check_against_venue(engine, record, report=report)
                with engine.connect() as connection:
                    result.stored_statuses = dict(connection.execute(
                        select(orders_table.c.status, func.count()).group_by(orders_table.c.status)).all())
                    result.anomalies = dict(connection.execute(
                        select(anomalies_table.c.kind, func.count()).group_by(anomalies_table.c.kind)).all())
                    result.submitted = int(connection.execute(text(
                        "SELECT count(DISTINCT order_id) FROM order_events_ts WHERE to_status = 'SUBMITTED'")).scalar_one())
                    outcomes = connection.execute(select(
                        orders_table.c.client_order_id, orders_table.c.status, orders_table.c.reject_reasons)).all()
                    absent = set(connection.execute(text(
                        "SELECT DISTINCT order_id FROM order_events_ts WHERE reason LIKE :absent"),
                        {"absent": NOT_AT_VENUE_REASON + "%"}).scalars())
                    closed_absent = {row[0] for row in connection.execute(select(
                        orders_table.c.client_order_id).where(orders_table.c.order_id.in_(absent))).all()}
            finally:
                engine.dispose()
            result.orders_pushed = len(plan)
            result.events = report.events
            result.stored_trades = report.trades
            result.venue_orders = len(record.orders)
            result.venue_trades = len(record.trades)
            result.placements = sum((record.placements or {}).values())
            result.violations = [str(v) for v in report.violations]
            kinds = collections.Counter(v.kind for v in report.violations)
            result.lost = sum(n for k, n in kinds.items() if k in LOST)
            result.duplicates = sum(n for k, n in kinds.items() if k in DUPLICATED)
            result.unapproved = sum(n for k, n in kinds.items() if k in UNAPPROVED)
            at_venue = {order.get("clientOrderId") for order in record.orders}
            result.venue_outcomes = sum(1 for client_order_id, _, _ in outcomes if client_order_id in at_venue)
            result.venue_share = round(result.venue_outcomes / max(1, len(plan)), 4)
            result.not_at_venue = len(closed_absent)
            result.not_at_venue_dropped_by_venue = sum(1 for cid in closed_absent if (record.placements or {}).get(cid))
            result.reached_venue = result.venue_outcomes + result.not_at_venue_dropped_by_venue
            result.reached_venue_share = round(result.reached_venue / max(1, len(plan)), 4)
            result.not_sent = dict(collections.Counter(
                " ".join([status, *(reasons or [])]) for client_order_id, status, reasons in outcomes
                if client_order_id not in at_venue and client_order_id not in closed_absent))
            if len(outcomes) < len(plan):
                result.not_sent["never stored (validation failed)"] = len(plan) - len(outcomes)
        finally:
            self.stop_chaos.set()
            if self.stack is not None:
                self.stack.stop()
            if self.sim is not None:
                self.sim.stop()
            if not config.keep_database:
                self._drop_database()
        result.seconds = round(time.monotonic() - started, 1)
        result.client_outcomes = dict(sorted(self.outcomes.items()))
        result.kills = dict(self.kills)
        result.faults = dict(self.faults)
        (run_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2, default=str))
        return result


def vh_record(sim: vh.VenueSim) -> VenueRecord:
    return VenueRecord(orders=sim.control("GET", "/_sim/orders"), trades=sim.control("GET", "/_sim/trades"),
                       placements=sim.control("GET", "/_sim/placements"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs over the run (default %(default)s)")
    parser.add_argument("--pg-admin-url", default=e2e.PG_ADMIN_URL)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", default="", help="also write the result here")
    parser.add_argument("--min-venue-share", type=float, default=0.95,
                        help="fail when fewer of the orders reach a venue outcome (default %(default)s)")
    args = parser.parse_args(argv)
    config = ChaosConfig(orders=args.orders, workers=args.workers, seed=args.seed, kills=args.kills,
                         pg_admin_url=args.pg_admin_url, keep_database=args.keep_database,
                         min_venue_share=args.min_venue_share)
    chaos = Chaos(config)
    result = chaos.run()
    text_result = json.dumps(result.to_json(), indent=2, default=str)
    print(text_result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text_result + "\n")
    print(summary(result, getattr(chaos, "database_name", "") if args.keep_database else ""), file=sys.stderr)
    return 0 if result.ok else 1


def summary(result: ChaosResult, database: str = "") -> str:
    """The run in a few lines: the promise, then the venue outcomes against their target."""
    lines = [
        f"{result.orders_pushed} orders, {sum(result.kills.values())} SIGKILLs {dict(result.kills)}, "
        f"{sum(result.faults.values())} venue faults, {result.seconds} s",
        f"lost {result.lost}, duplicated {result.duplicates}, unapproved {result.unapproved}; "
        f"{len(result.violations)} violations",
        f"reached the venue {result.reached_venue} of {result.orders_pushed} ({result.reached_venue_share:.2%}, "
        f"target {float(result.config.get('min_venue_share', 0)):.0%}: "
        f"{'met' if result.venue_share_ok else 'MISSED'}): venue outcomes {result.venue_outcomes} "
        f"({result.venue_share:.2%}), dropped by the venue unprocessed {result.not_at_venue_dropped_by_venue}; "
        f"not at venue {result.not_at_venue} in all; not sent {result.not_sent or 0}",
    ]
    if database:
        lines.append(f"kept database {database}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
