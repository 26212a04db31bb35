"""The interceptors over real in-process aio servers: request ids, order ids, RPC
metrics per status code, and W3C trace context carried from a client through one
service to the next (the OMS -> Exchange hop), with spans when tracing records."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from services.common import errors
from services.common.observability import metrics, tracing
from services.common.observability.interceptors import ServerInterceptor, client_interceptors, order_id_of
from services.common.observability.logs import order_id_var, request_id_var
from services.domain import errors as domain
from tessera.oms.v1 import oms_pb2

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
Request, Response = oms_pb2.GetOrderRequest, oms_pb2.CancelOrderResponse


def seen() -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    return {
        "request_id": request_id_var.get(),
        "order_id": order_id_var.get(),
        "trace_id": f"{context.trace_id:032x}" if context.is_valid else None,
    }


def unary(fn: Callable[..., Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=Request.FromString, response_serializer=Response.SerializeToString
    )


async def start(handlers: dict[str, grpc.RpcMethodHandler], service: str) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[ServerInterceptor(access_log_enabled=True)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def hop(metadata: tuple[tuple[str, str], ...] = (), method: str = "Get", order_id: str = "order-1") -> dict[str, Any]:
    """Client -> Upstream (server interceptor) -> Downstream (client + server interceptors)."""
    records: dict[str, Any] = {}

    async def go() -> dict[str, Any]:
        async def downstream_get(request: Any, context: Any) -> Any:
            records["downstream"] = seen()
            return Response()

        downstream, down_port = await start({"Get": unary(downstream_get)}, "test.Downstream")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{down_port}", interceptors=client_interceptors())

        async def upstream_get(request: Any, context: Any) -> Any:
            records["upstream"] = seen()
            call = channel.unary_unary("/test.Downstream/Get", request_serializer=Request.SerializeToString,
                                       response_deserializer=Response.FromString)
            await call(Request(order_id=request.order_id), timeout=5)
            return Response()

        @errors.grpc_errors
        async def refuse(self: Any, request: Any, context: Any) -> Any:
            records["upstream"] = seen()
            raise domain.PreconditionFailed("halted", reason="TRADING_HALTED")

        async def crash(request: Any, context: Any) -> Any:
            raise RuntimeError("unexpected")

        async def stream(request: Any, context: Any):  # type: ignore[no-untyped-def]
            records["upstream"] = seen()
            yield Response()
            yield Response()

        upstream, up_port = await start(
            {
                "Get": unary(upstream_get),
                "Refuse": unary(lambda request, context: refuse(None, request, context)),
                "Crash": unary(crash),
                "Stream": grpc.unary_stream_rpc_method_handler(
                    stream, request_deserializer=Request.FromString, response_serializer=Response.SerializeToString
                ),
            },
            "test.Upstream",
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{up_port}") as client:
                request = Request(order_id=order_id)
                if method == "Stream":
                    call = client.unary_stream("/test.Upstream/Stream", request_serializer=Request.SerializeToString,
                                               response_deserializer=Response.FromString)(request, metadata=metadata)
                    records["items"] = len([item async for item in call])
                    records["trailing"] = tuple(await call.trailing_metadata())
                    return records
                call = client.unary_unary(f"/test.Upstream/{method}", request_serializer=Request.SerializeToString,
                                          response_deserializer=Response.FromString)(request, metadata=metadata, timeout=5)
                try:
                    await call
                except grpc.aio.AioRpcError as error:
                    records["error"] = error
                records["trailing"] = tuple(await call.trailing_metadata())
                health_stub = health_pb2_grpc.HealthStub(client)
                await health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        finally:
            await channel.close()
            await upstream.stop(0)
            await downstream.stop(0)
        return records

    return asyncio.run(go())


def count(method: str, code: str) -> float:
    labels = {"service": metrics.SERVICE["name"], "method": method, "code": code}
    return REGISTRY.get_sample_value("tessera_rpc_duration_seconds_count", labels) or 0.0


@pytest.fixture(autouse=True)
def service_name() -> None:
    metrics.SERVICE["name"] = "unit"


def test_a_request_id_and_trace_context_travel_through_both_hops() -> None:
    records = hop((("traceparent", TRACEPARENT), ("x-request-id", "req-abc")))
    assert records["upstream"] == {"request_id": "req-abc", "order_id": "order-1", "trace_id": TRACE_ID}
    assert records["downstream"] == {"request_id": "req-abc", "order_id": "order-1", "trace_id": TRACE_ID}
    assert ("x-request-id", "req-abc") in records["trailing"]


def test_without_metadata_a_request_id_is_made_and_echoed_and_no_trace_is_invented() -> None:
    records = hop()
    made = records["upstream"]["request_id"]
    assert made and len(made) == 32
    assert records["downstream"]["request_id"] == made
    assert records["upstream"]["trace_id"] is None and records["downstream"]["trace_id"] is None
    assert ("x-request-id", made) in records["trailing"]


def test_an_unusable_request_id_is_replaced() -> None:
    for unusable in ("bad id; with spaces", "x" * 300):
        records = hop((("x-request-id", unusable),))
        assert records["upstream"]["request_id"] != unusable
        assert len(records["upstream"]["request_id"]) == 32


def test_rpc_metrics_count_each_call_under_its_status_code() -> None:
    before = {code: count("/test.Upstream/Get", code) for code in ("OK",)}
    refused = count("/test.Upstream/Refuse", "FAILED_PRECONDITION")
    crashed = count("/test.Upstream/Crash", "UNKNOWN")
    downstream = count("/test.Downstream/Get", "OK")
    hop()
    hop(method="Refuse")
    hop(method="Crash")
    assert count("/test.Upstream/Get", "OK") - before["OK"] == 1
    assert count("/test.Downstream/Get", "OK") - downstream == 1
    assert count("/test.Upstream/Refuse", "FAILED_PRECONDITION") - refused == 1
    assert count("/test.Upstream/Crash", "UNKNOWN") - crashed == 1
    assert count("/grpc.health.v1.Health/Check", "OK") == 0  # health checks pass untouched


def test_an_aborted_call_keeps_its_error_details_and_gets_the_request_id() -> None:
    records = hop((("x-request-id", "req-refused"),), method="Refuse")
    error = records["error"]
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert ("x-request-id", "req-refused") in records["trailing"]
    status = rpc_status.from_call(error)
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "TRADING_HALTED"
    assert records["upstream"]["request_id"] == "req-refused"


def test_a_server_stream_is_measured_with_its_context() -> None:
    before = count("/test.Upstream/Stream", "OK")
    records = hop((("x-request-id", "req-stream"),), method="Stream", order_id="order-s")
    assert records["items"] == 2
    assert records["upstream"]["order_id"] == "order-s" and records["upstream"]["request_id"] == "req-stream"
    assert count("/test.Upstream/Stream", "OK") - before == 1


def test_recorded_spans_chain_client_server_client_server_in_one_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        records = hop((("traceparent", TRACEPARENT),))
    finally:
        tracing.use_provider(None)
        provider.shutdown()
    spans = {(span.name, span.kind): span for span in exporter.get_finished_spans()}
    upstream = spans[("test.Upstream/Get", SpanKind.SERVER)]
    client = spans[("test.Downstream/Get", SpanKind.CLIENT)]
    downstream = spans[("test.Downstream/Get", SpanKind.SERVER)]
    assert {f"{s.context.trace_id:032x}" for s in (upstream, client, downstream)} == {TRACE_ID}
    assert f"{upstream.parent.span_id:016x}" == PARENT_SPAN
    assert client.parent.span_id == upstream.context.span_id
    assert downstream.parent.span_id == client.context.span_id
    assert upstream.attributes["tessera.order_id"] == "order-1"
    assert records["downstream"]["trace_id"] == TRACE_ID


def test_order_ids_are_found_in_requests_and_responses() -> None:
    assert order_id_of(oms_pb2.GetOrderRequest(order_id="a")) == "a"
    assert order_id_of(oms_pb2.SubmitOrderResponse(order={"order_id": "b"})) == "b"
    assert order_id_of(oms_pb2.SubmitOrderResponse()) is None
    assert order_id_of(oms_pb2.ListOrdersRequest()) is None
    assert order_id_of(object()) is None


def test_access_lines_are_info_on_the_order_path_debug_for_reads_warning_when_unexpected() -> None:
    import logging

    from services.common.observability.interceptors import _access_level

    assert _access_level("/tessera.oms.v1.OrderManagementService/SubmitOrder", "PERMISSION_DENIED") == logging.INFO
    assert _access_level("/tessera.exchange.v1.ExchangeService/ExecuteOrder", "OK") == logging.INFO
    assert _access_level("/tessera.oms.v1.OrderManagementService/GetOrder", "OK") == logging.DEBUG
    assert _access_level("/tessera.oms.v1.OrderManagementService/ListOrders", "NOT_FOUND") == logging.DEBUG
    assert _access_level("/tessera.exchange.v1.ExchangeService/QueryOrder", "OK") == logging.DEBUG
    assert _access_level("/tessera.oms.v1.OrderManagementService/GetOrder", "INTERNAL") == logging.WARNING


def test_made_request_ids_are_32_hex_digits_and_never_repeat_even_in_a_forked_child() -> None:
    import re

    from services.common.observability import interceptors

    made = [interceptors.new_request_id() for _ in range(5000)]
    interceptors._new_prefix()  # what a forked child runs first: a prefix of its own, its counter from 0
    made += [interceptors.new_request_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)
    assert len(set(made)) == len(made)


def test_undecodable_bytes_are_refused_invalid_argument_observed_like_any_call() -> None:
    """add_service's observer refuses what its decoder could not decode (no second wrapper)."""
    from services.cli.bare_chain import BareRisk
    from services.common.auth import Authorizer
    from services.common.server import add_service
    from tessera.risk.v1 import risk_pb2

    method = "/tessera.risk.v1.RiskService/ValidateOrder"

    async def go() -> tuple[Any, tuple[Any, ...], Any]:
        server = grpc.aio.server()
        add_service(server, BareRisk(), risk_pb2.DESCRIPTOR.services_by_name["RiskService"],
                    authorizer=Authorizer.disabled())
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                raw = channel.unary_unary(method)  # bytes as they are
                call = raw(b"\xff\xff\xff", metadata=(("x-request-id", "req-garbage"),), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                answer = await channel.unary_unary(method, response_deserializer=risk_pb2.ValidateOrderResponse.FromString)(
                    risk_pb2.ValidateOrderRequest().SerializeToString(), timeout=5)
                return refused.value, tuple(await call.trailing_metadata()), answer
        finally:
            await server.stop(0)

    before = count(method, "INVALID_ARGUMENT")
    error, trailing, answer = asyncio.run(go())
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(error).details[0].Unpack(info)
    assert info.reason == "MALFORMED_REQUEST" and "ValidateOrderRequest" in error.details()
    assert ("x-request-id", "req-garbage") in trailing
    assert count(method, "INVALID_ARGUMENT") - before == 1
    assert answer.risk_token  # a decodable request still reaches the behaviour


def test_a_calls_ids_stay_with_it_the_next_call_on_the_server_starts_without_them() -> None:
    """The ids are set in the context of the task gRPC runs the call in, and go with it."""
    records: list[dict[str, Any]] = []

    async def go() -> None:
        async def get(request: Any, context: Any) -> Any:
            records.append(seen())
            return Response()

        server, port = await start({"Get": unary(get)}, "test.Upstream")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Upstream/Get", request_serializer=Request.SerializeToString,
                                           response_deserializer=Response.FromString)
                await call(Request(order_id="order-1"), metadata=(("x-request-id", "req-first"),), timeout=5)
                await call(Request(), timeout=5)
                await asyncio.gather(*(call(Request(order_id=f"order-{n}"), timeout=5) for n in range(2, 6)))
        finally:
            await server.stop(0)

    asyncio.run(go())
    assert records[0] == {"request_id": "req-first", "order_id": "order-1", "trace_id": None}
    assert records[1]["request_id"] not in (None, "req-first") and records[1]["order_id"] is None
    assert sorted(r["order_id"] for r in records[2:]) == [f"order-{n}" for n in range(2, 6)]
    assert len({r["request_id"] for r in records}) == len(records)
    assert request_id_var.get() is None and order_id_var.get() is None


