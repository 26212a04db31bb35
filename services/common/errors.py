"""Domain errors to gRPC statuses, in one place.

Every refusal carries a stable reason code twice: at the start of the status message
(``"TOKEN_EXPIRED: ..."``, readable in grpcurl and any client) and as a
``google.rpc.ErrorInfo`` detail (domain ``tessera``, with the error's metadata) for
clients that decode rich status details. An ``INVALID_ARGUMENT`` also carries a
``google.rpc.BadRequest`` listing every bad field, and a retryable code (UNAVAILABLE,
ABORTED, RESOURCE_EXHAUSTED) a ``google.rpc.RetryInfo``.

The reason decides: its status code, its retry delay and the metadata keys it may send
are those of :mod:`services.common.error_catalog` (the table docs/errors.md is generated
from); an error whose reason the table does not list falls back to its class.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from typing import Any, Callable, Mapping, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

from core_ext import IllegalTransition
from services.common import error_catalog
from services.common.observability import metrics
from services.common.observability.logs import request_id_metadata
from services.domain import errors as domain
from tessera.common.v1 import types_pb2 as common_pb

log = logging.getLogger(__name__)

ERROR_DOMAIN = "tessera"

# Token failures that say "these credentials are not valid" answer UNAUTHENTICATED; a
# valid token presented for other fields or a second time answers PERMISSION_DENIED.
_PERMISSION_DENIED_TOKEN_REASONS = frozenset({"TOKEN_FIELDS_CHANGED", "TOKEN_ALREADY_USED", "CALLER_NOT_OMS"})


class StoreUnavailable(domain.DomainError):
    reason = "STORE_UNAVAILABLE"


@dataclasses.dataclass(frozen=True)
class Explained:
    """Everything a refusal's status says."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    violations: Sequence[domain.FieldViolation] = ()
    retry_seconds: float | None = None


def _code_by_class(error: BaseException) -> grpc.StatusCode:
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
    if isinstance(error, (domain.VenueUnavailable, StoreUnavailable, domain.ReplicaUnavailable,
                          domain.ShardMapUnsettled)):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def _entry(error: BaseException) -> error_catalog.Reason | None:
    if isinstance(error, (domain.DomainError, IllegalTransition)):
        return error_catalog.REASONS.get(reason_for(error))
    return None


def status_code_for(error: BaseException) -> grpc.StatusCode:
    """The status code of the error's reason (the catalog's), else of its class."""
    entry = _entry(error)
    if entry is not None:
        return grpc.StatusCode[entry.code]
    return _code_by_class(error)


def reason_for(error: BaseException) -> str:
    if isinstance(error, IllegalTransition):
        return "ILLEGAL_TRANSITION"
    return getattr(error, "reason", "INTERNAL")


def _metadata(error: BaseException, entry: error_catalog.Reason | None) -> dict[str, str]:
    """The error's metadata, restricted to the keys the catalog lists for its reason
    (so docs/errors.md never promises less than a client receives, nor more)."""
    if isinstance(error, IllegalTransition):
        found: Mapping[str, str] = {"from_status": str(error.current), "to_status": str(error.target)}
    else:
        found = getattr(error, "metadata", None) or {}
    if entry is None or not found:
        return {}
    return {key: value for key, value in found.items() if key in entry.metadata}


def explain(error: BaseException) -> Explained:
    """Everything the status of ``error`` says; INTERNAL (and nothing of it) for an
    unexpected error."""
    if isinstance(error, OperationalError):
        return Explained(grpc.StatusCode.UNAVAILABLE, StoreUnavailable.reason, "the order store is unavailable",
                         retry_seconds=error_catalog.REASONS[StoreUnavailable.reason].retry_seconds)
    code = status_code_for(error)
    if isinstance(error, (domain.TokenRejected, domain.TokenReplayed)):
        metrics.token_failure(reason_for(error))
    if code is grpc.StatusCode.INTERNAL:
        return Explained(code, "INTERNAL", "internal error")
    entry = _entry(error)
    retry_seconds = None
    if code.name in error_catalog.RETRYABLE_CODES:
        retry_seconds = (getattr(error, "retry_after", 0.0) or (entry.retry_seconds if entry else None)
                         or error_catalog.DEFAULT_RETRY_SECONDS[code.name])
    return Explained(code, reason_for(error), str(error), _metadata(error, entry),
                     list(getattr(error, "violations", ()) or ()), retry_seconds)


