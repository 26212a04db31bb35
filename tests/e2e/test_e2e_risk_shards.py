"""Two Risk replicas as processes, each owning the accounts of its shard, on one store
(SQLite, then PostgreSQL): what the StatefulSet of k8s/ runs, on loopback.

Replica ``i`` of 2 owns the accounts whose SHA-256 modulo 2 is ``i``
(:mod:`services.risk.sharding`); ``TESSERA_RISK_PEERS`` lists both replicas'
addresses. Checked: a request for the other replica's account is forwarded and decided
by the owner, from the owner's book (without peers it is refused NOT_ACCOUNT_OWNER
naming the owner, and while the owner is down UNAVAILABLE); the kill switch set
through one replica is obeyed by the other
within the documented bound (``TRADING_STATE_BOUND``; the time to the first refusal is
measured and printed); each replica's book holds only its own accounts, and after fills
the owner's positions are exact.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

import tessera_e2e as e2e
from services.cli.stack import ServiceProcess, Stack
from services.risk.sharding import shard_of
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

SHARDS = 2
#: Notional limit of one symbol's position, and a probe BUY of exactly that much at the
#: reference price (3 BTCUSDT at 65,000): with any long position held, the probe would
#: raise the position above the limit, and the refusal says what it would be.
MAX_POSITION = Decimal("195000")
PROBE_QUANTITY = Decimal("3")
HALTED, ACTIVE = pb.TRADING_STATE_HALTED, pb.TRADING_STATE_ACTIVE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def accounts_of(owner: int, count: int, prefix: str) -> list[str]:
    """``count`` fresh account names that replica ``owner`` owns."""
    found: list[str] = []
    base = e2e.new_account()
    for n in range(10_000):
        name = f"{base}-{prefix}{n}"
        if shard_of(name, SHARDS) == owner:
            found.append(name)
            if len(found) == count:
                return found
    raise AssertionError("no account found for the shard")


class Shards:
    """The stack (Exchange, Risk replica 0, OMS) and Risk replica 1, with stubs per replica."""

    def __init__(self, stack: Stack, second: ServiceProcess, url: str) -> None:
        self.stack, self.second, self.url = stack, second, url
        self.channels = [e2e.channel(stack.addresses["risk"]), e2e.channel(second.address)]
        self.risk = [risk_pb2_grpc.RiskServiceStub(channel) for channel in self.channels]
        self.processes = [stack.processes["risk"], second]

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def validate(self, replica: int, **fields) -> risk_pb2.ValidateOrderResponse:
        return self.risk[replica].ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(**fields)),
                                                timeout=e2e.RPC_TIMEOUT)

    def fill(self, replica: int, **fields) -> pb.Order:
        """Approve through ``replica``, submit to the OMS: the order's answer (FILLED)."""
        answer = self.validate(replica, **fields)
        assert answer.order.status == pb.ORDER_STATUS_APPROVED, (answer.order, list(answer.violations))
        submitted = self.stack.oms.SubmitOrder(
            oms_pb2.SubmitOrderRequest(order=answer.order, risk_token=answer.risk_token), timeout=e2e.RPC_TIMEOUT)
        assert submitted.order.status == pb.ORDER_STATUS_FILLED, submitted.order
        return submitted.order

    def position_seen_by(self, replica: int, account: str) -> Decimal:
        """The account's long BTCUSDT position as ``replica``'s decision shows it: a probe
        BUY that asks for leverage 50 is always refused (MAX_LEVERAGE_EXCEEDED, so it
        changes nothing), and with a long position held also MAX_POSITION_EXCEEDED, whose
        message says what the position would be (0 when it is flat)."""
        answer = self.validate(replica, account=account, symbol="BTCUSDT", quantity=str(PROBE_QUANTITY),
                               leverage="50")
        assert answer.order.status == pb.ORDER_STATUS_REJECTED, answer.order
        assert "MAX_LEVERAGE_EXCEEDED" in [v.code for v in answer.violations]
        found = [v for v in answer.violations if v.code == "MAX_POSITION_EXCEEDED"]
        if not found:
            return Decimal(0)
        would_be = Decimal(found[0].message.split(" position would be ", 1)[1].split(" ", 1)[0])
        return would_be - PROBE_QUANTITY

    def book(self, replica: int) -> dict[str, float]:
        """This replica's book gauges, scraped from its /metrics."""
        address = self.processes[replica].metrics_address
        body = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        return {sample.name: sample.value for family in text_string_to_metric_families(body)
                for sample in family.samples if sample.name.startswith(("tessera_risk_book", "tessera_risk_shards"))}

    def set_state(self, replica: int, state: int, reason: str) -> None:
        self.risk[replica].SetTradingState(
            risk_pb2.SetTradingStateRequest(state=state, operator="e2e-shards", reason=reason), timeout=e2e.RPC_TIMEOUT)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield e2e.sqlite_url(tmp_path_factory.mktemp("shards-db") / "tessera.db")
    else:
        with e2e.fresh_postgres_database("tessera_shards") as url:
            yield url


