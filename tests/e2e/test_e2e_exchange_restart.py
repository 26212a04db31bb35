"""The issue's replay, end to end on paper: an order the OMS executed and that FILLED; the
Exchange service restarted (its memory and its replay cache gone); then the same
ExecuteOrder (the order, its risk token, an OMS credential for that very request, all
within their lifetimes) sent to it directly. The restarted Exchange refuses the
credential (issued before it started), as it does a captured CancelOrder credential, and
the Exchange's record of executions in the store refuses the order even with a fresh
credential: no second fill on paper, one trade, and verify-store finds nothing. Orders
still flow through the restarted Exchange."""

from __future__ import annotations

import grpc
import tessera_e2e as e2e

from services.cli.stack import ServiceProcess, Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2


def _restart_exchange(stack: Stack) -> None:
    old = stack.processes["exchange"]
    old.kill()
    channel = stack._channels.pop("exchange", None)
    if channel is not None:
        channel.close()
    env = dict(old.env, TESSERA_EXCHANGE_PORT=old.address.rsplit(":", 1)[1])  # the OMS knows this address
    fresh = ServiceProcess("exchange", env, old.log_dir / "exchange-restarted", cwd=old.cwd)
    stack.processes["exchange"] = fresh
    fresh.start()
    fresh.wait_ready(30)


def test_an_execute_order_replayed_after_an_exchange_restart_is_refused_and_fills_nothing_on_paper(tmp_path):
    url = e2e.sqlite_url(tmp_path / "tessera.db")
    stack = e2e.start_stack(url, tmp_path / "logs")
    store = e2e.StoreView(url)
    try:
        approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
        submitted = stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
        assert submitted.order.status == pb.ORDER_STATUS_FILLED
        request = exchange_pb2.ExecuteOrderRequest(order=approved.order, risk_token=approved.token)
        credential = e2e.oms_credential("ExecuteOrder", request)
        # A CancelOrder the OMS made, captured: used once (the order had filled: nothing to cancel).
        cancel = exchange_pb2.CancelOrderRequest(order_id=approved.order.order_id, symbol="BTCUSDT",
                                                 client_order_id=approved.order.client_order_id)
        cancel_credential = e2e.oms_credential("CancelOrder", cancel)
        e2e.expect_error(lambda: stack.exchange.CancelOrder(cancel, timeout=e2e.RPC_TIMEOUT,
                                                            metadata=cancel_credential),
                         grpc.StatusCode.NOT_FOUND, "UNKNOWN_ORDER")

        _restart_exchange(stack)
        # Both credentials are still within their lifetime, and the restarted Exchange's replay
        # cache is empty: it refuses them for being issued before it started.
        for method, sent, metadata in (("ExecuteOrder", request, credential),
                                       ("CancelOrder", cancel, cancel_credential)):
            e2e.expect_error(lambda: getattr(stack.exchange, method)(sent, timeout=e2e.RPC_TIMEOUT, metadata=metadata),
                             grpc.StatusCode.UNAVAILABLE, "SERVICE_CREDENTIAL_BEFORE_START")
        # And the order itself, even with a credential signed afresh: the store's record of executions.
        e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT,
                                                             metadata=e2e.oms_credential("ExecuteOrder", request)),
                         grpc.StatusCode.PERMISSION_DENIED, "TOKEN_ALREADY_USED")

        assert len(store.trades(approved.order.order_id)) == 1
        assert store.status(approved.order.order_id) == "FILLED"
        # Orders flow on through the restarted Exchange: the OMS signs each call afresh.
        after = e2e.approve(stack, symbol="BTCUSDT", quantity="0.02")
        assert stack.oms.SubmitOrder(after.request(), timeout=e2e.RPC_TIMEOUT).order.status == pb.ORDER_STATUS_FILLED
        # The restarted paper venue filled nothing: its report log holds no report of the order.
        assert [r for r in e2e.execution_reports(stack) if r.order_id == approved.order.order_id] == []
        verified = e2e.run_cli("verify-store", "--database-url", url)
        assert verified.returncode == 0 and "no violations" in verified.stdout, e2e.show(verified)
    finally:
        store.close()
        stack.stop()


def test_after_an_exchange_restart_a_close_position_order_closes_what_was_filled_before_it(tmp_path):
    url = e2e.sqlite_url(tmp_path / "tessera.db")
    stack = e2e.start_stack(url, tmp_path / "logs")
    store = e2e.StoreView(url)
    account = e2e.new_account()
    try:
        opened = e2e.approve(stack, account=account, symbol="BTCUSDT", quantity="0.03")
        assert stack.oms.SubmitOrder(opened.request(), timeout=e2e.RPC_TIMEOUT).order.status == pb.ORDER_STATUS_FILLED
        # At once: Risk takes the fill into its ledger a moment later, and the restarted
        # Exchange holds the ledger's positions and the fills not in it yet, whichever it is.
        _restart_exchange(stack)
        closing = e2e.approve(stack, account=account, symbol="BTCUSDT", side=pb.SIDE_SELL, quantity="",
                              order_type=pb.ORDER_TYPE_TAKE_PROFIT_MARKET, stop_price="60000", close_position=True)
        closed = stack.oms.SubmitOrder(closing.request(), timeout=e2e.RPC_TIMEOUT).order

        # The venue's memory of the position died with the process; the ledger's did not.
        assert (closed.status, closed.filled_quantity) == (pb.ORDER_STATUS_FILLED, "0.03")
        assert [str(t.quantity) for t in store.trades(closing.order.order_id)] == ["0.03"]
    finally:
        store.close()
        stack.stop()
