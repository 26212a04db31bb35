"""What the micro-benchmarks measured, for the summary the conftest prints."""

from __future__ import annotations

from typing import Any

#: group -> implementation -> median seconds (filled as the benchmarks run).
MEDIANS: dict[str, dict[str, float]] = {}


def record(benchmark: Any, group: str, implementation: str) -> None:
    """Note the median of the benchmark that just ran (nothing when benchmarks are disabled)."""
    benchmark.extra_info["implementation"] = implementation
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(benchmark, "disabled", False) is False:
        MEDIANS.setdefault(group, {})[implementation] = stats.stats.median