def describe(error: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """(status code, reason, message) for a domain error, or INTERNAL for the rest."""
    explained = explain(error)
    return explained.code, explained.reason, explained.message


#: The trailer a failed call's ``google.rpc.Status`` travels in.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def status_details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    """The details of a failed call's ``google.rpc.Status``: empty without one, or when
    it does not parse."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return list(status_pb2.Status.FromString(value).details)
            except Exception:  # noqa: BLE001 - details that do not parse: none
                return []
    return []


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    """The ``ErrorInfo`` (with a reason) of a failed call, if its status carries one."""
    for detail in status_details(error):
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason:
            return info
    return None


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))


def to_grpc_status(code: grpc.StatusCode, reason: str, message: str, *,
                   metadata: Mapping[str, str] | None = None,
                   violations: Sequence[domain.FieldViolation] = (),
                   retry_seconds: float | None = None) -> grpc.Status:
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})))
    details.append(info)
    if violations:
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, reason=v.reason, description=v.description)
            for v in violations
        ]))
        details.append(bad)
    if retry_seconds is not None:
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=_duration(retry_seconds)))
        details.append(retry)
    text = message if message.startswith(reason) else f"{reason}: {message}"
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=text, details=details))


def status_of(error: BaseException) -> grpc.Status:
    """The status the servers answer ``error`` with."""
    explained = explain(error)
    return to_grpc_status(explained.code, explained.reason, explained.message, metadata=explained.metadata,
                          violations=explained.violations, retry_seconds=explained.retry_seconds)


async def _abort_with(context: grpc.aio.ServicerContext, status: grpc.Status) -> None:
    # The call's request id stays in the trailers an abort replaces (see interceptors).
    await context.abort(status.code, status.details, (*status.trailing_metadata, *request_id_metadata()))


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, message: str) -> None:
    await _abort_with(context, to_grpc_status(code, reason, message))


async def abort_error(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """End the call with the status of ``error``."""
    await _abort_with(context, status_of(error))


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method (unary or server-streaming) so domain errors become statuses."""

    async def translate(error: BaseException, context: grpc.aio.ServicerContext) -> None:
        if status_code_for(error) is grpc.StatusCode.INTERNAL and not isinstance(error, OperationalError):
            log.exception("unexpected error in %s", method.__qualname__, exc_info=error)
        await abort_error(context, error)

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


def item_error_proto(error: BaseException, index: int, *, path_style: bool = False) -> common_pb.ItemError:
    """The ``ItemError`` of item ``index`` of a batch: what the single-item RPC would
    have answered. Its message starts with the item's position: ``orders[3]: ...``, or
    with ``path_style`` the field path ``orders[3].quantity: ...``; field violations
    carry their path inside the batch request."""
    explained = explain(error)
    prefix = f"orders[{index}]"
    violations = [v._replace(field=f"{prefix}.{v.field}" if v.field else prefix) for v in explained.violations]
    if path_style and violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    elif path_style:
        message = f"{prefix}.{explained.message}"
    else:
        message = f"{prefix}: {explained.message}"
    item = common_pb.ItemError(
        code=explained.code.name, reason=explained.reason, message=message,
        status_code=explained.code.value[0], metadata=dict(explained.metadata),
        field_violations=[common_pb.FieldViolation(field=v.field, reason=v.reason, description=v.description)
                          for v in violations],
    )
    if explained.retry_seconds is not None:
        item.retry_delay.CopyFrom(_duration(explained.retry_seconds))
    return item
