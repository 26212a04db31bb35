""".ci/run: a fresh clone stays clean after ``make setup``, or CI fails before the tests.

The script runs in a scratch git repository with a stand-in ``make`` on PATH that records
its targets and, for ``setup``, writes what it is told to: nothing (a clean setup) or a
file git sees (a generated file missing from .gitignore).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

FAKE_MAKE = """#!/usr/bin/env bash
echo "$1" >> "$MAKE_CALLS"
if [ "$1" = setup ] && [ -n "${SETUP_WRITES:-}" ]; then echo generated > "$SETUP_WRITES"; fi
exit 0
"""


def run_ci(tmp_path: Path, setup_writes: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", clone / ".ci" / "run")
    (clone / ".gitignore").write_text(".venv/\n")
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    calls = tmp_path / "make-calls"
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # no Debian installs here
    env.update(PATH=f"{bin_dir}:{env['PATH']}", MAKE_CALLS=str(calls),
               SETUP_WRITES=str(clone / setup_writes) if setup_writes else "")
    result = subprocess.run(["bash", str(clone / ".ci" / "run")], env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, check=False)
    return result, calls.read_text().split() if calls.exists() else []


def test_a_setup_that_writes_nothing_git_sees_goes_on_to_the_tests(tmp_path: Path) -> None:
    result, calls = run_ci(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == ["setup", "test"]


def test_a_setup_that_leaves_an_untracked_file_fails_ci_printing_the_status(tmp_path: Path) -> None:
    result, calls = run_ci(tmp_path, setup_writes="generated.txt")
    assert result.returncode != 0
    assert calls == ["setup"]  # the tests never ran
    assert "?? generated.txt" in result.stderr


def test_a_setup_that_rewrites_a_tracked_file_fails_ci(tmp_path: Path) -> None:
    result, calls = run_ci(tmp_path, setup_writes=".gitignore")
    assert result.returncode != 0
    assert calls == ["setup"]
    assert " M .gitignore" in result.stderr


def test_what_make_setup_creates_is_ignored_by_git() -> None:
    """The paths `make setup` and the compiled core write (Makefile: setup, tools, the
    buf CLI, the Node.js client, the Go build) are all in .gitignore."""
    created = [".venv/bin/python", "node_modules/.bin/buf", "clients/node/node_modules/x",
               ".tools/.installed", ".gopath/src", "core_ext/_token_c.c",
               "core_ext/_token_c.cpython-311-x86_64-linux-gnu.so", "tessera.egg-info/PKG-INFO", "build/lib", "var/x"]
    result = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *created],
                            capture_output=True, text=True, check=False)
    assert sorted(result.stdout.split()) == sorted(created)
