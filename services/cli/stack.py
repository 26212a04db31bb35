"""Start and stop the three Tessera services as separate OS processes.

:class:`Stack` is what ``tessera up``, ``tessera demo`` and the end-to-end tests use:

.. code-block:: python

    with Stack(database_url="sqlite:////tmp/t.db", secret=b"x" * 32) as stack:
        stack.oms.SubmitOrder(...)          # stubs on cached channels
        stack.addresses["risk"]             # "127.0.0.1:41234"

Each service runs as ``sys.executable -m services.<name>`` with its own environment
(the caller's, plus the stack's settings). The exchange starts first, so the OMS can
be told its address; then Risk, then the OMS (each migrates the database at start,
one after the other, so they never do it at the same time). A service is ready when it
has printed ``<name> listening on <host>:<port>`` and answers a ``grpc.health.v1``
check with SERVING. Port 0 (the default) lets each service pick a free port; the
ready line tells which. The line after it, ``<name> metrics on <host>:<port>``, tells
where the service serves Prometheus metrics (``metrics_addresses``; free ports too,
unless ``metrics_ports`` or the environment choose them).

Identities: unless the environment configures them (``TESSERA_AUTH``,
``TESSERA_ENTITLEMENTS_FILE``), the stack makes its own (a key pair, an entitlements
file, a client and a service token: :func:`services.common.identities.provision_local`)
under ``<log_dir>/auth``; its channels present the client token (``TESSERA_TOKEN_FILE``).

A service whose environment has ``TESSERA_TLS_CERT_FILE`` serves TLS: the stack's own
health checks and channels then use TLS too, trusting ``TESSERA_CLIENT_TLS_CA_FILE``
(else ``TESSERA_TLS_CA_FILE``) and presenting ``TESSERA_CLIENT_TLS_CERT_FILE`` and
``..._KEY_FILE`` (else the service's own certificate) for mutual TLS.

Each process writes its stdout and stderr to ``<log_dir>/<name>.stdout.log`` and
``<log_dir>/<name>.stderr.log``; :meth:`Stack.logs` returns them, and every startup
error carries the tail of the failing process's stderr. Stopping sends SIGTERM (the
services drain and exit 0), then SIGKILL after a timeout.

The children run in their own sessions: a Ctrl-C in the terminal reaches only the
parent, which then stops them in order.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.identities import CLIENT_TOKEN_VARIABLE, identities_configured, provision_local

SERVICES = ("exchange", "risk", "oms")
DEFAULT_PORTS = {"risk": 50051, "oms": 50052, "exchange": 50053}
SECRET_VARIABLE = "AIS_RISK_HMAC_SECRET"

#: The directory holding the ``services`` package: put on the children's PYTHONPATH.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

_READY = {name: re.compile(rf"^{name} listening on (\S+):(\d+)\s*$", re.MULTILINE) for name in SERVICES}
_METRICS = {name: re.compile(rf"^{name} metrics on (\S+):(\d+)\s*$", re.MULTILINE) for name in SERVICES}
#: Where a client of a TLS stack finds its trust anchor and certificate (first set wins).
CLIENT_TLS_PREFIXES = ("TESSERA_CLIENT_TLS_", "TESSERA_TLS_")


class StackError(RuntimeError):
    """A service failed to start or to stop; the message holds its stderr tail."""


def ephemeral_secret() -> str:
    """A random secret for a local stack (64 hex characters = 64 bytes)."""
    return secrets.token_hex(32)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def client_address(host: str, port: str | int) -> str:
    """Where a client reaches a server bound to ``host:port`` (a wildcard means this host)."""
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    return f"{host}:{port}"


def metrics_enabled(name: str, env: Mapping[str, str]) -> bool:
    """False when the service's environment turns its metrics off."""
    for variable in (f"TESSERA_{name.upper()}_METRICS_PORT", "TESSERA_METRICS_PORT"):
        value = env.get(variable, "").strip().lower()
        if value:
            return value not in ("off", "false", "none", "disabled")
    return True


def client_token(env: Mapping[str, str]) -> str:
    """The bearer token a client of a stack started with ``env`` presents ("" for none):
    the file ``TESSERA_TOKEN_FILE`` names."""
    path = env.get(CLIENT_TOKEN_VARIABLE, "").strip()
    return Path(path).read_text(encoding="utf-8").strip() if path else ""


