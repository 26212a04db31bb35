"""The client commands: ``submit``, ``orders``, ``trades``, ``watch``, ``order``.

They talk to any deployment: ``--risk`` / ``--oms`` (or ``TESSERA_RISK_ADDRESS`` /
``TESSERA_OMS_ADDRESS``, default ``127.0.0.1:50051`` / ``127.0.0.1:50052``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
from typing import Any, Callable, Iterator

import grpc

from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

from . import output
from .connection import add_identity_arguments, connect

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
#: ``submit``: Risk approved the order, and it ended REJECTED on submission (the Exchange
#: or the venue refused it).
EXIT_SUBMISSION_REJECTED = 5

DEFAULT_RISK_ADDRESS = "127.0.0.1:50051"
DEFAULT_OMS_ADDRESS = "127.0.0.1:50052"

ORDER_TYPES = {
    "market": pb.ORDER_TYPE_MARKET,
    "limit": pb.ORDER_TYPE_LIMIT,
    "stop-market": pb.ORDER_TYPE_STOP_MARKET,
    "stop-limit": pb.ORDER_TYPE_STOP_LIMIT,
    "take-profit": pb.ORDER_TYPE_TAKE_PROFIT,
    "take-profit-market": pb.ORDER_TYPE_TAKE_PROFIT_MARKET,
    "trailing-stop-market": pb.ORDER_TYPE_TRAILING_STOP_MARKET,
}
WORKING_TYPES = {"mark": pb.WORKING_TYPE_MARK_PRICE, "contract": pb.WORKING_TYPE_CONTRACT_PRICE}
SIDES = {"buy": pb.SIDE_BUY, "sell": pb.SIDE_SELL}
TIME_IN_FORCE = {
    "gtc": pb.TIME_IN_FORCE_GTC,
    "ioc": pb.TIME_IN_FORCE_IOC,
    "fok": pb.TIME_IN_FORCE_FOK,
    "gtd": pb.TIME_IN_FORCE_GTD,
}
MARKETS = {"futures": pb.MARKET_TYPE_FUTURES, "spot": pb.MARKET_TYPE_SPOT}
STATUSES = {
    name[len("ORDER_STATUS_"):].lower(): value
    for name, value in pb.OrderStatus.items()
    if not name.endswith("_UNSPECIFIED")
}


class UsageError(Exception):
    """A command-line value the command cannot use (exit code 2)."""


def err(message: str) -> None:
    print(f"tessera: {message}", file=sys.stderr, flush=True)


# -- arguments ------------------------------------------------------------------------
def limit(value: str) -> int:
    """A ``--limit``: a whole number, 0 or more (0 = all)."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all) or more, got {value}")
    return number


def seconds(value: str) -> float:
    """A ``--timeout``: a positive number of seconds."""
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return number


def add_connection_arguments(parser: argparse.ArgumentParser, *, risk: bool = False) -> None:
    if risk:
        parser.add_argument(
            "--risk",
            default=os.environ.get("TESSERA_RISK_ADDRESS") or DEFAULT_RISK_ADDRESS,
            metavar="HOST:PORT",
            help="Risk service address (env TESSERA_RISK_ADDRESS, default %(default)s)",
        )
    parser.add_argument(
        "--oms",
        default=os.environ.get("TESSERA_OMS_ADDRESS") or DEFAULT_OMS_ADDRESS,
        metavar="HOST:PORT",
        help="OMS address (env TESSERA_OMS_ADDRESS, default %(default)s)",
    )
    parser.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                        help="deadline of each call (default %(default)s)")
    add_identity_arguments(parser)


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", help="instrument, e.g. BTCUSDT")
    parser.add_argument("side", type=str.lower, choices=sorted(SIDES), help="buy or sell")
    parser.add_argument("quantity", nargs="?", default="",
                        help="decimal quantity, e.g. 0.01 (left out with --close-position or --quote-order-qty)")
    parser.add_argument("--price", default="", help="limit price (makes the order a limit order)")
    parser.add_argument("--type", dest="order_type", type=str.lower, choices=list(ORDER_TYPES),
                        help="order type (default: market, or limit when --price is given)")
    parser.add_argument("--stop-price", default="", help="trigger price of stop and take-profit orders")
    parser.add_argument("--close-position", action="store_true",
                        help="futures stop-market / take-profit-market: close the whole position when triggered "
                             "(no quantity)")
    parser.add_argument("--working-type", type=str.lower, choices=list(WORKING_TYPES),
                        help="futures conditional orders: trigger on the mark or the contract price "
                             "(default: the venue's, contract)")
    parser.add_argument("--price-protect", action="store_true",
                        help="futures stop / take-profit orders: trigger only while mark and contract prices agree")
    parser.add_argument("--activation-price", default="", help="trailing-stop-market: where the trail starts")
    parser.add_argument("--callback-rate", default="",
                        help="trailing-stop-market: the callback in percent, 0.1 to 5 (1 is 1 %%)")
    parser.add_argument("--quote-order-qty", default="", metavar="AMOUNT",
                        help="spot market buy: the amount of the quote asset to spend (no quantity)")
    parser.add_argument("--tif", type=str.lower, choices=list(TIME_IN_FORCE), default="gtc",
                        help="time in force (default %(default)s)")
    parser.add_argument("--expire-time", default="", metavar="ISO_TIME",
                        help="expiry of a gtd order, e.g. 2030-01-01T00:00:00Z")
    parser.add_argument("--account", default="demo", help="account (default %(default)s)")
    parser.add_argument("--venue", default="aster", help="venue (default %(default)s)")
    parser.add_argument("--market", type=str.lower, choices=list(MARKETS), default="futures",
                        help="market type (default %(default)s)")
    parser.add_argument("--leverage", default="", help="futures leverage, e.g. 5")
    parser.add_argument("--reduce-only", action="store_true", help="futures: only reduce a position")
    parser.add_argument("--post-only", action="store_true", help="limit orders: maker only")
    parser.add_argument("--client-order-id", default="", help="your id for the order (default: Risk makes one)")
    parser.add_argument("--order-manager", default="", metavar="UNIQUE_IDENTIFIER",
                        help="the order manager (batch) the order belongs to")


