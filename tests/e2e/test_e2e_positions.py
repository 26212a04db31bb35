"""Positions and PnL through the running stack: RiskService.ListPositions / GetPosition
and ``tessera positions``, spot and futures apart, from the ledger Risk writes."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e

D = Decimal
FEE = e2e.TAKER_FEE


def trade(stack, account: str, market: int, side: int, quantity: str, symbol: str = "BTCUSDT") -> None:
    approved = e2e.approve(stack, account=account, market_type=market, side=side, quantity=quantity, symbol=symbol)
    answer = stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token),
                                   timeout=e2e.RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_FILLED


def listed(stack, **fields) -> risk_pb2.ListPositionsResponse:
    return stack.risk.ListPositions(risk_pb2.ListPositionsRequest(**fields), timeout=e2e.RPC_TIMEOUT)


def settled(stack, account: str, count: int) -> list[risk_pb2.Position]:
    """The account's positions once the ledger holds ``count`` of them (Risk writes it
    every 0.25 s after it applied the fills)."""
    found: list[risk_pb2.Position] = []

    def ready() -> bool:
        found[:] = listed(stack, account=account).positions
        return len(found) == count and all(p.updated_time.seconds for p in found)

    assert e2e.wait_until(ready, timeout=10), found
    return found


@pytest.fixture(scope="module")
def traded(stack) -> str:
    """An account that bought 0.02 BTCUSDT futures, sold 0.01 back, and bought 0.01 spot."""
    account = e2e.new_account()
    trade(stack, account, pb.MARKET_TYPE_FUTURES, pb.SIDE_BUY, "0.02")
    trade(stack, account, pb.MARKET_TYPE_FUTURES, pb.SIDE_SELL, "0.01")
    trade(stack, account, pb.MARKET_TYPE_SPOT, pb.SIDE_BUY, "0.01")

    def both_settled() -> bool:
        got = {p.market_type: p.quantity for p in listed(stack, account=account).positions}
        return got == {pb.MARKET_TYPE_FUTURES: "0.01", pb.MARKET_TYPE_SPOT: "0.01"}

    assert e2e.wait_until(both_settled, timeout=10)
    return account


def test_spot_and_futures_fills_of_one_symbol_are_two_positions_with_their_pnl_and_fees(stack, traded):
    futures, spot = settled(stack, traded, 2)  # ordered by account, symbol, market type

    price = e2e.PRICES["BTCUSDT"]
    assert (futures.market_type, spot.market_type) == (pb.MARKET_TYPE_FUTURES, pb.MARKET_TYPE_SPOT)
    futures_fees = FEE * price * D("0.03")  # three fills' worth: 0.02 + 0.01
    assert (D(futures.quantity), D(futures.average_entry_price), D(futures.mark_price)) == (D("0.01"), price, price)
    assert D(futures.realised_pnl) == 0  # sold back at the price it was bought at
    assert D(futures.commission) == futures_fees and D(futures.net_realised_pnl) == -futures_fees
    assert D(futures.unrealised_pnl) == 0
    assert [(f.asset, D(f.amount)) for f in futures.fees] == [("USDT", futures_fees)]
    assert (D(spot.quantity), D(spot.cost_basis)) == (D("0.01"), price * D("0.01"))
    assert [(f.asset, D(f.amount)) for f in spot.fees] == [("USDT", FEE * price * D("0.01"))]


def test_get_position_reads_one_and_a_never_traded_one_is_flat(stack, traded):
    settled(stack, traded, 2)
    spot = stack.risk.GetPosition(risk_pb2.GetPositionRequest(
        account=traded, market_type=pb.MARKET_TYPE_SPOT, symbol="BTCUSDT"), timeout=e2e.RPC_TIMEOUT).position
    flat = stack.risk.GetPosition(risk_pb2.GetPositionRequest(
        account=traded, market_type=pb.MARKET_TYPE_SPOT, symbol="ETHUSDT"), timeout=e2e.RPC_TIMEOUT).position

    assert (spot.quantity, spot.market_type) == ("0.01", pb.MARKET_TYPE_SPOT)
    assert (flat.quantity, flat.realised_pnl, flat.average_entry_price, flat.unrealised_pnl) == ("0", "0", "", "0")
    assert not flat.HasField("updated_time")


def test_filters_and_pages_list_every_position_once(stack, traded):
    settled(stack, traded, 2)
    assert [p.market_type for p in listed(stack, account=traded, market_type=pb.MARKET_TYPE_SPOT).positions] == [
        pb.MARKET_TYPE_SPOT]
    assert listed(stack, account=traded, symbol="ETHUSDT").positions == []

    first = listed(stack, account=traded, page_size=1)
    second = listed(stack, account=traded, page_size=1, page_token=first.next_page_token)
    assert first.next_page_token and not second.next_page_token
    assert [p.market_type for p in [*first.positions, *second.positions]] == [pb.MARKET_TYPE_FUTURES,
                                                                             pb.MARKET_TYPE_SPOT]


def test_a_closed_position_is_listed_unless_open_only(stack):
    account = e2e.new_account()
    trade(stack, account, pb.MARKET_TYPE_FUTURES, pb.SIDE_BUY, "0.01")
    trade(stack, account, pb.MARKET_TYPE_FUTURES, pb.SIDE_SELL, "0.01")
    assert e2e.wait_until(lambda: [p.quantity for p in listed(stack, account=account).positions] == ["0"], 10)

    (closed,) = listed(stack, account=account).positions
    assert D(closed.net_realised_pnl) == -2 * FEE * e2e.PRICES["BTCUSDT"] * D("0.01")
    assert listed(stack, account=account, open_only=True).positions == []


@pytest.mark.parametrize("request_fields, field", [
    ({"account": "bad account!"}, "account"),
    ({"page_size": 1001}, "page_size"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"market_type": 99}, "market_type"),
])
def test_a_malformed_list_request_is_invalid_argument_naming_the_field(stack, request_fields, field):
    error = e2e.expect_error(lambda: listed(stack, **request_fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert field in error.details()


def test_get_position_requires_account_market_and_symbol(stack):
    for missing in ("account", "market_type", "symbol"):
        fields = {"account": "a-1", "market_type": pb.MARKET_TYPE_FUTURES, "symbol": "BTCUSDT"}
        del fields[missing]
        error = e2e.expect_error(
            lambda: stack.risk.GetPosition(risk_pb2.GetPositionRequest(**fields), timeout=e2e.RPC_TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT)
        assert missing in error.details()


def test_tessera_positions_shows_both_markets(stack, traded):
    settled(stack, traded, 2)
    result = e2e.run_cli("positions", "--account", traded, "--risk", stack.addresses["risk"])
    assert result.returncode == 0, e2e.show(result)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["account", "market", "symbol", "quantity", "avg_entry", "mark", "unrealised",
                                "realised_net", "fees", "updated"]
    rows = [line.split() for line in lines[2:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("FUTURES", "BTCUSDT", "0.01"), ("SPOT", "BTCUSDT", "0.01")]

    spot_only = e2e.run_cli("positions", "--account", traded, "--market", "spot", "--open",
                            "--risk", stack.addresses["risk"])
    assert spot_only.returncode == 0 and "FUTURES" not in spot_only.stdout and "SPOT" in spot_only.stdout
