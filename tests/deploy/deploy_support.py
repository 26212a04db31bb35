"""Helpers of the deployment tests: run names and ports, probes as the kubelet runs
them, the ``tessera`` command, and what a container's process really is.

Imported by the deploy tests as ``deploy_support`` (``tests/deploy/conftest.py`` puts
this directory and ``tools/`` on ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from podman_deploy import Podman

ROOT = Path(__file__).resolve().parents[2]
#: The ``tessera`` console script of the interpreter running the tests.
TESSERA = Path(sys.executable).with_name("tessera")


def new_run_name() -> str:
    """A prefix for every podman object of one run: two runs never share a name."""
    return f"tdt{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice: runs never collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- probes, as the kubelet runs them -------------------------------------------------------
@dataclasses.dataclass
class ProbeOutcome:
    kind: str
    ok: bool
    attempts: int
    last_error: str = ""


def grpc_health_check(address: str, service: str = "") -> Callable[[float], tuple[bool, str]]:
    """The kubelet's gRPC probe: ``grpc.health.v1.Health/Check`` must answer SERVING."""

    def check(timeout: float) -> tuple[bool, str]:
        with grpc.insecure_channel(address) as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError as error:
                return False, f"{error.code().name}: {error.details()}"
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return answer.status == health_pb2.HealthCheckResponse.SERVING, status

    return check


def exec_check(podman: Podman, container: str, command: list[str]) -> Callable[[float], tuple[bool, str]]:
    """The kubelet's exec probe: the command, run in the container, exits 0."""

    def check(timeout: float) -> tuple[bool, str]:
        try:
            result = podman.run("exec", container, *command, check=False, timeout=max(timeout, 1.0) + 5)
        except subprocess.TimeoutExpired:
            return False, "timed out"
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    return check


def run_probe(kind: str, probe: Mapping[str, Any], check: Callable[[float], tuple[bool, str]], *,
              sleep: Callable[[float], None] = time.sleep) -> ProbeOutcome:
    """Run ``probe`` with the kubelet's semantics and defaults: wait
    ``initialDelaySeconds``, then check every ``periodSeconds`` with ``timeoutSeconds``
    until ``successThreshold`` consecutive successes (passed) or ``failureThreshold``
    consecutive failures (failed)."""
    period = float(probe.get("periodSeconds", 10))
    timeout = float(probe.get("timeoutSeconds", 1))
    needed = int(probe.get("successThreshold", 1))
    allowed = int(probe.get("failureThreshold", 3))
    sleep(float(probe.get("initialDelaySeconds", 0)))
    successes = failures = attempts = 0
    error = ""
    while True:
        attempts += 1
        ok, detail = check(timeout)
        if ok:
            successes, failures = successes + 1, 0
            if successes >= needed:
                return ProbeOutcome(kind, True, attempts)
        else:
            successes, failures, error = 0, failures + 1, detail
            if failures >= allowed:
                return ProbeOutcome(kind, False, attempts, error)
        sleep(period)


def probe_check(podman: Podman, probe: Mapping[str, Any], container: str,
                host_port: Callable[[int | str], int]) -> Callable[[float], tuple[bool, str]]:
    """The check a probe declares: gRPC on a published port, or exec in the container."""
    if "grpc" in probe:
        return grpc_health_check(f"127.0.0.1:{host_port(probe['grpc']['port'])}", probe["grpc"].get("service", ""))
    if "exec" in probe:
        return exec_check(podman, container, list(probe["exec"]["command"]))
    raise ValueError(f"probe kind not supported here: {sorted(probe)}")


# -- the tessera command --------------------------------------------------------------------
def tessera(*args: str, oms: str, risk: str = "", timeout: float = 60,
            token: str = "") -> subprocess.CompletedProcess[str]:
    """``tessera ARGS --risk RISK --oms OMS``, from the host, as an operator runs it
    (presenting ``token``, TESSERA_TOKEN)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "AIS_", "ASTER_"))}
    if token:
        env["TESSERA_TOKEN"] = token
    command = [str(TESSERA), *args]
    needs_risk = bool(risk)
    command += [*(["--risk", risk] if needs_risk else []), "--oms", oms]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def show(result: subprocess.CompletedProcess[str]) -> str:
    return (f"$ {shlex.join(result.args)}\nexit {result.returncode}\n--- stdout ---\n{result.stdout}"
            f"\n--- stderr ---\n{result.stderr}")


# -- inside a container ---------------------------------------------------------------------
@dataclasses.dataclass
class ProcessView:
    """PID 1 of a container as the kernel sees it, and the root file system's mount."""

    uid: int
    gid: int
    command: str
    root_mount_options: list[str]
    no_new_privileges: bool
    effective_capabilities: int


def process_view(podman: Podman, container: str) -> ProcessView:
    script = "cat /proc/1/status; echo ---; tr '\\0' ' ' < /proc/1/cmdline; echo; echo ---; cat /proc/1/mounts"
    output = podman.out("exec", container, "sh", "-c", script)
    status, command, mounts = output.split("\n---\n")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    root = next(line.split() for line in mounts.splitlines() if line.split()[1] == "/")
    return ProcessView(
        uid=int(fields["Uid"].split()[1]),  # real, effective, saved, fs: the effective one
        gid=int(fields["Gid"].split()[1]),
        command=command.strip(),
        root_mount_options=root[3].split(","),
        no_new_privileges=fields.get("NoNewPrivs", "0").strip() == "1",
        effective_capabilities=int(fields["CapEff"].strip(), 16),
    )


def head_revision() -> str:
    """The newest migration in ``services/store/migrations``."""
    from alembic.script import ScriptDirectory

    from services.store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head, "no migration found"
    return head


def verify_token_with(key_id: str, secret: str, order: Any, token: str) -> Any:
    """Verify a risk token as the OMS does, with the key the test deployed."""
    import core_ext
    from services.common.convert import order_from_proto

    keyring = core_ext.KeyRing(key_id, secret.encode())
    body = core_ext.canonical_order_body(order_from_proto(order).token_fields())
    return core_ext.verify_token(keyring, token, body, time.time())