def parse_time(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


def build_intent(args: argparse.Namespace) -> pb.OrderIntent:
    """The OrderIntent the ``submit`` arguments describe."""
    if args.order_type:
        order_type = ORDER_TYPES[args.order_type]
    elif args.callback_rate:
        order_type = pb.ORDER_TYPE_TRAILING_STOP_MARKET
    elif args.stop_price:
        order_type = pb.ORDER_TYPE_STOP_LIMIT if args.price else pb.ORDER_TYPE_STOP_MARKET
    else:
        order_type = pb.ORDER_TYPE_LIMIT if args.price else pb.ORDER_TYPE_MARKET
    intent = pb.OrderIntent(
        client_order_id=args.client_order_id,
        account=args.account,
        venue=args.venue,
        market_type=MARKETS[args.market],
        symbol=args.symbol.upper(),
        side=SIDES[args.side],
        order_type=order_type,
        quantity=args.quantity,
        price=args.price,
        stop_price=args.stop_price,
        time_in_force=TIME_IN_FORCE[args.tif],
        reduce_only=args.reduce_only,
        post_only=args.post_only,
        leverage=args.leverage,
        order_manager_id=args.order_manager,
        close_position=args.close_position,
        working_type=WORKING_TYPES[args.working_type] if args.working_type else pb.WORKING_TYPE_UNSPECIFIED,
        price_protect=args.price_protect,
        activation_price=args.activation_price,
        callback_rate=args.callback_rate,
        quote_order_qty=args.quote_order_qty,
    )
    if args.expire_time:
        intent.expire_time.FromDatetime(parse_time(args.expire_time))
    return intent


def parse_statuses(values: list[str] | None) -> list[int]:
    result = []
    for value in values or []:
        for name in filter(None, (part.strip().lower() for part in value.split(","))):
            if name not in STATUSES:
                raise UsageError(f"unknown status {name!r}; one of: {', '.join(STATUSES)}")
            result.append(STATUSES[name])
    return result


# -- calls ----------------------------------------------------------------------------
def _oms(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    return oms_pb2_grpc.OrderManagementServiceStub(channel)


def cmd_submit(args: argparse.Namespace) -> int:
    intent = build_intent(args)
    with connect(args, args.risk) as risk_channel, connect(args, args.oms) as oms_channel:
        risk = risk_pb2_grpc.RiskServiceStub(risk_channel)
        try:
            decision = risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=intent), timeout=args.timeout)
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"Risk.ValidateOrder at {args.risk}"))
            return EXIT_ERROR
        order = decision.order
        if order.status != pb.ORDER_STATUS_APPROVED or not decision.risk_token:
            print(f"risk: {output.status(order.status)} order {output.text(order.order_id)}")
            print(output.order_details(order))
            print()
            print("violations:")
            print(output.violations_table(decision.violations))
            sys.stdout.flush()
            err(f"order rejected by risk: {', '.join(v.code for v in decision.violations) or 'no reason given'}")
            return EXIT_REJECTED
        print(f"risk: APPROVED order {order.order_id} (client_order_id {order.client_order_id})")
        try:
            result = _oms(args, oms_channel).SubmitOrder(
                oms_pb2.SubmitOrderRequest(order=order, risk_token=decision.risk_token), timeout=args.timeout
            )
        except grpc.RpcError as error:
            sys.stdout.flush()
            err(output.rpc_error(error, f"OMS.SubmitOrder at {args.oms}"))
            return EXIT_ERROR
        print(f"oms: {output.status(result.order.status)}")
        print(output.order_details(result.order))
        print()
        print("trades:")
        print(output.trades_table(result.trades))
    if result.order.status == pb.ORDER_STATUS_REJECTED:
        sys.stdout.flush()
        reasons = ", ".join(result.order.reject_reasons)
        err(f"order {result.order.order_id} rejected on submission: "
            f"{reasons or f'the reason is in its events (tessera order {result.order.order_id})'}")
        return EXIT_SUBMISSION_REJECTED
    return EXIT_OK


