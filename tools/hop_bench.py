"""The hop alone: ``tessera bench``'s echo with and without the observers, nothing else.

Starts a bare Risk-like server and an observed one (``services.cli.bare_chain risk``,
the second with ``--interceptors``), and for each ``--also DIR`` an observed one run
from another tree's ``services/`` (``git archive <commit> services | tar -x -C DIR``:
the observers as they were, or with a part switched off, beside them as they are), then
drives ``ValidateOrder`` at ``--in-flight`` calls in flight on each in turn (the order
rotated every repetition, see :func:`turns`, ``--pause`` seconds between turns),
``--repetitions`` times, with the bench's own client code
(:func:`services.cli.bench._hop`). Prints each server's CPU per call and p50 per
repetition, then the medians, the median of the per-repetition ratios to the bare server
and how many repetitions are within ``--target`` of it: the servers run back to back, so
a noisy machine moves both sides of each ratio.

A server's CPU is the time its threads ran (``/proc/PID/task/*/schedstat``, in
nanoseconds; the clock-tick counts of ``/proc/PID/stat`` are 10 ms steps, 5 µs per call
in a repetition of 2,000 calls), or the tick counts where schedstat is missing.

``python tools/hop_bench.py [--calls 2000] [--in-flight 32] [--repetitions 20] [--pause 0.1] [--also DIR ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from services.cli.bench import Clients, Orders, Progress, Series, _configuration, _drive, _hop  # noqa: E402
from services.cli.bench_floor import CpuMeter, cpu_seconds, thread_cpu_seconds  # noqa: E402

BARE = "bare"
_LISTENING = re.compile(r"risk listening on (\S+)")


def _start(label: str, root: Path, observed: bool, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [str(root), str(PROJECT_ROOT),
                                                                    env.get("PYTHONPATH", "")])))
    command = [sys.executable, "-m", "services.cli.bare_chain", "risk", "--port", "0"]
    if observed:
        command.append("--interceptors")
    out = log_dir / f"{label}.stdout.log"
    with open(out, "wb") as stdout, open(log_dir / f"{label}.stderr.log", "wb") as stderr:
        process = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                   env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        match = _LISTENING.search(out.read_text(errors="replace"))
        if match:
            return process, match.group(1)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"{label}: the server did not start (see {log_dir})")
        time.sleep(0.02)


def turns(labels: list[str], repetition: int) -> list[str]:
    """The order the servers take their turns in, in ``repetition``: rotated by one a
    repetition, and reversed every other round of rotations, so that each server takes
    each place, after each of its neighbours, as often as the others (a server's place in
    the round moves its CPU per call by a few per cent)."""
    ordered = labels if (repetition // len(labels)) % 2 == 0 else labels[::-1]
    shift = repetition % len(labels)
    return ordered[shift:] + ordered[:shift]


async def _run(servers: dict[str, tuple[subprocess.Popen[bytes], str]], calls: int, in_flight: int,
               repetitions: int, pause: float) -> dict[str, list[tuple[float, float]]]:
    progress = Progress(quiet=True)
    orders = Orders(uuid.uuid4().hex[:8])
    clients = {label: Clients.connect({"risk": address}) for label, (_, address) in servers.items()}
    clock = thread_cpu_seconds if Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists() else cpu_seconds
    meters = {label: CpuMeter({"risk": process.pid}, clock) for label, (process, _) in servers.items()}
    for label, client in clients.items():  # warm up, not recorded
        await _drive(2000, in_flight, lambda client=client: _hop(client.risk, orders), Series(label, "warmup", 1),
                     progress, "warm-up")
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in servers}
    labels = list(servers)
    for repetition in range(repetitions):
        for label in turns(labels, repetition):
            await asyncio.sleep(pause)  # what the last server does a moment after its calls (its drain) is done
            risk = clients[label].risk
            series = await _configuration(Series(label, "hop", in_flight), calls, in_flight,
                                          lambda risk=risk: _hop(risk, orders), progress, label, meters[label])
            summary = series.summary()
            if summary["errors"]:
                raise SystemExit(f"{label}: {summary['errors']} calls failed: {summary['first_error']}")
            results[label].append((summary["cpu_us_per_op"]["risk"], summary["p50_ms"]))
        print(f"repetition {repetition + 1}: " + "; ".join(
            f"{label} {results[label][-1][0]:.1f} us {results[label][-1][1]:.2f} ms" for label in labels), flush=True)
    for client in clients.values():
        await client.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per server and repetition")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="another tree's services/, run observed beside this one's (may be repeated)")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between two servers' turns")
    parser.add_argument("--target", type=float, default=0.10,
                        help="the ratio to the bare server's CPU per call a repetition is counted within")
    args = parser.parse_args(argv)
    if not CpuMeter.available():
        print("no /proc: the CPU per call cannot be measured here", file=sys.stderr)
        return 1
    plan = {BARE: (PROJECT_ROOT, False), "observed": (PROJECT_ROOT, True)}
    for tree in args.also:
        plan[f"observed ({tree})"] = (tree.resolve(), True)
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    with tempfile.TemporaryDirectory(prefix="tessera-hop-") as workdir:
        try:
            for index, (label, (root, observed)) in enumerate(plan.items()):
                servers[label] = _start(f"server-{index}", root, observed, Path(workdir))
            results = asyncio.run(_run(servers, args.calls, args.in_flight, args.repetitions, args.pause))
        finally:
            for process, _ in servers.values():
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
    median = statistics.median
    print(f"\nmedians of {args.repetitions} repetitions, {args.in_flight} in flight, {args.calls} calls each "
          f"(ratios: the median of the per-repetition ratios to {BARE}):")
    for label, rows in results.items():
        cpu, p50 = median(c for c, _ in rows), median(p for _, p in rows)
        line = f"  {label:40s} server CPU/call {cpu:6.1f} us   p50 {p50:6.2f} ms"
        if label != BARE:
            cpu_ratios = [c / b - 1 for (c, _), (b, _) in zip(rows, results[BARE])]
            p50_ratio = median(p / b for (_, p), (_, b) in zip(rows, results[BARE])) - 1
            within = sum(ratio <= args.target for ratio in cpu_ratios)
            line += (f"   CPU {median(cpu_ratios):+.1%} ({within}/{len(cpu_ratios)} within {args.target:+.0%})"
                     f"   p50 {p50_ratio:+.0%}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
