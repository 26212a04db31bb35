"""The floors of ``tessera bench`` (services/cli/bench_floor.py) and how the report reads
them: the seed loaded from a checkout, the empty durable commit, CPU per process, medians
of the repetitions, each target as measured, floor, ratio. No time is asserted."""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from services.cli import bench, bench_floor

#: A stand-in for a checkout of the seed project: the same module path and functions
#: (the real one is brought with ``fetch``, never committed; ``make bench SEED=...``).
STAND_IN = '''
import hashlib, hmac, os, time

def sign_risk_token(order_id):
    payload = f"{order_id}:{int(time.time())}:v1"
    return payload + ":" + hmac.new(os.environ["AIS_RISK_HMAC_SECRET"].encode(), payload.encode(),
                                    hashlib.sha256).hexdigest()

def verify_risk_token(token, order_id):
    order, stamp, key_id, sig = token.split(":")
    payload = f"{order}:{stamp}:{key_id}"
    good = hmac.new(os.environ["AIS_RISK_HMAC_SECRET"].encode(), payload.encode(), hashlib.sha256).hexdigest()
    return order == order_id and hmac.compare_digest(sig, good)
'''


@pytest.fixture
def seed_checkout(tmp_path: Path):
    package = tmp_path / "seed" / "src" / "aiswarm" / "risk"
    package.mkdir(parents=True)
    for directory in (package.parent, package):
        (directory / "__init__.py").write_text("")
    (package / "limits.py").write_text(textwrap.dedent(STAND_IN))
    yield tmp_path / "seed"
    for name in [m for m in sys.modules if m == "aiswarm" or m.startswith("aiswarm.")]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]


def test_the_token_figures_time_each_check_per_repetition_and_the_seed_from_its_checkout(seed_checkout):
    before = os.environ.get("AIS_RISK_HMAC_SECRET")
    figures = bench_floor.token_figures(3, str(seed_checkout), target=0.0005)
    assert set(figures["seconds"]) >= {"compiled", "python", "hmac_floor", "seed"}
    assert all(len(values) == 3 and all(v > 0 for v in values) for values in figures["seconds"].values())
    assert figures["seed"]["function"] == "aiswarm.risk.limits.verify_risk_token"
    assert figures["seed"]["path"] == str(seed_checkout.resolve())
    assert os.environ.get("AIS_RISK_HMAC_SECRET") == before  # the seed's secret was set for it alone


def test_without_a_seed_its_target_is_reported_not_measured():
    figures = bench_floor.token_figures(1, None, target=0.0005)
    assert "seed" not in figures["seconds"] and figures["seed"] is None
    targets = {t["target"]: t for t in bench.evaluate([], figures, "no --seed given")}
    seed = targets["the same, against the seed's verify_risk_token"]
    assert seed["met"] is None and seed["floor"] == "not measured (no --seed given)"
    compiled = targets["the OMS's token check from the wire, compiled"]
    assert compiled["met"] in (True, False) and compiled["floor"].startswith("the HMAC alone")


def test_a_seed_path_without_the_module_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="src/aiswarm/risk/limits.py"):
        bench_floor.load_seed(str(tmp_path))


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_the_commit_floor_commits_each_transaction_on_sqlite(tmp_path: Path, synchronous: str):
    path = tmp_path / "floor.db"
    latencies = bench_floor.commit_floor("sqlite", f"sqlite:///{path}", synchronous, 25)
    assert len(latencies) == 25 and all(x > 0 for x in latencies)
    with sqlite3.connect(path) as connection:  # every UPDATE was committed
        assert connection.execute(f"SELECT n FROM {bench_floor.FLOOR_TABLE}").fetchone() == (25,)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize("clock", [bench_floor.cpu_seconds, bench_floor.thread_cpu_times])
def test_the_cpu_meter_counts_this_process_s_work(clock):
    meter = bench_floor.CpuMeter({"client": os.getpid()}, clock)
    meter.start()
    total = 0
    while not total or meter.stop()["client"] <= 0:
        total += sum(i * i for i in range(200_000))
    assert meter.stop()["client"] > 0


def test_a_thread_that_ends_takes_only_its_own_time_out_of_the_threads_meter():
    import threading

    meter = bench_floor.CpuMeter({"client": os.getpid()}, bench_floor.thread_cpu_times)
    meter.start()
    worker = threading.Thread(target=lambda: sum(i * i for i in range(300_000)))
    worker.start()
    worker.join()
    total = 0
    while not total or meter.stop()["client"] <= 0:
        total += sum(i * i for i in range(200_000))
    assert meter.stop()["client"] > 0  # this thread's time, the ended one's left out: never below zero


def _series(database: str, kind: str, repetition: int, latency: float, cpu_seconds: float,
            operations: int = 10, concurrency: int = 1) -> bench.Series:
    return bench.Series(database, kind, concurrency, [latency] * operations, operations, latency * operations,
                        repetition=repetition, cpu={"oms": cpu_seconds, "client": cpu_seconds})


def test_each_figure_is_the_median_of_the_repetitions_with_their_spread():
    rows = bench.aggregate([_series("sqlite", "round_trip", r, latency, cpu)
                            for r, (latency, cpu) in enumerate([(0.003, 0.01), (0.001, 0.03), (0.002, 0.02)])])
    (row,) = rows
    assert row["repetitions"] == 3 and row["operations"] == 30
    assert row["p50_ms"] == pytest.approx(2.0) and row["p50_ms_spread"] == pytest.approx([1.0, 3.0])
    assert row["ops_per_second"] == pytest.approx(500.0) and row["ops_per_second_spread"] == pytest.approx([1000 / 3, 1000])
    assert row["cpu_us_per_op"] == pytest.approx({"oms": 2000.0, "client": 2000.0})
    assert row["cpu_us_per_op_sum"] == pytest.approx(4000.0)


