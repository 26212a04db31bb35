"""Shared settings and counters of the fuzz tests.

``TESSERA_FUZZ_EXAMPLES`` sets the examples per property (the test command's sample uses
the default; ``make fuzz`` raises it so the run tries at least 100,000 cases) and
``TESSERA_FUZZ_SUMMARY`` names a JSON file the session writes its case counts to.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from pathlib import Path

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "60"))
SUMMARY = os.environ.get("TESSERA_FUZZ_SUMMARY", "")

#: Cases tried, by target ("rpc:oms.SubmitOrder", "token:verify", ...).
CASES: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def count(target: str, n: int = 1) -> None:
    with _lock:
        CASES[target] += n


def fuzz_settings(examples: int | None = None) -> settings:
    """Deterministic in the test command (derandomized), random and larger in ``make fuzz``."""
    return settings(
        max_examples=examples or EXAMPLES,
        deadline=None,
        derandomize=not SUMMARY,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                               HealthCheck.function_scoped_fixture],
    )


def write_summary() -> None:
    if not SUMMARY:
        return
    path = Path(SUMMARY)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    cases = collections.Counter(previous.get("cases", {}))
    cases.update(CASES)
    tried = {k: v for k, v in cases.items() if not k.startswith("status:")}
    path.write_text(json.dumps({"total": sum(tried.values()), "cases": dict(sorted(cases.items()))}, indent=2) + "\n")
