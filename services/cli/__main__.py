"""The ``tessera`` command (also ``python -m services.cli``).

Local stack:
  tessera up        start risk, oms and exchange on this machine until Ctrl-C
  tessera demo      start the stack, run a rebalance batch end to end, print it, stop
  tessera venue-sim run the Aster venue simulator (for shadow/live rehearsals)
  tessera bench     measure the round trip, the batch RPCs and the transport floor

Client (any deployment; --risk/--oms or TESSERA_RISK_ADDRESS/TESSERA_OMS_ADDRESS):
  tessera submit SYMBOL SIDE QUANTITY [...]   validate with Risk, then submit to the OMS
  tessera orders [...]                        list orders
  tessera trades [...]                        list trades
  tessera order ORDER_ID                      one order with its events and trades
  tessera positions [...]                     positions and PnL, spot and futures apart (from Risk)
  tessera watch [...]                         follow order events
  tessera rebalance FILE [...]                run a batch of target orders from CSV or JSON
  tessera kill-switch status|trip|reduce|reset  the trading state (changes need --reason; --comment optional)
  tessera token keygen|mint                    signing keys and bearer tokens for identities

Store (any database; --database-url or TESSERA_DATABASE_URL):
  tessera verify-store [...]                  check the store's invariants, report every violation (exit 4)
  tessera export --from T --to T [...]        orders, events and trades for audit, CSV or Parquet; each
                                              order verified against its hash chain (exit 4, nothing
                                              written, when one does not verify)

Every client command presents a bearer token (--token-file, TESSERA_TOKEN_FILE; default
var/auth/local.token, which `tessera up` writes) and speaks TLS with --tls-ca (mutual
TLS with --tls-cert/--tls-key): docs/cli.md.

Exit codes: 0 success, 1 error (the gRPC status and message are printed), 2 bad
usage, 3 order rejected by risk, 5 order rejected on submission (``submit``: approved by
Risk, then refused by the Exchange or the venue), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import client
from .client import EXIT_USAGE, UsageError
from .connection import ConnectionError_


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera",
        description="Tessera order execution: run the local stack and drive any deployment.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 rejected by risk, 5 rejected on submission, 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    from .demo import add_demo_arguments, cmd_demo
    from .local import add_up_arguments, cmd_up

    up = commands.add_parser("up", help="start the three services locally until Ctrl-C",
                             description="Start risk, oms and exchange as separate processes on the embedded "
                             "default (SQLite var/tessera.db, paper mode) and wait until Ctrl-C or SIGTERM.")
    add_up_arguments(up)
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help="run a rebalance batch end to end on a fresh local stack",
                               description="Bring the stack up on free ports, run a small rebalance batch "
                               "through Risk -> OMS -> Exchange, print each order's lifecycle and fills, stop.")
    add_demo_arguments(demo)
    demo.set_defaults(handler=cmd_demo)

    submit = commands.add_parser("submit", help="validate an order with Risk, then submit it to the OMS",
                                 description="Validate an order with Risk and, when approved, submit it "
                                 "with its risk token to the OMS. Exit 3 when risk rejects it, 5 when it ends REJECTED "
                                 "on submission (the Exchange or the venue refused it); 0 when it is "
                                 "submitted, working or filled.")
    client.add_submit_arguments(submit)
    client.add_connection_arguments(submit, risk=True)
    submit.set_defaults(handler=client.cmd_submit)

    orders = commands.add_parser("orders", help="list orders (oldest first)")
    orders.add_argument("--account", default="")
    orders.add_argument("--symbol", default="")
    orders.add_argument("--status", action="append", metavar="STATUS",
                        help="filter by status, e.g. filled or approved,submitted (repeatable)")
    orders.add_argument("--order-manager", default="", metavar="UNIQUE_IDENTIFIER")
    orders.add_argument("--limit", type=client.limit, default=100, help="at most this many (0 = all; default %(default)s)")
    client.add_connection_arguments(orders)
    orders.set_defaults(handler=client.cmd_orders)

    trades = commands.add_parser("trades", help="list trades (oldest first)")
    trades.add_argument("--order-id", default="")
    trades.add_argument("--account", default="")
    trades.add_argument("--symbol", default="")
    trades.add_argument("--limit", type=client.limit, default=100, help="at most this many (0 = all; default %(default)s)")
    client.add_connection_arguments(trades)
    trades.set_defaults(handler=client.cmd_trades)

    order = commands.add_parser("order", help="one order with its events and trades")
    order.add_argument("order_id", nargs="?", default="", metavar="ORDER_ID")
    order.add_argument("--account", default="", help="with --client-order-id")
    order.add_argument("--client-order-id", default="", help="look the order up by its client order id")
    client.add_connection_arguments(order)
    order.set_defaults(handler=client.cmd_order)

    watch = commands.add_parser("watch", help="follow order events (Ctrl-C stops)",
                                description="Print one line per order event: the stored history after "
                                "--after-cursor, then new events as they happen.")
    watch.add_argument("--order-id", default="")
    watch.add_argument("--account", default="")
    watch.add_argument("--after-cursor", type=int, default=0, metavar="CURSOR",
                       help="resume after this event cursor (default 0: the whole history first)")
    watch.add_argument("--history-only", action="store_true", help="stop after the stored history")
    client.add_connection_arguments(watch)
    watch.set_defaults(handler=client.cmd_watch)
    from .positions import add_positions_arguments, cmd_positions

    positions = commands.add_parser(
        "positions", help="positions and PnL per account, symbol and market type (Risk's ledger)",
        description="List the ledger's positions (RiskService.ListPositions): net quantity, average entry "
        "price, the mark (Risk's reference price) and the unrealised PnL at it, realised PnL net of "
        "commissions, and fees by asset. Spot and futures positions in one symbol are listed apart.")
    add_positions_arguments(positions)
    positions.set_defaults(handler=cmd_positions)
    from .kill_switch import add_kill_switch_arguments, cmd_kill_switch
    from .rebalance import add_rebalance_arguments, cmd_rebalance

    kill_switch = commands.add_parser(
        "kill-switch", help="show, trip (halt + cancel all), reduce or reset the trading state",
        description="status: the trading state. trip: EmergencyCancelAll (halt, latched; cancel every open "
        "order). reduce: REDUCING. reset: ACTIVE. Changes need --reason (and an operator's identity) and are "
        "audited with the caller's principal; --comment adds a note.")
    add_kill_switch_arguments(kill_switch)
    kill_switch.set_defaults(handler=cmd_kill_switch)

    from .token import add_token_arguments

    token = commands.add_parser(
        "token", help="signing keys and bearer tokens for identities",
        description="keygen DIR: an Ed25519 key pair (DIR/jwt-signing.pem, DIR/jwt-public.pem). mint: a signed "
        "bearer token (a JWT) for a principal, printed on stdout. The services verify tokens with the public "
        "key (TESSERA_JWT_PUBLIC_KEY_FILES); see docs/access.md.")
    add_token_arguments(token)

    from .venue import add_venue_arguments, cmd_venue

    venue = commands.add_parser(
        "venue", help="read and change the venue settings (leverage, margin mode, position mode) of an account",
        description="leverage ACCOUNT SYMBOL N, margin-mode ACCOUNT SYMBOL isolated|crossed, position-mode ACCOUNT "
        "hedge|one-way: change the setting at the venue through the OMS (SetVenueSetting) and store it, with "
        "--operator. settings [ACCOUNT]: what the store holds (read from the venue when the Exchange starts). "
        "history [ACCOUNT]: every change, with who made it, the comment and when.")
    add_venue_arguments(venue)
    venue.set_defaults(handler=cmd_venue)

    from .verify_store import add_verify_store_arguments, cmd_verify_store

    verify_store = commands.add_parser(
        "verify-store", help="check the store's invariants and report every violation",
        description="Read a Tessera database (read-only) and check its invariants: each order's hash-chained "
        "events (edited, inserted or deleted events), the replay of its events against the stored order, "
        "submissions (never unapproved, never twice), fills recorded exactly once, the ledger; optionally "
        "nothing left in doubt, and the store against a venue simulator. Exit 0 clean, 4 violations, 1 unreadable.")
    add_verify_store_arguments(verify_store)
    verify_store.set_defaults(handler=cmd_verify_store)

    from .export import add_export_arguments, cmd_export

    export = commands.add_parser(
        "export", help="export orders, events and trades of a time window for audit (CSV or Parquet)",
        description="Write every order with an event in [--from, --to), with its complete hash-chained event "
        "history and its trades, to a new directory of CSV or Parquet files with a manifest (rows and SHA-256 "
        "per file). Every exported order is verified first, its hash chain and its row and trades against its "
        "events: one that does not verify and nothing is written (exit 4). "
        "Exit 0 exported, 4 orders that do not verify, 1 unreadable store or unwritable target.")
    add_export_arguments(export)
    export.set_defaults(handler=cmd_export)

    rebalance = commands.add_parser(
        "rebalance", help="run a batch of target orders from a CSV or JSON file",
        description="Create (or resume) an order manager for the file's orders, validate them with Risk "
        "and submit the approved ones to the OMS in chunks, showing progress. Idempotent: running the "
        "same file again submits nothing twice. Exit 3 when risk rejected some orders, else 5 when some "
        "ended REJECTED on submission (the Exchange or the venue refused them).")
    add_rebalance_arguments(rebalance)
    rebalance.set_defaults(handler=cmd_rebalance)

    from .bench import add_bench_arguments, cmd_bench

    bench = commands.add_parser(
        "bench", help="measure the order round trip, the batch RPCs and the transport floor",
        description="Start the stack as real processes on SQLite and on PostgreSQL, then measure the order "
        "round trip (validate + submit until FILLED) at 1, 8 and 32 orders in flight, the batch RPCs and a "
        "bare echo RPC (the transport floor); report p50/p95/p99, orders/s, the ratios to the floor and "
        "the machine. See docs/benchmarks.md.")
    add_bench_arguments(bench)
    bench.set_defaults(handler=cmd_bench)

    from services.venue_sim.__main__ import build_parser as add_venue_sim_arguments
    from services.venue_sim.__main__ import run as run_venue_sim

    venue_sim = commands.add_parser("venue-sim", help="run the Aster venue simulator on this machine (rehearsals)",
                                    description="A local venue speaking Aster's REST protocol: signatures, "
                                    "books, matching, fault injection (POST /_sim/faults). Point the Exchange "
                                    "at it with TESSERA_VENUE_URL.")
    add_venue_sim_arguments(venue_sim)
    venue_sim.set_defaults(handler=run_venue_sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UsageError as error:
        parser.error(str(error))
        return EXIT_USAGE  # not reached: parser.error exits with 2
    except ConnectionError_ as error:
        client.err(str(error))
        return client.EXIT_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
