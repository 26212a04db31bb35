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
    """What the decoder gives a method for bytes that are not its request message."""

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


async def refuse(context: grpc.aio.ServicerContext, request: Undecodable) -> None:
    """End the call whose request could not be decoded: INVALID_ARGUMENT, MALFORMED_REQUEST."""
    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, REASON,
                f"the request is not a valid {request.message_type} message")


def safe_decoder(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` with a decoder that never raises: bytes that are not the
    request message reach its behaviour as an :class:`Undecodable`, for a caller that
    refuses those itself (:func:`refuse`; the observer does, see
    :func:`services.common.server.add_service`). A method that takes the request's bytes,
    or none, is left as it is."""
    if handler is None or handler.request_deserializer is None or method.startswith(_PASS_THROUGH) \
            or handler.request_streaming:  # client-streaming methods: Tessera has none
        return handler
    decode = _safe(handler.request_deserializer, method.rsplit("/", 1)[-1] + "Request")
    return handler._replace(request_deserializer=decode)


def decode_safely(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` with a decoder that never raises and a behaviour that
    refuses what it could not decode (see the module docstring); a method that takes the
    request's bytes, or none, is left as it is. Applied once, when the method is
    registered (or per call by :class:`UndecodableRequests`)."""
    safe = safe_decoder(method, handler)
    if safe is handler:
        return handler
    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            return await unary(request, context)

        return safe._replace(unary_unary=unary_behaviour)
    if handler.unary_stream is not None:
        stream = handler.unary_stream

        async def stream_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            async for item in stream(request, context):
                yield item

        return safe._replace(unary_stream=stream_behaviour)
    return handler


class UndecodableRequests(grpc.aio.ServerInterceptor):
    """:func:`decode_safely` as a gRPC server interceptor (applied at every call)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return decode_safely(handler_call_details.method or "", await continuation(handler_call_details))
