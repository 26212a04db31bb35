"""Domain errors to gRPC statuses: the mapping table, the status message, the ErrorInfo detail."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

import core_ext
from services.common import errors
from services.domain import errors as domain
from services.store import DuplicateClientOrderId, InvalidPage

Code = grpc.StatusCode
SECRET_TEXT = "password=hunter2 host=db.internal"

UNAUTHENTICATED_TOKEN_REASONS = [
    core_ext.TOKEN_MISSING,
    core_ext.TOKEN_MALFORMED,
    core_ext.TOKEN_UNKNOWN_KEY,
    core_ext.TOKEN_BAD_SIGNATURE,
    core_ext.TOKEN_NOT_YET_VALID,
    core_ext.TOKEN_EXPIRED,
]

# (id, error, expected code, expected reason)
TABLE = [
    ("invalid-order", domain.InvalidOrder("quantity", "required"), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ("invalid-page", InvalidPage("cursor", "malformed"), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    *[
        (f"token-{reason}", domain.TokenRejected("refused", reason=reason), Code.UNAUTHENTICATED, reason)
        for reason in UNAUTHENTICATED_TOKEN_REASONS
    ],
    (
        "token-fields-changed",
        domain.TokenRejected("refused", reason=core_ext.TOKEN_FIELDS_CHANGED),
        Code.PERMISSION_DENIED,
        "TOKEN_FIELDS_CHANGED",
    ),
    (
        "token-already-used-as-rejected",
        domain.TokenRejected("refused", reason="TOKEN_ALREADY_USED"),
        Code.PERMISSION_DENIED,
        "TOKEN_ALREADY_USED",
    ),
    ("token-replayed", domain.TokenReplayed("again"), Code.PERMISSION_DENIED, "TOKEN_ALREADY_USED"),
    (
        "caller-not-oms",
        domain.TokenRejected("only the OMS may call ExecuteOrder", reason="CALLER_NOT_OMS"),
        Code.PERMISSION_DENIED,
        "CALLER_NOT_OMS",
    ),
    ("order-not-found", domain.OrderNotFound("no order"), Code.NOT_FOUND, "ORDER_NOT_FOUND"),
    ("conflict", domain.Conflict("taken"), Code.ALREADY_EXISTS, "CONFLICT"),
    (
        "duplicate-client-order-id",
        DuplicateClientOrderId("acct-1", "cid-1"),
        Code.ALREADY_EXISTS,
        "DUPLICATE_CLIENT_ORDER_ID",
    ),
    (
        "precondition",
        domain.PreconditionFailed("halted", reason="TRADING_HALTED"),
        Code.FAILED_PRECONDITION,
        "TRADING_HALTED",
    ),
    (
        "illegal-transition",
        core_ext.IllegalTransition("FILLED", "SUBMITTED"),
        Code.FAILED_PRECONDITION,
        "ILLEGAL_TRANSITION",
    ),
    ("overfill", domain.OverfillError("too much"), Code.FAILED_PRECONDITION, "OVERFILL"),
    ("stale-order", domain.StaleOrder("lost the race"), Code.ABORTED, "CONCURRENT_UPDATE"),
    ("venue-unavailable", domain.VenueUnavailable("venue down"), Code.UNAVAILABLE, "VENUE_UNAVAILABLE"),
    ("store-unavailable", errors.StoreUnavailable("store down"), Code.UNAVAILABLE, "STORE_UNAVAILABLE"),
]


@pytest.mark.parametrize(("case", "error", "code", "reason"), TABLE, ids=[row[0] for row in TABLE])
def test_domain_error_maps_to_its_status_code_and_reason(case, error, code, reason):
    assert errors.status_code_for(error) is code
    assert errors.describe(error) == (code, reason, str(error))


def test_operational_error_is_unavailable_without_the_driver_text():
    error = OperationalError("SELECT 1", {}, Exception(f"could not connect: {SECRET_TEXT}"))

    code, reason, message = errors.describe(error)

    assert (code, reason) == (Code.UNAVAILABLE, "STORE_UNAVAILABLE")
    assert "hunter2" not in message and "db.internal" not in message


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(SECRET_TEXT),
        KeyError(SECRET_TEXT),
        ValueError(SECRET_TEXT),
        IntegrityError("INSERT ...", {}, Exception(SECRET_TEXT)),
        StatementError(SECRET_TEXT, "INSERT ...", {}, ValueError(SECRET_TEXT)),
    ],
    ids=lambda e: type(e).__name__,
)
def test_unexpected_exception_is_internal_with_a_message_that_does_not_leak_it(error):
    assert errors.describe(error) == (Code.INTERNAL, "INTERNAL", "internal error")


def decode_error_info(code: grpc.StatusCode, details: str, trailing_metadata) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a status, after checking the rich status agrees with code and details."""
    (blob,) = [value for key, value in trailing_metadata if key == rpc_status.GRPC_DETAILS_METADATA_KEY]
    rich = status_pb2.Status.FromString(blob)
    assert rich.code == code.value[0]
    assert rich.message == details
    (detail,) = rich.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    return info