@pytest.mark.parametrize("streaming", [False, True])
def test_a_decoding_observer_refuses_undecodable_bytes_after_its_guard(streaming: bool) -> None:
    from services.common.observability.interceptors import CallObserver

    admitted: list[Any] = []

    def guard(request: Any, metadata: Any, context: Any) -> str:
        admitted.append(request)
        return "auth=none"

    async def get(request: Any, context: Any) -> Any:
        return Response()

    async def stream(request: Any, context: Any):  # type: ignore[no-untyped-def]
        yield Response()

    handler = (grpc.unary_stream_rpc_method_handler(stream, request_deserializer=Request.FromString,
                                                    response_serializer=Response.SerializeToString) if streaming
               else unary(get))
    observed = CallObserver(access_log_enabled=True).wrap("/test.Upstream/Get", handler, guard, decode=True)
    assert observed.request_deserializer is None  # the call decodes

    async def go() -> tuple[grpc.StatusCode, grpc.StatusCode]:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Upstream", {"Get": observed}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = (channel.unary_stream if streaming else channel.unary_unary)("/test.Upstream/Get")
                codes = []
                for raw in (b"\xff\xff\xff", Request(order_id="order-1").SerializeToString()):
                    try:
                        if streaming:
                            [item async for item in call(raw, timeout=5)]
                        else:
                            await call(raw, timeout=5)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.aio.AioRpcError as error:
                        codes.append(error.code())
                return codes[0], codes[1]
        finally:
            await server.stop(0)

    assert asyncio.run(go()) == (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK)
    assert not hasattr(admitted[0], "DESCRIPTOR") and admitted[1].order_id == "order-1"


