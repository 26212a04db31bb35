"""The hop alone: ``tessera bench``'s echo with and without the observers, nothing else.

Starts a bare Risk-like server and an observed one (``services.cli.bare_chain risk``,
the second with ``--interceptors``), then drives ``ValidateOrder`` at ``--in-flight``
calls in flight on each, alternately first, ``--repetitions`` times, with the bench's
own client code (:func:`services.cli.bench._hop`). Prints, per repetition and as
medians, each server's CPU per call and the p50, and the observed/bare ratios (each
repetition's ratio, then their median: the two run back to back, so a noisy machine
moves both).

``python tools/hop_bench.py [--calls 5000] [--in-flight 32] [--repetitions 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.cli.bench import BARE, OBSERVED, Clients, Orders, Progress, Series, _configuration, _drive, _hop  # noqa: E402
from services.cli.bench_floor import BareChain, CpuMeter  # noqa: E402


async def _run(bare: BareChain, observed: BareChain, calls: int, in_flight: int, repetitions: int) -> list[dict]:
    progress = Progress(quiet=True)
    orders = Orders(uuid.uuid4().hex[:8])
    stubs = {BARE: Clients.connect(bare.addresses), OBSERVED: Clients.connect(observed.addresses)}
    meters = {BARE: CpuMeter({"risk": bare.pids["risk"]}), OBSERVED: CpuMeter({"risk": observed.pids["risk"]})}
    for label, clients in stubs.items():  # warm up
        await _drive(2000, in_flight, lambda clients=clients: _hop(clients.risk, orders), Series(label, "warmup", 1),
                     progress, "warm-up")
    rows = []
    for repetition in range(repetitions):
        labels = (BARE, OBSERVED) if repetition % 2 == 0 else (OBSERVED, BARE)
        row = {}
        for label in labels:
            risk = stubs[label].risk
            series = await _configuration(Series(label, "hop", in_flight), calls, in_flight,
                                          lambda risk=risk: _hop(risk, orders), progress, label, meters[label])
            summary = series.summary()
            row[label] = (summary["cpu_us_per_op"]["risk"], summary["p50_ms"], summary["errors"])
        rows.append(row)
        (bc, bp, be), (oc, op, oe) = row[BARE], row[OBSERVED]
        print(f"repetition {repetition + 1}: server CPU/call bare {bc:6.1f} us observed {oc:6.1f} us "
              f"({oc / bc - 1:+.0%}); p50 bare {bp:.3f} ms observed {op:.3f} ms ({op / bp - 1:+.0%})"
              + (f"; errors {be}/{oe}" if be or oe else ""), flush=True)
    for clients in stubs.values():
        await clients.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    if not CpuMeter.available():
        print("no /proc: the CPU per call cannot be measured here", file=sys.stderr)
        return 1
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="tessera-hop-") as workdir:
        with BareChain(Path(workdir), roles=("risk",), env=env) as bare, \
                BareChain(Path(workdir), observed=True, roles=("risk",), env=env) as observed:
            rows = asyncio.run(_run(bare, observed, args.calls, args.in_flight, args.repetitions))
    median = statistics.median
    bc, oc = median(r[BARE][0] for r in rows), median(r[OBSERVED][0] for r in rows)
    bp, op = median(r[BARE][1] for r in rows), median(r[OBSERVED][1] for r in rows)
    cpu_ratio = median(r[OBSERVED][0] / r[BARE][0] for r in rows) - 1
    p50_ratio = median(r[OBSERVED][1] / r[BARE][1] for r in rows) - 1
    print(f"medians of {len(rows)}, {args.in_flight} in flight, {args.calls} calls each: "
          f"server CPU/call bare {bc:.1f} us observed {oc:.1f} us (paired {cpu_ratio:+.0%}); "
          f"p50 bare {bp:.3f} ms observed {op:.3f} ms (paired {p50_ratio:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
