"""``tessera positions``: the ledger's positions and PnL, from Risk (``ListPositions``).

One row per account, symbol and market type (spot and futures apart): the signed net
quantity, average entry price, the mark (Risk's reference price) and the unrealised
PnL at it, the realised PnL net of commissions, and the fees by asset.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from . import output
from .connection import connect
from .client import EXIT_ERROR, EXIT_OK, MARKETS, add_connection_arguments, err, limit

HEADERS = ("account", "market", "symbol", "quantity", "avg_entry", "mark", "unrealised", "realised_net", "fees",
           "updated")


def add_positions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", default="", help="one account (default: every account)")
    parser.add_argument("--symbol", default="", help="one symbol")
    parser.add_argument("--market", type=str.lower, choices=list(MARKETS), help="futures or spot (default: both)")
    parser.add_argument("--open", dest="open_only", action="store_true",
                        help="leave out flat positions (they still carry realised PnL and fees)")
    parser.add_argument("--limit", type=limit, default=1000, help="at most this many (0 = all; default %(default)s)")
    add_connection_arguments(parser, risk=True)


def position_row(position: risk_pb2.Position) -> list[str]:
    fees = ", ".join(f"{fee.amount} {fee.asset or '?'}" for fee in position.fees)
    return [
        position.account,
        output.enum_name("market_type", position.market_type),
        position.symbol,
        position.quantity,
        position.average_entry_price,
        position.mark_price,
        position.unrealised_pnl,
        position.net_realised_pnl,
        fees,
        output.timestamp(position, "updated_time"),
    ]


def positions_table(positions: Iterable[risk_pb2.Position]) -> str:
    return output.table(HEADERS, (position_row(p) for p in positions), empty="(no positions)")


def cmd_positions(args: argparse.Namespace) -> int:
    request = risk_pb2.ListPositionsRequest(
        account=args.account, symbol=args.symbol.upper(), open_only=args.open_only,
        market_type=MARKETS[args.market] if args.market else pb.MARKET_TYPE_UNSPECIFIED,
        page_size=min(args.limit, 1000) if args.limit else 1000,
    )
    rows: list[Any] = []
    more = False
    with connect(args, args.risk) as channel:
        stub = risk_pb2_grpc.RiskServiceStub(channel)
        try:
            while True:
                page = stub.ListPositions(request, timeout=args.timeout)
                rows += page.positions
                if args.limit and len(rows) >= args.limit:
                    more = bool(page.next_page_token) or len(rows) > args.limit
                    rows = rows[:args.limit]
                    break
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"Risk.ListPositions at {args.risk}"))
            return EXIT_ERROR
    print(positions_table(rows))
    if more:
        print(f"(first {len(rows)} positions; raise --limit or narrow the filters for more)")
    return EXIT_OK


__all__ = ["add_positions_arguments", "cmd_positions", "positions_table"]