def test_an_access_line_names_the_caller_its_guard_admitted() -> None:
    import io
    import json
    import logging
    from types import SimpleNamespace

    from services.common.auth import Caller
    from services.common.observability import interceptors, logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._handler[0]
    stream = io.StringIO()
    logs.setup_logging("unit", {}, stream=stream)
    try:
        callers = iter([Caller('al"ice', "token"), Caller('al"ice', "token"), Caller("bob", "mtls")])
        observer = interceptors.CallObserver(access_log_enabled=True)
        handler = observer.wrap("/tessera.oms.v1.OrderManagementService/CancelOrder", unary(lambda r, c: _answer()),
                                guard=lambda request, metadata, context: next(callers))
        context = SimpleNamespace(invocation_metadata=lambda: (), set_trailing_metadata=lambda metadata: None)

        async def calls() -> None:
            for order_id in ("o-1", "o-2", "o-3"):
                await handler.unary_unary(Request(order_id=order_id), context)

        asyncio.run(calls())
        interceptors._finished.drain()
        lines = [json.loads(text) for text in stream.getvalue().splitlines() if '"tessera.rpc"' in text]
    finally:
        root.handlers[:], level, logs._handler[0] = saved
        root.setLevel(level)
    assert [(line["message"].split(" ", 2)[1], line["message"].rsplit("ms ", 1)[1], line["order_id"])
            for line in lines] == [("OK", 'principal=al"ice via=token', "o-1"), ("OK", 'principal=al"ice via=token', "o-2"),
                                   ("OK", "principal=bob via=mtls", "o-3")]


async def _answer() -> Any:
    return Response()
