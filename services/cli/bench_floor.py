"""The floors ``tessera bench`` measures Tessera against, in the same run.

* :class:`BareChain`: the bare chain of :mod:`services.cli.bare_chain` as three processes
  (``risk``, ``oms`` -> ``exchange``), with or without Tessera's observers;
* :func:`commit_floor`: empty durable commits on the database the stack uses, as the
  services' engine configures it;
* :func:`token_figures`: the OMS's whole token check from the wire (the compiled core and
  its pure-Python twin), the HMAC under it, and the seed project's own verification,
  loaded unchanged from a checkout (``--seed``);
* :class:`CpuMeter`: the CPU time each process spent (``/proc/PID/stat``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import grpc

from .stack import PROJECT_ROOT, StackError, tail

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- CPU ----------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of stat)


def thread_cpu_times(pid: int) -> dict[int, int]:
    """The nanoseconds each live thread of a process has run so far (``schedstat``):
    a :class:`CpuMeter` clock steadier over a short run than :func:`cpu_seconds`, which
    counts in clock ticks of 10 ms."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that has just ended
            pass
    return times


def _elapsed(before: Any, after: Any) -> float:
    """CPU seconds between two readings of a clock: seconds, or the nanoseconds of each
    thread (a thread that ended in between is left out, one that started counts from 0)."""
    if isinstance(after, dict):
        if not isinstance(before, dict):
            return float("nan")
        return sum(ran - before.get(thread, 0) for thread, ran in after.items()) / 1e9
    return after - before if isinstance(before, (int, float)) else float("nan")


class CpuMeter:
    """CPU seconds per named process between :meth:`start` and :meth:`stop`
    (``clock``: :func:`cpu_seconds`, or :func:`thread_cpu_times`)."""

    def __init__(self, pids: Mapping[str, int], clock: Callable[[int], Any] = cpu_seconds) -> None:
        self.pids = dict(pids)
        self.clock = clock
        self._before: dict[str, Any] = {}

    @staticmethod
    def available() -> bool:
        return Path(f"/proc/{os.getpid()}/stat").exists()

    def _read(self) -> dict[str, Any]:
        values = {}
        for name, pid in self.pids.items():
            try:
                values[name] = self.clock(pid)
            except (OSError, ValueError, IndexError):
                values[name] = float("nan")
        return values

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {name: _elapsed(self._before.get(name), after[name]) for name in self.pids}


# -- the bare chain -------------------------------------------------------------------------------
_LISTENING = re.compile(r"^(\w+) listening on (\S+):(\d+)\s*$", re.MULTILINE)


@dataclasses.dataclass
class _Process:
    role: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


class BareChain:
    """The bare chain's servers as processes: ``roles`` of risk, oms, exchange (the OMS
    needs the exchange); ``observed`` gives them Tessera's observers."""

    def __init__(self, log_dir: Path, *, observed: bool = False, roles: tuple[str, ...] = ("exchange", "risk", "oms"),
                 env: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
        self.log_dir = log_dir
        self.observed = observed
        self.roles = roles
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), self.env.get("PYTHONPATH", "")]))
        self.timeout = timeout
        self.processes: dict[str, _Process] = {}
        self.addresses: dict[str, str] = {}

    @property
    def pids(self) -> dict[str, int]:
        return {role: p.process.pid for role, p in self.processes.items()}

    def _start(self, role: str, *extra: str) -> str:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        suffix = "-observed" if self.observed else ""
        out, err = self.log_dir / f"bare-{role}{suffix}.stdout.log", self.log_dir / f"bare-{role}{suffix}.stderr.log"
        command = [sys.executable, "-m", "services.cli.bare_chain", role, "--port", "0", *extra]
        if self.observed:
            command.append("--interceptors")
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                       env=self.env, start_new_session=True)
        self.processes[role] = _Process(role, process, out, err)
        deadline = time.monotonic() + self.timeout
        while True:
            match = _LISTENING.search(out.read_text(errors="replace"))
            if match and match.group(1) == role:
                address = f"127.0.0.1:{match.group(3)}"
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"bare chain {role} did not start; its stderr ends with:\n"
                                 f"{tail(err.read_text(errors='replace')) or '(empty)'}")
            time.sleep(0.02)
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 1.0))
        self.addresses[role] = address
        return address

    def __enter__(self) -> "BareChain":
        try:
            if "exchange" in self.roles or "oms" in self.roles:
                self._start("exchange")
            if "risk" in self.roles:
                self._start("risk")
            if "oms" in self.roles:
                self._start("oms", "--exchange", self.addresses["exchange"])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for role in ("oms", "risk", "exchange"):
            entry = self.processes.pop(role, None)
            if entry is None or entry.process.poll() is not None:
                continue
            entry.process.send_signal(signal.SIGTERM)
            try:
                entry.process.wait(10)
            except subprocess.TimeoutExpired:
                entry.process.kill()
                entry.process.wait()


