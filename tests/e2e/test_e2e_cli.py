"""The ``tessera`` command as a user runs it: demo, up, submit, orders, trades, order, watch."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from tessera.oms.v1 import oms_pb2

import tessera_e2e as e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class LineReader:
    """Reads a process's stdout on a thread, so a test can wait for a line with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout}s; got:\n" + "\n".join(self.seen))
            if line is None:
                raise AssertionError(f"output ended before a line matching {pattern!r}; got:\n" + "\n".join(self.seen))
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


def clients(stack) -> list[str]:
    return ["--risk", stack.addresses["risk"], "--oms", stack.addresses["oms"]]


def oms_only(stack) -> list[str]:
    return ["--oms", stack.addresses["oms"]]


def test_demo_runs_end_to_end(tmp_path):
    url = e2e.sqlite_url(tmp_path / "demo.db")
    env = e2e.base_env(AIS_RISK_HMAC_SECRET=None, AIS_RISK_HMAC_KEY_ID=None)
    result = e2e.run_cli("demo", "--db", url, "--log-dir", str(tmp_path / "logs"), env=env, cwd=tmp_path,
                         timeout=120)
    assert result.returncode == 0, e2e.show(result)
    assert "FILLED" in result.stdout
    assert "MAX_NOTIONAL_EXCEEDED" in result.stdout
    assert "AIS_RISK_HMAC_SECRET is not set" in result.stdout  # the ephemeral-secret notice
    assert "Traceback" not in result.stderr
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            counts = dict(connection.execute(text("SELECT status, count(*) FROM orders_ts GROUP BY status")).all())
            managers = connection.execute(text("SELECT unique_identifier FROM order_managers")).scalars().all()
            trades = connection.execute(text("SELECT count(*) FROM trades_ts")).scalar_one()
    finally:
        engine.dispose()
    assert counts.get("REJECTED") == 1, counts
    assert counts.get("FILLED", 0) >= 4 and set(counts) == {"FILLED", "REJECTED"}, counts
    assert trades >= counts["FILLED"]
    assert len(managers) == 1 and managers[0].startswith("demo-rebalance-")


def test_submit_takes_the_new_order_types_and_their_fields(stack, store):
    account = e2e.new_account()
    quoted = e2e.run_cli("submit", "ETHUSDT", "buy", "--market", "spot", "--quote-order-qty", "320",
                         "--account", account, *clients(stack))
    assert quoted.returncode == 0, e2e.show(quoted)
    order_id = re.search(rf"APPROVED order ({UUID})", quoted.stdout).group(1)
    assert "quote_order_qty:" in quoted.stdout and store.status(order_id) == "FILLED"

    trailing = e2e.run_cli("submit", "BTCUSDT", "sell", "0.01", "--type", "trailing-stop-market",
                           "--callback-rate", "0.5", "--activation-price", "66000", "--working-type", "mark",
                           "--account", account, *clients(stack))
    assert trailing.returncode == 0, e2e.show(trailing)
    order_id = re.search(rf"APPROVED order ({UUID})", trailing.stdout).group(1)
    stored = store.order(order_id)
    assert (stored.callback_rate, stored.activation_price, stored.working_type.value) == (
        Decimal("0.5"), Decimal(66000), "MARK_PRICE")
    assert "callback_rate:" in trailing.stdout and "MARK_PRICE" in trailing.stdout

    refused = e2e.run_cli("submit", "BTCUSDT", "sell", "0.01", "--type", "take-profit-market", "--stop-price",
                          "70000", "--close-position", "--account", account, *clients(stack))
    assert refused.returncode != 0 and "quantity" in refused.stderr and "close_position" in refused.stderr, (
        e2e.show(refused))


