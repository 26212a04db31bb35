"""``tessera demo``: a small rebalance batch through Risk -> OMS -> Exchange, end to end.

Brings the stack up on free ports, creates an order manager, validates a batch of
orders (one deliberately too large, which Risk rejects with MAX_NOTIONAL_EXCEEDED),
submits the approved ones, then prints each order's lifecycle and fills. Exits 0 when
everything went as a paper stack should (every approved order FILLED, the oversized
one REJECTED), 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import secrets
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import grpc
from google.protobuf import struct_pb2

from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

from . import output
from .client import EXIT_ERROR, EXIT_OK, err
from .local import default_database_url, local_environment, shown_url
from .stack import Stack, StackError, tail

DEFAULT_PRICES = "BTCUSDT=65000,ETHUSDT=3200,SOLUSDT=150"
TERMINAL = {pb.ORDER_STATUS_FILLED, pb.ORDER_STATUS_REJECTED, pb.ORDER_STATUS_CANCELLED, pb.ORDER_STATUS_EXPIRED}
CALL_TIMEOUT = 15.0


@dataclasses.dataclass
class Leg:
    """One order of the batch and what the demo expects of it."""

    symbol: str
    side: int
    order_type: int
    quantity: str
    limit_offset: Decimal | None = None  # limit price = ticker * (1 + offset)
    expect_rejection: str | None = None
    intent: pb.OrderIntent | None = None
    decision: Any = None
    order: pb.Order | None = None
    events: list[pb.OrderEvent] = dataclasses.field(default_factory=list)
    trades: list[pb.Trade] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        kind = output.enum_name("order_type", self.order_type)
        price = f" @ {self.intent.price}" if self.intent is not None and self.intent.price else ""
        return f"{output.enum_name('side', self.side)} {self.quantity} {self.symbol} {kind}{price}"


def rebalance_legs() -> list[Leg]:
    return [
        Leg("BTCUSDT", pb.SIDE_BUY, pb.ORDER_TYPE_MARKET, "0.5"),
        Leg("ETHUSDT", pb.SIDE_SELL, pb.ORDER_TYPE_MARKET, "12"),
        Leg("SOLUSDT", pb.SIDE_BUY, pb.ORDER_TYPE_LIMIT, "150", limit_offset=Decimal("0.01")),
        Leg("ETHUSDT", pb.SIDE_BUY, pb.ORDER_TYPE_LIMIT, "4.5", limit_offset=Decimal("0.01")),
        Leg("BTCUSDT", pb.SIDE_SELL, pb.ORDER_TYPE_LIMIT, "0.2", limit_offset=Decimal("-0.01")),
        # 10 BTC at ~65,000 is ~650,000 of notional: over the 250,000 per-order limit.
        Leg("BTCUSDT", pb.SIDE_BUY, pb.ORDER_TYPE_MARKET, "10", expect_rejection="MAX_NOTIONAL_EXCEEDED"),
    ]


def static_prices(environ: Any) -> dict[str, Decimal]:
    prices = {}
    for item in (environ.get("TESSERA_PRICES") or DEFAULT_PRICES).split(","):
        symbol, _, price = item.partition("=")
        if symbol.strip() and price.strip():
            prices[symbol.strip().upper()] = Decimal(price.strip())
    return prices


def ticker_price(stack: Stack, symbol: str, fallback: dict[str, Decimal]) -> Decimal:
    """The exchange's current price (GetTicker), else the static paper price."""
    try:
        answer = stack.exchange.GetTicker(
            exchange_pb2.GetTickerRequest(symbol=symbol, market_type=pb.MARKET_TYPE_FUTURES), timeout=CALL_TIMEOUT
        )
        if answer.price:
            return Decimal(answer.price)
    except grpc.RpcError:
        pass
    return fallback[symbol]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database URL (env TESSERA_DATABASE_URL, "
                        "default sqlite file var/tessera.db)")
    parser.add_argument("--log-dir", help="service logs (default: a new temporary directory)")
    parser.add_argument("--account", default="demo", help="account (default %(default)s)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, metavar="SECONDS")


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def cmd_demo(args: argparse.Namespace) -> int:
    env = local_environment()
    url = args.db or default_database_url(env)
    stack = Stack(database_url=url, env=env, log_dir=args.log_dir, startup_timeout=args.startup_timeout)
    print(f"starting exchange, risk, oms on free ports (database {shown_url(url)}, "
          f"mode {env.get('TESSERA_EXECUTION_MODE') or 'paper'}, logs in {stack.log_dir})", flush=True)
    try:
        stack.start()
    except StackError as error:
        err(f"the stack did not start: {error}")
        return EXIT_ERROR
    try:
        problems = run_demo(stack, args.account, static_prices(env))
    except grpc.RpcError as error:
        err(output.rpc_error(error, "a call"))
        problems = ["a call failed unexpectedly"]
    except Exception:
        stack.stop()
        print(stack.logs(), flush=True)
        raise
    codes = stack.stop()
    bad_exits = {n: c for n, c in codes.items() if c != 0}
    if bad_exits:
        problems.append("services did not stop cleanly: " + ", ".join(f"{n} exit {c}" for n, c in bad_exits.items()))
    print()
    if problems:
        for problem in problems:
            err(f"unexpected: {problem}")
        for name, service in stack.processes.items():
            log = tail(service.stderr(), 30)
            if log:
                print(f"----- {name} stderr (last lines of {service.stderr_path}) -----\n{log}", flush=True)
        print("demo FAILED", flush=True)
        return EXIT_ERROR
    print("demo OK: every approved order FILLED, the oversized order REJECTED by risk; services stopped.",
          flush=True)
    return EXIT_OK


def run_demo(stack: Stack, account: str, prices: dict[str, Decimal]) -> list[str]:
    problems: list[str] = []
    print(output.table(("service", "address"), [(n, stack.addresses[n]) for n in ("risk", "oms", "exchange")]))

    now = dt.datetime.now(dt.timezone.utc)
    identifier = f"demo-rebalance-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    metadata = struct_pb2.Struct()
    metadata.update({"purpose": "rebalance demo", "created_by": "tessera demo"})
    request = oms_pb2.CreateOrderManagerRequest(unique_identifier=identifier, target_account_uid=account,
                                                metadata=metadata)
    request.target_time.FromDatetime(now)
    manager = stack.oms.CreateOrderManager(request, timeout=CALL_TIMEOUT).order_manager
    heading(f"order manager {manager.unique_identifier}")
    print(output.fields([("id", manager.id), ("account", manager.target_account_uid),
                         ("status", manager.status), ("target_time", output.timestamp(manager, "target_time"))]))

    legs = rebalance_legs()
    for leg in legs:
        price = ""
        if leg.limit_offset is not None:
            reference = ticker_price(stack, leg.symbol, prices)
            price = str((reference * (1 + leg.limit_offset)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        leg.intent = pb.OrderIntent(
            account=account, venue="aster", market_type=pb.MARKET_TYPE_FUTURES, symbol=leg.symbol,
            side=leg.side, order_type=leg.order_type, quantity=leg.quantity, price=price,
            time_in_force=pb.TIME_IN_FORCE_GTC, order_manager_id=identifier,
        )

    # 1. Risk: one batch call, one answer per order.
    heading("1. risk check (RiskService.ValidateOrders)")
    checked = stack.risk.ValidateOrders(
        risk_pb2.ValidateOrdersRequest(orders=[leg.intent for leg in legs]), timeout=CALL_TIMEOUT
    )
    if len(checked.results) != len(legs):
        return [f"ValidateOrders answered {len(checked.results)} results for {len(legs)} orders"]
    rows = []
    for number, (leg, result) in enumerate(zip(legs, checked.results), 1):
        leg.decision = result
        leg.order = result.order if result.HasField("order") else None
        if result.HasField("error") and result.error.code:
            decision = f"ERROR {result.error.code}"
            problems.append(f"order {number} ({leg.describe()}) could not be checked: "
                            f"{result.error.code} {result.error.reason}: {result.error.message}")
        else:
            decision = output.status(result.order.status)
        rows.append([number, leg.describe(), decision, ", ".join(v.code for v in result.violations),
                     leg.order.order_id if leg.order is not None else ""])
        if leg.order is None:
            continue
        if leg.expect_rejection:
            codes = [v.code for v in result.violations]
            if result.order.status != pb.ORDER_STATUS_REJECTED or leg.expect_rejection not in codes:
                problems.append(f"order {number} ({leg.describe()}) should be REJECTED with "
                                f"{leg.expect_rejection}, got {output.status(result.order.status)} {codes}")
        elif result.order.status != pb.ORDER_STATUS_APPROVED or not result.risk_token:
            problems.append(f"order {number} ({leg.describe()}) should be APPROVED, got "
                            f"{output.status(result.order.status)} "
                            f"{[v.code + ': ' + v.message for v in result.violations]}")
    print(output.table(("#", "order", "risk", "violations", "order_id"), rows))
    for number, leg in enumerate(legs, 1):
        for violation in leg.decision.violations:
            print(f"  #{number} {violation.code}: {violation.message}")

    # 2. OMS: submit the approved ones as one batch.
    approved = [leg for leg in legs if leg.order is not None and leg.decision.risk_token
                and leg.order.status == pb.ORDER_STATUS_APPROVED]
    heading("2. submit approved orders (OrderManagementService.SubmitOrders -> ExchangeService, paper)")
    submitted = stack.oms.SubmitOrders(
        oms_pb2.SubmitOrdersRequest(orders=[
            oms_pb2.SubmitOrderRequest(order=leg.order, risk_token=leg.decision.risk_token) for leg in approved
        ]),
        timeout=CALL_TIMEOUT,
    )
    rows = []
    for leg, result in zip(approved, submitted.results):
        number = legs.index(leg) + 1
        if result.HasField("error") and result.error.code:
            problems.append(f"order {number} ({leg.describe()}) was refused by the OMS: "
                            f"{result.error.code} {result.error.reason}: {result.error.message}")
            rows.append([number, leg.describe(), f"ERROR {result.error.code}", "", "", result.error.message])
            continue
        rows.append([number, leg.describe(), output.status(result.order.status), result.order.filled_quantity,
                     result.order.average_fill_price, len(result.trades)])
    if len(submitted.results) != len(approved):
        problems.append(f"SubmitOrders answered {len(submitted.results)} results for {len(approved)} orders")
    print(output.table(("#", "order", "status", "filled", "avg_price", "trades"), rows))

    # 3. What the OMS recorded: every order's events and fills (GetOrder).
    heading("3. lifecycle of each order (OrderManagementService.GetOrder)")
    all_trades: list[pb.Trade] = []
    for number, leg in enumerate(legs, 1):
        if leg.order is None:
            continue
        answer = wait_terminal(stack, leg.order.order_id)
        leg.order, leg.events, leg.trades = answer.order, list(answer.events), list(answer.trades)
        all_trades.extend(leg.trades)
        order = answer.order
        summary = f"{output.status(order.status)}"
        if order.filled_quantity and Decimal(order.filled_quantity) > 0:
            summary += f", filled {order.filled_quantity} @ {output.text(order.average_fill_price)}"
        if order.reject_reasons:
            summary += f", reasons {', '.join(order.reject_reasons)}"
        print()
        print(f"#{number} {leg.describe()}  order {order.order_id}: {summary}")
        print(indent(output.events_table(answer.events)))
        if leg.expect_rejection:
            continue
        if order.status != pb.ORDER_STATUS_FILLED:
            problems.append(f"order {number} ({leg.describe()}) ended {output.status(order.status)}, not FILLED")
            continue
        traded = sum((Decimal(t.quantity) for t in answer.trades), Decimal(0))
        if traded != Decimal(order.quantity) or Decimal(order.filled_quantity or "0") != Decimal(order.quantity):
            problems.append(f"order {number} ({leg.describe()}) FILLED but trades sum to {traded} and "
                            f"filled_quantity is {order.filled_quantity!r}, for quantity {order.quantity}")
        path = [output.status(e.to_status) for e in answer.events]
        if path[:3] != ["PENDING", "APPROVED", "SUBMITTED"] or path[-1] != "FILLED":
            problems.append(f"order {number} ({leg.describe()}) has an unexpected event path {path}")

    # 4. Fills.
    heading("4. fills (trades recorded by the OMS)")
    print(output.table(
        ("#", "symbol", "side", "quantity", "price", "commission", "asset", "liquidity", "trade_id", "trade_time"),
        [[legs.index(next(leg for leg in legs if leg.order is not None and leg.order.order_id == t.order_id)) + 1,
          t.symbol, output.enum_name("side", t.side), t.quantity, t.price, t.commission, t.commission_asset,
          output.enum_name("liquidity_side", t.liquidity_side), t.trade_id, output.timestamp(t, "trade_time")]
         for t in all_trades],
        empty="(no fills)",
    ))

    filled = sum(1 for leg in legs if leg.order is not None and leg.order.status == pb.ORDER_STATUS_FILLED)
    rejected = sum(1 for leg in legs if leg.order is not None and leg.order.status == pb.ORDER_STATUS_REJECTED)
    print()
    print(f"batch {identifier}: {len(legs)} orders, {filled} FILLED, {rejected} REJECTED by risk, "
          f"{len(all_trades)} fills")
    return problems


def wait_terminal(stack: Stack, order_id: str, timeout: float = 10.0) -> oms_pb2.GetOrderResponse:
    """GetOrder until the order is terminal (a paper market order already is)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = stack.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=order_id), timeout=CALL_TIMEOUT)
        if answer.order.status in TERMINAL or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


__all__ = ["add_demo_arguments", "cmd_demo", "run_demo"]
