"""tools/risk_memory.py: Risk's resident memory with a loaded book, as the real process
reports it (the 100,000-account figure is in docs/benchmarks.md; here a small book)."""

from __future__ import annotations

import json
import subprocess
import sys

import tessera_e2e as e2e

TOOL = e2e.PROJECT_ROOT / "tools" / "risk_memory.py"


def test_the_memory_tool_measures_a_risk_process_that_loaded_every_account() -> None:
    result = subprocess.run([sys.executable, str(TOOL), "--accounts", "4000", "--positions", "3", "--json"],
                            capture_output=True, text=True, timeout=300, env=e2e.base_env())
    assert result.returncode == 0, e2e.show(result)
    figures = json.loads(result.stdout)

    assert figures["accounts_loaded"] == 4000  # Risk's own log: its book holds every account
    assert figures["positions"] == 12_000
    assert figures["loaded_rss_mb"] > figures["empty_rss_mb"] > 20  # a Python process with gRPC and SQLAlchemy
    # The book is the difference of the two processes' resident memory, per account and position.
    assert abs(figures["book_rss_mb"] - (figures["loaded_rss_mb"] - figures["empty_rss_mb"])) <= 0.15
    assert abs(figures["bytes_per_account"] - 3 * figures["bytes_per_position"]) <= 3
