"""The alert rules and the Grafana dashboard (k8s/components/monitoring): shipped by
both overlays as ConfigMaps, and reading only series the services export. The live
check (promtool, Prometheus against a running stack) is tests/e2e/test_e2e_alerting.py."""

from __future__ import annotations

import json
import re

import yaml

import k8s_manifests as km

MONITORING = km.K8S / "components" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
#: What an operator pages on (issue: kill switch, quarantine, in doubt, anomalies, venue
#: errors and rate limits, the user-data stream down and the dead-man switch failing,
#: token failures, order-path latency, a service down).
REQUIRED_ALERTS = {
    "TesseraKillSwitchTripped", "TesseraSymbolQuarantined", "TesseraOrdersInDoubt", "TesseraReconcilerAnomaly",
    "TesseraVenueErrors", "TesseraVenueRateLimited", "TesseraVenueUserStreamDown", "TesseraVenueDeadManFailing",
    "TesseraTokenForgeryAttempt", "TesseraTokenFailures", "TesseraOrderLatencyHigh", "TesseraServiceDown",
}
SERIES = re.compile(r"\b((?:tessera|process)_[a-z0-9_]+|up)\b")


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def exported_families() -> set[str]:
    """Every metric family the services register, with the store-read ones."""
    from prometheus_client import REGISTRY

    from services.common.observability import metrics

    names = {family.name for family in REGISTRY.collect()}
    names |= {"tessera_trading_state", "tessera_orders_in_doubt", "tessera_order_in_doubt_oldest_seconds",
              "tessera_execution_anomalies"}
    assert metrics.OrderHealthCollector  # the collector that exports the last three
    names |= {"tessera_risk_book_accounts", "tessera_risk_book_positions", "tessera_risk_shards"}
    assert metrics.RiskBookCollector  # Risk's own, registered by services.risk
    return names


def family(series: str) -> str:
    return re.sub(r"_(bucket|count|sum|total)$", "", series)


def test_both_overlays_ship_the_rules_and_the_dashboard_as_config_maps(objects: list[dict]) -> None:
    rules = km.named(objects, "ConfigMap", "tessera-prometheus-rules")
    dashboard = km.named(objects, "ConfigMap", "tessera-grafana-dashboard")
    assert rules["data"] == {"tessera.rules.yaml": RULES.read_text()}
    assert dashboard["data"] == {"tessera-order-flow.json": DASHBOARD.read_text()}
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # Grafana's sidecar loads it


def test_the_rules_alert_on_every_condition_an_operator_pages_on() -> None:
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in alert_rules() if "alert" in rule}


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_rules_and_the_dashboard_read_only_series_the_services_export() -> None:
    expressions = [rule["expr"] for rule in alert_rules()] + dashboard_expressions()
    read = {family(name) for expression in expressions for name in SERIES.findall(expression)}
    assert read - {"up"} - exported_families() == set()


def test_the_dashboard_queries_its_prometheus_through_the_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