def open_channel(address: str, env: Mapping[str, str], *, token: str | None = None) -> grpc.Channel:
    """A blocking channel to a service started with ``env``: TLS when it serves TLS, and
    the stack's client token (``TESSERA_TOKEN_FILE``; or ``token``) on every call."""
    from services.cli.connection import BearerToken

    token = client_token(env) if token is None else token
    if not env.get("TESSERA_TLS_CERT_FILE"):
        channel = grpc.insecure_channel(address)
    else:
        from services.common.tls import channel_credentials

        credentials, options = channel_credentials(env, CLIENT_TLS_PREFIXES)
        channel = grpc.secure_channel(address, credentials or grpc.ssl_channel_credentials(), options=options)
    return grpc.intercept_channel(channel, BearerToken(token)) if token else channel


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


@dataclasses.dataclass
class ServiceProcess:
    """One service process: start it, wait until it serves, stop it."""

    name: str
    env: Mapping[str, str]
    log_dir: Path
    cwd: Path | None = None
    python: str = sys.executable
    process: subprocess.Popen[bytes] | None = None
    address: str | None = None
    metrics_address: str | None = None

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.name}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.name}.stderr.log"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stdout(self) -> str:
        return _read(self.stdout_path)

    def stderr(self) -> str:
        return _read(self.stderr_path)

    def start(self) -> None:
        if self.process is not None:
            raise StackError(f"{self.name} was already started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [self.python, "-m", f"services.{self.name}"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(self.env),
                cwd=str(self.cwd) if self.cwd is not None else None,
                start_new_session=True,
            )

    def _failure(self, problem: str) -> StackError:
        return StackError(
            f"{self.name} {problem}; its stderr ({self.stderr_path}) ends with:\n"
            f"{tail(self.stderr()) or '(empty)'}"
        )

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait for the ready line and a SERVING health check; return ``host:port``."""
        if self.process is None:
            raise StackError(f"{self.name} was not started")
        deadline = time.monotonic() + timeout
        while self.address is None:
            match = _READY[self.name].search(self.stdout())
            if match:
                self.address = client_address(match.group(1), match.group(2))
                break
            if self.process.poll() is not None:
                raise self._failure(f"exited with code {self.process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise self._failure(f"printed no ready line within {timeout:.0f}s")
            time.sleep(0.02)
        with open_channel(self.address, self.env) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                remaining = deadline - time.monotonic()
                if self.process.poll() is not None:
                    raise self._failure(f"exited with code {self.process.returncode} before it was ready")
                if remaining <= 0:
                    raise self._failure(f"did not report SERVING on {self.address} within {timeout:.0f}s")
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=min(remaining, 2.0))
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        self._read_metrics_address(min(deadline, time.monotonic() + 5.0))
                        return self.address
                except grpc.RpcError:
                    pass
                time.sleep(0.05)

    def _read_metrics_address(self, deadline: float) -> None:
        """The metrics line follows the ready line at once; a service without metrics
        (turned off, or a build that has none) just leaves ``metrics_address`` None."""
        if not metrics_enabled(self.name, self.env):
            return
        while self.metrics_address is None:
            match = _METRICS[self.name].search(self.stdout())
            if match:
                self.metrics_address = client_address(match.group(1), match.group(2))
            elif time.monotonic() > deadline:
                return
            else:
                time.sleep(0.02)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; return the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        code = self.wait(timeout)
        return code if code is not None else self.kill()


class Stack:
    """The three services as processes, with channels and stubs for clients.

    Parameters
    ----------
    database_url
        ``TESSERA_DATABASE_URL`` for the three services; None keeps what ``env`` says
        (or the services' default, ``var/tessera.db`` under ``cwd``).
    secret
        ``AIS_RISK_HMAC_SECRET`` for all three; None keeps what ``env`` says.
    key_id
        ``AIS_RISK_HMAC_KEY_ID``; None keeps what ``env`` says.
    env
        The base environment (default: this process's); ``extra_env`` is laid over it.
    ports
        Per-service port; missing ones are 0 (a free port).
    metrics_ports
        Per-service metrics port (``TESSERA_<NAME>_METRICS_PORT``); for a service not
        named here the environment's setting stands, else 0 (a free port).
    log_dir
        Where the process logs go; a new temporary directory when None.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        secret: str | bytes | None = None,
        key_id: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        metrics_ports: Mapping[str, int | str] | None = None,
        host: str = "127.0.0.1",
        log_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        base = dict(os.environ if env is None else env)
        base.update(extra_env or {})
        if secret is not None:
            base[SECRET_VARIABLE] = secret.decode("utf-8", "surrogateescape") if isinstance(secret, bytes) else secret
        if key_id is not None:
            base["AIS_RISK_HMAC_KEY_ID"] = key_id
        if database_url is not None:
            base["TESSERA_DATABASE_URL"] = database_url
        base["TESSERA_HOST"] = host
        base["PYTHONUNBUFFERED"] = "1"
        path = base.get("PYTHONPATH", "")
        if str(PROJECT_ROOT) not in path.split(os.pathsep):
            base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), path]))
        self.env = base
        self.host = host
        self.ports = {name: int((ports or {}).get(name, 0)) for name in SERVICES}
        self.metrics_ports = {name: str(port) for name, port in (metrics_ports or {}).items()}
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="tessera-stack-"))
        if not identities_configured(self.env):
            # Identities on, as deployed: a key pair, an entitlements file and tokens of the stack's own.
            self.env.update(provision_local(self.log_dir / "auth"))
        self.cwd = Path(cwd) if cwd is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self.processes: dict[str, ServiceProcess] = {}
        self.exit_codes: dict[str, int | None] = {}
        self._channels: dict[str, grpc.Channel] = {}

    # -- lifecycle ----------------------------------------------------------------------
    def _service_env(self, name: str) -> dict[str, str]:
        env = dict(self.env)
        env[f"TESSERA_{name.upper()}_PORT"] = str(self.ports[name])
        metrics_variable = f"TESSERA_{name.upper()}_METRICS_PORT"
        if name in self.metrics_ports:
            env[metrics_variable] = self.metrics_ports[name]
        elif not env.get(metrics_variable) and not env.get("TESSERA_METRICS_PORT"):
            env[metrics_variable] = "0"
        if name == "oms":
            env["TESSERA_EXCHANGE_ADDRESS"] = self.processes["exchange"].address or ""
        return env

    def start(self) -> "Stack":
        if self.processes:
            raise StackError("the stack was already started")
        try:
            for name in SERVICES:
                service = ServiceProcess(name, self._service_env(name), self.log_dir, cwd=self.cwd, python=self.python)
                self.processes[name] = service
                service.start()
                service.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> dict[str, int | None]:
        """Stop every started service (OMS and Risk first, then the exchange); return exit codes."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for group in (("oms", "risk"), ("exchange",)):
            running = [self.processes[n] for n in group if n in self.processes]
            for service in running:
                service.signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for service in running:
                code = service.wait(max(0.0, deadline - time.monotonic()))
                self.exit_codes[service.name] = code if code is not None else service.kill()
        return dict(self.exit_codes)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def poll(self) -> dict[str, int]:
        """Services that have exited, with their exit codes."""
        return {
            name: service.returncode
            for name, service in self.processes.items()
            if service.returncode is not None
        }

    # -- clients ------------------------------------------------------------------------
    @property
    def addresses(self) -> dict[str, str]:
        return {name: service.address for name, service in self.processes.items() if service.address}

    @property
    def metrics_addresses(self) -> dict[str, str]:
        """``host:port`` of each service's ``/metrics`` (services with metrics on)."""
        return {name: s.metrics_address for name, s in self.processes.items() if s.metrics_address}

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            address = self.addresses.get(name)
            if address is None:
                raise StackError(f"{name} is not running")
            self._channels[name] = open_channel(address, self.processes[name].env)
        return self._channels[name]

    @property
    def risk(self) -> Any:
        from tessera.risk.v1 import risk_pb2_grpc

        return risk_pb2_grpc.RiskServiceStub(self.channel("risk"))

    @property
    def oms(self) -> Any:
        from tessera.oms.v1 import oms_pb2_grpc

        return oms_pb2_grpc.OrderManagementServiceStub(self.channel("oms"))

    @property
    def exchange(self) -> Any:
        from tessera.exchange.v1 import exchange_pb2_grpc

        return exchange_pb2_grpc.ExchangeServiceStub(self.channel("exchange"))

    def health(self, name: str) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel(name))

    # -- diagnostics --------------------------------------------------------------------
    def logs(self, names: Iterable[str] = SERVICES, *, lines: int | None = 60) -> str:
        """Every service's stdout and stderr (their last ``lines`` lines), for a failure report."""
        parts = []
        for name in names:
            service = self.processes.get(name)
            if service is None:
                continue
            for label, text in (("stdout", service.stdout()), ("stderr", service.stderr())):
                shown = tail(text, lines) if lines else text
                parts.append(f"----- {name} {label} ({service.log_dir / f'{name}.{label}.log'}) -----\n{shown}")
        return "\n".join(parts)