def _pages(call: Callable[[str], Any], items: str, limit: int) -> Iterator[Any]:
    """Items of a paged List call, at most ``limit`` (0 = all); the last one yielded is the
    next page token ("" when there is no more)."""
    token = ""
    count = 0
    while True:
        page = call(token)
        for item in getattr(page, items):
            if limit and count >= limit:
                yield page.next_page_token or "more"
                return
            count += 1
            yield item
        token = page.next_page_token
        if not token:
            yield ""
            return


def _list(args: argparse.Namespace, call: Callable[[Any, str, int], Any], items: str,
          render: Callable[[list[Any]], str], noun: str) -> int:
    page_size = min(args.limit, 1000) if args.limit else 1000
    with connect(args, args.oms) as channel:
        stub = _oms(args, channel)
        try:
            *rows, more = list(_pages(lambda token: call(stub, token, page_size), items, args.limit))
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"OMS at {args.oms}"))
            return EXIT_ERROR
    print(render(rows))
    if more:
        print(f"(first {len(rows)} {noun}, oldest first; raise --limit or narrow the filters for more)")
    return EXIT_OK


def cmd_orders(args: argparse.Namespace) -> int:
    statuses = parse_statuses(args.status)

    def call(stub: Any, token: str, page_size: int) -> Any:
        return stub.ListOrders(
            oms_pb2.ListOrdersRequest(
                account=args.account,
                symbol=args.symbol.upper(),
                statuses=statuses,
                order_manager_id=args.order_manager,
                page_size=page_size,
                page_token=token,
            ),
            timeout=args.timeout,
        )

    return _list(args, call, "orders", output.orders_table, "orders")


def cmd_trades(args: argparse.Namespace) -> int:
    def call(stub: Any, token: str, page_size: int) -> Any:
        return stub.ListTrades(
            oms_pb2.ListTradesRequest(
                order_id=args.order_id,
                account=args.account,
                symbol=args.symbol.upper(),
                page_size=page_size,
                page_token=token,
            ),
            timeout=args.timeout,
        )

    return _list(args, call, "trades", output.trades_table, "trades")


def cmd_order(args: argparse.Namespace) -> int:
    if not args.order_id and not args.client_order_id:
        raise UsageError("give an ORDER_ID, or --client-order-id (with --account)")
    request = oms_pb2.GetOrderRequest(
        order_id=args.order_id or "", account=args.account, client_order_id=args.client_order_id
    )
    with connect(args, args.oms) as channel:
        try:
            answer = _oms(args, channel).GetOrder(request, timeout=args.timeout)
        except grpc.RpcError as error:
            err(output.rpc_error(error, f"OMS.GetOrder at {args.oms}"))
            return EXIT_ERROR
    print(output.order_details(answer.order))
    print()
    print("events:")
    print(output.events_table(answer.events))
    print()
    print("trades:")
    print(output.trades_table(answer.trades))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    request = oms_pb2.StreamOrderEventsRequest(
        order_id=args.order_id, account=args.account, after_cursor=args.after_cursor,
        history_only=args.history_only,
    )

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    channel = connect(args, args.oms)
    stream = None
    try:
        stream = _oms(args, channel).StreamOrderEvents(request)
        for item in stream:
            print(output.event_line(item.event, item.order if item.HasField("order") else None), flush=True)
    except KeyboardInterrupt:
        return EXIT_OK
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.CANCELLED:
            return EXIT_OK
        err(output.rpc_error(error, f"OMS.StreamOrderEvents at {args.oms}"))
        return EXIT_ERROR
    finally:
        if stream is not None:
            stream.cancel()
        channel.close()
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK
