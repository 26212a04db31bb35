"""The README's five-minute tour, run command by command, so it cannot rot.

The test reads the ``sh`` blocks of the README's "A five-minute tour" section and does
what a newcomer does: in a fresh directory (holding only ``.venv`` and ``clients``, as a
clone does), ``source .venv/bin/activate``, start ``tessera up`` and wait until it says
the stack is up, then run every other command in a shell of its own, in order. Each must
exit 0, or the code its comment announces (``(exit 3)``), and print what its comment
claims: each upper-case word (``FILLED``, ``MAX_NOTIONAL_EXCEEDED``) and each quoted
phrase (``"no violations"``; ``N`` stands for a number). Finally Ctrl-C stops the stack,
which must exit 0.

The environment is a clean shell's: no ``TESSERA_*``, ``AIS_*`` or ``ASTER_*`` variable
but the ports (``tessera up`` binds free ones here, not 50051-50053, which another run may
hold) and, for the clients, the addresses ``tessera up`` printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.cli.stack import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
SECTION = "## A five-minute tour"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECTED_EXIT = re.compile(r"\(exit (\d+)\)")


@dataclass(frozen=True)
class TourCommand:
    line: str
    comment: str

    @property
    def expected_exit(self) -> int:
        match = EXPECTED_EXIT.search(self.comment)
        return int(match.group(1)) if match else 0

    def claims(self) -> list[re.Pattern[str]]:
        """What the comment says the output shows: upper-case words and quoted phrases."""
        quoted = re.findall(r'"([^"]+)"', self.comment)
        words = re.findall(r"\b[A-Z][A-Z_]{3,}\b", re.sub(r'"[^"]*"', "", self.comment))
        phrases = [re.escape(q).replace("N", r"\d+") for q in quoted]
        return [re.compile(rf"\b{w}\b") for w in words] + [re.compile(p) for p in phrases]


def tour_commands(readme: str) -> list[TourCommand]:
    section = readme[readme.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    commands = []
    for block in BLOCK.findall(section):
        for raw in block.splitlines():
            line, _, comment = raw.partition(" #")
            if line.strip():
                commands.append(TourCommand(line.strip(), comment.strip()))
    return commands


def test_tour_parser_reads_commands_comments_and_claims() -> None:
    text = (f"{SECTION}\n\n```sh\nsource .venv/bin/activate\ntessera up   # stack\n```\n\n"
            "```sh\ntessera submit X BUY 10   # REJECTED, MAX_NOTIONAL_EXCEEDED (exit 3)\n"
            'node c.js   # then "N passed, 0 failed"\n```\n\n## Next\n\n```sh\nnot this\n```\n')
    commands = tour_commands(text)
    assert [c.line for c in commands] == ["source .venv/bin/activate", "tessera up", "tessera submit X BUY 10",
                                         "node c.js"]
    assert commands[2].expected_exit == 3 and commands[3].expected_exit == 0
    assert [p.pattern for p in commands[2].claims()] == [r"\bREJECTED\b", r"\bMAX_NOTIONAL_EXCEEDED\b"]
    assert commands[3].claims()[0].search("21 passed, 0 failed")
    assert not commands[3].claims()[0].search("21 passed, 1 failed")


def _unavailable(problem: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def clean_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_", "ASTER_", "VIRTUAL_ENV"))}
    env.update(TESSERA_RISK_PORT="0", TESSERA_OMS_PORT="0", TESSERA_EXCHANGE_PORT="0", PYTHONUNBUFFERED="1")
    return env


def newcomer_directory(tmp_path: Path) -> Path:
    """A directory laid out like the clone after ``make demo``: ``.venv`` and ``clients``."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file() or not (venv / "bin" / "tessera").is_file():
        _unavailable(f"the tests do not run from the virtualenv `make setup` makes ({venv})")
    if shutil.which("node") is None or not (PROJECT_ROOT / "clients/node/node_modules/@grpc/grpc-js").is_dir():
        _unavailable("Node.js or clients/node/node_modules is missing: run `make setup`")
    home = tmp_path / "tessera"
    home.mkdir()
    (home / ".venv").symlink_to(venv)
    (home / "clients").symlink_to(PROJECT_ROOT / "clients")
    return home


def shell(preamble: list[str], line: str) -> list[str]:
    return ["bash", "-c", "\n".join(["set -e", *preamble, f"exec {line}"])]


def wait_for_stack(process: subprocess.Popen[str], log: Path, timeout: float = 90.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8", errors="replace")
        if "stack is up" in text:
            return dict(re.findall(r"^(risk|oms|exchange)\s+(\S+:\d+)$", text, re.MULTILINE))
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"`tessera up` did not say the stack is up:\n{log.read_text(errors='replace')}")


@pytest.mark.timeout(300)
def test_every_command_of_the_readme_tour_succeeds(tmp_path: Path) -> None:
    commands = tour_commands(README.read_text(encoding="utf-8"))
    preamble = [c.line for c in commands if c.line.startswith("source ")]
    starts = [c for c in commands if c.line.startswith("tessera up")]
    steps = [c for c in commands if c not in starts and c.line not in preamble]
    assert preamble == ["source .venv/bin/activate"] * 2, "each terminal of the tour activates the virtualenv"
    assert len(starts) == 1 and len(steps) >= 10, [c.line for c in commands]

    home = newcomer_directory(tmp_path)
    env = clean_environment()
    log = tmp_path / "tessera-up.log"
    with log.open("w") as out:
        up = subprocess.Popen(shell(preamble[:1], starts[0].line), cwd=home, env=env, stdout=out,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        addresses = wait_for_stack(up, log)
        env.update(TESSERA_RISK_ADDRESS=addresses["risk"], TESSERA_OMS_ADDRESS=addresses["oms"])
        for step in steps:
            result = subprocess.run(shell(preamble[:1], step.line), cwd=home, env=env, capture_output=True,
                                    text=True, timeout=120)
            shown = f"$ {step.line}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
            assert result.returncode == step.expected_exit, shown
            assert "Traceback" not in result.stderr, shown
            for claim in step.claims():
                assert claim.search(result.stdout + result.stderr), f"the tour says {claim.pattern!r}\n{shown}"
        os.kill(up.pid, signal.SIGINT)  # Ctrl-C in the first terminal
        assert up.wait(timeout=60) == 0, log.read_text(errors="replace")
        assert "stopped (" in log.read_text(errors="replace")
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
