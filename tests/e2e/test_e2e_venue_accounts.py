"""Live mode over Aster's V3 API against the simulator, with a venue accounts registry: two
accounts side by side (each its own API wallet, its private key read from a file), an
account the registry lacks refused by Risk, the venue settings kept in the store and set by
the operator, an Exchange restart with no order refused for its settings, a dropped user-data
stream with no fill lost or doubled, every venue payload stored as its exact JSON text, and
the kill switch cancelling an order placed at the venue outside Tessera, past an account
whose signer the venue refuses (named in its answer), and after all of it no API wallet's
private key (nor a bearer JWT, nor the key that signed them) in any log or
anywhere in the store.

The services run as processes (``tessera_e2e.start_stack``); the module's tests share one
stack and run in order (the kill switch, then the scan for secrets, last).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import grpc
import pytest
from eth_account import Account

from services.common.identities import LOCAL_PRINCIPAL
from services.reliability.venue import VenueRecord
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

import tessera_e2e as e2e
import venue_harness as vh

USER_A, SIGNER_A, KEY_A = vh.V3_USER, vh.V3_SIGNER, vh.V3_PRIVATE_KEY
USER_B, KEY_B = "0x3333333333333333333333333333333333333333", "0x" + secrets.token_hex(32)
SIGNER_B = Account.from_key(KEY_B).address
USER_C, KEY_C = "0x4444444444444444444444444444444444444444", "0x" + secrets.token_hex(32)  # added later
SIGNER_C = Account.from_key(KEY_C).address
# Added before the kill switch: an API wallet the venue does not know (it refuses its every request).
USER_X, KEY_X = "0x1111111111111111111111111111111111111111", "0x" + secrets.token_hex(32)
SIGNER_X = Account.from_key(KEY_X).address
#: What no log line, no client and no row of the store may hold (the keys also without "0x").
NEEDLES = {**{f"{name} API wallet private key": key[2:] for name, key in
              (("desk-a", KEY_A), ("desk-b", KEY_B), ("desk-c", KEY_C), ("desk-0", KEY_X))},
           **e2e.identity_secrets()}


def submit(stack, approved):
    return stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token),
                                 timeout=e2e.RPC_TIMEOUT)


def settled(store, order_id, status, timeout=10.0):
    assert e2e.wait_until(lambda: store.status(order_id) == status, timeout), (
        f"order {order_id} is {store.status(order_id)}, expected {status}: {store.statuses(order_id)}")


def set_leverage(stack, account, symbol, leverage, operator="e2e-operator"):
    return stack.oms.SetVenueSetting(oms_pb2.SetVenueSettingRequest(
        account=account, symbol=symbol, leverage=leverage, operator=operator), timeout=e2e.RPC_TIMEOUT).setting


def stored_settings(stack, account=""):
    answer = stack.oms.ListVenueSettings(oms_pb2.ListVenueSettingsRequest(account=account), timeout=e2e.RPC_TIMEOUT)
    return {(s.account, s.symbol): s for s in answer.settings}


def integers(value: Any) -> list[int]:
    """Every integer of a parsed JSON document (floats are not integers)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in integers(v)]
    if isinstance(value, list):
        return [i for v in value for i in integers(v)]
    return []


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    """Two V3 accounts at the simulator, the registry naming their key files, the stack."""
    sim = vh.VenueSim(tmp_path_factory.mktemp("accounts-sim"), "--wallet", f"{USER_A}:{SIGNER_A}",
                      "--wallet", f"{USER_B}:{SIGNER_B}", "--wallet", f"{USER_C}:{SIGNER_C}")
    secrets = tmp_path_factory.mktemp("venue-accounts")
    (secrets / "desk-a.key").write_text(KEY_A + "\n")
    (secrets / "desk-b.key").write_text(KEY_B + "\n")
    (secrets / "desk-c.key").write_text(KEY_C + "\n")
    registry = secrets / "accounts.json"
    registry.write_text(json.dumps({"accounts": {
        "desk-a": {"venue": "aster", "market_types": ["FUTURES"], "user": USER_A, "signer": SIGNER_A,
                   "private_key_file": "desk-a.key"},
        "desk-b": {"venue": "aster", "market_types": ["FUTURES"], "user": USER_B, "signer": SIGNER_B,
                   "private_key_file": str(secrets / "desk-b.key")},
    }}))
    env = vh.venue_env(sim, "shadow")
    env.update({"TESSERA_EXECUTION_MODE": "live", "AIS_ENABLE_LIVE_TRADING": "true",
                "TESSERA_VENUE_ACCOUNTS_FILE": str(registry), "TESSERA_VENUE_ACCOUNTS_RELOAD_SECONDS": "0.5"})
    url = e2e.sqlite_url(tmp_path_factory.mktemp("accounts-db") / "tessera.db")
    stack = e2e.start_stack(url, tmp_path_factory.mktemp("accounts-logs"), **env)
    view = e2e.StoreView(url)
    stack.registry = registry  # type: ignore[attr-defined]  # for the reload test
    yield stack, view, sim
    view.close()
    stack.stop()
    sim.stop()