# -- the durable commit ---------------------------------------------------------------------------
FLOOR_TABLE = "bench_commit_floor"


def commit_floor(kind: str, url: str, synchronous: str, commits: int) -> list[float]:
    """Seconds per empty-ish durable transaction, ``commits`` of them: one row UPDATEd, then
    COMMIT, on a connection of the services' own engine (``make_engine``: on SQLite WAL,
    ``synchronous`` as given, the write lock taken up front with ``BEGIN IMMEDIATE`` as the
    services' writers take it; on PostgreSQL the server's settings, ``synchronous_commit``
    included). On SQLite ``url`` should name a file beside the stack's (same disk), not the
    stack's own file, whose writers would contend for the lock."""
    from services.store.engine import make_engine

    engine = make_engine(url, environ={"TESSERA_SQLITE_SYNCHRONOUS": synchronous})
    latencies: list[float] = []
    try:
        raw = engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            cursor = raw.cursor()
            if kind == "sqlite":
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
                cursor.execute(f"INSERT OR IGNORE INTO {FLOOR_TABLE} (id, n) VALUES (1, 0)")
                for _ in range(commits):
                    started = time.perf_counter()
                    cursor.execute("BEGIN IMMEDIATE")
                    cursor.execute(f"UPDATE {FLOOR_TABLE} SET n = n + 1 WHERE id = 1")
                    cursor.execute("COMMIT")
                    latencies.append(time.perf_counter() - started)
            else:
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
                cursor.execute(f"INSERT INTO {FLOOR_TABLE} (id, n) VALUES (1, 0) ON CONFLICT DO NOTHING")
                dbapi.commit()
                for _ in range(commits):
                    started = time.perf_counter()
                    cursor.execute(f"UPDATE {FLOOR_TABLE} SET n = n + 1 WHERE id = 1")
                    dbapi.commit()
                    latencies.append(time.perf_counter() - started)
                cursor.execute(f"DROP TABLE {FLOOR_TABLE}")
                dbapi.commit()
            cursor.close()
        finally:
            raw.close()
    finally:
        engine.dispose()
    return latencies


# -- the token check ------------------------------------------------------------------------------
SEED_MODULE = "aiswarm.risk.limits"
SEED_SOURCE = "src/aiswarm/risk/limits.py"


def _calibrate(timer: timeit.Timer, target: float) -> int:
    """How many calls take about ``target`` seconds (of this thread's CPU time)."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target / 4 or number >= 1 << 24:
            break
        number *= 4
    return max(1, int(number * target / max(elapsed, 1e-9)))


def _time_calls(statements: dict[str, tuple[str, dict[str, Any]]], target: float = 0.02,
                timings: int = 7) -> dict[str, float]:
    """Seconds per call of each statement: ``timings`` timings of each, interleaved (one of
    each in turn), each of as many calls as take about ``target`` seconds; the median.

    Timed in this thread's CPU time (``time.thread_time``), not the wall clock: on a
    machine shared with other work the wall clock also counts the time slices the
    scheduler gives the others, which says nothing of the call."""
    timers = {label: timeit.Timer(statement, timer=time.thread_time, globals=namespace)
              for label, (statement, namespace) in statements.items()}
    numbers = {label: _calibrate(timer, target) for label, timer in timers.items()}
    samples: dict[str, list[float]] = {label: [] for label in timers}
    for _ in range(timings):
        for label, timer in timers.items():
            samples[label].append(timer.timeit(numbers[label]) / numbers[label])
    return {label: statistics.median(values) for label, values in samples.items()}


def _wire_request(impl: Any, key_id: str, secret: bytes, issued_at: int) -> tuple[Any, bytes, str]:
    """A SubmitOrderRequest as the OMS receives one for the benchmark's market order: the
    approved order as Risk answers it, signed by Risk's key; (keyring, bytes, order id)."""
    from core_ext import token_format
    from tessera.common.v1 import types_pb2 as pb
    from tessera.oms.v1 import oms_pb2

    order = pb.Order(
        order_id="0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22", client_order_id="tsr-0b5e3b8e6a514c1d9f3e2d4b7a9c1e22",
        account="bench-0b5e3b8e-000", venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol="BTCUSDT",
        side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity="0.01", time_in_force=pb.TIME_IN_FORCE_GTC,
        status=pb.ORDER_STATUS_APPROVED, filled_quantity="0", version=1,
    )
    fields: dict[str, object] = {}
    for name in token_format.ORDER_FIELDS:
        value = getattr(order, name)
        if name in token_format.WIRE_ENUMS:
            value = token_format.WIRE_ENUMS[name][value]
        fields[name] = value
    ring = impl.KeyRing(key_id, secret)
    token = impl.sign_token(ring, impl.canonical_order_body(fields), issued_at)
    return ring, oms_pb2.SubmitOrderRequest(order=order, risk_token=token).SerializeToString(), order.order_id


