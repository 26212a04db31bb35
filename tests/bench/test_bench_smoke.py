"""``tessera bench --smoke`` on each database: it runs and reports every metric, every
floor (the bare chain, the hop with and without the observers, the empty durable commit,
the token check) and every target as measured, floor, ratio.

A few orders per configuration, two repetitions: nothing here is a measurement and no
time is asserted. PostgreSQL is skipped when the server is not there (``CI=true``: it must
be).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("TESSERA_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CONCURRENCY = (1, 8, 32)
ORDER_PATH = [(kind, c) for c in CONCURRENCY for kind in ("round_trip", "validate", "submit")]
ORDER_PATH += [("batch", 1), ("validate_batch", 1), ("submit_batch", 1)]


def _postgres_reachable() -> str | None:
    from sqlalchemy import create_engine, text

    from services.store.engine import normalize_url

    engine = create_engine(normalize_url(ADMIN_URL))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return None
    except Exception as error:  # noqa: BLE001 - any failure to connect
        return f"{type(error).__name__}: {error}"
    finally:
        engine.dispose()


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_", "ASTER_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["TESSERA_BENCH_POSTGRES_ADMIN_URL"] = ADMIN_URL
    return env


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_bench_smoke_reports_every_metric(database: str, tmp_path: Path) -> None:
    if database == "postgres":
        problem = _postgres_reachable()
        if problem is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true: PostgreSQL must be reachable at {ADMIN_URL} ({problem})")
            pytest.skip(f"no PostgreSQL at {ADMIN_URL}")
    out, plot, docs = tmp_path / "bench.json", tmp_path / "latency.png", tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nkept\n")
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--smoke", "--databases", database,
         "--json", str(out), "--plot", str(plot), "--docs", str(docs)],
        env=_environment(), cwd=str(tmp_path), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    report = json.loads(out.read_text())

    assert report["plan"]["repetitions"] == 2
    rows = {(r["kind"], r["concurrency"]): r for r in report["results"] if r["database"] == database}
    assert sorted(rows) == sorted(ORDER_PATH + [("commit", 1)])
    bare = {(r["kind"], r["concurrency"]): r for r in report["results"] if r["database"] == "bare chain"}
    assert sorted(bare) == sorted(ORDER_PATH + [("hop", 32)])
    observed = [r for r in report["results"] if r["database"] == "bare chain, observed"]
    assert [(r["kind"], r["concurrency"]) for r in observed] == [("hop", 32)]
    for key, row in [*rows.items(), *bare.items(), (("hop", 32), observed[0])]:
        assert row["errors"] == 0, (key, row["first_error"])
        assert row["repetitions"] == 2 and len(row["per_repetition"]) == 2, key
        assert row["samples"] > 0, key
        for metric in ("p50_ms", "p95_ms", "p99_ms"):
            assert math.isfinite(row[metric]) and row[metric] > 0, (key, metric)
        low, high = row["p50_ms_spread"]
        assert low <= row["p50_ms"] <= high, key
        if key[0] in ("round_trip", "batch", "hop", "commit"):
            assert row["ops_per_second"] > 0, key
        if key[0] in ("round_trip", "batch", "hop"):  # CPU per order (per call) of each process
            expected = {"risk", "client"} if key[0] == "hop" else {"oms", "risk", "exchange", "client"}
            assert set(row["cpu_us_per_op"]) == expected, key
            assert all(math.isfinite(v) and v >= 0 for v in row["cpu_us_per_op"].values()), key
    for key in ORDER_PATH:
        assert math.isfinite(rows[key]["vs_bare_p50"]), key  # each of Tessera's rows against the bare chain's

    machine = report["machine"]
    for field in ("cores", "cpu", "python", "libraries", "load_before", "load_after"):
        assert machine[field], field
    assert report["databases"][database]  # its settings (synchronous mode, versions)
    token = report["token"]["seconds"]
    assert {"compiled", "python", "hmac_floor"} <= set(token) and "seed" not in token
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in token.values())
    targets = {t["target"]: t for t in report["targets"]}
    name = {"sqlite": "SQLite FULL", "postgres": "PostgreSQL"}[database]
    for wanted in (f"{name}: single-order throughput, 32 in flight", f"{name}: round trip p50, 1 in flight",
                   f"{name}: batches of 10", f"{name}: CPU per order, four processes summed (single, 32 in flight)",
                   "the OMS's token check from the wire, compiled", "the observers' cost per hop, 32 in flight: p50"):
        target = targets[wanted]
        assert target["met"] in (True, False), wanted
        assert target["measured"] and target["floor"] and target["ratio"], wanted
        assert math.isfinite(target["measured_value"]) and math.isfinite(target["floor_value"]), wanted
    seed = targets["the same, against the seed's verify_risk_token"]
    assert seed["met"] is None and "not measured" in seed["floor"]  # no --seed here
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "<!-- bench:results:begin -->" in text
    assert "| target | measured | floor (same run) | ratio | wanted | |" in text
    assert "| figure | before (issue 10, 7dc5e2d) |" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.stat().st_size > 0 and "![latency distributions](latency.png)" in text