def test_two_accounts_trade_side_by_side_each_signed_by_its_own_api_wallet(accounts):
    stack, store, sim = accounts
    a = e2e.approve(stack, account="desk-a", quantity="0.01")
    b = e2e.approve(stack, account="desk-b", quantity="0.02")

    answers = [submit(stack, a), submit(stack, b)]

    assert [answer.order.status for answer in answers] == [pb.ORDER_STATUS_FILLED] * 2
    (at_venue_a,) = sim.orders(a.order.client_order_id)
    (at_venue_b,) = sim.orders(b.order.client_order_id)
    assert (at_venue_a["account"], at_venue_b["account"]) == (USER_A, USER_B)
    for approved, venue_order in ((a, at_venue_a), (b, at_venue_b)):
        assert [t.trade_id for t in store.trades(approved.order.order_id)] == [
            VenueRecord.trade_id(t) for t in sim.trades(venue_order["orderId"])]
    paths = {r["path"] for r in sim.requests()}
    assert "/fapi/v3/order" in paths and "/fapi/v1/order" not in paths


def test_risk_refuses_an_account_or_venue_the_registry_does_not_hold_and_nothing_is_stored(accounts):
    stack, store, sim = accounts
    placed = len(sim.requests())
    for fields, reason in (({"account": "someone-else"}, "ACCOUNT_NOT_CONFIGURED"),
                           ({"account": "desk-a", "venue": "binance"}, "VENUE_NOT_CONFIGURED"),
                           ({"account": "desk-a", "market_type": pb.MARKET_TYPE_SPOT}, "VENUE_NOT_CONFIGURED")):
        intent = e2e.intent(**fields)
        e2e.expect_error(lambda: stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent),
                                                           timeout=e2e.RPC_TIMEOUT),
                         grpc.StatusCode.FAILED_PRECONDITION, reason)
        with store.uow() as uow:
            assert uow.orders.get_by_client_order_id(intent.account, intent.client_order_id or "-") is None
    assert [r for r in sim.requests()[placed:] if r["path"].endswith("/order")] == []


def test_every_venue_payload_is_stored_as_its_exact_json_on_the_order_its_events_and_its_trades(accounts):
    stack, store, sim = accounts
    approved = e2e.approve(stack, account="desk-a", quantity="0.01")
    assert submit(stack, approved).order.status == pb.ORDER_STATUS_FILLED
    order_id = approved.order.order_id
    (venue_order,) = sim.orders(approved.order.client_order_id)

    details = stack.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=order_id), timeout=e2e.RPC_TIMEOUT)

    assert details.order.raw_venue_json == store.order(order_id).raw_venue_json
    assert venue_order["orderId"] in integers(json.loads(details.order.raw_venue_json))
    from_venue = [e for e in details.events if e.to_status in (pb.ORDER_STATUS_ACCEPTED, pb.ORDER_STATUS_FILLED,
                                                                 pb.ORDER_STATUS_PARTIALLY_FILLED)]
    assert from_venue and all(json.loads(e.raw_venue_json) for e in from_venue)
    assert [e.raw_venue_json for e in store.events(order_id) if e.raw_venue_json] == [
        e.raw_venue_json for e in details.events if e.raw_venue_json]
    (trade,) = details.trades
    assert int(trade.trade_id.split(":")[1]) in integers(json.loads(trade.raw_venue_json))  # an integer, not 1.2e7
    assert store.trades(order_id)[0].raw_venue_json == trade.raw_venue_json


