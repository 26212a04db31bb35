"""TesseraRiskShardDown, run by ``promtool test rules`` on synthetic series: it fires when
fewer Risk replicas are up than the shard count they report, and not while all serve."""

from __future__ import annotations

from pathlib import Path

import k8s_manifests as km

LABELS = 'app_kubernetes_io_part_of="tessera", app_kubernetes_io_name="risk", instance="%s"'
UP = "up{" + LABELS + "}"
SHARDS = "tessera_risk_shards{" + LABELS + ', shard="%s"}'


def test_the_shard_alert_fires_when_a_risk_replica_stops_and_only_then(tmp_path: Path) -> None:
    case = {
        "rule_files": [str(km.RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            # Three shards. risk-2 stops answering after 2 minutes (up 0, its last
            # tessera_risk_shards sample goes stale); risk-0 and risk-1 keep serving.
            "input_series": [
                {"series": UP % "risk-0", "values": "1x40"},
                {"series": UP % "risk-1", "values": "1x40"},
                {"series": UP % "risk-2", "values": "1x8 0x32"},
                {"series": SHARDS % ("risk-0", "0"), "values": "3x40"},
                {"series": SHARDS % ("risk-1", "1"), "values": "3x40"},
                {"series": SHARDS % ("risk-2", "2"), "values": "3x8 _x32"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TesseraRiskShardDown", "exp_alerts": []},
                {"eval_time": "2m30s", "alertname": "TesseraRiskShardDown", "exp_alerts": []},  # pending (for: 1m)
                {"eval_time": "4m", "alertname": "TesseraRiskShardDown", "exp_alerts": [{
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": {
                        "summary": "2 Risk replicas serve: the accounts of the missing shards are refused"},
                }]},
            ],
        }],
    }
    km.promtool_test_rules(case, tmp_path / "risk-shard-alert.yaml")
