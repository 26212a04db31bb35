"""Two OMS replicas on one PostgreSQL racing for the same orders: each is submitted once.

Every approved order is submitted to both replicas at the same moment: one claims it
(APPROVED -> SUBMITTED, compare-and-set) and sends it; the other answers
TOKEN_ALREADY_USED and sends nothing. Both replicas follow the Exchange's reports and
reconcile the same open orders, so every fill reaches the store twice: it must be
stored once. The venue simulator counts the placements it received per client order id.

And a restarted Exchange service (which forgets what it remembered): its record of
executions in the store refuses a second execution of an order before the venue is
asked, so the order is placed once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest
import tessera_e2e as e2e
import venue_harness as vh
from sqlalchemy import create_engine, text

from services.cli.stack import ServiceProcess, Stack
from services.reliability import VenueRecord, check_against_venue, check_store
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2_grpc

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with e2e.fresh_postgres_database("tessera_replicas") as url:
        yield url


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Iterator[vh.VenueSim]:
    running = vh.VenueSim(tmp_path_factory.mktemp("replicas-sim"), "--balance", "100000000")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def replicas(pg_url, sim, tmp_path_factory) -> Iterator[tuple[Stack, ServiceProcess]]:
    env = vh.venue_env(sim, "live", TESSERA_RECONCILE_INTERVAL_SECONDS="0.3", TESSERA_RECONCILE_GRACE_SECONDS="3",
                       TESSERA_EXCHANGE_TIMEOUT_SECONDS="2", TESSERA_RISK_ORDER_RATE_LIMIT="off")
    stack = e2e.start_stack(pg_url, tmp_path_factory.mktemp("replicas-logs"), **env)
    second = ServiceProcess("oms", stack.processes["oms"].env, stack.log_dir / "oms-2", cwd=stack.cwd)
    try:
        second.start()
        second.wait_ready(30)
        for symbol in e2e.PRICES:
            vh.set_up_symbol(stack, symbol)
        yield stack, second
    finally:
        second.stop()
        stack.stop()


def _race(stubs, approved: e2e.Approved) -> list[str]:
    """Submit the same order to every replica at once; the outcome each one answered."""
    barrier, outcomes = threading.Barrier(len(stubs)), []

    def submit(stub):
        barrier.wait()
        try:
            answer = stub.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
            kind = "replayed" if answer.replayed else "ok"
            outcomes.append(f"{kind} {pb.OrderStatus.Name(answer.order.status)}")
        except grpc.RpcError as error:
            outcomes.append(f"{error.code().name} {e2e.error_reason(error)}")

    threads = [threading.Thread(target=submit, args=(stub,)) for stub in stubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_replicas_racing_for_the_same_orders_submit_each_once(replicas, pg_url, sim):
    stack, second = replicas
    channel = e2e.channel(second.address)
    stubs = [stack.oms, oms_pb2_grpc.OrderManagementServiceStub(channel)]
    orders = []
    try:
        for index in range(40):
            kind = index % 4
            fields = {"symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[index % 3],
                      "quantity": ("0.01", "0.1", "1")[index % 3]}
            if kind == 3:  # a limit order that rests at the venue, filled later through the poller
                fields.update(order_type=pb.ORDER_TYPE_LIMIT,
                              price=str(e2e.PRICES[fields["symbol"]] * Decimal("0.999")))
            approved = e2e.approve(stack, **fields)
            outcomes = _race(stubs, approved)
            orders.append((approved, outcomes))
        sim.set_price("BTCUSDT", "64000")  # the resting buys above it fill, reported to both replicas
        sim.set_price("ETHUSDT", "3100")
        sim.set_price("SOLUSDT", "140")
    finally:
        channel.close()

    for approved, outcomes in orders:
        won = [o for o in outcomes if o.startswith("ok")]
        assert len(won) == 1, outcomes
        # The other replica's claim lost: it answers the order as it is then, marked replayed.
        assert [o.split()[0] for o in outcomes if not o.startswith("ok")] == ["replayed"], outcomes
    engine = create_engine(pg_url)
    try:
        assert e2e.wait_until(lambda: _open(engine) == 0, 20), "every order settles"
        report = check_store(engine, require_terminal=True)
        record = VenueRecord(sim.orders(), sim.trades(), sim.control("GET", "/_sim/placements"))
        check_against_venue(engine, record, report=report)
    finally:
        engine.dispose()
    assert report.violations == []
    verified = e2e.run_cli("verify-store", "--database-url", pg_url, "--require-terminal", "--venue-sim", sim.url)
    assert verified.returncode == 0 and "no violations" in verified.stdout, e2e.show(verified)
    placements = Counter({cid: n for cid, n in record.placements.items()
                          if cid in {a.order.client_order_id for a, _ in orders}})
    assert len(placements) == 40 and set(placements.values()) == {1}  # each order reached the venue once
    assert report.trades == len(record.trades) >= 40


def _open(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM orders_ts WHERE status IN ('SUBMITTED', 'ACCEPTED', 'PARTIALLY_FILLED', "
            "'PENDING_CANCEL', 'APPROVED')")).scalar_one()


def test_a_restarted_exchange_that_forgot_an_order_cannot_place_it_twice(replicas, sim):
    stack, _ = replicas
    approved = e2e.approve(stack, symbol="ETHUSDT", quantity="0.1", order_type=pb.ORDER_TYPE_LIMIT, price="3000")
    request = exchange_pb2.ExecuteOrderRequest(order=approved.order, risk_token=approved.token)
    credential = e2e.oms_credential("ExecuteOrder", request)

    first = stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT, metadata=credential)
    e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT, metadata=credential),
                     grpc.StatusCode.PERMISSION_DENIED, "SERVICE_CREDENTIAL_REPLAYED")  # a credential is good once
    fresh = e2e.oms_credential("ExecuteOrder", request)
    e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT, metadata=fresh),
                     grpc.StatusCode.PERMISSION_DENIED, "TOKEN_ALREADY_USED")  # an order executes once
    _restart_exchange(stack)
    # Its memory and replay cache are gone; the credential may still be within its 30 s: it
    # was issued before this Exchange started, and is refused for that. A fresh one passes
    # that check, and the store's record of executions refuses the order before the venue is asked.
    e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT, metadata=credential),
                     grpc.StatusCode.UNAVAILABLE, "SERVICE_CREDENTIAL_BEFORE_START")
    e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT,
                                                         metadata=e2e.oms_credential("ExecuteOrder", request)),
                     grpc.StatusCode.PERMISSION_DENIED, "TOKEN_ALREADY_USED")

    assert first.reports[0].order_status == pb.ORDER_STATUS_ACCEPTED
    assert len(sim.orders(approved.order.client_order_id)) == 1
    assert sim.control("GET", "/_sim/placements")[approved.order.client_order_id] == 1  # never sent again


def _restart_exchange(stack: Stack) -> None:
    old = stack.processes["exchange"]
    old.kill()
    stack._channels.pop("exchange").close()
    env = dict(old.env, TESSERA_EXCHANGE_PORT=old.address.rsplit(":", 1)[1])  # the OMS replicas know this address
    fresh = ServiceProcess("exchange", env, old.log_dir / "exchange-restarted", cwd=old.cwd)
    stack.processes["exchange"] = fresh
    fresh.start()
    fresh.wait_ready(30)
    for symbol in e2e.PRICES:
        vh.set_up_symbol(stack, symbol)