def test_venue_settings_are_stored_and_an_exchange_restart_refuses_no_order_for_them(accounts):
    stack, store, sim = accounts
    setting = set_leverage(stack, "desk-a", "ETHUSDT", "7")
    # Who set it is the caller's identity (the local stack's client), not the request's comment.
    assert (setting.account, setting.symbol, setting.leverage, setting.source) == ("desk-a", "ETHUSDT", "7",
                                                                                 LOCAL_PRINCIPAL)
    held = stored_settings(stack, "desk-a")
    assert held[("desk-a", "ETHUSDT")].leverage == "7"
    history = stack.oms.ListVenueSettings(oms_pb2.ListVenueSettingsRequest(account="desk-a", history=True),
                                          timeout=e2e.RPC_TIMEOUT).changes
    eth = [(c.leverage, c.principal, c.comment) for c in history if c.symbol == "ETHUSDT"]
    assert eth[-1] == ("7", LOCAL_PRINCIPAL, "e2e-operator")  # the request's comment, kept
    assert all(principal == "venue" for _, principal, _ in eth[:-1])  # read from the venue before it
    assert held[("desk-a", "")].position_mode == "ONE_WAY"  # read from the venue when the Exchange started
    assert e2e.expect_error(lambda: set_leverage(stack, "someone-else", "ETHUSDT", "3"),
                            grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_NOT_CONFIGURED")

    vh.restart_exchange(stack)
    approved = e2e.approve(stack, account="desk-a", symbol="ETHUSDT", quantity="0.1", leverage="7")
    answer = submit(stack, approved)

    assert answer.order.status == pb.ORDER_STATUS_FILLED, answer.order
    assert stored_settings(stack, "desk-a")[("desk-a", "ETHUSDT")].source == LOCAL_PRINCIPAL  # unchanged, kept


def test_the_tessera_venue_commands_set_and_list_the_settings(accounts):
    stack, store, sim = accounts
    oms = ("--oms", stack.processes["oms"].address)

    held = e2e.approve(stack, account="desk-b", quantity="0.01")  # desk-b holds a position
    assert submit(stack, held).order.status == pb.ORDER_STATUS_FILLED

    changed = e2e.run_cli("venue", "leverage", "desk-b", "SOLUSDT", "4", "--operator", "cli-operator", *oms)
    margin = e2e.run_cli("venue", "margin-mode", "desk-b", "SOLUSDT", "isolated", "--comment", "INC-7 de-risk", *oms)
    unknown = e2e.run_cli("venue", "leverage", "nobody", "SOLUSDT", "4", "--operator", "cli-operator", *oms)
    # Hedge mode: the venue refuses it while the account holds a position; one-way (as it is) is kept.
    locked = e2e.run_cli("venue", "position-mode", "desk-b", "hedge", "--operator", "cli-operator", *oms)
    one_way = e2e.run_cli("venue", "position-mode", "desk-b", "one-way", "--operator", "cli-operator", *oms)
    listed = e2e.run_cli("venue", "settings", "desk-b", *oms)
    history = e2e.run_cli("venue", "history", "desk-b", *oms)

    assert changed.returncode == 0 and margin.returncode == 0, e2e.show(changed) + e2e.show(margin)
    assert unknown.returncode == 1 and "ACCOUNT_NOT_CONFIGURED" in unknown.stderr, e2e.show(unknown)
    assert locked.returncode == 1 and "POSITION_MODE_LOCKED_BY_POSITION" in locked.stderr, e2e.show(locked)
    assert one_way.returncode == 0, e2e.show(one_way)
    (row,) = [line for line in listed.stdout.splitlines() if "SOLUSDT" in line]
    assert row.split()[:6] == ["desk-b", "SOLUSDT", "4", "ISOLATED", "-", LOCAL_PRINCIPAL]  # the caller's identity
    (account_row,) = [line for line in listed.stdout.splitlines() if "(account)" in line]
    assert account_row.split()[:6] == ["desk-b", "(account)", "-", "-", "ONE_WAY", LOCAL_PRINCIPAL]
    assert "desk-a" not in listed.stdout
    # The history keeps each change with who made it and the comment (the latest setting alone does not).
    assert history.returncode == 0, e2e.show(history)
    assert "desk-a" not in history.stdout
    changes = [line.split() for line in history.stdout.splitlines() if "SOLUSDT" in line]
    ours = [cells for cells in changes if cells[5] == LOCAL_PRINCIPAL]  # (and any read from the venue: "venue")
    assert [cells[:6] for cells in ours] == [["desk-b", "SOLUSDT", "4", "-", "-", LOCAL_PRINCIPAL],
                                             ["desk-b", "SOLUSDT", "-", "ISOLATED", "-", LOCAL_PRINCIPAL]]
    assert [" ".join(cells[7:]) for cells in ours] == ["cli-operator", "INC-7 de-risk"]
    assert {cells[5] for cells in changes} <= {LOCAL_PRINCIPAL, "venue"}
    at_venue = sim.control("GET", f"/_sim/settings?account={USER_B}")
    assert at_venue["leverage"]["SOLUSDT"] == 4 and at_venue["margin_types"]["SOLUSDT"] == "ISOLATED"
    assert at_venue["dual_side"] is False  # never hedged


def test_a_dropped_user_stream_loses_and_doubles_no_fill(accounts):
    stack, store, sim = accounts
    assert e2e.wait_until(lambda: sim.streams()["connected"] >= 2, 10)  # one per account
    orders = [e2e.approve(stack, account=account, order_type=pb.ORDER_TYPE_LIMIT, quantity="0.01", price=price)
              for account, price in (("desk-a", "64900"), ("desk-b", "64800"))]
    for approved in orders:
        assert submit(stack, approved).order.status == pb.ORDER_STATUS_ACCEPTED
    sim.set_price("BTCUSDT", "64890")  # the first fills while the streams are up
    settled(store, orders[0].order.order_id, "FILLED")
    sim.drop_streams(refuse_seconds=1.0)  # down for a while: the second fills unseen, then the gap is filled
    sim.set_price("BTCUSDT", "64790")

    settled(store, orders[1].order.order_id, "FILLED")
    assert e2e.wait_until(lambda: sim.streams()["connected"] >= 2, 10)  # and back
    time.sleep(0.5)
    for approved in orders:
        (venue_order,) = sim.orders(approved.order.client_order_id)
        stored = [t.trade_id for t in store.trades(approved.order.order_id)]
        assert stored == [VenueRecord.trade_id(t) for t in sim.trades(venue_order["orderId"])]  # once each
    sim.set_price("BTCUSDT", str(e2e.PRICES["BTCUSDT"]))


def test_each_venue_accounts_positions_are_its_own_and_agree_with_its_ledger(accounts):
    stack, store, sim = accounts
    answer = stack.exchange.ListVenuePositions(exchange_pb2.ListVenuePositionsRequest(), timeout=e2e.RPC_TIMEOUT,
                                               metadata=e2e.oms_credential("ListVenuePositions"))
    venue = {(p.account, p.symbol): p.quantity for p in answer.positions}

    def ledger(account, symbol):
        return stack.risk.GetPosition(risk_pb2.GetPositionRequest(
            account=account, market_type=pb.MARKET_TYPE_FUTURES, symbol=symbol), timeout=e2e.RPC_TIMEOUT).position

    assert list(answer.accounts) == ["desk-a", "desk-b"]
    assert {("desk-a", "BTCUSDT"), ("desk-b", "BTCUSDT"), ("desk-a", "ETHUSDT")} <= venue.keys()
    assert ("desk-b", "ETHUSDT") not in venue  # only desk-a traded ETHUSDT: each venue account its own
    for (account, symbol), quantity in venue.items():
        assert e2e.wait_until(lambda: ledger(account, symbol).quantity == quantity, 10), (account, symbol, quantity)
    time.sleep(2.0)  # reconciler passes (every 0.5 s): every account agrees with the venue
    with store.uow() as uow:
        assert [a for a in uow.anomalies.list(limit=100) if a.kind == "VENUE_POSITION_MISMATCH"] == []


def test_an_account_added_to_the_registry_trades_once_both_services_reloaded_it(accounts):
    stack, store, sim = accounts

    def validate():
        return stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(account="desk-c")),
                                        timeout=e2e.RPC_TIMEOUT)

    e2e.expect_error(validate, grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_NOT_CONFIGURED")
    document = json.loads(stack.registry.read_text())
    document["accounts"]["desk-c"] = {"venue": "aster", "market_types": ["FUTURES"], "user": USER_C,
                                      "signer": SIGNER_C, "private_key_file": "desk-c.key"}
    stack.registry.write_text(json.dumps(document))

    def approved():
        try:
            return validate()
        except grpc.RpcError:
            return None

    assert e2e.wait_until(lambda: approved() is not None, 10), "Risk did not reload the registry"
    order = e2e.approve(stack, account="desk-c", quantity="0.01")
    time.sleep(1.0)  # the Exchange's reload (every 0.5 s, as Risk's)
    assert submit(stack, order).order.status == pb.ORDER_STATUS_FILLED
    (at_venue,) = sim.orders(order.order.client_order_id)
    assert at_venue["account"] == USER_C


def test_the_kill_switch_cancels_an_order_placed_directly_at_the_venue_past_an_account_the_venue_refuses(accounts):
    stack, store, sim = accounts
    ours = e2e.approve(stack, account="desk-a", order_type=pb.ORDER_TYPE_LIMIT, quantity="0.01", price="60000")
    assert submit(stack, ours).order.status == pb.ORDER_STATUS_ACCEPTED
    outside = sim.control("POST", "/_sim/place", {"account": USER_B, "symbol": "ETHUSDT", "side": "SELL",
                                                  "type": "LIMIT", "quantity": "1", "price": "4000",
                                                  "timeInForce": "GTC", "newClientOrderId": "placed-by-hand"})
    assert outside["status"] == "NEW"
    # An account whose API wallet the venue does not know: the venue refuses everything it signs.
    document = json.loads(stack.registry.read_text())
    document["accounts"]["desk-0"] = {"venue": "aster", "market_types": ["FUTURES"], "user": USER_X,
                                      "signer": SIGNER_X, "private_key_file": "desk-x.key"}
    (stack.registry.parent / "desk-x.key").write_text(KEY_X + "\n")
    stack.registry.write_text(json.dumps(document))

    def exchange_accounts():
        answer = stack.exchange.ListVenueSettings(exchange_pb2.ListVenueSettingsRequest(), timeout=e2e.RPC_TIMEOUT,
                                                  metadata=e2e.oms_credential("ListVenueSettings"))
        return {a.account for a in answer.accounts}

    assert e2e.wait_until(lambda: "desk-0" in exchange_accounts(), 10), "the Exchange did not reload the registry"

    try:
        answer = stack.oms.EmergencyCancelAll(oms_pb2.EmergencyCancelAllRequest(
            operator="e2e-operator", reason="kill switch e2e"), timeout=30)
        assert answer.state == pb.TRADING_STATE_HALTED
        listed = {o.order_id: o for o in answer.orders}
        assert ours.order.order_id in listed
        # The others: approvals never submitted (the reload test's), cancelled without the venue.
        assert all(not o.remote_order_id and o.status == pb.ORDER_STATUS_CANCELLED
                   for order_id, o in listed.items() if order_id != ours.order.order_id)
        settled(store, ours.order.order_id, "CANCELLED")
        (by_hand,) = sim.orders("placed-by-hand")
        assert by_hand["status"] == "CANCELED"  # placed outside Tessera, past the refused account
        # The refused account is named: its open orders could not be listed, after every attempt.
        assert [(f.account, f.market_type, f.symbol, f.reason) for f in answer.venue_failures] == [
            ("desk-0", pb.MARKET_TYPE_FUTURES, "", "VENUE_UNAUTHORIZED")]
        assert stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest(),
                                          timeout=e2e.RPC_TIMEOUT).state == pb.TRADING_STATE_HALTED
    finally:
        stack.risk.SetTradingState(risk_pb2.SetTradingStateRequest(
            state=pb.TRADING_STATE_ACTIVE, operator="e2e-operator", reason="kill switch e2e done"),
            timeout=e2e.RPC_TIMEOUT)


def test_no_private_key_or_bearer_jwt_is_in_any_log_or_in_the_store(accounts):
    stack, store, sim = accounts
    url = stack.env["TESSERA_DATABASE_URL"]
    stack.stop()  # flush and close every log (the module's last test)

    tables, dump = e2e.assert_secrets_nowhere(NEEDLES, log_dir=stack.log_dir, database_url=url)

    assert "orders_ts" in tables and "desk-c" in dump  # the scan read the store the tests wrote
    assert (stack.log_dir / "exchange.stderr.log").read_text().strip()  # and the Exchange's log
