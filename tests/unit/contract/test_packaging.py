"""pyproject.toml admits only runtimes the generated code accepts, and declares what
the Makefile installs."""

from __future__ import annotations

import pathlib
import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
GENERATED = sorted((ROOT / "tessera").rglob("*_pb2*.py"))


def requirement(name: str, group: list[str]) -> Requirement:
    found = [Requirement(spec) for spec in group if Requirement(spec).name == name]
    assert len(found) == 1, f"{name} is not required exactly once"
    return found[0]


def lowest_admitted(req: Requirement) -> Version:
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==")]
    assert bounds, f"{req} has no lower bound"
    return max(bounds)


def test_protobuf_bounds_admit_only_runtimes_the_generated_code_accepts() -> None:
    """ValidateProtobufRuntimeVersion: the same major version, and not older than the gencode."""
    gencode = set()
    for path in GENERATED:
        match = re.search(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),",
                          path.read_text(encoding="utf-8"))
        if match:
            gencode.add(Version(".".join(match.groups())))
    assert len(gencode) == 1, gencode
    (version,) = gencode
    protobuf = requirement("protobuf", PYPROJECT["project"]["dependencies"])
    assert lowest_admitted(protobuf) >= version
    assert not protobuf.specifier.contains(f"{version.major + 1}.0.0")
    assert not protobuf.specifier.contains(f"{version.major - 1}.99.0")


def test_grpcio_bound_admits_only_runtimes_the_generated_stubs_accept() -> None:
    generated = {re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", p.read_text(encoding="utf-8")).group(1)  # type: ignore[union-attr]
                 for p in GENERATED if p.name.endswith("_pb2_grpc.py")}
    assert len(generated) == 1, generated
    grpcio = requirement("grpcio", PYPROJECT["project"]["dependencies"])
    assert lowest_admitted(grpcio) >= Version(generated.pop())


def test_build_requirements() -> None:
    setuptools = requirement("setuptools", PYPROJECT["build-system"]["requires"])
    assert lowest_admitted(setuptools) >= Version("77")  # project.license is an SPDX expression


def test_every_extra_the_makefile_installs_is_defined() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    used = {extra for group in re.findall(r'\.\[([a-z,]+)\]', makefile) for extra in group.split(",")}
    assert used <= set(PYPROJECT["project"]["optional-dependencies"]), used
    bench = {Requirement(spec).name for spec in PYPROJECT["project"]["optional-dependencies"]["bench"]}
    assert {"matplotlib", "py-spy"} <= bench
    production = {Requirement(spec).name for spec in PYPROJECT["project"]["dependencies"]}
    assert not production & {"matplotlib", "py-spy", "pytest", "pytest-benchmark", "hypothesis"}


def test_pytest_markers_are_declared_once_and_a_timeout_is_set() -> None:
    options = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert int(options["timeout"]) > 0
    names = [marker.split(":")[0] for marker in options["markers"]]
    assert len(names) == len(set(names))
    for conftest in (ROOT / "tests").rglob("conftest.py"):
        assert 'addinivalue_line("markers"' not in conftest.read_text(encoding="utf-8"), conftest
