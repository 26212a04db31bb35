"""``make fuzz``: the dedicated fuzz run, at least 100,000 cases, with its figures.

1. the property-based suite (``tests/fuzz``) with ``TESSERA_FUZZ_EXAMPLES`` examples per
   property: every RPC of the three services as real processes, the token and encoding
   targets (hypothesis, random seed unless ``--seed``);
2. the coverage-guided run of the token targets (atheris/libFuzzer, ``--atheris-runs``
   inputs), when atheris is installed (``pip install -e ".[fuzz]"``).

Writes the cases tried per target to ``--summary`` (JSON) and prints the total.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4500, help="examples per property (default %(default)s)")
    parser.add_argument("--atheris-runs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis and libFuzzer seed")
    parser.add_argument("--summary", default=str(ROOT / "var" / "fuzz" / "summary.json"))
    args = parser.parse_args(argv)
    summary = Path(args.summary)
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.unlink(missing_ok=True)
    env = dict(os.environ, TESSERA_FUZZ_EXAMPLES=str(args.examples), TESSERA_FUZZ_SUMMARY=str(summary))
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "fuzz")]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    failed = subprocess.run(command, env=env, cwd=ROOT, check=False).returncode != 0
    result = json.loads(summary.read_text()) if summary.exists() else {"total": 0, "cases": {}}
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: the coverage-guided run is skipped (pip install -e '.[fuzz]')")
    else:
        corpus = tempfile.mkdtemp(prefix="tessera-fuzz-corpus-")
        fuzz = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "fuzz" / "atheris_tokens.py"), f"-runs={args.atheris_runs}",
             f"-seed={args.seed or 1}", "-max_len=512", corpus],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )
        done = re.search(r"Done (\d+) runs", fuzz.stderr)
        runs = int(done.group(1)) if done else 0
        coverage = re.findall(r"cov: (\d+)", fuzz.stderr)
        result["cases"]["atheris:token_targets"] = runs
        result["atheris_coverage_edges"] = int(coverage[-1]) if coverage else 0
        result["total"] += runs
        if fuzz.returncode != 0:
            failed = True
            print(fuzz.stderr[-4000:], file=sys.stderr)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["ok"] = not failed
    summary.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
