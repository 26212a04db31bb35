"""The Dockerfile, checked statically (no Docker engine is needed): two stages, the
compiled core built and proven in the builder, a runtime stage without build tools
that runs as a numeric non-root user; hadolint-clean; an entry point that runs the
named process."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from k8s_manifests import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|cython|[a-z0-9.+-]+-dev)\b")
CORE_CHECK = "core_ext.IMPLEMENTATION == 'cython'"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages(text: str) -> list[dict]:
    """Each build stage: its base, name and instructions."""
    found: list[dict] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append({"base": words[0], "name": name, "instructions": []})
        elif found:
            found[-1]["instructions"].append((keyword, arguments))
    return found


@pytest.fixture(scope="module")
def dockerfile_stages() -> list[dict]:
    return stages(DOCKERFILE.read_text())


def args_of(stage: dict, keyword: str) -> list[str]:
    return [arguments for kw, arguments in stage["instructions"] if kw == keyword]


def test_the_image_is_built_in_two_stages_from_one_python_base(dockerfile_stages: list[dict]) -> None:
    assert len(dockerfile_stages) >= 2
    builder, runtime = dockerfile_stages[0], dockerfile_stages[-1]
    assert builder["name"] and runtime["base"] == builder["base"]
    assert any(f"--from={builder['name']}" in copy for copy in args_of(runtime, "COPY"))
    arg_defaults = dict(
        line.partition("=")[::2] for kw, line in instructions(DOCKERFILE.read_text()) if kw == "ARG" and "=" in line
    )
    base = arg_defaults.get(builder["base"].strip("${}"), builder["base"])
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base


def test_the_builder_compiles_the_core_and_proves_it_imports(dockerfile_stages: list[dict]) -> None:
    runs = " && ".join(args_of(dockerfile_stages[0], "RUN"))
    assert re.search(r"apt-get install .*\bgcc\b", runs) and "libssl-dev" in runs
    assert re.search(r"pip install (\S+ )*\.(\s|$)", runs), "the package is installed (not editable)"
    assert CORE_CHECK in runs and "python -I" in runs, "the check must import the installed core, not the source tree"


def test_the_builder_copies_everything_the_package_build_needs(dockerfile_stages: list[dict]) -> None:
    copied = {path.rstrip("/") for copy in args_of(dockerfile_stages[0], "COPY") for path in copy.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"]}
    needed |= {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= copied


def test_the_runtime_stage_has_no_build_tools(dockerfile_stages: list[dict]) -> None:
    runtime = dockerfile_stages[-1]
    for command in args_of(runtime, "RUN"):
        if "install" in command:
            assert not BUILD_TOOLS.search(command), command
    assert not any("pip install" in command for command in args_of(runtime, "RUN"))


def test_the_runtime_runs_as_a_numeric_non_root_user(dockerfile_stages: list[dict]) -> None:
    users = args_of(dockerfile_stages[-1], "USER")
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "Kubernetes' runAsNonRoot can only verify a numeric, non-zero USER"
    manifests_uid = "runAsUser: " + uid
    assert manifests_uid in (ROOT / "k8s" / "base" / "risk.yaml").read_text()


def test_the_runtime_writes_no_bytecode_and_runs_the_entrypoint(dockerfile_stages: list[dict]) -> None:
    runtime = dockerfile_stages[-1]
    env = " ".join(args_of(runtime, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert CORE_CHECK in " ".join(args_of(runtime, "RUN")), "the compiled core must load in the runtime stage"
    assert args_of(runtime, "ENTRYPOINT") == ['["tessera-entrypoint"]']
    assert any("docker/entrypoint.sh" in copy and "tessera-entrypoint" in copy for copy in args_of(runtime, "COPY"))


def test_the_build_context_keeps_local_build_products_out() -> None:
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignored[0] == "*", "everything is excluded unless listed"
    for pattern in ("core_ext/*.so", "core_ext/*.c", "**/__pycache__"):
        assert pattern in ignored
    copied = {path for copy in args_of(stages(DOCKERFILE.read_text())[0], "COPY") for path in copy.split()[:-1]}
    for path in copied:
        assert f"!{path}" in ignored, f"{path} is copied but excluded from the build context"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = require_tool(ROOT / ".tools" / "bin" / "hadolint")
    result = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def fake_python(tmp_path: Path) -> dict[str, str]:
    """A PATH whose ``python`` and ``tessera`` print the arguments they were run with."""
    for name in ("python", "tessera"):
        stub = tmp_path / name
        stub.write_text(f'#!/bin/sh\necho {name} "$@"\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}


@pytest.mark.parametrize(
    ("arguments", "runs"),
    [
        (["risk"], "python -m services.risk"),
        (["oms"], "python -m services.oms"),
        (["exchange"], "python -m services.exchange"),
        (["migrate", "--revision", "head"], "python -m services.store --revision head"),
        (["tessera", "orders"], "tessera orders"),
    ],
)
def test_the_entrypoint_runs_the_named_process(fake_python: dict[str, str], arguments: list[str], runs: str) -> None:
    result = subprocess.run(["sh", str(ENTRYPOINT), *arguments], env=fake_python, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, runs), shlex.join(arguments)


@pytest.mark.parametrize("arguments", [[], ["shell"]])
def test_the_entrypoint_refuses_an_unknown_process(fake_python: dict[str, str], arguments: list[str]) -> None:
    result = subprocess.run(["sh", str(ENTRYPOINT), *arguments], env=fake_python, capture_output=True, text=True)
    assert result.returncode == 64 and "usage:" in result.stderr
