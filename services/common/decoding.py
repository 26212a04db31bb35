"""Requests that are not valid protobuf messages get ``INVALID_ARGUMENT``, not ``UNKNOWN``.

gRPC decodes a request before any servicer code runs; bytes that do not parse as the
method's request type (a corrupt wire format, a client with the wrong schema) make the
Python server answer ``UNKNOWN: Unexpected DecodeError``, a status no client can act on.
:class:`UndecodableRequests` gives every method a decoder that never raises and answers
such a request ``INVALID_ARGUMENT`` with reason ``MALFORMED_REQUEST``, like any other
malformed input. Health checks and reflection pass untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from .errors import abort

REASON = "MALFORMED_REQUEST"
_PASS_THROUGH = ("/grpc.health.", "/grpc.reflection.")


class Undecodable:
    """What a method is given for bytes that are not its request message."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


def _safe(deserialize: Callable[[bytes], Any], message_type: str) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:  # noqa: BLE001 - DecodeError, or anything a hostile payload makes the parser raise
            return Undecodable(message_type)

    return decode


def message_type(method: str) -> str:
    """The request message's name for ``method`` (``/package.Service/Method``), as a refusal names it."""
    return method.rsplit("/", 1)[-1] + "Request"


async def refuse(context: grpc.aio.ServicerContext, request: Undecodable) -> None:
    """End the call whose request could not be decoded: INVALID_ARGUMENT, MALFORMED_REQUEST."""
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, REASON,
                f"the request is not a valid {request.message_type} message")


def decode_safely(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` with a decoder that never raises (see the module
    docstring); a method that takes the request's bytes, or none, is left as it is.
    Applied once, when the method is registered, or per call by :class:`UndecodableRequests`
    (Tessera's own servers have the observer decode, see :func:`services.common.server.add_service`)."""
    if handler is None or handler.request_deserializer is None or method.startswith(_PASS_THROUGH):
        return handler
    decode = _safe(handler.request_deserializer, message_type(method))
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_behaviour, request_deserializer=decode, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None:
        stream = handler.unary_stream

        async def stream_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            async for item in stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            stream_behaviour, request_deserializer=decode, response_serializer=handler.response_serializer
        )
    return handler  # client-streaming methods: Tessera has none


class UndecodableRequests(grpc.aio.ServerInterceptor):
    """:func:`decode_safely` as a gRPC server interceptor (applied at every call)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return decode_safely(handler_call_details.method or "", await continuation(handler_call_details))
