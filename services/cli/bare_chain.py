"""The bare chain: the transport floor of ``tessera bench``.

Three plain ``grpc.aio`` servers in three processes, shaped like the order path and
nothing else: no interceptors, no database, no checks. ``risk`` answers
``RiskService/ValidateOrder`` with a canned ``ValidateOrderResponse``; ``oms`` answers
``OrderManagementService/SubmitOrder`` by calling ``ExchangeService/ExecuteOrder`` on
``exchange`` with the order and token it received, and answers with a canned
``SubmitOrderResponse``; ``exchange`` answers ``ExecuteOrder`` with a canned
``ExecuteOrderResponse``. The canned messages carry what Tessera's own answers carry
for a filled market order (the order with every field set, a trade, a fill report), so
the floor serialises and parses the same bytes the real path does.

The batch shape too: ``risk`` answers ``ValidateOrders`` with one canned result per order
of the request; ``oms`` answers ``SubmitOrders`` by sending the orders and tokens it
received to ``exchange`` in one ``ExecuteOrders`` call, then one canned result per order;
``exchange`` answers ``ExecuteOrders`` with one canned result per order. The canned
batch answers are built once per batch size.

The servers are set up as Tessera's are (the same server options, event loop and
collector thresholds, the objects loaded at start frozen out of the collector's scans).

``python -m services.cli.bare_chain risk|oms|exchange [--port N] [--exchange ADDRESS]
[--interceptors]`` prints ``<name> listening on 127.0.0.1:<port>`` like Tessera's
services, and runs until SIGTERM. ``tessera bench`` starts the three and drives them
with the same client code it drives Tessera with. With ``--interceptors`` the servers
(and the OMS's channel to the Exchange) carry the interceptors Tessera's services carry
(request ids, trace context, RPC metrics, access logs, the request decoder), and
nothing else: the chain with and without them measures what they cost a hop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from services.common.auth import Authorizer
from services.common.server import SERVER_OPTIONS, add_service
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc

ORDER_ID = "00000000-0000-4000-8000-000000000000"
TOKEN = "v1.k1.1700000000." + "0" * 32 + "." + "A" * 43 + "." + "A" * 43


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns() // 1000 * 1000)
    return stamp


def canned_order(status: int) -> pb.Order:
    """An order as Tessera returns one: every field a market order has, set."""
    now = _now()
    return pb.Order(
        order_id=ORDER_ID,
        client_order_id="tsr-0123456789abcdef0123456789ab",
        account="bench-00000000-000",
        venue="aster",
        market_type=pb.MARKET_TYPE_FUTURES,
        symbol="BTCUSDT",
        side=pb.SIDE_BUY,
        order_type=pb.ORDER_TYPE_MARKET,
        quantity="0.01",
        time_in_force=pb.TIME_IN_FORCE_GTC,
        status=status,
        filled_quantity="0.01" if status == pb.ORDER_STATUS_FILLED else "0",
        average_fill_price="65000" if status == pb.ORDER_STATUS_FILLED else "",
        remote_order_id="paper-0123456789abcdef" if status == pb.ORDER_STATUS_FILLED else "",
        order_time=now,
        updated_time=now,
        version=3 if status == pb.ORDER_STATUS_FILLED else 1,
    )


def canned_trade() -> pb.Trade:
    return pb.Trade(
        trade_id="paper-0123456789abcdef0123456789abcdef",
        venue="aster",
        order_id=ORDER_ID,
        client_order_id="tsr-0123456789abcdef0123456789ab",
        account="bench-00000000-000",
        symbol="BTCUSDT",
        side=pb.SIDE_BUY,
        quantity="0.01",
        price="65000",
        commission="0.26",
        commission_asset="USDT",
        liquidity_side=pb.LIQUIDITY_SIDE_TAKER,
        trade_time=_now(),
    )


def canned_report() -> pb.ExecutionReport:
    return pb.ExecutionReport(
        order_id=ORDER_ID,
        client_order_id="tsr-0123456789abcdef0123456789ab",
        remote_order_id="paper-0123456789abcdef",
        venue="aster",
        account="bench-00000000-000",
        symbol="BTCUSDT",
        side=pb.SIDE_BUY,
        order_status=pb.ORDER_STATUS_FILLED,
        trade_id="paper-0123456789abcdef0123456789abcdef",
        last_quantity="0.01",
        last_price="65000",
        commission="0.26",
        commission_asset="USDT",
        liquidity_side=pb.LIQUIDITY_SIDE_TAKER,
        cumulative_quantity="0.01",
        transact_time=_now(),
    )


class BareRisk(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self) -> None:
        self.answer = risk_pb2.ValidateOrderResponse(order=canned_order(pb.ORDER_STATUS_APPROVED), risk_token=TOKEN)

        self.result = risk_pb2.ValidateOrderResult(order=self.answer.order, risk_token=TOKEN)
        self.batches: dict[int, risk_pb2.ValidateOrdersResponse] = {}

    async def ValidateOrder(self, request, context):  # type: ignore[no-untyped-def]
        return self.answer

    async def ValidateOrders(self, request, context):  # type: ignore[no-untyped-def]
        size = len(request.orders)
        answer = self.batches.get(size)
        if answer is None:
            answer = self.batches[size] = risk_pb2.ValidateOrdersResponse(results=[self.result] * size)
        return answer


class BareOms(oms_pb2_grpc.OrderManagementServiceServicer):
    def __init__(self, exchange: exchange_pb2_grpc.ExchangeServiceStub, *, forward_metadata: bool = False) -> None:
        self.exchange = exchange
        self.forward_metadata = forward_metadata
        self.answer = oms_pb2.SubmitOrderResponse(order=canned_order(pb.ORDER_STATUS_FILLED), trades=[canned_trade()])
        self.batches: dict[int, oms_pb2.SubmitOrdersResponse] = {}

    async def SubmitOrder(self, request, context):  # type: ignore[no-untyped-def]
        metadata = None
        if self.forward_metadata:  # what the OMS adds to its calls: the request id and trace context
            from services.common.observability.interceptors import outgoing_metadata

            metadata = outgoing_metadata()
        await self.exchange.ExecuteOrder(
            exchange_pb2.ExecuteOrderRequest(order=request.order, risk_token=request.risk_token), metadata=metadata
        )
        return self.answer

    async def SubmitOrders(self, request, context):  # type: ignore[no-untyped-def]
        metadata = None
        if self.forward_metadata:
            from services.common.observability.interceptors import outgoing_metadata

            metadata = outgoing_metadata()
        await self.exchange.ExecuteOrders(
            exchange_pb2.ExecuteOrdersRequest(orders=[
                exchange_pb2.ExecuteOrderRequest(order=item.order, risk_token=item.risk_token) for item in request.orders
            ]),
            metadata=metadata,
        )
        size = len(request.orders)
        answer = self.batches.get(size)
        if answer is None:
            result = oms_pb2.SubmitOrderResult(order=self.answer.order, trades=self.answer.trades)
            answer = self.batches[size] = oms_pb2.SubmitOrdersResponse(results=[result] * size)
        return answer


class BareExchange(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(self) -> None:
        self.answer = exchange_pb2.ExecuteOrderResponse(
            remote_order_id="paper-0123456789abcdef", mode=pb.EXECUTION_MODE_PAPER, reports=[canned_report()]
        )

        self.batches: dict[int, exchange_pb2.ExecuteOrdersResponse] = {}

    async def ExecuteOrder(self, request, context):  # type: ignore[no-untyped-def]
        return self.answer

    async def ExecuteOrders(self, request, context):  # type: ignore[no-untyped-def]
        size = len(request.orders)
        answer = self.batches.get(size)
        if answer is None:
            result = exchange_pb2.ExecuteOrderResult(response=self.answer)
            answer = self.batches[size] = exchange_pb2.ExecuteOrdersResponse(results=[result] * size)
        return answer


async def serve(role: str, port: int, exchange_address: str, interceptors: bool = False) -> None:
    if interceptors:
        from services.common.observability import metrics
        from services.common.observability.logs import setup_logging

        from services.common.observability.tracing import setup_tracing

        metrics.SERVICE["name"] = role
        setup_logging(role, os.environ)
        setup_tracing(role, os.environ)  # as the services: spans exported only when OTLP is configured
    server = grpc.aio.server(options=SERVER_OPTIONS)
    channel = None
    if role == "risk":
        servicer: Any = BareRisk()
        service = risk_pb2.DESCRIPTOR.services_by_name["RiskService"]
    elif role == "oms":
        channel = grpc.aio.insecure_channel(exchange_address)
        servicer = BareOms(exchange_pb2_grpc.ExchangeServiceStub(channel), forward_metadata=interceptors)
        service = oms_pb2.DESCRIPTOR.services_by_name["OrderManagementService"]
    else:
        servicer = BareExchange()
        service = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"]
    # The transport's floor: no identities (explicitly), whatever the environment says.
    add_service(server, servicer, service, observe=interceptors, authorizer=Authorizer.disabled())
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    gc.collect()
    gc.freeze()  # as Tessera's servers do once they are up
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"{role} listening on 127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(0)
    if channel is not None:
        await channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.cli.bare_chain", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("risk", "oms", "exchange"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exchange", default="", help="the exchange's address (role oms)")
    parser.add_argument("--interceptors", action="store_true", help="carry Tessera's interceptors")
    args = parser.parse_args(argv)
    if args.role == "oms" and not args.exchange:
        parser.error("--exchange is required for the oms role")
    from services.common.server import gc_thresholds, install_event_loop

    # The services' process set-up (server.run): their collector thresholds and event loop,
    # so the floor compares like with like.
    gc.set_threshold(*gc_thresholds(os.environ))
    install_event_loop(os.environ)
    asyncio.run(serve(args.role, args.port, args.exchange, args.interceptors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
