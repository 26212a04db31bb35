"""Micro-benchmarks of the compiled core against its pure-Python twin (pytest-benchmark).

In the test suite they run once each (``--benchmark-disable`` in the pytest options):
a smoke run that proves they work, with no timing. ``make bench`` runs them for real
(``--benchmark-enable --benchmark-only``) and this file then prints, after
pytest-benchmark's table, each operation's medians side by side with the compiled
core's speed-up and the OpenSSL HMAC floor.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import MEDIANS  # noqa: E402

def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEDIANS:
        return
    floor = MEDIANS.get("hmac_floor", {}).get("openssl")
    write = terminalreporter.write_line
    write("")
    write("compiled core vs pure-Python twin (medians)")
    write(f"{'operation':<20} {'compiled':>12} {'pure Python':>12} {'speed-up':>9} {'vs HMAC floor':>14}")
    for group in ("sign_token", "verify_token", "verify_order_request", "transition"):
        values = MEDIANS.get(group, {})
        compiled, twin = values.get("cython"), values.get("python")
        if compiled is None or twin is None:
            continue
        versus = f"{compiled / floor:.1f}x" if floor and group != "transition" else ""
        write(f"{group:<20} {compiled * 1e6:>9.3f} us {twin * 1e6:>9.3f} us {twin / compiled:>8.1f}x {versus:>14}")
    if floor:
        write(f"{'HMAC floor':<20} {floor * 1e6:>9.3f} us  (the compiled core's pre-keyed OpenSSL context, "
              "nothing else: _token_c.hmac_floor)")
    python_hmac = MEDIANS.get("hmac_python", {}).get("hashlib")
    if python_hmac:
        write(f"{'Python hmac':<20} {python_hmac * 1e6:>9.3f} us  (pre-keyed context copied per call: "
              "copy, update, digest)")
