"""Domain errors to gRPC statuses, in one place.

Every refusal carries a stable reason code twice: at the start of the status message
(``"TOKEN_EXPIRED: ..."``, readable in grpcurl and any client) and as a
``google.rpc.ErrorInfo`` detail (domain ``tessera``) for clients that decode rich
status details.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

from core_ext import IllegalTransition
from services.common.observability import metrics
from services.common.observability.interceptors import request_id_metadata
from services.domain import errors as domain

log = logging.getLogger(__name__)

ERROR_DOMAIN = "tessera"

# Token failures that say "these credentials are not valid" answer UNAUTHENTICATED; a
# valid token presented for other fields or a second time answers PERMISSION_DENIED.
_PERMISSION_DENIED_TOKEN_REASONS = frozenset({"TOKEN_FIELDS_CHANGED", "TOKEN_ALREADY_USED", "CALLER_NOT_OMS"})


class StoreUnavailable(domain.DomainError):
    reason = "STORE_UNAVAILABLE"


def status_code_for(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, (domain.InvalidOrder, domain.MalformedRequest)):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, domain.TokenReplayed):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(error, domain.TokenRejected):
        if error.reason in _PERMISSION_DENIED_TOKEN_REASONS:
            return grpc.StatusCode.PERMISSION_DENIED
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(error, domain.OrderNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, domain.Conflict):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(error, (domain.PreconditionFailed, IllegalTransition, domain.OverfillError)):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, domain.StaleOrder):
        return grpc.StatusCode.ABORTED
    if isinstance(error, (domain.VenueUnavailable, StoreUnavailable, domain.ReplicaUnavailable)):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def reason_for(error: BaseException) -> str:
    if isinstance(error, IllegalTransition):
        return "ILLEGAL_TRANSITION"
    return getattr(error, "reason", "INTERNAL")


def to_grpc_status(code: grpc.StatusCode, reason: str, message: str) -> grpc.Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    text = message if message.startswith(reason) else f"{reason}: {message}"
    return rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=text, details=[detail])
    )


def describe(error: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """(status code, reason, message) for a domain error, or INTERNAL for the rest."""
    if isinstance(error, OperationalError):
        return grpc.StatusCode.UNAVAILABLE, StoreUnavailable.reason, "the order store is unavailable"
    code = status_code_for(error)
    if isinstance(error, (domain.TokenRejected, domain.TokenReplayed)):
        metrics.token_failure(reason_for(error))
    if code is grpc.StatusCode.INTERNAL:
        return code, "INTERNAL", "internal error"
    return code, reason_for(error), str(error)


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, message: str) -> None:
    status = to_grpc_status(code, reason, message)
    # The call's request id stays in the trailers an abort replaces (see interceptors).
    await context.abort(status.code, status.details, (*status.trailing_metadata, *request_id_metadata()))


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method (unary or server-streaming) so domain errors become statuses."""

    async def translate(error: BaseException, context: grpc.aio.ServicerContext) -> None:
        code, reason, message = describe(error)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("unexpected error in %s", method.__qualname__, exc_info=error)
        await abort(context, code, reason, message)

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as error:  # noqa: BLE001 - every failure becomes a status, never a traceback
                await translate(error, context)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes a status, never a traceback
            await translate(error, context)

    return unary_wrapper


def item_error(error: BaseException) -> tuple[str, str, str]:
    """(code name, reason, message) for one failed item of a batch RPC."""
    code, reason, message = describe(error)
    return code.name, reason, message