def test_to_grpc_status_puts_the_reason_first_and_an_error_info_detail():
    status = errors.to_grpc_status(Code.UNAUTHENTICATED, "TOKEN_EXPIRED", "the risk token has expired")

    assert status.code is Code.UNAUTHENTICATED
    assert status.details == "TOKEN_EXPIRED: the risk token has expired"
    info = decode_error_info(status.code, status.details, status.trailing_metadata)
    assert (info.reason, info.domain) == ("TOKEN_EXPIRED", "tessera")


def test_to_grpc_status_does_not_repeat_a_reason_the_message_already_starts_with():
    status = errors.to_grpc_status(Code.INVALID_ARGUMENT, "INVALID_ARGUMENT", "INVALID_ARGUMENT: quantity: required")

    assert status.details == "INVALID_ARGUMENT: quantity: required"


def test_item_error_gives_the_code_name_reason_and_message():
    error = domain.TokenReplayed("risk token already used")

    assert errors.item_error(error) == ("PERMISSION_DENIED", "TOKEN_ALREADY_USED", "risk token already used")


# -- the grpc_errors decorator ------------------------------------------------------------------
class FakeContext:
    """Records aborts; like the real ``ServicerContext.abort`` it never returns."""

    def __init__(self) -> None:
        self.aborts: list[tuple[grpc.StatusCode, str, tuple]] = []

    async def abort(self, code, details="", trailing_metadata=()):
        self.aborts.append((code, details, tuple(trailing_metadata)))
        raise grpc.aio.AbortError(code)


class Servicer:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    @errors.grpc_errors
    async def Unary(self, request, context):
        if self.error is not None:
            raise self.error
        return f"ok {request}"

    @errors.grpc_errors
    async def AbortsItself(self, request, context):
        await context.abort(Code.RESOURCE_EXHAUSTED, "RATE_LIMITED: slow down")

    @errors.grpc_errors
    async def Stream(self, request, context):
        yield "first"
        if self.error is not None:
            raise self.error
        yield "second"


def call_unary(error: BaseException | None) -> tuple[FakeContext, object]:
    context = FakeContext()

    async def go():
        try:
            return await Servicer(error).Unary("req", context)
        except grpc.aio.AbortError:
            return None

    return context, asyncio.run(go())


def call_stream(error: BaseException | None) -> tuple[FakeContext, list]:
    context = FakeContext()

    async def go():
        items = []
        try:
            async for item in Servicer(error).Stream("req", context):
                items.append(item)
        except grpc.aio.AbortError:
            pass
        return items

    return context, asyncio.run(go())