@contextlib.contextmanager
def _seed_environment(secret: str) -> Iterator[None]:
    names = ("AIS_RISK_HMAC_SECRET", "AIS_RISK_HMAC_SECRET_PREVIOUS", "AIS_RISK_HMAC_KEY_ID")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["AIS_RISK_HMAC_SECRET"] = secret
    os.environ.pop("AIS_RISK_HMAC_SECRET_PREVIOUS", None)
    os.environ.pop("AIS_RISK_HMAC_KEY_ID", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_seed(path: str) -> Any:
    """The seed project's ``aiswarm.risk.limits``, imported as it is from the checkout at
    ``path`` (its ``src`` put first on ``sys.path``).

    Raises
    ------
    FileNotFoundError
        ``path`` holds no ``src/aiswarm/risk/limits.py``.
    """
    root = Path(path).resolve()
    if not (root / SEED_SOURCE).is_file():
        raise FileNotFoundError(f"--seed {path}: no {SEED_SOURCE} there (expected a checkout of the seed project)")
    sys.path.insert(0, str(root / "src"))
    return importlib.import_module(SEED_MODULE)


def tree_state(path: str | Path) -> dict[str, str]:
    """What a run measures: the checkout's commit and its uncommitted changes to tracked
    files, named by the tree of ``git stash create``'s commit (the object id of the work
    tree as it is, not of the commit, which carries the time it was made; empty when
    clean). Equal states at the start and the end of a run mean every stack it started
    ran the same program. Empty values outside a git work tree."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    stash = git("stash", "create")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "changes": git("rev-parse", f"{stash}^{{tree}}") if stash else ""}


def seed_commit(path: str) -> str:
    """The seed checkout's commit, when it is a git work tree (else "")."""
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def token_figures(repetitions: int, seed: str | None, progress: Callable[[str], None] = lambda _: None,
                  target: float = 0.02) -> dict[str, Any]:
    """Seconds per call (CPU time, see :func:`_time_calls`), one list of ``repetitions``
    figures per measurement, all timed interleaved:

    * ``compiled``, ``python``: ``verify_order_request`` on a serialized SubmitOrderRequest,
      the OMS's whole check (order fields from the wire -> canonical body -> MAC -> verdict);
    * ``hmac_floor``: the compiled core's HMAC of the same signed bytes, nothing else;
    * ``seed``: the seed's ``verify_risk_token(token, order_id)`` on a token of its own
      ``sign_risk_token`` (with ``seed``; else absent, and ``seed_note`` says why).
    """
    import core_ext

    key_id, secret, issued_at = "bench", secrets.token_bytes(32), int(time.time())
    now = float(issued_at + 1)
    namespaces: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in ("cython", "python"):
        try:
            impl = core_ext.load_implementation(name)
        except ImportError:
            continue
        ring, data, _ = _wire_request(impl, key_id, secret, issued_at)
        verdict = impl.verify_order_request(ring, data, now, 300)
        if not verdict.ok:
            raise RuntimeError(f"the {name} core refused the benchmark's own request: {verdict.reason}")
        label = "compiled" if name == "cython" else "python"
        namespaces[label] = ("verify(ring, data, now, 300)", {"verify": impl.verify_order_request, "ring": ring,
                                                              "data": data, "now": now})
        if name == "cython":
            from core_ext import _token_c

            token = oms_token(data)
            namespaces["hmac_floor"] = ("mac(ring, signed)", {"mac": _token_c.hmac_floor, "ring": ring,
                                                             "signed": token.rsplit(".", 1)[0].encode()})
    figures: dict[str, Any] = {"seconds": {}, "seed": None}
    seed_state: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if seed:
        seed_secret = secrets.token_hex(32)
        seed_state = _seed_environment(seed_secret)
    with seed_state:
        if seed:
            limits = load_seed(seed)
            order_id = "0b5e3b8e-6a51-4c1d-9f3e-2d4b7a9c1e22"
            token = limits.sign_risk_token(order_id)
            if limits.verify_risk_token(token, order_id) is not True:
                raise RuntimeError("the seed's verify_risk_token refused its own token")
            namespaces["seed"] = ("verify(token, order_id)", {"verify": limits.verify_risk_token, "token": token,
                                                              "order_id": order_id})
            figures["seed"] = {"path": str(Path(seed).resolve()), "commit": seed_commit(seed),
                               "function": f"{SEED_MODULE}.verify_risk_token"}
        for repetition in range(repetitions):
            progress(f"  token checks, repetition {repetition + 1}/{repetitions}")
            for label, seconds in _time_calls(namespaces, target).items():
                figures["seconds"].setdefault(label, []).append(seconds)
    return figures


def oms_token(data: bytes) -> str:
    from tessera.oms.v1 import oms_pb2

    return oms_pb2.SubmitOrderRequest.FromString(data).risk_token
