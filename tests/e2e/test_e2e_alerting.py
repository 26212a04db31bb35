"""The alert rules and the dashboard against the real processes, with Debian's Prometheus.

``promtool check rules`` accepts the shipped rules. Then a Prometheus (scraping every
second, evaluating every second, the shipped rules loaded) scrapes a stack of the three
services run as processes, labelled as the pods' labels would label them. An order
flow (fills, a risk rejection, a tampered token, a symbol quarantined as the reconciler
does it) gives the series values; then every dashboard query evaluates and each over
series that exist returns data, the tampered token and the quarantine fire their
alerts and nothing else fires, and tripping the kill switch with the ``tessera``
command makes TesseraKillSwitchTripped fire.

Needs ``prometheus`` and ``promtool`` (Debian's package ``prometheus``): skipped
without them, failed with ``CI=true`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
import tessera_e2e as e2e
import yaml

from services.cli.stack import PROJECT_ROOT, Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.risk.v1 import risk_pb2

MONITORING = PROJECT_ROOT / "k8s" / "components" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
SERVICES = ("risk", "oms", "exchange")
#: Grafana's interval variables, as Grafana would fill them at a 1 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "1s", "$__range": "5m"}
BUILTIN_SERIES = {"up"}
SERIES = re.compile(r"\b((?:tessera|process)_[a-z0-9_]+|up)\b")


def require(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        message = f"{command} is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}\nCI=true: the alerting tests must run", pytrace=False)
        pytest.skip(message)
    return path


class Prometheus:
    """A Prometheus server of this test: its HTTP API, read with the standard library."""

    def __init__(self, address: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.address, self.process, self.log = address, process, log

    def get(self, path: str, **params: str) -> Any:
        url = f"http://{self.address}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expression)["result"]

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def configuration(stack: Stack, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "tessera",
            "static_configs": [
                # The labels the usual kubernetes-pods scrape job copies from the pods.
                {"targets": [stack.metrics_addresses[name]],
                 "labels": {"app_kubernetes_io_name": name, "app_kubernetes_io_part_of": "tessera"}}
                for name in SERVICES
            ],
        }],
    }


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Prometheus]]:
    prometheus = require("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    stack = Stack(database_url=e2e.sqlite_url(work / "tessera.db"), env=e2e.base_env(),
                  log_dir=work / "logs").start()
    process = None
    try:
        config = work / "prometheus.yml"
        config.write_text(yaml.safe_dump(configuration(stack, RULES)))
        port = e2e_free_port()
        log = work / "prometheus.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                stdout=output, stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"127.0.0.1:{port}", process, log)
        wait_until(lambda: ready(server), 60, f"Prometheus to start ({log})")
        yield stack, server
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.stop()


def e2e_free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ready(server: Prometheus) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"prometheus exited {server.process.returncode}:\n{server.log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://{server.address}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def with_flow(monitored: tuple[Stack, Prometheus]) -> tuple[Stack, Prometheus]:
    """The stack after an order flow, once Prometheus has scraped what it left."""
    stack, server = monitored

    def fill(quantity: str) -> None:
        approved = e2e.approve(stack, quantity=quantity)
        answer = stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
        assert answer.order.status == pb.ORDER_STATUS_FILLED

    def filled() -> float:
        result = server.query('sum(tessera_orders_total{status="FILLED"})')
        return float(result[0]["value"][1]) if result else 0.0

    # A counter's first sample shows no increase: let Prometheus see the first fill
    # before the rest of the flow, so rate() has something to measure.
    fill("0.01")
    wait_until(lambda: filled() == 1, 60, "Prometheus to scrape the first fill")
    fill("0.02")
    rejected = stack.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(quantity="10")),
                                        timeout=e2e.RPC_TIMEOUT)
    assert rejected.order.status == pb.ORDER_STATUS_REJECTED
    tampered = e2e.approve(stack, quantity="0.03")
    e2e.expect_error(lambda: stack.oms.SubmitOrder(tampered.request(quantity="0.04"), timeout=e2e.RPC_TIMEOUT),
                     grpc.StatusCode.PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")

    # The reconciler's quarantine of a symbol, as it writes it (the test owns the store).
    quarantine_symbol(stack.env["TESSERA_DATABASE_URL"], "symbol:SOLUSDT")

    def scraped() -> bool:
        up = server.query('up{job="tessera"} == 1')
        # Every series sampled at least twice in the dashboard's window (rate() needs
        # two), and the second fill's increase in it.
        names = [n for n in server.get("/api/v1/label/__name__/values") if n.startswith("tessera_")]
        return len(up) == len(SERVICES) and filled() == 2 \
            and not any(server.query(f"count_over_time({name}[15s]) < 2") for name in names) \
            and bool(server.query('sum(rate(tessera_orders_total{status="FILLED"}[15s])) > 0'))

    wait_until(scraped, 60, "Prometheus to scrape the flow")
    return stack, server


def quarantine_symbol(database_url: str, scope: str) -> None:
    from services.domain import TradingState
    from services.store import Store

    store = Store.from_url(database_url)
    try:
        with store.uow() as uow:
            uow.trading_state.set(TradingState.HALTED, "reconciler", "alerting test: quarantine", scope=scope)
            uow.commit()
    finally:
        store.dispose()


def dashboard_expressions() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found = []
    for panel in panels:
        for target in panel.get("targets", []):
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            found.append((panel["title"], expression))
    return found


def test_promtool_accepts_the_shipped_rules() -> None:
    promtool = require("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def exported_series(stack: Stack) -> set[str]:
    """Every series name the services' /metrics declare (``# TYPE`` lines), samples or not."""
    names: set[str] = set()
    for name in SERVICES:
        with urllib.request.urlopen(f"http://{stack.metrics_addresses[name]}/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith("# TYPE "):
                    family, kind = line.split()[2:4]
                    names |= {family, *(f"{family}_{s}" for s in ("bucket", "count", "sum") if kind == "histogram")}
    return names


def test_every_dashboard_query_evaluates_against_the_live_metrics(with_flow: tuple[Stack, Prometheus]) -> None:
    stack, server = with_flow
    exported = exported_series(stack) | BUILTIN_SERIES
    scraped = set(server.get("/api/v1/label/__name__/values"))
    empty = []
    for title, expression in dashboard_expressions():
        result = server.query(expression)  # raises unless Prometheus evaluated it
        series = set(SERIES.findall(expression))
        assert series - exported == set(), f"{title}: {expression} reads series no service exports"
        if series <= scraped and not result:
            empty.append(f"{title}: {expression}")
    # Every query over series the flow produced returns data (a paper stack has no venue
    # errors and a clean store no anomalies: those series are declared, never sampled).
    assert empty == [], "\n".join(empty)


def test_the_tampered_token_and_the_quarantine_fire_their_alerts_and_nothing_else_fires(
    with_flow: tuple[Stack, Prometheus]
) -> None:
    _, server = with_flow
    expected = {"TesseraTokenForgeryAttempt", "TesseraSymbolQuarantined"}
    wait_until(lambda: expected <= server.firing(), 30, f"{expected} to fire")
    assert server.firing() == expected
    quarantined = [a for a in server.get("/api/v1/alerts")["alerts"]
                   if a["labels"]["alertname"] == "TesseraSymbolQuarantined"]
    assert [a["labels"]["scope"] for a in quarantined] == ["symbol:SOLUSDT"]
    assert server.query("max(tessera_orders_in_doubt)")[0]["value"][1] == "0"


def test_tripping_the_kill_switch_fires_its_alert(with_flow: tuple[Stack, Prometheus]) -> None:
    stack, server = with_flow
    assert "TesseraKillSwitchTripped" not in server.firing()
    tripped = e2e.run_cli("kill-switch", "trip", "--operator", "e2e", "--reason", "alerting test",
                          "--risk", stack.addresses["risk"], "--oms", stack.addresses["oms"])
    assert tripped.returncode == 0, e2e.show(tripped)
    wait_until(lambda: "TesseraKillSwitchTripped" in server.firing(), 60, "TesseraKillSwitchTripped to fire")
    alert = next(a for a in server.get("/api/v1/alerts")["alerts"]
                 if a["labels"]["alertname"] == "TesseraKillSwitchTripped")
    assert alert["labels"]["severity"] == "critical"
    assert float(alert["value"]) == 2
