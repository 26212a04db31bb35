"""The Node.js client (clients/node): it checks itself against the token test vectors
and runs a complete order flow against the session stack, over @grpc/grpc-js with the
.proto files loaded at run time.

Installs nothing: `make setup` runs `npm ci` in clients/node. Without Node.js or
without clients/node/node_modules these tests skip, and fail under CI=true.
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

CLIENT = PROJECT_ROOT / "clients" / "node"
VECTORS = PROJECT_ROOT / "docs" / "token-vectors.json"
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def _unavailable(problem: str) -> None:
    message = f"{problem}: run `make setup` (it runs `npm ci` in clients/node)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        _unavailable("Node.js (`node`) is not on PATH")
    return found  # type: ignore[return-value]


def node_with_modules() -> str:
    executable = node()
    if not (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        _unavailable("clients/node/node_modules is missing")
    return executable


def run_node(executable: str, script: str, *args: str, timeout: float = 60.0,
             cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_"))}
    return subprocess.run(
        [executable, str(CLIENT / script), *args],
        cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout,
    )


def summary(result: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    match = SUMMARY.search(result.stdout)
    assert match, f"no summary line\n{e2e.show(result)}"
    return int(match.group(1)), int(match.group(2))


def test_node_client_matches_every_token_vector() -> None:
    result = run_node(node(), "check-vectors.js")
    assert result.returncode == 0, e2e.show(result)
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    counts = [len(vectors[k]) for k in ("decimal_vectors", "signing_vectors", "verification_vectors")]
    assert f"vectors: {counts[0]} decimal, {counts[1]} signing, {counts[2]} verification" in result.stdout
    passed, failed = summary(result)
    assert failed == 0
    # Each signing vector is several checks (body, digest, input, token, verification).
    assert passed >= counts[0] + 5 * counts[1] + counts[2], result.stdout


def test_node_vector_check_reports_a_mismatch(tmp_path: Path) -> None:
    """The check is not vacuous: a vector changed by one character fails it."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    vector = vectors["signing_vectors"][0]
    signature = vector["token"][-43:]
    vector["token"] = vector["token"][:-43] + ("B" if signature[0] != "B" else "C") + signature[1:]
    vectors["verification_vectors"][0]["expected_reason"] = "TOKEN_EXPIRED"
    changed = tmp_path / "vectors.json"
    changed.write_text(json.dumps(vectors), encoding="utf-8")
    result = run_node(node(), "check-vectors.js", str(changed))
    assert result.returncode == 1, e2e.show(result)
    assert f"FAIL signing {vector['name']} token" in result.stdout
    assert "FAIL verification valid: got OK, expected TOKEN_EXPIRED" in result.stdout
    assert summary(result)[1] >= 2


def test_node_client_runs_a_complete_order_flow(stack, store) -> None:
    executable = node_with_modules()
    addresses = stack.addresses
    result = run_node(executable, "order-flow.js", "--risk", addresses["risk"], "--oms", addresses["oms"],
                      "--timeout", "15", "--token-file", e2e.AUTH_ENV["TESSERA_TOKEN_FILE"])
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
        "SubmitOrder with quantity 1e5: INVALID_ARGUMENT",
        "SubmitOrder: FILLED 0.01 @",
        "SubmitOrder answered 1 trade(s)",
        "GetOrder events: PENDING > APPROVED > SUBMITTED > FILLED",
        "ListTrades: 1 trade(s) for the order",
        "StreamOrderEvents (history_only): PENDING > APPROVED > SUBMITTED > FILLED",
    ):
        assert line in out, f"missing {line!r}\n{out}"
    # What the Node client saw is what the OMS stored.
    order_id = approved.group(1)
    assert store.statuses(order_id) == ["PENDING", "APPROVED", "SUBMITTED", "FILLED"]
    assert len(store.trades(order_id)) == 1


def test_node_client_without_a_token_is_refused_unauthenticated(stack, tmp_path: Path) -> None:
    """The token is what lets the flow above through: without one (and run where there is
    no var/auth/local.token), Risk refuses the first call UNAUTHENTICATED
    (IDENTITY_MISSING) and the flow fails."""
    executable = node_with_modules()
    addresses = stack.addresses
    result = run_node(executable, "order-flow.js", "--risk", addresses["risk"], "--oms", addresses["oms"],
                      "--timeout", "15", cwd=tmp_path)
    assert result.returncode != 0, e2e.show(result)
    assert "IDENTITY_MISSING" in result.stdout + result.stderr, e2e.show(result)


def _parsed_token_file(executable: str, cwd: Path, *args: str) -> str:
    script = ("const { parseArgs } = require(process.argv[1]);"
              "console.log(JSON.stringify(parseArgs(process.argv.slice(2))['token-file']));")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_"))}
    result = subprocess.run([executable, "-e", script, str(CLIENT / "order-flow.js"), *args], cwd=str(cwd),
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, e2e.show(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_node_client_sends_the_local_stacks_token_only_without_a_client_certificate(tmp_path: Path) -> None:
    """Run where `tessera up` left var/auth/local.token, the client sends it by default;
    given a client certificate it does not (the certificate names the caller), and a token
    file asked for explicitly still goes."""
    executable = node_with_modules()
    (tmp_path / "var" / "auth").mkdir(parents=True)
    (tmp_path / "var" / "auth" / "local.token").write_text("local\n")
    tls = ("--tls-ca", "ca.pem", "--tls-cert", "client.pem", "--tls-key", "client.key")
    assert _parsed_token_file(executable, tmp_path) == "var/auth/local.token"
    assert _parsed_token_file(executable, tmp_path, *tls) == ""
    assert _parsed_token_file(executable, tmp_path, *tls, "--token-file", "mine.token") == "mine.token"


def test_node_client_refuses_a_client_certificate_without_a_ca_instead_of_plaintext(tmp_path: Path) -> None:
    """A client certificate asks for mutual TLS: without the CA to check the server by,
    connect() and order-flow.js refuse (as `tessera --tls-cert` without `--tls-ca` does)
    rather than connect in plaintext, sending nothing that names the caller."""
    executable = node_with_modules()
    script = ("const tessera = require(process.argv[1]);"
              "try { const c = tessera.connect({ risk: '127.0.0.1:1' }, { tls: { cert: 'c.pem', key: 'c.key' } });"
              " tessera.close(c); console.log('connected'); } catch (error) { console.log(`refused: ${error.message}`); }")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_"))}
    result = subprocess.run([executable, "-e", script, str(CLIENT / "tessera.js")], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, e2e.show(result)
    assert result.stdout.startswith("refused: "), e2e.show(result)
    assert "CA" in result.stdout, e2e.show(result)
    flow = run_node(executable, "order-flow.js", "--risk", "127.0.0.1:1", "--oms", "127.0.0.1:1",
                    "--tls-cert", "client.pem", "--tls-key", "client.key", "--timeout", "1", cwd=tmp_path)
    assert flow.returncode == 2, e2e.show(flow)
    assert "--tls-cert needs --tls-ca" in flow.stderr, e2e.show(flow)