def test_the_round_trip_target_is_a_ratio_to_the_bare_chain_plus_three_commits():
    series = [
        _series("bare chain", "round_trip", 0, 0.002, 0.001),
        _series("bare chain", "round_trip", 0, 0.010, 0.001, concurrency=32),
        _series("sqlite", "commit", 0, 0.0005, 0.0),
        _series("sqlite", "round_trip", 0, 0.004, 0.001),
        _series("sqlite", "round_trip", 0, 0.025, 0.001, concurrency=32),
    ]
    rows = bench.aggregate(series)
    targets = {t["target"]: t for t in bench.evaluate(rows, {})}
    p50 = targets["SQLite FULL: round trip p50, 1 in flight"]
    assert p50["floor_value"] == pytest.approx(2.0 + 3 * 0.5)
    assert p50["ratio_value"] == pytest.approx(4.0 / 3.5) and p50["met"] is True
    single = targets["SQLite FULL: single-order throughput, 32 in flight"]
    assert single["ratio_value"] == pytest.approx(0.4) and single["met"] is False  # 40 % of the bare chain's


def test_a_ratio_pairs_each_repetition_with_the_floor_measured_beside_it():
    # The load changed between repetitions: each side of a pair met the same load.
    series = [
        _series("bare chain", "hop", 0, 0.001, 0.001, concurrency=32),
        _series("bare chain, observed", "hop", 0, 0.003, 0.001, concurrency=32),
        _series("bare chain", "hop", 1, 0.004, 0.001, concurrency=32),
        _series("bare chain, observed", "hop", 1, 0.0044, 0.001, concurrency=32),
        _series("bare chain", "hop", 2, 0.002, 0.001, concurrency=32),
        _series("bare chain, observed", "hop", 2, 0.0024, 0.001, concurrency=32),
    ]
    rows = bench.aggregate(series)
    bare, observed = bench._find(rows, "bare chain", "hop"), bench._find(rows, "bare chain, observed", "hop")
    assert observed["p50_ms"] / bare["p50_ms"] == pytest.approx(1.5)  # the medians' ratio
    assert bench.paired(lambda o, b: o["p50_ms"] / b["p50_ms"], observed, bare) == pytest.approx(1.2)
    targets = {t["target"]: t for t in bench.evaluate(rows, {})}
    assert targets["the observers' cost per hop, 32 in flight: p50"]["ratio_value"] == pytest.approx(0.2)
    # Unmatched repetitions are not paired.
    series[1].repetition = 5
    rows = bench.aggregate(series)
    bare, observed = bench._find(rows, "bare chain", "hop"), bench._find(rows, "bare chain, observed", "hop")
    assert bench.paired(lambda o, b: o["p50_ms"] / b["p50_ms"], observed, bare) == pytest.approx(1.15)
    assert bench.paired(lambda o, b: 1.0, observed, None) != bench.paired(lambda o, b: 1.0, observed, None)  # NaN


def test_the_tree_state_names_the_commit_and_each_set_of_uncommitted_changes(tmp_path: Path):
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "module.py").write_text("A = 1\n")
    git("add", "module.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "one")

    clean = bench_floor.tree_state(tmp_path)
    (tmp_path / "module.py").write_text("A = 2\n")
    edited = bench_floor.tree_state(tmp_path)
    (tmp_path / "module.py").write_text("A = 3\n")
    edited_again = bench_floor.tree_state(tmp_path)

    assert clean["commit"] and clean["changes"] == ""
    assert edited["commit"] == clean["commit"] and edited["changes"]
    assert edited_again["changes"] not in ("", edited["changes"])  # another program than the one before
    assert bench_floor.tree_state(tmp_path / "not-a-repo") == {"commit": "", "changes": ""}


def test_the_same_uncommitted_changes_name_the_same_state_whenever_they_are_read(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    """A run that starts with changes nobody touches is one program from start to end,
    though the stash commit ``git stash create`` makes carries the time it was made."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "module.py").write_text("A = 1\n")
    git("add", "module.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "one")
    (tmp_path / "module.py").write_text("A = 2\n")

    monkeypatch.setenv("GIT_COMMITTER_DATE", "2030-01-01T00:00:00Z")
    at_the_start = bench_floor.tree_state(tmp_path)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2030-01-01T00:04:00Z")  # four minutes later, nothing edited
    at_the_end = bench_floor.tree_state(tmp_path)

    assert at_the_start["changes"] and at_the_start == at_the_end


def test_the_report_says_when_the_tree_changed_while_the_benchmark_ran():
    clean = {"commit": "abc1234", "changes": ""}
    dirty = {"commit": "abc1234", "changes": "0123456789abcdef"}

    assert bench.tree_line(clean, clean) == "- tree: abc1234, clean"
    assert bench.tree_line(dirty, dirty) == "- tree: abc1234, with uncommitted changes (0123456789)"
    assert "changed while the benchmark ran" in bench.tree_line(clean, dirty)
    assert "changed while" not in bench.tree_line(dirty, dirty)