def test_grpc_errors_passes_a_unary_result_through_untouched():
    context, result = call_unary(None)

    assert result == "ok req"
    assert context.aborts == []


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_grpc_errors_aborts_a_domain_error_with_its_code_reason_and_error_info(kind):
    error = domain.TokenRejected("the risk token has expired", reason="TOKEN_EXPIRED")

    context, _ = call_unary(error) if kind == "unary" else call_stream(error)

    ((code, details, trailing),) = context.aborts
    assert code is Code.UNAUTHENTICATED
    assert details == "TOKEN_EXPIRED: the risk token has expired"
    info = decode_error_info(code, details, trailing)
    assert (info.reason, info.domain) == ("TOKEN_EXPIRED", "tessera")


def test_grpc_errors_lets_a_methods_own_abort_through_unchanged():
    context = FakeContext()

    async def go():
        with pytest.raises(grpc.aio.AbortError):
            await Servicer(None).AbortsItself("req", context)

    asyncio.run(go())

    assert context.aborts == [(Code.RESOURCE_EXHAUSTED, "RATE_LIMITED: slow down", ())]


def test_grpc_errors_keeps_stream_items_sent_before_the_error():
    context, items = call_stream(domain.OrderNotFound("gone"))

    assert items == ["first"]
    assert [code for code, _, _ in context.aborts] == [Code.NOT_FOUND]


def test_grpc_errors_answers_an_operational_error_with_unavailable():
    error = OperationalError("SELECT 1", {}, Exception(SECRET_TEXT))

    context, _ = call_unary(error)

    ((code, details, _),) = context.aborts
    assert code is Code.UNAVAILABLE
    assert details.startswith("STORE_UNAVAILABLE: ")
    assert "hunter2" not in details


@pytest.mark.parametrize("kind", ["unary", "stream"])
@pytest.mark.parametrize(
    "error",
    [RuntimeError(SECRET_TEXT), StatementError(SECRET_TEXT, "INSERT INTO orders_ts ...", {}, ValueError(SECRET_TEXT))],
    ids=["RuntimeError", "StatementError"],
)
def test_grpc_errors_answers_an_unexpected_exception_with_internal_and_no_exception_text(kind, error):
    # Anything that is not a domain error must still become INTERNAL with a fixed
    # message: left to grpc it becomes UNKNOWN with "Unexpected <class>: <text>", which
    # sends the exception text (SQL, DSNs, file paths) to the client.
    try:
        context, _ = call_unary(error) if kind == "unary" else call_stream(error)
    except type(error):
        pytest.fail(f"{type(error).__name__} escaped grpc_errors")

    ((code, details, _),) = context.aborts
    assert code is Code.INTERNAL
    assert details == "INTERNAL: internal error"


class RealService:
    @errors.grpc_errors
    async def Refuse(self, request, context):
        raise domain.TokenReplayed("risk token already used")

    @errors.grpc_errors
    async def Crash(self, request, context):
        raise RuntimeError(SECRET_TEXT)


def call_real_server(method: str) -> tuple[grpc.StatusCode, str, tuple]:
    """Call ``RealService.<method>`` through a real in-process aio server; return the client's error."""

    async def go():
        service = RealService()
        handler = grpc.method_handlers_generic_handler(
            "test.Errors",
            {name: grpc.unary_unary_rpc_method_handler(getattr(service, name)) for name in ("Refuse", "Crash")},
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await channel.unary_unary(f"/test.Errors/{method}")(b"", timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details(), tuple(error.trailing_metadata())
        finally:
            await server.stop(0)
        raise AssertionError(f"{method} did not fail")

    return asyncio.run(go())


def test_a_real_grpc_client_sees_the_code_the_reason_first_and_the_error_info():
    code, details, trailing = call_real_server("Refuse")

    assert code is Code.PERMISSION_DENIED
    assert details == "TOKEN_ALREADY_USED: risk token already used"
    info = decode_error_info(code, details, trailing)
    assert (info.reason, info.domain) == ("TOKEN_ALREADY_USED", "tessera")


def test_a_real_grpc_client_gets_internal_and_no_exception_text_for_an_unexpected_error():
    code, details, _ = call_real_server("Crash")

    assert "hunter2" not in details, f"exception text leaked to the client: {details!r}"
    assert code is Code.INTERNAL
