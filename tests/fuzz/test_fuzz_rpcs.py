"""Hostile requests to every RPC of the three services, run as real processes.

For each RPC (found from the service descriptors, so a new RPC is fuzzed without being
listed here) hypothesis generates requests from the message descriptor
(:mod:`proto_strategies`), some of them made to pass the first checks: Exchange calls
carry the OMS's per-call credential (the test holds the key ring), and orders sent with
a risk token often carry a valid one signed here for their exact fields, so validation,
risk checks and the paper venue see well-formed orders with hostile values.

Every answer must be OK or a status a client can act on, with the reason code as its
ErrorInfo; never INTERNAL, UNKNOWN or UNAVAILABLE (nothing here takes a dependency
down), never a hang. At the end every service is still up and serving, and the store
they wrote passes ``verify-store``.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import tessera_e2e as e2e
from fuzz_support import EXAMPLES, count, fuzz_settings
from grpc_health.v1 import health_pb2
from hypothesis import given
from hypothesis import strategies as st
from proto_strategies import message

import core_ext
from services.cli.stack import Stack
from services.common.convert import order_from_proto
from services.domain.errors import InvalidOrder
from services.common.tokens import oms_call_metadata
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

SERVICES = {
    "risk": risk_pb2.DESCRIPTOR.services_by_name["RiskService"],
    "oms": oms_pb2.DESCRIPTOR.services_by_name["OrderManagementService"],
    "exchange": exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"],
}
METHODS = [(name, method) for name, service in SERVICES.items() for method in service.methods]
ACTIONABLE = {
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
KEYRING = core_ext.KeyRing(e2e.KEY_ID, e2e.SECRET.encode())
STREAM_SECONDS = 0.05
BATCHES = ("SubmitOrdersRequest", "ExecuteOrdersRequest")


def _with_valid_token(request: Any) -> Any:
    """Sign a valid risk token for the request's order (when the order converts at all)."""
    items = list(request.orders) if type(request).__name__ in BATCHES else [request]
    for item in items:
        if item.HasField("order"):
            try:
                item.risk_token = e2e.sign(item.order, int(time.time()))
            except Exception:  # noqa: BLE001 - an order that does not convert keeps its random token
                pass
    return request


def _call(stack: Stack, service: str, method: Any, request: Any) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = getattr({"risk": risk_pb2, "oms": oms_pb2, "exchange": exchange_pb2}[service],
                             method.output_type.name)
    channel = stack.channel(service)
    metadata: tuple[tuple[str, str], ...] = ()
    if service == "exchange":
        metadata = oms_call_metadata(KEYRING, method.name, request)  # for this request, as the OMS signs it
    if method.server_streaming:
        call = channel.unary_stream(path, request_serializer=type(request).SerializeToString,
                                    response_deserializer=response_class.FromString)
        try:
            for _ in call(request, timeout=STREAM_SECONDS, metadata=metadata):
                pass
            count(f"status:{service}.{method.name}:OK")
        except grpc.RpcError as error:
            count(f"status:{service}.{method.name}:{error.code().name}")
            _check(error, allow_deadline=True, what=f"{service}.{method.name}", request=request)
        return
    call = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                               response_deserializer=response_class.FromString)
    try:
        call(request, timeout=20, metadata=metadata)
        count(f"status:{service}.{method.name}:OK")
    except grpc.RpcError as error:
        count(f"status:{service}.{method.name}:{error.code().name}")
        _check(error, allow_deadline=False, what=f"{service}.{method.name}", request=request)


def _check(error: grpc.RpcError, *, allow_deadline: bool, what: str, request: Any) -> None:
    code = error.code()
    if allow_deadline and code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return
    assert code in ACTIONABLE, f"{what} answered {code.name}: {error.details()!r}\nrequest: {request!r:.2000}"
    reason = e2e.error_reason(error)
    assert reason and reason.isupper(), f"{what} answered {code.name} without a reason code: {error.details()!r}"


def _test_for(service: str, method: Any):  # type: ignore[no-untyped-def]
    input_descriptor = method.input_type
    signs = input_descriptor.name in ("SubmitOrderRequest", "ExecuteOrderRequest", "ReplaceOrderRequest", *BATCHES)

    @fuzz_settings(max(20, EXAMPLES // 8) if method.server_streaming else None)
    @given(request=message(input_descriptor), valid_token=st.booleans() if signs else st.just(False))
    def fuzz(stack: Stack, request: Any, valid_token: bool) -> None:
        if valid_token:
            request = _with_valid_token(request)
        count(f"rpc:{service}.{method.name}")
        _call(stack, service, method, request)

    return fuzz


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_hostile_requests_get_an_actionable_status(stack, service, method):
    _test_for(service, method)(stack)


def _corrupted(raw: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(raw)
    for position, value in edits:
        if not data:
            data.append(value)
        elif value % 3 == 0:
            del data[position % len(data):]
        else:
            data[position % len(data)] = value
    return bytes(data)


def _bytes_test_for(service: str, method: Any):  # type: ignore[no-untyped-def]
    serialized = message(method.input_type).map(lambda m: m.SerializeToString())
    corrupted = st.builds(_corrupted, serialized, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                           min_size=1, max_size=3))

    @fuzz_settings(max(10, EXAMPLES // (8 if method.server_streaming else 3)))
    @given(raw=st.one_of(st.binary(max_size=300), corrupted))
    def fuzz(stack: Stack, raw: bytes) -> None:
        count(f"bytes:{service}.{method.name}")
        path = f"/{method.containing_service.full_name}/{method.name}"
        metadata = oms_call_metadata(KEYRING, method.name, raw) if service == "exchange" else ()
        channel = stack.channel(service)
        try:
            if method.server_streaming:
                call = channel.unary_stream(path, request_serializer=bytes, response_deserializer=bytes)
                for _ in call(raw, timeout=STREAM_SECONDS, metadata=metadata):
                    pass
            else:
                channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)(
                    raw, timeout=20, metadata=metadata)
        except grpc.RpcError as error:
            _check(error, allow_deadline=method.server_streaming, what=f"{service}.{method.name}", request=raw)

    return fuzz


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_bytes_that_are_not_the_request_message_get_an_actionable_status(stack, service, method):
    _bytes_test_for(service, method)(stack)


def test_every_service_survived_and_the_store_holds(stack):
    assert stack.poll() == {}, stack.logs(lines=40)
    for name in SERVICES:
        answer = stack.health(name).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    from sqlalchemy import create_engine

    from services.reliability import check_store

    engine = create_engine(stack.env["TESSERA_DATABASE_URL"])
    try:
        report = check_store(engine)
    finally:
        engine.dispose()
    assert report.violations == [], [str(v) for v in report.violations[:20]]
    for line in stack.logs(lines=None).splitlines():
        assert "Traceback" not in line and "unexpected error" not in line, line