def test_submit_then_list(stack, store):
    account = e2e.new_account()
    result = e2e.run_cli("submit", "BTCUSDT", "buy", "0.01", "--account", account, *clients(stack))
    assert result.returncode == 0, e2e.show(result)
    order_id = re.search(rf"APPROVED order ({UUID})", result.stdout).group(1)
    assert "FILLED" in result.stdout
    assert store.status(order_id) == "FILLED"

    listed = e2e.run_cli("orders", "--account", account, *oms_only(stack))
    assert listed.returncode == 0, e2e.show(listed)
    rows = [line for line in listed.stdout.splitlines() if order_id in line]
    assert len(rows) == 1 and " FILLED " in rows[0], listed.stdout
    assert listed.stdout.splitlines()[0].split()[:3] == ["order_id", "client_order_id", "account"]

    second = e2e.approve(stack, account=account)
    stack.oms.SubmitOrder(second.request(), timeout=e2e.RPC_TIMEOUT)
    first = e2e.run_cli("orders", "--account", account, "--limit", "1", *oms_only(stack))
    assert first.returncode == 0, e2e.show(first)
    lines = first.stdout.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("(first 1 orders"), first.stdout
    assert order_id in lines[2]  # oldest first

    filtered = e2e.run_cli("orders", "--account", account, "--status", "approved,submitted", *oms_only(stack))
    assert filtered.returncode == 0, e2e.show(filtered)
    assert order_id not in filtered.stdout

    trades = e2e.run_cli("trades", "--account", account, *oms_only(stack))
    assert trades.returncode == 0, e2e.show(trades)
    rows = [line for line in trades.stdout.splitlines() if order_id in line]
    assert len(rows) == 1 and "0.26" in rows[0] and "65000" in rows[0], trades.stdout

    shown = e2e.run_cli("order", order_id, *oms_only(stack))
    assert shown.returncode == 0, e2e.show(shown)
    path = re.findall(r"^\s*\d+\s+\S+\s+\S+\s+(\w+)", shown.stdout.split("events:")[1].split("trades:")[0], re.M)
    assert path == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"], shown.stdout

    history = e2e.run_cli("watch", "--order-id", order_id, "--history-only", *oms_only(stack))
    assert history.returncode == 0, e2e.show(history)
    lines = history.stdout.splitlines()
    assert len(lines) == 4 and all(order_id in line for line in lines), history.stdout
    assert "SUBMITTED -> FILLED" in lines[-1]


def test_submit_rejected_by_risk_exits_3(stack):
    result = e2e.run_cli("submit", "BTCUSDT", "buy", "10", "--account", e2e.new_account(), *clients(stack))
    assert result.returncode == 3, e2e.show(result)
    assert "REJECTED" in result.stdout and "MAX_NOTIONAL_EXCEEDED" in result.stdout


def test_submit_rejected_by_the_venue_exits_5(stack, store):
    """Approved by Risk, refused at submission (paper: a post-only BUY at or above the ask
    would take): the order ends REJECTED, and the exit status says so."""
    result = e2e.run_cli("submit", "BTCUSDT", "buy", "0.01", "--price", "65100", "--post-only",
                         "--account", e2e.new_account(), *clients(stack))
    assert result.returncode == 5, e2e.show(result)
    order_id = re.search(rf"APPROVED order ({UUID})", result.stdout).group(1)
    assert store.status(order_id) == "REJECTED"
    assert "oms: REJECTED" in result.stdout, e2e.show(result)
    assert "rejected on submission" in result.stderr and "Traceback" not in result.stderr, e2e.show(result)
    assert "POST_ONLY_WOULD_TAKE" in result.stdout + result.stderr, e2e.show(result)  # and why


def test_submit_that_rests_at_the_venue_exits_0(stack, store):
    """An accepted order still working (a limit BUY below the market) is a success."""
    result = e2e.run_cli("submit", "BTCUSDT", "buy", "0.01", "--price", "64000",
                         "--account", e2e.new_account(), *clients(stack))
    assert result.returncode == 0, e2e.show(result)
    order_id = re.search(rf"APPROVED order ({UUID})", result.stdout).group(1)
    assert store.status(order_id) == "ACCEPTED" and "oms: ACCEPTED" in result.stdout, e2e.show(result)


def test_submit_malformed_shows_status_and_field(stack):
    result = e2e.run_cli("submit", "BTCUSDT", "buy", "abc", "--account", e2e.new_account(), *clients(stack))
    assert result.returncode == 1, e2e.show(result)
    assert "INVALID_ARGUMENT" in result.stderr and "quantity" in result.stderr, e2e.show(result)
    assert "Traceback" not in result.stderr


def test_client_against_nothing_fails_cleanly():
    result = e2e.run_cli("orders", "--oms", "127.0.0.1:1", "--timeout", "5")
    assert result.returncode == 1, e2e.show(result)
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr, e2e.show(result)