def shard_env(ports: list[int], **extra: str) -> dict[str, str]:
    return e2e.base_env(TESSERA_RISK_SHARDS=str(SHARDS), TESSERA_RISK_SHARD="0",
                        TESSERA_RISK_PEERS=",".join(f"127.0.0.1:{port}" for port in ports),
                        TESSERA_RISK_ORDER_RATE_LIMIT="off", TESSERA_RISK_MAX_POSITION=str(MAX_POSITION), **extra)


@pytest.fixture(scope="module")
def shards(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shards]:
    ports = [free_port(), free_port()]
    logs = tmp_path_factory.mktemp("shards-logs")
    stack = Stack(database_url=database, env=shard_env(ports), ports={"risk": ports[0]}, log_dir=logs).start()
    second = ServiceProcess("risk", dict(stack.processes["risk"].env, TESSERA_RISK_SHARD="1",
                                         TESSERA_RISK_PORT=str(ports[1])), logs / "risk-1", cwd=stack.cwd)
    running = None
    try:
        second.start()
        second.wait_ready(30)
        running = Shards(stack, second, database)
        yield running
    finally:
        if running is not None:
            running.close()
        assert second.stop() == 0, second.stderr()[-2000:]
        codes = stack.stop()
        assert codes["risk"] == 0, codes


def test_a_request_for_the_other_replicas_account_is_forwarded_and_decided_by_its_owner(shards: Shards) -> None:
    (mine,) = accounts_of(0, 1, "fw")
    (theirs,) = accounts_of(1, 1, "fw")
    shards.fill(1, account=theirs, quantity="0.02")  # replica 1 holds a position for its account

    # Asked through replica 0, the probe is decided by replica 1, from its book (once the
    # fill has reached it: the book follows the OMS's events, TESSERA_RISK_POLL_SECONDS).
    seen_through_0 = e2e.wait_until(lambda: shards.position_seen_by(0, theirs) == Decimal("0.02"), 10)
    forwarded = shards.validate(0, account=theirs, quantity="0.01")
    batch = shards.risk[0].ValidateOrders(risk_pb2.ValidateOrdersRequest(orders=[
        e2e.intent(account=mine, quantity="0.01"), e2e.intent(account=theirs, quantity="0.01"),
        e2e.intent(account=theirs, order_manager_id="no-such-manager")]), timeout=e2e.RPC_TIMEOUT)

    # The owner's refusal comes back as it gave it: code, message and ErrorInfo.
    client_order_id = forwarded.order.client_order_id
    reused = e2e.expect_error(
        lambda: shards.validate(0, account=theirs, client_order_id=client_order_id, quantity="0.5"),
        grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID")

    assert forwarded.order.status == pb.ORDER_STATUS_APPROVED and forwarded.order.account == theirs
    assert forwarded.order.client_order_id in reused.details()
    submitted = shards.stack.oms.SubmitOrder(  # the owner's token: the OMS takes it
        oms_pb2.SubmitOrderRequest(order=forwarded.order, risk_token=forwarded.risk_token), timeout=e2e.RPC_TIMEOUT)
    assert submitted.order.status == pb.ORDER_STATUS_FILLED
    assert seen_through_0
    assert [r.order.status for r in batch.results[:2]] == [pb.ORDER_STATUS_APPROVED] * 2
    # The owner refused the third (the second of what it was sent): named by its index here.
    assert batch.results[2].error.message.startswith("orders[2].order_manager_id"), batch.results[2]
    # The owner saw the forwarding replica as its caller: the services' identity (role service).
    forwarded_line = e2e.wait_for_log(shards.processes[1].stderr, "RiskService/ValidateOrders OK")
    assert "principal=tessera-service via=token" in forwarded_line, forwarded_line


def _refusal_by_a_lone_replica_0(shards: Shards, log_dir: Path, peers: str, account: str,
                                 code: grpc.StatusCode, reason: str | None) -> grpc.RpcError:
    """Start a replica 0 with ``TESSERA_RISK_PEERS=peers``; the error it answers for ``account``."""
    alone = ServiceProcess("risk", dict(shards.processes[0].env, TESSERA_RISK_PORT="0", TESSERA_RISK_PEERS=peers),
                           log_dir)
    alone.start()
    try:
        with e2e.channel(alone.wait_ready(30)) as channel:
            stub = risk_pb2_grpc.RiskServiceStub(channel)
            return e2e.expect_error(
                lambda: stub.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(account=account)),
                                           timeout=e2e.RPC_TIMEOUT), code, reason)
    finally:
        alone.stop()


