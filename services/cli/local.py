"""``tessera up``: the three services on this machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any, Mapping


from . import output
from .client import EXIT_ERROR, EXIT_OK, err
from services.common.auth import MODE_VARIABLE
from services.common.identities import identities_configured, provision_local

from .stack import DEFAULT_PORTS, SECRET_VARIABLE, SERVICES, Stack, StackError, ephemeral_secret, tail


def default_database_url(environ: Mapping[str, str] = os.environ) -> str:
    """``TESSERA_DATABASE_URL``, else the embedded default ``var/tessera.db`` under the
    current directory (as an absolute path, so the services agree wherever they run)."""
    configured = environ.get("TESSERA_DATABASE_URL", "").strip()
    if configured:
        return configured
    return f"sqlite:///{Path.cwd() / 'var' / 'tessera.db'}"


def shown_url(url: str) -> str:
    """``url`` for display, its passwords masked (:func:`services.store.engine.safe_url`)."""
    from services.store.engine import safe_url

    try:
        return safe_url(url)
    except Exception:  # noqa: BLE001 - only for display; the services report a bad URL
        return "(a database URL that does not parse)"  # never the text itself: it may hold a password


LOCAL_AUTH_DIR = Path("var") / "auth"


def local_identities(env: dict[str, str], *, no_auth: bool = False) -> None:
    """Identities for the local stack, unless the environment configures them: keys, an
    entitlements file and tokens in ``var/auth`` (the ``tessera`` client commands present
    ``var/auth/local.token`` by default); ``no_auth``: none at all (``TESSERA_AUTH=none``)."""
    if no_auth:
        env[MODE_VARIABLE] = "none"
        print("tessera: identities OFF (--no-auth): any caller may call anything; every access log line says "
              "auth=none", flush=True)
        return
    if identities_configured(env):
        return
    env.update(provision_local(Path.cwd() / LOCAL_AUTH_DIR))
    print(f"tessera: identities on: principal 'local' (every role) in {LOCAL_AUTH_DIR}/local.token, used by the "
          f"tessera commands run here; entitlements in {LOCAL_AUTH_DIR}/entitlements.yaml", flush=True)


def local_environment(environ: Mapping[str, str] = os.environ, *, no_auth: bool = False) -> dict[str, str]:
    """The services' environment; an ephemeral HMAC secret when none is configured, and
    the local identities (:func:`local_identities`)."""
    env = dict(environ)
    local_identities(env, no_auth=no_auth)
    if not env.get(SECRET_VARIABLE) and not env.get(f"{SECRET_VARIABLE}_FILE"):
        env[SECRET_VARIABLE] = ephemeral_secret()
        env.pop("AIS_RISK_HMAC_KEY_ID", None)
        print(
            f"tessera: {SECRET_VARIABLE} is not set: using an ephemeral random secret for this "
            "local stack only (tokens it signs die with it)",
            flush=True,
        )
    return env


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database URL (env TESSERA_DATABASE_URL, "
                        "default sqlite file var/tessera.db)")
    for name in ("risk", "oms", "exchange"):
        env_name = f"TESSERA_{name.upper()}_PORT"
        parser.add_argument(f"--{name}-port", type=int, default=int(os.environ.get(env_name) or DEFAULT_PORTS[name]),
                            metavar="PORT", help=f"(env {env_name}, default %(default)s; 0 = any free port)")
    parser.add_argument("--host", default=os.environ.get("TESSERA_HOST") or "127.0.0.1",
                        help="interface to bind (env TESSERA_HOST, default %(default)s)")
    parser.add_argument("--log-dir", default="var/log", help="service logs (default %(default)s)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--no-auth", action="store_true",
                        help="run without identities (TESSERA_AUTH=none): any caller may call anything")


def print_addresses(stack: Stack) -> None:
    print(output.table(("service", "address"), [(n, stack.addresses.get(n, "")) for n in ("risk", "oms", "exchange")]))


def cmd_up(args: argparse.Namespace) -> int:
    env = local_environment(no_auth=args.no_auth)
    url = args.db or default_database_url(env)
    stack = Stack(
        database_url=url,
        env=env,
        host=args.host,
        ports={"risk": args.risk_port, "oms": args.oms_port, "exchange": args.exchange_port},
        log_dir=args.log_dir,
        startup_timeout=args.startup_timeout,
    )
    mode = env.get("TESSERA_EXECUTION_MODE") or "paper"
    print(f"starting exchange, risk, oms (database {shown_url(url)}, mode {mode}, logs in {stack.log_dir})",
          flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            # Ctrl-C during startup: Stack.start stops what it started, then re-raises.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            stack.start()
            signal.signal(signal.SIGINT, on_signal)
        except KeyboardInterrupt:
            print("interrupted during startup; stopped", flush=True)
            return EXIT_ERROR
        except StackError as error:
            err(f"the stack did not start: {error}")
            return EXIT_ERROR
        print_addresses(stack)
        if stack.metrics_addresses:
            print("metrics: " + ", ".join(f"{n} http://{a}/metrics" for n, a in stack.metrics_addresses.items()),
                  flush=True)
        print(f"stack is up; clients: tessera orders --oms {stack.addresses['oms']} "
              f"(or export TESSERA_RISK_ADDRESS={stack.addresses['risk']} "
              f"TESSERA_OMS_ADDRESS={stack.addresses['oms']}). Ctrl-C stops it.", flush=True)
        died: dict[str, int] = {}
        while not stop.wait(0.5):
            died = stack.poll()
            if died:
                break
        code = EXIT_OK
        if died:
            for name, rc in died.items():
                err(f"{name} exited unexpectedly with code {rc}; stderr ends with:\n"
                    f"{tail(stack.processes[name].stderr())}")
            code = EXIT_ERROR
        print("stopping...", flush=True)
        codes = stack.stop()
        print("stopped (" + ", ".join(f"{n} exit {codes.get(n)}" for n in SERVICES if n in codes) + ")", flush=True)
        if any(codes.get(n) not in (0, None) for n in SERVICES if n not in died):
            code = EXIT_ERROR
        return code
    finally:
        stack.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


__all__ = ["add_up_arguments", "cmd_up", "default_database_url", "local_environment", "shown_url"]
