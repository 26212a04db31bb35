"""Live and shadow mode across the three services against the venue simulator, faults included.

Every scenario is checked where it matters: in the store (through the repository
layer) and, for "exactly once" claims, at the simulated venue itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

import grpc
import pytest

from services.cli.stack import PROJECT_ROOT
from services.reliability.venue import VenueRecord
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e
import venue_harness as vh


def submit(stack, approved):
    return stack.oms.SubmitOrder(
        oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token), timeout=e2e.RPC_TIMEOUT
    )


def settled(store, order_id, status, timeout=10.0):
    assert e2e.wait_until(lambda: store.status(order_id) == status, timeout), (
        f"order {order_id} is {store.status(order_id)}, expected {status}: {store.statuses(order_id)}"
    )


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    running = vh.VenueSim(tmp_path_factory.mktemp("venue-sim"), "--balance", "5000")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live_db(tmp_path_factory):
    return e2e.sqlite_url(tmp_path_factory.mktemp("live-db") / "tessera.db")


@pytest.fixture(scope="module")
def live(sim, live_db, tmp_path_factory):
    stack = e2e.start_stack(live_db, tmp_path_factory.mktemp("live-logs"), **vh.venue_env(sim, "live"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def live_store(live, live_db):
    view = e2e.StoreView(live_db)
    yield view
    view.close()


@pytest.fixture(autouse=True)
def no_leftover_faults(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


# -- gates ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("present", "missing"),
    [
        ({}, ["AIS_ENABLE_LIVE_TRADING=true", "ASTER_ACCOUNT_ID", "ASTER_API_KEY", "ASTER_API_SECRET"]),
        ({"AIS_ENABLE_LIVE_TRADING": "true", "ASTER_ACCOUNT_ID": "a1", "ASTER_API_KEY": "k"}, ["ASTER_API_SECRET"]),
        ({"ASTER_ACCOUNT_ID": "a1", "ASTER_API_KEY": "k", "ASTER_API_SECRET": vh.API_SECRET},
         ["AIS_ENABLE_LIVE_TRADING=true"]),
    ],
)
def test_live_mode_refuses_to_start_naming_every_missing_gate(present, missing):
    env = e2e.base_env(TESSERA_EXECUTION_MODE="live", TESSERA_EXCHANGE_PORT="0", **present)
    result = subprocess.run([sys.executable, "-m", "services.exchange"], env=env, cwd=str(PROJECT_ROOT),
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 2, e2e.show(result)
    assert "live mode needs " + ", ".join(missing) in result.stderr
    assert vh.API_SECRET not in result.stderr + result.stdout


# -- live -----------------------------------------------------------------------------------------
def test_live_orders_go_with_the_settings_read_from_the_venue_and_one_asking_for_another_leverage_is_refused(
        live, live_store, sim):
    # The Exchange read every symbol's leverage from the venue when it started (the
    # simulator's default, 20x): an order asking for 3x is refused before it is sent.
    approved = e2e.approve(live, symbol="ETHUSDT", quantity="0.1", leverage="3")

    answer = submit(live, approved)

    assert answer.order.status == pb.ORDER_STATUS_REJECTED
    assert list(answer.order.reject_reasons) == ["LEVERAGE_MISMATCH"]
    assert live_store.statuses(approved.order.order_id) == ["PENDING", "APPROVED", "SUBMITTED", "REJECTED"]
    assert sim.orders(approved.order.client_order_id) == []


def test_live_without_a_registry_risk_refuses_another_account_than_the_environments_and_stores_nothing(live,
                                                                                                         live_store):
    for fields, reason in (({"account": "someone-else"}, "ACCOUNT_NOT_CONFIGURED"),
                           ({"account": vh.LIVE_ACCOUNT, "venue": "binance"}, "VENUE_NOT_CONFIGURED")):
        intent = e2e.intent(**fields)
        e2e.expect_error(lambda: live.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent),
                                                         timeout=e2e.RPC_TIMEOUT),
                         grpc.StatusCode.FAILED_PRECONDITION, reason)
    with live_store.uow() as uow:
        stored, _ = uow.orders.list(limit=10_000)
    assert [o for o in stored if o.account == "someone-else" or o.venue == "binance"] == []


def test_live_market_order_fills_at_the_venue_and_its_trade_is_stored_once(live, live_store, sim):
    vh.set_up_symbol(live, "BTCUSDT")
    approved = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")

    answer = submit(live, approved)

    order_id = approved.order.order_id
    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    (venue_order,) = sim.orders(approved.order.client_order_id)
    venue_trades = sim.trades(venue_order["orderId"])
    assert venue_order["status"] == "FILLED"
    assert answer.order.remote_order_id == str(venue_order["orderId"])
    stored = live_store.trades(order_id)
    assert [t.trade_id for t in stored] == [VenueRecord.trade_id(t) for t in venue_trades]
    assert stored[0].price == Decimal(venue_trades[0]["price"]) == Decimal("65006.5")  # the venue's ask
    assert stored[0].commission == Decimal(venue_trades[0]["commission"])
    assert live_store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]


def test_live_resting_order_fills_later_through_the_poller(live, live_store, sim):
    vh.set_up_symbol(live, "SOLUSDT")
    approved = e2e.approve(live, symbol="SOLUSDT", order_type=pb.ORDER_TYPE_LIMIT, quantity="2", price="149")

    answer = submit(live, approved)
    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED
    sim.set_price("SOLUSDT", "148.5")

    settled(live_store, approved.order.order_id, "FILLED")
    (trade,) = live_store.trades(approved.order.order_id)
    assert trade.price == Decimal("149") and e2e._name(trade.liquidity_side) == "MAKER"
    sim.set_price("SOLUSDT", "150")


def test_live_trailing_stop_close_position_and_quote_amount_orders_go_to_the_venue_as_approved(
        live, live_store, sim):
    vh.set_up_symbol(live, "BTCUSDT")
    trailing = e2e.approve(live, symbol="BTCUSDT", order_type=pb.ORDER_TYPE_TRAILING_STOP_MARKET, side=pb.SIDE_SELL,
                           quantity="0.01", callback_rate="0.5", working_type=pb.WORKING_TYPE_CONTRACT_PRICE)
    opened = e2e.approve(live, symbol="BTCUSDT", quantity="0.02")
    closing = e2e.approve(live, symbol="BTCUSDT", order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, side=pb.SIDE_SELL,
                          quantity="", stop_price="70000", close_position=True, price_protect=True)
    quoted = e2e.approve(live, symbol="ETHUSDT", market_type=pb.MARKET_TYPE_SPOT, quantity="",
                         quote_order_qty="500")

    answers = [submit(live, approved).order for approved in (trailing, opened, closing, quoted)]

    assert [a.status for a in answers] == [pb.ORDER_STATUS_ACCEPTED, pb.ORDER_STATUS_FILLED,
                                           pb.ORDER_STATUS_ACCEPTED, pb.ORDER_STATUS_FILLED]
    (venue_trailing,) = sim.orders(trailing.order.client_order_id)
    assert (venue_trailing["type"], venue_trailing["priceRate"], venue_trailing["workingType"]) == (
        "TRAILING_STOP_MARKET", "0.5", "CONTRACT_PRICE")
    (venue_closing,) = sim.orders(closing.order.client_order_id)
    assert (venue_closing["closePosition"], venue_closing["priceProtect"], venue_closing["origQty"]) == (
        True, True, "0")
    (venue_quoted,) = sim.orders(quoted.order.client_order_id)
    assert venue_quoted["origQuoteOrderQty"] == "500" and venue_quoted["status"] == "FILLED"
    stored = live_store.order(quoted.order.order_id)
    assert stored.quantity is None and stored.filled_quantity == Decimal(venue_quoted["executedQty"])
    # The position (this test's 0.02 and what earlier ones left) closes when the venue's
    # price reaches the take-profit; the trailing stop, 0.5 % back from the high since,
    # triggers on the way down.
    sim.set_price("BTCUSDT", "70000")
    settled(live_store, closing.order.order_id, "FILLED")
    closed = sum(t.quantity for t in live_store.trades(closing.order.order_id))
    (venue_closing,) = sim.orders(closing.order.client_order_id)
    assert closed >= Decimal("0.02") and Decimal(venue_closing["executedQty"]) == closed
    sim.set_price("BTCUSDT", "69600")
    settled(live_store, trailing.order.order_id, "FILLED")
    sim.set_price("BTCUSDT", "65000")


def test_live_cancel_reaches_the_venue(live, live_store, sim):
    approved = e2e.approve(live, symbol="BTCUSDT", order_type=pb.ORDER_TYPE_LIMIT, quantity="0.01", price="60000")
    submit(live, approved)

    answer = live.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=approved.order.order_id), timeout=e2e.RPC_TIMEOUT)

    assert answer.order.status == pb.ORDER_STATUS_CANCELLED
    assert [o["status"] for o in sim.orders(approved.order.client_order_id)] == ["CANCELED"]


def test_insufficient_margin_at_the_venue_rejects_the_order(live, live_store, sim):
    vh.set_up_symbol(live, "ETHUSDT", leverage="1")
    approved = e2e.approve(live, symbol="ETHUSDT", quantity="5")  # 16,000 USDT at 1x, the account has 5,000

    answer = submit(live, approved)

    assert answer.order.status == pb.ORDER_STATUS_REJECTED
    assert list(answer.order.reject_reasons) == ["MARGIN_INSUFFICIENT"]
    assert live_store.trades(approved.order.order_id) == []
    # The venue's refusal as it answered, on the order and on its REJECTED event.
    refusal = json.loads(answer.order.raw_venue_json)
    assert refusal["request"]["path"].endswith("/order") and refusal["response"]["code"] == -2019
    (rejected,) = [e for e in live_store.events(approved.order.order_id) if e.to_status.value == "REJECTED"]
    assert rejected.raw_venue_json == answer.order.raw_venue_json


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "timeout", "delay": 3},
        {"kind": "error_5xx", "status": 503},
    ],
    ids=["timeout", "5xx"],
)
def test_an_order_that_never_reached_the_venue_stays_in_doubt_then_is_rejected_not_at_venue(live, live_store, sim, fault):
    sim.fault(method="POST", path="/fapi/v1/order", **fault)
    approved = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")

    answer = submit(live, approved)

    order_id = approved.order.order_id
    assert answer.order.status == pb.ORDER_STATUS_SUBMITTED  # in doubt: no answer from the venue
    settled(live_store, order_id, "REJECTED")
    assert live_store.order(order_id).reject_reasons == ["NOT_AT_VENUE"]
    assert "not at venue" in live_store.events(order_id)[-1].reason
    assert sim.orders(approved.order.client_order_id) == []
    assert live_store.trades(order_id) == []


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "drop_response", "delay": 3},
        {"kind": "error_5xx", "status": 503, "processed": True},
    ],
    ids=["dropped-answer", "5xx-after-processing"],
)
def test_an_order_accepted_without_an_answer_is_reconciled_to_the_venues_truth(live, live_store, sim, fault):
    sim.fault(method="POST", path="/fapi/v1/order", **fault)
    approved = e2e.approve(live, symbol="BTCUSDT", quantity="0.02")

    answer = submit(live, approved)

    order_id = approved.order.order_id
    assert answer.order.status == pb.ORDER_STATUS_SUBMITTED
    settled(live_store, order_id, "FILLED")
    (venue_order,) = sim.orders(approved.order.client_order_id)  # exactly one order at the venue
    venue_trades = sim.trades(venue_order["orderId"])
    assert sorted(t.trade_id for t in live_store.trades(order_id)) == sorted(VenueRecord.trade_id(t) for t in venue_trades)
    assert live_store.order(order_id).filled_quantity == Decimal("0.02")


@pytest.mark.parametrize(("kind", "reason"), [("rate_limit_429", "VENUE_RATE_LIMITED"), ("ban_418", "VENUE_IP_BANNED")])
def test_a_rate_limit_answer_refuses_the_order_and_holds_back_until_retry_after(live, live_store, sim, kind, reason):
    sim.fault(kind, method="POST", path="/fapi/v1/order", retry_after=2)
    first = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")
    second = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")

    refused = submit(live, first)
    sent = len(sim.requests())
    held_back = submit(live, second)

    assert refused.order.status == held_back.order.status == pb.ORDER_STATUS_REJECTED
    assert list(refused.order.reject_reasons) == [reason] == list(held_back.order.reject_reasons)
    assert len([r for r in sim.requests()[sent:] if r["path"] == "/fapi/v1/order"]) == 0  # backoff: nothing sent
    assert sim.orders(first.order.client_order_id) == sim.orders(second.order.client_order_id) == []
    time.sleep(2.2)
    after = submit(live, e2e.approve(live, symbol="BTCUSDT", quantity="0.01"))
    assert after.order.status == pb.ORDER_STATUS_FILLED


def test_a_late_fill_is_recorded_once(live, live_store, sim):
    sim.fault("late_fill", method="POST", path="/fapi/v1/order", delay=1.0)
    approved = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")

    answer = submit(live, approved)

    order_id = approved.order.order_id
    assert answer.order.status == pb.ORDER_STATUS_ACCEPTED
    settled(live_store, order_id, "FILLED")
    time.sleep(1.0)  # the poller and the reconciler both saw the trade by now
    (venue_order,) = sim.orders(approved.order.client_order_id)
    assert [t.trade_id for t in live_store.trades(order_id)] == [VenueRecord.trade_id(t) for t in sim.trades(venue_order["orderId"])]
    assert live_store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "ACCEPTED", "FILLED"]


# -- start-up reconciliation and quarantine --------------------------------------------------------
@pytest.fixture(scope="module")
def startup(sim, tmp_path_factory):
    """A live stack whose OMS reconciles only when it starts."""
    url = e2e.sqlite_url(tmp_path_factory.mktemp("startup-db") / "tessera.db")
    stack = e2e.start_stack(url, tmp_path_factory.mktemp("startup-logs"),
                            **vh.venue_env(sim, "live", TESSERA_RECONCILE_INTERVAL_SECONDS="0"))
    view = e2e.StoreView(url)
    vh.set_up_symbol(stack, "BTCUSDT")
    yield stack, view
    view.close()
    stack.stop()


@pytest.fixture
def stream_down(sim):
    """No user-data stream for the test (sockets dropped, reconnects refused): the venue's
    fills of an in-doubt order reach Tessera only when something asks the venue."""
    sim.control("POST", "/_sim/ws/refuse", {"seconds": 60})
    yield
    sim.control("POST", "/_sim/ws/refuse", {"seconds": 0, "drop": False})


def test_on_start_the_oms_reconciles_in_doubt_orders_and_quarantines_what_it_cannot_explain(startup, sim,
                                                                                             stream_down):
    stack, store = startup
    sim.fault("drop_response", method="POST", path="/fapi/v1/order", delay=3)
    in_doubt = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
    assert submit(stack, in_doubt).order.status == pb.ORDER_STATUS_SUBMITTED
    resting = e2e.approve(stack, symbol="BTCUSDT", order_type=pb.ORDER_TYPE_LIMIT, quantity="0.01", price="60000")
    assert submit(stack, resting).order.status == pb.ORDER_STATUS_ACCEPTED
    sim.control("POST", "/_sim/forget", {"clientOrderId": resting.order.client_order_id})  # the venue lost it
    time.sleep(1.0)
    assert store.status(in_doubt.order.order_id) == "SUBMITTED"  # no periodic pass in this stack

    vh.restart_oms(stack)

    settled(store, in_doubt.order.order_id, "FILLED")
    assert len(store.trades(in_doubt.order.order_id)) == 1
    resting_id = resting.order.order_id
    assert e2e.wait_until(lambda: len(store.events(resting_id)) == 5, 10)
    assert store.status(resting_id) == "ACCEPTED"  # nothing invented
    quarantine = store.events(resting_id)[-1]
    assert quarantine.from_status == quarantine.to_status and "BTCUSDT quarantined" in quarantine.reason
    with store.uow() as uow:
        state = uow.trading_state.get("symbol:BTCUSDT")
        anomalies = uow.anomalies.list(order_id=resting_id)
    assert e2e._name(state.state) == "HALTED" and state.operator == "reconciler"
    assert [a.kind for a in anomalies] == ["RECONCILE_DISCREPANCY"]
    assert store.trades(resting_id) == []


# -- live over V3 (an API wallet) and the user-data stream -----------------------------------------
@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    sim = vh.VenueSim(tmp_path_factory.mktemp("v3-sim"), "--wallet", f"{vh.V3_USER}:{vh.V3_SIGNER}")
    url = e2e.sqlite_url(tmp_path_factory.mktemp("v3-db") / "tessera.db")
    stack = e2e.start_stack(url, tmp_path_factory.mktemp("v3-logs"), **vh.venue_env(sim, "live-v3"))
    view = e2e.StoreView(url)
    vh.set_up_symbol(stack, "BTCUSDT")
    yield stack, view, sim
    view.close()
    stack.stop()
    sim.stop()


def test_live_over_v3_signs_with_the_api_wallet_and_fills(v3):
    stack, store, sim = v3
    approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")

    answer = submit(stack, approved)

    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    (venue_order,) = sim.orders(approved.order.client_order_id)
    assert venue_order["account"] == vh.V3_USER
    assert [t.trade_id for t in store.trades(approved.order.order_id)] == [
        VenueRecord.trade_id(t) for t in sim.trades(venue_order["orderId"])]
    paths = {r["path"] for r in sim.requests()}
    assert {"/fapi/v3/order", "/fapi/v3/leverage", "/fapi/v3/listenKey"} <= paths
    assert not {p for p in paths if p.startswith("/fapi/v1/") and p != "/fapi/v1/time"}


def test_a_dropped_user_stream_loses_and_doubles_no_fill(v3):
    stack, store, sim = v3
    assert e2e.wait_until(lambda: sim.streams()["connected"] >= 1, 10)
    orders = [e2e.approve(stack, symbol="BTCUSDT", order_type=pb.ORDER_TYPE_LIMIT, quantity="0.01", price=price)
              for price in ("64900", "64800")]
    for approved in orders:
        assert submit(stack, approved).order.status == pb.ORDER_STATUS_ACCEPTED
    sim.set_price("BTCUSDT", "64890")  # the first fills while the stream is up
    settled(store, orders[0].order.order_id, "FILLED")
    sim.drop_streams(refuse_seconds=1.0)  # down for a while: the second fills unseen
    sim.set_price("BTCUSDT", "64790")

    settled(store, orders[1].order.order_id, "FILLED")
    assert e2e.wait_until(lambda: sim.streams()["connected"] >= 1, 10)  # and back
    time.sleep(0.5)
    for approved in orders:
        (venue_order,) = sim.orders(approved.order.client_order_id)
        stored = [t.trade_id for t in store.trades(approved.order.order_id)]
        assert stored == [VenueRecord.trade_id(t) for t in sim.trades(venue_order["orderId"])]  # once each
    sim.set_price("BTCUSDT", str(e2e.PRICES["BTCUSDT"]))


# -- shadow ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shadow(tmp_path_factory):
    sim = vh.VenueSim(tmp_path_factory.mktemp("shadow-sim"))
    sim.control("POST", "/_sim/forbid_orders", {"forbid": True})
    url = e2e.sqlite_url(tmp_path_factory.mktemp("shadow-db") / "tessera.db")
    stack = e2e.start_stack(url, tmp_path_factory.mktemp("shadow-logs"), **vh.venue_env(sim, "shadow"))
    view = e2e.StoreView(url)
    yield stack, view, sim
    view.close()
    stack.stop()
    sim.stop()


def test_shadow_mode_fills_on_the_venues_real_book_and_never_calls_an_order_endpoint(shadow):
    stack, store, sim = shadow
    market = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
    resting = e2e.approve(stack, symbol="ETHUSDT", side=pb.SIDE_SELL, order_type=pb.ORDER_TYPE_LIMIT,
                          quantity="1", price="3210")
    to_cancel = e2e.approve(stack, symbol="SOLUSDT", order_type=pb.ORDER_TYPE_LIMIT, quantity="1", price="140")

    filled = submit(stack, market)
    accepted = submit(stack, resting)
    submit(stack, to_cancel)
    sim.set_price("ETHUSDT", "3215")
    cancelled = stack.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=to_cancel.order.order_id),
                                      timeout=e2e.RPC_TIMEOUT)

    assert filled.order.status == pb.ORDER_STATUS_FILLED
    (trade,) = store.trades(market.order.order_id)
    assert trade.price == Decimal("65006.5")  # the venue's best ask, not a paper price
    assert trade.trade_id.startswith("shadow-")
    assert accepted.order.status == pb.ORDER_STATUS_ACCEPTED
    settled(store, resting.order.order_id, "FILLED")
    assert cancelled.order.status == pb.ORDER_STATUS_CANCELLED
    assert sim.control("GET", "/_sim/violations") == []
    assert sim.orders() == []
    assert {(r["method"], r["path"]) for r in sim.requests()} <= {("GET", "/fapi/v1/depth")}
