"""``tessera bench --smoke`` on each database: it runs and reports every metric.

A few orders per configuration: nothing here is a measurement and no time is asserted.
PostgreSQL is skipped when the server is not there (``CI=true``: it must be).
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

    rows = {(r["kind"], r["concurrency"]): r for r in report["results"] if r["database"] == database}
    expected = [(kind, c) for c in CONCURRENCY for kind in ("echo", "round_trip", "validate", "submit")]
    expected += [("batch", 1), ("validate_batch", 1), ("submit_batch", 1)]
    assert sorted(rows) == sorted(expected)
    for key, row in rows.items():
        assert row["errors"] == 0, (key, row["first_error"])
        assert row["samples"] > 0, key
        for metric in ("p50_ms", "p95_ms", "p99_ms"):
            assert math.isfinite(row[metric]) and row[metric] > 0, (key, metric)
        if key[0] in ("echo", "round_trip", "batch"):
            assert row["ops_per_second"] > 0, key
        if key[0] == "round_trip":
            assert row["hops"] == 3 and math.isfinite(row["floor_ratio"]), key

    machine = report["machine"]
    for field in ("cores", "cpu", "python", "libraries", "load_before", "load_after"):
        assert machine[field], field
    assert report["databases"][database]  # its settings (synchronous mode, versions)
    assert {t["target"] for t in report["targets"]} >= {
        f"{database}: round trip p50 vs 3 x echo p50 (1 in flight)",
        f"{database}: orders/s, single-order RPCs",
    }
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "<!-- bench:results:begin -->" in text
    assert "| target | wanted | measured |" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert plot.stat().st_size > 0 and "![latency distributions](latency.png)" in text
