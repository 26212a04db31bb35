"""TesseraKillSwitchIncomplete, run by ``promtool test rules`` on synthetic series: it fires
as soon as the OMS counts something the kill switch's venue-wide cancel left at the venue
(a series that appears already at 1 included, as a labelled counter does at its first
event), by reason, and ends 30 minutes after the last one."""

from __future__ import annotations

from pathlib import Path

import yaml

import k8s_manifests as km

OMS = 'app_kubernetes_io_part_of="tessera", app_kubernetes_io_name="oms", instance="oms-0"'
FAILURES = "tessera_kill_switch_failures_total{" + OMS + ', reason="%s"}'


def summary(reason: str) -> dict[str, str]:
    rules = [rule for group in yaml.safe_load(km.RULES.read_text())["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule.get("alert") == "TesseraKillSwitchIncomplete"]
    return {**rule["annotations"], "summary": f"The kill switch left orders at the venue uncancelled: {reason}"}


def test_the_alert_fires_at_the_first_failure_counted_and_ends_half_an_hour_after_the_last(tmp_path: Path) -> None:
    case = {
        "rule_files": [str(km.RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # First counted at 10 minutes (the series appears at 1), never again.
                {"series": FAILURES % "VENUE_UNAUTHORIZED", "values": "_x9 1x60"},
                # Known at 0, then one more at 20 minutes.
                {"series": FAILURES % "EXCHANGE_UNAVAILABLE", "values": "0x19 1x60"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "TesseraKillSwitchIncomplete", "exp_alerts": []},
                {"eval_time": "12m", "alertname": "TesseraKillSwitchIncomplete", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "reason": "VENUE_UNAUTHORIZED"},
                    "exp_annotations": summary("VENUE_UNAUTHORIZED")}]},
                {"eval_time": "25m", "alertname": "TesseraKillSwitchIncomplete", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "reason": "VENUE_UNAUTHORIZED"},
                     "exp_annotations": summary("VENUE_UNAUTHORIZED")},
                    {"exp_labels": {"severity": "critical", "reason": "EXCHANGE_UNAVAILABLE"},
                     "exp_annotations": summary("EXCHANGE_UNAVAILABLE")}]},
                {"eval_time": "55m", "alertname": "TesseraKillSwitchIncomplete", "exp_alerts": []},
            ],
        }],
    }
    km.promtool_test_rules(case, tmp_path / "kill-switch-alert.yaml")
