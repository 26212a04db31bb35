"""``tessera venue``: the venue settings of an account, read and changed through the OMS.

``leverage ACCOUNT SYMBOL N``, ``margin-mode ACCOUNT SYMBOL isolated|crossed`` and
``position-mode ACCOUNT hedge|one-way`` change a setting at the venue (``SetVenueSetting``:
the OMS asks the Exchange, which asks the venue) and print it as stored; ``settings
[ACCOUNT]`` lists what the store holds (read from the venue each time the Exchange starts,
and every change made here, with who made it: the caller's identity, which needs the
operator role; ``--comment`` (``--operator`` is kept as its alias) adds a note);
``history [ACCOUNT]`` lists the changes that led there, oldest first: what each set, who,
the comment, when. The account ``-`` means the Exchange's single account (no venue
accounts registry).
"""

from __future__ import annotations

import argparse

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc

from . import output
from .client import EXIT_ERROR, EXIT_OK, add_connection_arguments, err
from .connection import connect

_MARGIN = {"isolated": pb.MARGIN_MODE_ISOLATED, "crossed": pb.MARGIN_MODE_CROSSED}
_POSITION = {"hedge": "HEDGE", "one-way": "ONE_WAY"}


def _account(value: str) -> str:
    return "" if value == "-" else value


def add_venue_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    leverage = actions.add_parser("leverage", help="set a futures symbol's leverage at the venue")
    leverage.add_argument("account", help="Tessera account (- for the Exchange's single account)")
    leverage.add_argument("symbol")
    leverage.add_argument("leverage", help="a whole number from 1 to 125")
    margin = actions.add_parser("margin-mode", help="set a futures symbol's margin mode at the venue")
    margin.add_argument("account", help="Tessera account (- for the Exchange's single account)")
    margin.add_argument("symbol")
    margin.add_argument("margin_mode", type=str.lower, choices=sorted(_MARGIN))
    position = actions.add_parser("position-mode", help="set an account's position mode (hedge or one-way)")
    position.add_argument("account", help="Tessera account (- for the Exchange's single account)")
    position.add_argument("position_mode", type=str.lower, choices=sorted(_POSITION))
    listing = actions.add_parser("settings", help="list the venue settings the store holds")
    listing.add_argument("account", nargs="?", default=None, help="one account (default: every account)")
    history = actions.add_parser("history", help="list the changes of the venue settings: who, why, when")
    history.add_argument("account", nargs="?", default=None, help="one account (default: every account)")
    for sub in (leverage, margin, position, listing, history):
        sub.add_argument("--comment", "--operator", dest="comment", default="",
                         help="a note logged with a change (who acted is your identity)")
        add_connection_arguments(sub)


def _values(s) -> list[str]:  # type: ignore[no-untyped-def]
    """The cells a stored setting and a change share: account, symbol and the three settings."""
    return [s.account or "-", s.symbol or "(account)", s.leverage or "",
            pb.MarginMode.Name(s.margin_mode).removeprefix("MARGIN_MODE_") if s.margin_mode else "",
            s.position_mode]


def _rows(settings) -> str:  # type: ignore[no-untyped-def]
    return output.table(
        ["account", "symbol", "leverage", "margin mode", "position mode", "source", "updated"],
        [[*_values(s), s.source, output.timestamp(s, "updated_time")] for s in settings])


def _changes(changes) -> str:  # type: ignore[no-untyped-def]
    return output.table(
        ["account", "symbol", "leverage", "margin mode", "position mode", "by", "when", "comment"],
        [[*_values(c), c.principal, output.timestamp(c, "changed_time"), c.comment] for c in changes])


def cmd_venue(args: argparse.Namespace) -> int:
    with connect(args, args.oms) as channel:
        oms = oms_pb2_grpc.OrderManagementServiceStub(channel)
        try:
            if args.action in ("settings", "history"):
                answer = oms.ListVenueSettings(oms_pb2.ListVenueSettingsRequest(
                    account=args.account or "", history=args.action == "history"), timeout=args.timeout)
                print(_rows(answer.settings) if args.action == "settings" else _changes(answer.changes))
                return EXIT_OK
            request = oms_pb2.SetVenueSettingRequest(account=_account(args.account), operator=args.comment)
            if args.action == "leverage":
                request.symbol, request.leverage = args.symbol, args.leverage
            elif args.action == "margin-mode":
                request.symbol, request.margin_mode = args.symbol, _MARGIN[args.margin_mode]
            else:
                request.position_mode = _POSITION[args.position_mode]
            answer = oms.SetVenueSetting(request, timeout=args.timeout)
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"venue {args.action}"))
            return EXIT_ERROR
    print(_rows([answer.setting]))
    return EXIT_OK


__all__ = ["add_venue_arguments", "cmd_venue"]
