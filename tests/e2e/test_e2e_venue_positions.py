"""Live mode against the venue simulator: the Exchange reads the venue's futures positions
(ListVenuePositions, Aster's positionRisk) and the OMS reconciler records a position the
venue holds beyond Tessera's ledger as a VENUE_POSITION_MISMATCH anomaly, once."""

from __future__ import annotations

import time

import grpc
import pytest

from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e
import venue_harness as vh


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    running = vh.VenueSim(tmp_path_factory.mktemp("venue-sim"), "--balance", "5000")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def live(sim, tmp_path_factory):
    db = e2e.sqlite_url(tmp_path_factory.mktemp("db") / "tessera.db")
    stack = e2e.start_stack(db, tmp_path_factory.mktemp("logs"), **vh.venue_env(sim, "live"))
    view = e2e.StoreView(db)
    vh.set_up_symbol(stack, "BTCUSDT")
    yield stack, view
    view.close()
    stack.stop()


def venue_positions(stack) -> dict[str, str]:
    request = exchange_pb2.ListVenuePositionsRequest()
    answer = stack.exchange.ListVenuePositions(request, timeout=e2e.RPC_TIMEOUT,
                                               metadata=e2e.oms_credential("ListVenuePositions", request))
    assert answer.mode == pb.EXECUTION_MODE_LIVE
    return {p.symbol: p.quantity for p in answer.positions}


def mismatches(store) -> list:
    with store.uow() as uow:
        return [a for a in uow.anomalies.list(limit=100) if a.kind == "VENUE_POSITION_MISMATCH"]


def test_tessera_fills_agree_with_the_venue_and_an_outside_position_is_recorded_once(live, sim):
    stack, store = live
    approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
    answer = stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token),
                                   timeout=e2e.RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_FILLED
    account = approved.order.account

    def ledger_holds(quantity: str) -> bool:
        position = stack.risk.GetPosition(risk_pb2.GetPositionRequest(
            account=account, market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT"), timeout=e2e.RPC_TIMEOUT).position
        return position.quantity == quantity

    assert e2e.wait_until(lambda: ledger_holds("0.01"), 10)
    assert venue_positions(stack) == {"BTCUSDT": "0.01"}
    time.sleep(2.0)  # several reconciler passes (every 0.5 s): positions agree
    assert mismatches(store) == []

    # Someone trades on the venue account behind Tessera's back.
    sim.control("POST", "/_sim/place", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.02"})
    assert venue_positions(stack) == {"BTCUSDT": "0.03"}
    assert e2e.wait_until(lambda: len(mismatches(store)) == 1, 15)
    time.sleep(1.5)  # more passes: the same difference is not recorded again
    (recorded,) = mismatches(store)
    assert recorded.payload == {"symbol": "BTCUSDT", "market_type": "FUTURES", "venue_quantity": "0.03",
                                "ledger_quantity": "0.01", "difference": "0.02"}


def test_venue_positions_are_for_the_oms_only(live):
    stack, _ = live
    error = e2e.expect_error(
        lambda: stack.exchange.ListVenuePositions(exchange_pb2.ListVenuePositionsRequest(), timeout=e2e.RPC_TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS")
    assert "ListVenuePositions" in error.details()


def test_the_venue_is_asked_on_the_v2_path_aster_documents(live, sim):
    stack, _ = live
    venue_positions(stack)
    paths = [r["path"] for r in sim.requests() if r["path"].endswith("/positionRisk")]
    assert paths and set(paths) == {"/fapi/v2/positionRisk"}
