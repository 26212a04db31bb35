"""The probe runner of the deployment tests keeps the kubelet's semantics (podman drops
the manifests' probes, so the tests run them): defaults, initial delay, period, the
success and failure thresholds. No podman needed."""

from __future__ import annotations

from typing import Iterable

import deploy_support as ds


def scripted(outcomes: Iterable[bool]) -> tuple[list[float], object]:
    results = iter(outcomes)
    timeouts: list[float] = []

    def check(timeout: float) -> tuple[bool, str]:
        timeouts.append(timeout)
        ok = next(results)
        return ok, "SERVING" if ok else "UNAVAILABLE: connection refused"

    return timeouts, check


def test_a_probe_passes_at_its_first_success_by_default() -> None:
    sleeps: list[float] = []
    timeouts, check = scripted([False, False, True])
    outcome = ds.run_probe("startupProbe", {"periodSeconds": 2, "failureThreshold": 30}, check, sleep=sleeps.append)
    assert (outcome.ok, outcome.attempts) == (True, 3)
    assert sleeps == [0.0, 2.0, 2.0]  # no initial delay, then the period between checks
    assert timeouts == [1.0, 1.0, 1.0]  # the kubelet's default timeout


def test_a_probe_fails_after_failure_threshold_consecutive_failures() -> None:
    timeouts, check = scripted([False, True, False, False, True])
    outcome = ds.run_probe("livenessProbe", {"failureThreshold": 2, "successThreshold": 2, "timeoutSeconds": 2},
                           check, sleep=lambda _: None)
    assert (outcome.ok, outcome.attempts) == (False, 4)
    assert outcome.last_error == "UNAVAILABLE: connection refused"
    assert timeouts == [2.0] * 4


def test_a_probe_needs_success_threshold_consecutive_successes() -> None:
    _, check = scripted([True, False, True, True])
    outcome = ds.run_probe("readinessProbe", {"successThreshold": 2, "failureThreshold": 3}, check,
                           sleep=lambda _: None)
    assert (outcome.ok, outcome.attempts) == (True, 4)


def test_a_probe_waits_its_initial_delay_before_the_first_check() -> None:
    sleeps: list[float] = []
    _, check = scripted([True])
    ds.run_probe("livenessProbe", {"initialDelaySeconds": 30, "periodSeconds": 10}, check, sleep=sleeps.append)
    assert sleeps == [30.0]


def test_the_kubelet_defaults_allow_three_failures_ten_seconds_apart() -> None:
    sleeps: list[float] = []
    _, check = scripted([False, False, False])
    outcome = ds.run_probe("livenessProbe", {}, check, sleep=sleeps.append)
    assert (outcome.ok, outcome.attempts) == (False, 3)
    assert sleeps == [0.0, 10.0, 10.0]
