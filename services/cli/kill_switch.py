"""``tessera kill-switch``: read and change the trading state of any deployment.

``status`` shows the global state (and who set it, why, when); ``trip`` calls
``EmergencyCancelAll`` (halt, latched, and cancel every open order; what the venue-wide
cancel could not cancel is printed on stderr and the exit code is 1); ``reduce`` sets
REDUCING; ``reset`` sets ACTIVE again. Every change needs ``--reason`` and a caller
with the operator role (its token or certificate): the services audit each change with
that principal; ``--comment`` (``--operator`` is kept as its alias) adds a note.
"""

from __future__ import annotations

import argparse

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from . import output
from .connection import connect
from .client import EXIT_ERROR, EXIT_OK, UsageError, add_connection_arguments, err

ACTIONS = ("status", "trip", "reduce", "reset")


def add_kill_switch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS,
                        help="status; trip (halt + cancel everything); reduce (REDUCING); reset (ACTIVE)")
    parser.add_argument("--comment", "--operator", dest="comment", default="",
                        help="a note recorded with the change (who acted is your identity)")
    parser.add_argument("--reason", default="", help="why (required to change it)")
    add_connection_arguments(parser, risk=True)


def cmd_kill_switch(args: argparse.Namespace) -> int:
    if args.action != "status" and not args.reason:
        raise UsageError(f"kill-switch {args.action} needs --reason (why; it is audited with your identity)")
    with connect(args, args.risk) as risk_channel, connect(args, args.oms) as oms_channel:
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)
        incomplete = False
        try:
            if args.action == "trip":
                answer = oms_pb2_grpc.OrderManagementServiceStub(oms_channel).EmergencyCancelAll(
                    oms_pb2.EmergencyCancelAllRequest(operator=args.comment, reason=args.reason), timeout=args.timeout
                )
                print(f"trading HALTED; {len(answer.orders)} order(s) cancelled")
                if answer.orders:
                    print(output.orders_table(answer.orders))
                incomplete = _venue_failures(answer.venue_failures)
            elif args.action in ("reduce", "reset"):
                state = pb.TRADING_STATE_REDUCING if args.action == "reduce" else pb.TRADING_STATE_ACTIVE
                answer = risk.SetTradingState(
                    risk_pb2.SetTradingStateRequest(state=state, operator=args.comment, reason=args.reason),
                    timeout=args.timeout,
                )
                print(f"trading {_name(answer.previous_state)} -> {_name(answer.state)}")
            state = risk.GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=args.timeout)
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"kill-switch {args.action}"))
            return EXIT_ERROR
    print(output.fields([
        ("state", _name(state.state)),
        ("operator", output.text(state.operator)),
        ("reason", output.text(state.reason)),
        ("updated", output.timestamp(state, "updated_time")),
    ]))
    return EXIT_ERROR if incomplete else EXIT_OK


def _venue_failures(failures) -> bool:  # type: ignore[no-untyped-def]
    """Say on stderr what the venue-wide cancel could not cancel; True when anything."""
    for failure in failures:
        market = pb.MarketType.Name(failure.market_type).removeprefix("MARKET_TYPE_")
        where = f"{output.text(failure.account)} {market} {failure.symbol or '(every symbol)'}"
        err(f"NOT CANCELLED at the venue: {where}: {failure.reason}: {failure.message}")
    if failures:
        err("orders may still be working there; trading stays HALTED: fix the cause and trip again")
    return bool(failures)


def _name(state: int) -> str:
    return pb.TradingState.Name(state).removeprefix("TRADING_STATE_")


__all__ = ["add_kill_switch_arguments", "cmd_kill_switch"]