def test_order_not_found(stack):
    result = e2e.run_cli("order", "00000000-0000-4000-8000-000000000000", *oms_only(stack))
    assert result.returncode == 1, e2e.show(result)
    assert "NOT_FOUND" in result.stderr


def test_watch_follows_new_events_until_ctrl_c(stack):
    account = e2e.new_account()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "watch", "--account", account, *oms_only(stack)],
        env=e2e.base_env(), cwd=str(e2e.PROJECT_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reader = LineReader(process)
        time.sleep(1.0)  # let the stream open before the events happen
        approved = e2e.approve(stack, account=account)
        stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token),
                              timeout=e2e.RPC_TIMEOUT)
        reader.until(rf"{approved.order.order_id}.*SUBMITTED -> FILLED", timeout=15)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    mine = [line for line in reader.seen if approved.order.order_id in line]
    assert len(mine) == 4, reader.seen
    assert "- -> PENDING" in mine[0] and "SUBMITTED -> FILLED" in mine[-1], mine


def test_up_runs_until_sigterm(tmp_path):
    env = e2e.base_env(AIS_RISK_HMAC_SECRET=None, AIS_RISK_HMAC_KEY_ID=None)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--db", e2e.sqlite_url(tmp_path / "up.db"),
         "--risk-port", "0", "--oms-port", "0", "--exchange-port", "0", "--log-dir", str(tmp_path / "logs")],
        env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        reader = LineReader(process)
        reader.until(r"AIS_RISK_HMAC_SECRET is not set", timeout=10)
        oms = reader.until(r"^oms\s+(\S+:\d+)$", timeout=60).group(1)
        reader.until(r"stack is up", timeout=10)
        listed = e2e.run_cli("orders", "--oms", oms)
        assert listed.returncode == 0, e2e.show(listed)
        assert "(no orders)" in listed.stdout
        process.send_signal(signal.SIGTERM)
        reader.until(r"^stopped \(", timeout=30)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    assert code == 0, stderr
    assert "exit 0" in reader.seen[-1] and "exit -" not in reader.seen[-1], reader.seen
    assert (tmp_path / "up.db").exists()
    assert "oms listening on" in (tmp_path / "logs" / "oms.stdout.log").read_text()


@pytest.mark.parametrize("argv", [["submit", "BTCUSDT", "hold", "1"], ["orders", "--status", "nonsense"]])
def test_usage_errors_exit_2(argv):
    result = e2e.run_cli(*argv)
    assert result.returncode == 2, e2e.show(result)


@pytest.mark.parametrize("action", ["trip", "reduce", "reset"])
def test_kill_switch_change_without_a_reason_is_a_usage_error(action):
    """A change needs --reason (docs/cli.md): refused before any call, exit 2, like any
    other bad usage (nothing listens at these addresses; a call would exit 1)."""
    result = e2e.run_cli("kill-switch", action, "--risk", "127.0.0.1:1", "--oms", "127.0.0.1:1", "--timeout", "5")
    assert result.returncode == 2, e2e.show(result)
    assert "--reason" in result.stderr and "UNAVAILABLE" not in result.stderr, e2e.show(result)


@pytest.mark.parametrize("argv", [
    ["orders", "--limit", "-1", "--oms", "127.0.0.1:1"],
    ["trades", "--limit", "-5", "--oms", "127.0.0.1:1"],
    ["positions", "--limit", "-1", "--risk", "127.0.0.1:1"],
    ["orders", "--timeout", "0", "--oms", "127.0.0.1:1"],
    ["submit", "BTCUSDT", "buy", "0.01", "--timeout", "-1", "--risk", "127.0.0.1:1", "--oms", "127.0.0.1:1"],
])
def test_a_negative_limit_or_a_timeout_that_is_not_positive_is_a_usage_error(argv):
    """Refused by the command (exit 2), not sent: the services answered INVALID_ARGUMENT
    page_size, and a deadline already past failed every call DEADLINE_EXCEEDED (exit 1)."""
    result = e2e.run_cli(*argv)
    assert result.returncode == 2, e2e.show(result)
    assert ("--limit" in result.stderr or "--timeout" in result.stderr) and "Traceback" not in result.stderr, \
        e2e.show(result)
