"""Helpers of the venue end-to-end tests: the simulator as a process, stacks pointed at it.

Imported as ``venue_harness`` (``tests/e2e/conftest.py`` puts this directory on the path).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from services.cli.stack import PROJECT_ROOT, ServiceProcess, Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2

import tessera_e2e as e2e

API_KEY = "e2e-venue-key-0123456789"
API_SECRET = "e2e-venue-secret-0123456789abcdef"  # never printed by any service
# A V3 API wallet: the main account (user), the API wallet (signer) and its private key.
V3_USER = "0x2222222222222222222222222222222222222222"
V3_SIGNER = "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
V3_PRIVATE_KEY = "0x" + "01" * 32  # never printed by any service
#: The Tessera account a live stack without a venue accounts registry trades for (ASTER_ACCOUNT_ID).
LIVE_ACCOUNT = "e2e-account"
_READY = re.compile(r"^venue-sim listening on (\S+):(\d+)\s*$", re.MULTILINE)


class VenueSim:
    """``python -m services.venue_sim`` on a free port, with its control surface."""

    def __init__(self, log_dir: Path, *extra_args: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "venue-sim.stdout.log"
        self.stderr_path = log_dir / "venue-sim.stderr.log"
        prices = ",".join(f"{s}={p}" for s, p in e2e.PRICES.items())
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.venue_sim", "--port", "0", "--prices", prices,
                 "--api-key", API_KEY, "--api-secret", API_SECRET, *extra_args],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(PROJECT_ROOT),
                env=e2e.base_env(), start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while True:
            match = _READY.search(self.stdout_path.read_text())
            if match:
                self.url = f"http://127.0.0.1:{match.group(2)}"
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"venue-sim did not start:\n{self.stderr_path.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def fault(self, kind: str, **fields: Any) -> None:
        self.control("POST", "/_sim/faults", {"kind": kind, **fields})

    def clear_faults(self) -> None:
        self.control("DELETE", "/_sim/faults")

    def set_price(self, symbol: str, price: str) -> None:
        self.control("POST", "/_sim/price", {"symbol": symbol, "price": price})

    def orders(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        orders = self.control("GET", "/_sim/orders")
        return [o for o in orders if client_order_id in (None, o["clientOrderId"])]

    def trades(self, venue_order_id: int | None = None) -> list[dict[str, Any]]:
        return [t for t in self.control("GET", "/_sim/trades") if venue_order_id in (None, t["orderId"])]

    def requests(self) -> list[dict[str, Any]]:
        return self.control("GET", "/_sim/requests")

    def drop_streams(self, refuse_seconds: float = 0.0) -> None:
        """Drop every user-data socket, and refuse new ones for ``refuse_seconds``."""
        self.control("POST", "/_sim/ws/refuse", {"seconds": refuse_seconds})

    def streams(self) -> dict[str, int]:
        return self.control("GET", "/_sim/ws")


def venue_env(sim: VenueSim, mode: str, **overrides: str | None) -> dict[str, str | None]:
    """Stack settings for ``mode`` against ``sim``: short timeouts, fast polls and reconciles."""
    env: dict[str, str | None] = {
        "TESSERA_EXECUTION_MODE": mode,
        "TESSERA_VENUE_URL": sim.url,
        "TESSERA_VENUE_TIMEOUT_SECONDS": "1",
        "TESSERA_VENUE_POLL_SECONDS": "0.2",
        "TESSERA_RECONCILE_INTERVAL_SECONDS": "0.5",
        "TESSERA_RECONCILE_GRACE_SECONDS": "1.5",
    }
    if mode == "live":
        env.update({"AIS_ENABLE_LIVE_TRADING": "true", "ASTER_ACCOUNT_ID": LIVE_ACCOUNT,
                    "ASTER_API_KEY": API_KEY, "ASTER_API_SECRET": API_SECRET})
    if mode == "live-v3":
        env.update({"TESSERA_EXECUTION_MODE": "live", "AIS_ENABLE_LIVE_TRADING": "true",
                    "ASTER_ACCOUNT_ID": LIVE_ACCOUNT, "ASTER_USER": V3_USER, "ASTER_SIGNER": V3_SIGNER,
                    "ASTER_SIGNER_PRIVATE_KEY": V3_PRIVATE_KEY})
    env.update(overrides)
    return env


def set_up_symbol(stack: Stack, symbol: str, leverage: str = "10") -> None:
    """SetLeverage and SetMarginMode (ISOLATED) as the OMS would call them."""
    leverage_request = exchange_pb2.SetLeverageRequest(symbol=symbol, leverage=leverage)
    stack.exchange.SetLeverage(leverage_request, timeout=e2e.RPC_TIMEOUT,
                               metadata=e2e.oms_credential("SetLeverage", leverage_request))
    margin_request = exchange_pb2.SetMarginModeRequest(symbol=symbol, margin_mode=pb.MARGIN_MODE_ISOLATED)
    stack.exchange.SetMarginMode(margin_request, timeout=e2e.RPC_TIMEOUT,
                                 metadata=e2e.oms_credential("SetMarginMode", margin_request))


def restart_oms(stack: Stack) -> None:
    """Stop the OMS process and start a new one with the same settings (its start-up pass runs)."""
    old = stack.processes["oms"]
    old.stop()
    channel = stack._channels.pop("oms", None)
    if channel is not None:
        channel.close()
    fresh = ServiceProcess("oms", old.env, old.log_dir / "restarted", cwd=old.cwd, python=old.python)
    stack.processes["oms"] = fresh
    fresh.start()
    fresh.wait_ready(30)


def restart_exchange(stack: Stack) -> None:
    """Stop the Exchange process and start a new one on the same port with the same settings
    (the OMS keeps its address and reconnects)."""
    old = stack.processes["exchange"]
    port = (old.address or "").rsplit(":", 1)[-1]
    old.stop()
    channel = stack._channels.pop("exchange", None)
    if channel is not None:
        channel.close()
    fresh = ServiceProcess("exchange", {**old.env, "TESSERA_EXCHANGE_PORT": port}, old.log_dir / "restarted",
                           cwd=old.cwd, python=old.python)
    stack.processes["exchange"] = fresh
    fresh.start()
    fresh.wait_ready(30)
