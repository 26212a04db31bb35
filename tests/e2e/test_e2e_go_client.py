"""The Go client (clients/go): built from Debian's Go packages with nothing fetched, it
checks itself against the token test vectors (go test and cmd/check-vectors) and runs
the order flow of the Node.js client against the session stack, with stubs generated
from proto/.

Installs nothing: `make setup` installs the Go toolchain and libraries with apt-get.
Without them these tests skip, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from services.cli.stack import PROJECT_ROOT

import tessera_e2e as e2e

CLIENT = PROJECT_ROOT / "clients" / "go"
GO_SH = CLIENT / "go.sh"
PACKAGE = "tessera/clients/go"
VECTORS = PROJECT_ROOT / "docs" / "token-vectors.json"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)
# What clients/go imports from Debian's packages (/usr/share/gocode/src/...).
DEBIAN_SOURCES = ("google.golang.org/grpc", "google.golang.org/protobuf", "github.com/golang/protobuf",
                  "google.golang.org/genproto/googleapis/rpc/errdetails")


def _unavailable(problem: str) -> None:
    message = f"{problem}: run `make setup` (it installs Debian's Go packages)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def go_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_", "GO"))}


def run_go(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GO_SH), *args], cwd=str(PROJECT_ROOT), env=go_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        _unavailable("the Go toolchain (`go`) is not on PATH")
    missing = [path for path in DEBIAN_SOURCES if not (Path("/usr/share/gocode/src") / path).is_dir()]
    if missing:
        _unavailable(f"Debian's Go sources are missing: {', '.join(missing)}")
    out = tmp_path_factory.mktemp("go-bin")
    result = run_go("build", "-o", f"{out}/", f"{PACKAGE}/cmd/check-vectors", f"{PACKAGE}/cmd/order-flow")
    assert result.returncode == 0, e2e.show(result)
    return out


def summary(result: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    match = SUMMARY.search(result.stdout)
    assert match, f"no summary line\n{e2e.show(result)}"
    return int(match.group(1)), int(match.group(2))


def run_binary(binary: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], cwd=str(PROJECT_ROOT), env=go_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_go_client_builds_offline_from_debian_packages(go_binaries: Path) -> None:
    """GOPATH mode on /usr/share/gocode, GOPROXY=off: every dependency of the client is a
    Debian package's source, none a module download."""
    result = run_go("list", "-f", "{{.ImportPath}} {{.Dir}}", "-deps", f"{PACKAGE}/cmd/order-flow")
    assert result.returncode == 0, e2e.show(result)
    external = [line for line in result.stdout.splitlines()
                if "." in line.split()[0].split("/")[0] and not line.split()[0].startswith("tessera/")]
    assert external, result.stdout
    assert all(line.split()[1].startswith("/usr/share/gocode/src/") for line in external), result.stdout


def test_go_token_package_passes_its_tests(go_binaries: Path) -> None:
    result = run_go("test", "-count=1", f"{PACKAGE}/token")
    assert result.returncode == 0, e2e.show(result)
    assert re.search(rf"^ok\s+{PACKAGE}/token", result.stdout, re.MULTILINE), result.stdout


def test_go_client_matches_every_token_vector(go_binaries: Path) -> None:
    result = run_binary(go_binaries / "check-vectors")
    assert result.returncode == 0, e2e.show(result)
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    counts = [len(vectors[k]) for k in ("decimal_vectors", "signing_vectors", "verification_vectors")]
    assert f"vectors: {counts[0]} decimal, {counts[1]} signing, {counts[2]} verification" in result.stdout
    passed, failed = summary(result)
    assert failed == 0
    # Each signing vector is several checks (body, digest, input, token, verification).
    assert passed >= counts[0] + 5 * counts[1] + counts[2], result.stdout


def test_go_vector_check_reports_a_mismatch(go_binaries: Path, tmp_path: Path) -> None:
    """The check is not vacuous: a vector changed by one character fails it."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    vector = vectors["signing_vectors"][0]
    signature = vector["token"][-43:]
    vector["token"] = vector["token"][:-43] + ("B" if signature[0] != "B" else "C") + signature[1:]
    vectors["verification_vectors"][0]["expected_reason"] = "TOKEN_EXPIRED"
    changed = tmp_path / "vectors.json"
    changed.write_text(json.dumps(vectors), encoding="utf-8")
    result = run_binary(go_binaries / "check-vectors", str(changed))
    assert result.returncode == 1, e2e.show(result)
    assert f"FAIL signing {vector['name']} token" in result.stdout
    assert "FAIL verification valid: got OK, expected TOKEN_EXPIRED" in result.stdout
    assert summary(result)[1] >= 2


def test_go_client_runs_a_complete_order_flow(go_binaries: Path, stack, store) -> None:
    addresses = stack.addresses
    result = run_binary(go_binaries / "order-flow", "-risk", addresses["risk"], "-oms", addresses["oms"],
                        "-timeout", "15", "-token-file", e2e.AUTH_ENV["TESSERA_TOKEN_FILE"])
    assert result.returncode == 0, e2e.show(result)
    out = result.stdout
    passed, failed = summary(result)
    assert failed == 0 and passed >= 15, out
    assert "FAIL" not in out
    approved = re.search(r"^ok   ValidateOrder: APPROVED (\S+) \(BUY 0\.01 BTCUSDT\)$", out, re.MULTILINE)
    assert approved, out
    for line in (
        f"risk token: key id {e2e.KEY_ID},",
        "risk token body digest = base64url(SHA-256(canonical body)) computed here",
        "SubmitOrder with quantity 2: PERMISSION_DENIED",
        "message: TOKEN_FIELDS_CHANGED",
        "ErrorInfo (grpc-status-details-bin): domain tessera, reason TOKEN_FIELDS_CHANGED",
        "SubmitOrder with quantity 1e5: INVALID_ARGUMENT",
        "SubmitOrder: FILLED 0.01 @",
        "SubmitOrder answered 1 trade(s)",
        "GetOrder events: PENDING > APPROVED > SUBMITTED > FILLED",
        "ListTrades: 1 trade(s) for the order",
        "StreamOrderEvents (history_only): PENDING > APPROVED > SUBMITTED > FILLED",
    ):
        assert line in out, f"missing {line!r}\n{out}"
    # What the Go client saw is what the OMS stored.
    order_id = approved.group(1)
    assert store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]
    assert len(store.trades(order_id)) == 1


def test_go_sources_are_gofmt_clean(go_binaries: Path) -> None:
    result = subprocess.run(["gofmt", "-l", str(CLIENT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", e2e.show(result)
