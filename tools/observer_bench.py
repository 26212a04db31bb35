"""The observers' own work per call, in one process: no transport, no other process.

Registers the bare Risk-like servicer (:mod:`services.cli.bare_chain`) twice with
``add_service``, bare and observed, as a server would, and calls ``ValidateOrder``'s
handler in a loop, as gRPC would: the request decoded by the handler's decoder, a
stand-in ``ServicerContext`` (one metadata entry, like a client's ``user-agent``), the
finished calls drained every ``--drain-every`` calls. The figure is the least time per
call over ``--trials`` short trials, the handlers taking turns (the least is what the
code costs when nothing else runs); the observers' cost is the observed handler's less
the bare one's, with the access log and without (``TESSERA_ACCESS_LOG=false``). With
``--also DIR`` the same from another tree's ``services/`` (``git archive <commit>
services | tar -x -C DIR``), in the same run. In the hop the same code costs several
times this (``tools/hop_bench.py``: the server, the client and other processes share the
caches); this says which code costs what.

``python tools/observer_bench.py [--trials 300] [--calls 1000] [--drain-every 250] [--also DIR ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def measure(trials: int, calls: int, drain_every: int) -> dict[str, float]:
    """Least µs per call of the bare and the observed ``ValidateOrder`` handler (this process's tree)."""
    import asyncio
    import time

    from services.cli.bare_chain import BareRisk
    from services.cli.bench import Orders
    from services.common.auth import Authorizer
    from services.common.observability import interceptors, metrics
    from services.common.observability.logs import setup_logging
    from services.common.server import add_service
    from tessera.risk.v1 import risk_pb2

    class Server:  # what add_service registers, kept
        def __init__(self) -> None:
            self.handlers: dict[str, object] = {}

        def add_generic_rpc_handlers(self, handlers: object) -> None:
            pass

        def add_registered_method_handlers(self, service: str, handlers: dict[str, object]) -> None:
            self.handlers = handlers

    class Context:  # the part of grpc.aio.ServicerContext the observers use
        __slots__ = ("trailing",)
        metadata = (("user-agent", "grpc-python-asyncio/1.85.4 grpc-c/58.0.0 (linux; chttp2)"),)

        def __init__(self) -> None:
            self.trailing: tuple[object, ...] = ()

        def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
            return self.metadata

        def set_trailing_metadata(self, metadata: object) -> None:
            self.trailing = tuple(metadata)  # type: ignore[arg-type]

        def code(self) -> None:
            return None

    setup_logging("risk", {}, stream=open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    metrics.SERVICE["name"] = "risk"
    service = risk_pb2.DESCRIPTOR.services_by_name["RiskService"]
    handlers = {}
    for label, observe in (("bare", False), ("observed", True)):
        server = Server()
        add_service(server, BareRisk(), service, observe=observe, authorizer=Authorizer.disabled())  # type: ignore[arg-type]
        handlers[label] = server.handlers["ValidateOrder"]
    raw = risk_pb2.ValidateOrderRequest(order=Orders("bench").next()).SerializeToString()
    finished = interceptors._finished
    finished.limit = 1 << 30  # drained here, every drain_every calls

    def trial(handler: object) -> float:
        decode, behaviour, context = handler.request_deserializer, handler.unary_unary, Context()  # type: ignore[attr-defined]
        started = time.perf_counter()
        for index in range(calls):
            coroutine = behaviour(raw if decode is None else decode(raw), context)  # as gRPC decodes
            try:
                coroutine.send(None)
            except StopIteration:
                pass
            if index % drain_every == drain_every - 1:
                finished.drain()
        finished.drain()
        return (time.perf_counter() - started) / calls * 1e6

    async def run() -> dict[str, float]:  # on a loop, as a server's handlers are
        least = {label: float("inf") for label in handlers}
        for _ in range(trials):
            for label, handler in handlers.items():
                least[label] = min(least[label], trial(handler))
        return least

    return asyncio.run(run())


def _in_tree(tree: Path, access_log: bool, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, TESSERA_ACCESS_LOG="true" if access_log else "false",
               PYTHONPATH=os.pathsep.join(dict.fromkeys([str(tree), str(PROJECT_ROOT),
                                                         *filter(None, [os.environ.get("PYTHONPATH")])])))
    out = subprocess.run([sys.executable, __file__, "--measure", "--trials", str(args.trials), "--calls",
                          str(args.calls), "--drain-every", str(args.drain_every)],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--calls", type=int, default=1000, help="calls per trial")
    parser.add_argument("--drain-every", type=int, default=250)
    parser.add_argument("--also", type=Path, action="append", default=[], help="another tree's services/")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one tree, in this process
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.trials, args.calls, args.drain_every)))
        return 0
    print(f"least us per call over {args.trials} trials of {args.calls} calls (finished calls drained every "
          f"{args.drain_every}):")
    for tree in [PROJECT_ROOT, *(tree.resolve() for tree in args.also)]:
        logged, quiet = _in_tree(tree, True, args), _in_tree(tree, False, args)
        print(f"  {str(tree):40s} bare {logged['bare']:5.2f}   observed {logged['observed']:5.2f} "
              f"(no access log {quiet['observed']:5.2f})   the observers {logged['observed'] - logged['bare']:5.2f} "
              f"(no access log {quiet['observed'] - quiet['bare']:5.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