def test_without_peers_a_request_for_the_other_replicas_account_is_refused_naming_the_owner(
        shards: Shards, tmp_path: Path) -> None:
    (theirs,) = accounts_of(1, 1, "nf")
    refused = _refusal_by_a_lone_replica_0(shards, tmp_path / "no-peers", "", theirs,
                                           grpc.StatusCode.FAILED_PRECONDITION, "NOT_ACCOUNT_OWNER")
    assert f"account {theirs!r} is decided by risk replica 1 of 2 (this is replica 0)" in refused.details()


def test_while_the_owner_is_down_its_accounts_are_unavailable(shards: Shards, tmp_path: Path) -> None:
    (theirs,) = accounts_of(1, 1, "dn")
    nobody = free_port()  # nothing listens there: replica 1 is down
    refused = _refusal_by_a_lone_replica_0(shards, tmp_path / "owner-down", f"127.0.0.1:0,127.0.0.1:{nobody}",
                                           theirs, grpc.StatusCode.UNAVAILABLE, "REPLICA_UNAVAILABLE")
    assert f"risk replica 1 of 2, which decides account {theirs!r}, did not answer" in refused.details()


def _answer(stub: risk_pb2_grpc.RiskServiceStub, account: str) -> str:
    """``APPROVED`` (or the decision's status), or the refusal's reason."""
    try:
        answer = stub.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(account=account, quantity="0.0001")),
                                    timeout=e2e.RPC_TIMEOUT)
    except grpc.RpcError as error:
        return e2e.error_reason(error) or error.code().name
    return pb.OrderStatus.Name(answer.order.status).removeprefix("ORDER_STATUS_")


def test_a_replica_started_with_another_count_decides_nothing_and_stops_the_others_deciding(
        shards: Shards, tmp_path: Path) -> None:
    """A replica started with TESSERA_RISK_SHARDS=3 beside the two replicas of 2: an
    account replica 0 of 2 owns is also replica 2 of 3's. Neither count decides while
    both run (each sees the other in the store); once the intruder stops, the two
    replicas decide again."""
    account = next(a for a in (f"{e2e.new_account()}-sc{n}" for n in range(1000))
                   if shard_of(a, 2) == 0 and shard_of(a, 3) == 2)
    (on_1,) = accounts_of(1, 1, "sc")
    before = _answer(shards.risk[0], account)
    intruder = ServiceProcess("risk", dict(shards.processes[0].env, TESSERA_RISK_PORT="0", TESSERA_RISK_SHARDS="3",
                                           TESSERA_RISK_SHARD="2", TESSERA_RISK_PEERS=""), tmp_path / "intruder")
    intruder.start()
    try:
        with e2e.channel(intruder.wait_ready(30)) as channel:
            by_intruder = _answer(risk_pb2_grpc.RiskServiceStub(channel), account)
        # The replicas of 2 see it at their next check-in (every second).
        old_count_stopped = e2e.wait_until(lambda: _answer(shards.risk[0], account) == "SHARD_MAP_UNSETTLED"
                                           and _answer(shards.risk[1], on_1) == "SHARD_MAP_UNSETTLED", 10)
    finally:
        assert intruder.stop() == 0, intruder.stderr()[-2000:]
    resumed = e2e.wait_until(lambda: _answer(shards.risk[0], account) == "APPROVED"
                             and _answer(shards.risk[1], on_1) == "APPROVED", 10)

    assert before == "APPROVED"
    assert by_intruder == "SHARD_MAP_UNSETTLED"
    assert old_count_stopped
    assert resumed


def _first_change(shards: Shards, replica: int, account: str, wanted: int, since: float,
                  give_up: float = 10.0) -> tuple[float, list[tuple[float, int]]]:
    """Validate orders on ``replica`` until one gets status ``wanted``: the seconds from
    ``since`` to that answer, and every (seconds sent after ``since``, status) on the way."""
    answers: list[tuple[float, int]] = []
    while time.monotonic() - since < give_up:
        sent = time.monotonic() - since
        status = shards.validate(replica, account=account, quantity="0.0001").order.status
        answers.append((sent, status))
        if status == wanted:
            return time.monotonic() - since, answers
        time.sleep(0.01)
    raise AssertionError(f"replica {replica} never answered {pb.OrderStatus.Name(wanted)}: {answers[-3:]}")


