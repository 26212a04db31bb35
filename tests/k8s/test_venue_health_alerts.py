"""TesseraVenueUserStreamDown and TesseraVenueDeadManFailing, run by ``promtool test
rules`` on synthetic series: the stream alert fires for the account and market whose
user-data stream stays down (fills polled from REST) for 5 minutes, not for a stream
that comes back within them; the dead-man alert fires at the second heartbeat failed in
a row and ends with the next that re-arms the countdown."""

from __future__ import annotations

from pathlib import Path

import yaml

import k8s_manifests as km

EXCHANGE = 'app_kubernetes_io_part_of="tessera", app_kubernetes_io_name="exchange", instance="exchange-0"'
STREAM = "tessera_venue_user_stream_connected{" + EXCHANGE + ', account="%s", market="%s"}'
DEADMAN = "tessera_venue_deadman_consecutive_failures{" + EXCHANGE + "}"


def annotations(alert: str, **rendered: str) -> dict[str, str]:
    """The alert's annotations as the rules file has them, with ``rendered`` in place of
    the templated ones."""
    rules = [rule for group in yaml.safe_load(km.RULES.read_text())["groups"] for rule in group["rules"]]
    (rule,) = [rule for rule in rules if rule.get("alert") == alert]
    return {**rule["annotations"], **rendered}


def test_the_user_stream_alert_fires_for_a_stream_down_5_minutes_and_not_for_a_short_drop(tmp_path: Path) -> None:
    down, blip = ("v3:0xAAAA", "FUTURES"), ("v1:5f0c2e8d1b3a", "SPOT")
    case = {
        "rule_files": [str(km.RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            # Both connected for 2 minutes; then one stays down, the other is back after 1 minute.
            "input_series": [
                {"series": STREAM % down, "values": "1x8 0x40"},
                {"series": STREAM % blip, "values": "1x8 0x4 1x35"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "TesseraVenueUserStreamDown", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "TesseraVenueUserStreamDown", "exp_alerts": []},  # pending (for: 5m)
                {"eval_time": "8m", "alertname": "TesseraVenueUserStreamDown", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "account": down[0], "market": down[1]},
                    "exp_annotations": annotations(
                        "TesseraVenueUserStreamDown",
                        summary=f"The {down[1]} user-data stream of {down[0]} has been down for 5 minutes"),
                }]},
            ],
        }],
    }
    km.promtool_test_rules(case, tmp_path / "user-stream-alert.yaml")


def test_the_dead_man_alert_fires_at_the_second_failed_heartbeat_in_a_row_until_one_re_arms(tmp_path: Path) -> None:
    case = {
        "rule_files": [str(km.RULES)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            # Beats re-arm for 2 minutes, then four fail in a row, then they re-arm again.
            "input_series": [{"series": DEADMAN, "values": "0x8 1 2 3 4 0x30"}],
            "alert_rule_test": [
                {"eval_time": "2m15s", "alertname": "TesseraVenueDeadManFailing", "exp_alerts": []},  # one failure
                {"eval_time": "2m30s", "alertname": "TesseraVenueDeadManFailing", "exp_alerts": [{
                    "exp_labels": {"severity": "critical"},
                    "exp_annotations": annotations(
                        "TesseraVenueDeadManFailing",
                        summary="The venue's dead-man switch has not been re-armed for 2 heartbeats"),
                }]},
                {"eval_time": "4m", "alertname": "TesseraVenueDeadManFailing", "exp_alerts": []},
            ],
        }],
    }
    km.promtool_test_rules(case, tmp_path / "dead-man-alert.yaml")