def test_the_kill_switch_set_through_one_replica_is_obeyed_by_the_other_within_the_bound(shards: Shards) -> None:
    bound = e2e.TRADING_STATE_BOUND
    (on_1,) = accounts_of(1, 1, "ks")
    (on_0,) = accounts_of(0, 1, "ks")
    assert shards.validate(1, account=on_1, quantity="0.0001").order.status == pb.ORDER_STATUS_APPROVED
    try:
        shards.set_state(0, HALTED, "e2e: halt through replica 0")
        halted_at = time.monotonic()
        to_refusal, answers = _first_change(shards, 1, on_1, pb.ORDER_STATUS_REJECTED, halted_at)
        if time.monotonic() - halted_at < bound:
            time.sleep(bound - (time.monotonic() - halted_at))
        after_bound = shards.validate(1, account=on_1, quantity="0.0001")
        state_on_1 = shards.risk[1].GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=e2e.RPC_TIMEOUT)
    finally:
        shards.set_state(1, ACTIVE, "e2e: reset through replica 1")
    reset_at = time.monotonic()
    to_approval, reset_answers = _first_change(shards, 0, on_0, pb.ORDER_STATUS_APPROVED, reset_at)
    print(f"\nkill switch set on replica 0: first refusal on replica 1 after {to_refusal * 1000:.0f} ms; "
          f"reset on replica 1: first approval on replica 0 after {to_approval * 1000:.0f} ms "
          f"(bound {bound * 1000:.0f} ms)")

    assert [v.code for v in after_bound.violations] == ["TRADING_HALTED"]
    assert state_on_1.state == HALTED and state_on_1.operator == "local"  # the caller's principal
    # Every order sent once the bound had passed was refused (approved), none the other way.
    assert all(status == pb.ORDER_STATUS_REJECTED for sent, status in answers if sent >= bound), answers
    assert all(status == pb.ORDER_STATUS_APPROVED for sent, status in reset_answers if sent >= bound), reset_answers


def test_each_replica_holds_only_its_own_accounts_and_the_owner_has_the_positions_after_fills(
        shards: Shards) -> None:
    owned = {0: accounts_of(0, 3, "bk"), 1: accounts_of(1, 3, "bk")}
    expected: dict[str, Decimal] = {}
    for owner, accounts in owned.items():
        for n, account in enumerate(accounts):
            for entry, quantity, side in ((0, "0.03", pb.SIDE_BUY), (1, "0.02", pb.SIDE_BUY),
                                          (n % 2, "0.01", pb.SIDE_SELL)):
                shards.fill(entry, account=account, quantity=quantity, side=side)
            shards.fill(1 - owner, account=account, symbol="ETHUSDT", quantity="0.5")
            expected[account] = Decimal("0.04")

    for owner, accounts in owned.items():
        for account in accounts:
            assert e2e.wait_until(lambda: shards.position_seen_by(owner, account) == expected[account], 10), (
                account, shards.position_seen_by(owner, account))
    engine = create_engine(shards.url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            everyone = [row[0] for row in connection.execute(text("SELECT DISTINCT account FROM orders_ts"))]

        def stored_positions() -> dict[tuple[str, str], Decimal]:
            with engine.connect() as connection:
                return {(a, s): Decimal(str(q)) for a, s, q in connection.execute(
                    text("SELECT account, symbol, quantity FROM positions"))}

        mine = [a for accounts in owned.values() for a in accounts]
        # Both positions of every account written (the ledger writes them in its own batches).
        assert e2e.wait_until(lambda: all(
            stored_positions().get((a, "BTCUSDT")) == expected[a]
            and stored_positions().get((a, "ETHUSDT")) == Decimal("0.5") for a in mine), 10)
        positions = stored_positions()
    finally:
        engine.dispose()
    books = [shards.book(0), shards.book(1)]

    # The ledger the owners wrote: each account's two positions.
    assert {(a, s): q for (a, s), q in positions.items() if a in expected} == {
        **{(a, "BTCUSDT"): Decimal("0.04") for a in expected}, **{(a, "ETHUSDT"): Decimal("0.5") for a in expected}}
    # Each book holds exactly the accounts of its shard that this run decided (every one
    # of the store's accounts was decided here), none of the other's.
    for replica, book in enumerate(books):
        own = [a for a in everyone if shard_of(a, SHARDS) == replica]
        assert book["tessera_risk_book_accounts"] == len(own), (replica, book, len(own))
        assert book["tessera_risk_shards"] == SHARDS
    assert books[0]["tessera_risk_book_accounts"] + books[1]["tessera_risk_book_accounts"] == len(everyone)
