"""What every call gets on the way in and out: request ids, trace context, metrics, logs.

Tessera's servers wrap each method's handler once, when it is registered
(:func:`observe_handler`, see :func:`services.common.server.add_service`), rather than
through gRPC server interceptors, whose machinery runs again for every call (an
interceptor chain of coroutines and a handler rebuilt per call cost a Python server
hop about 40 %; the wrapped handler costs it a few per cent, see
``docs/benchmarks.md``). :class:`ServerInterceptor` applies the same observer as an
interceptor, for servers that are not Tessera's own. Each call gets:

- a request id: the caller's ``x-request-id`` metadata (sanitised) or a new one,
  echoed in the trailing metadata (:func:`request_id_metadata`) and set, with the
  call's order id (from the request, else the response), in the logging context;
- the caller's trace context (``traceparent``), made current for the call, with a
  server span when tracing exports;
- ``tessera_rpc_duration_seconds{service,method,code}``;
- one access log line per call: INFO for the order path and state changes, DEBUG for
  reads (``Get*``, ``List*``, ``Query*``), WARNING for unexpected failures
  (``TESSERA_ACCESS_LOG=false`` turns them off).

Health checks and reflection pass untouched.

:func:`outgoing_metadata` (the OMS's calls to the Exchange): the current trace context
and request id go out in each call's metadata; :func:`client_span` records a client
span around a call when tracing exports. :func:`client_interceptors` do the same as
channel interceptors.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import itertools
import logging
import os
import re
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterator

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.domain.order import random_bytes

from . import metrics, tracing
from .metrics import SERVICE
from .logs import REQUEST_ID_METADATA, FastLine, order_id_var, request_id_metadata, request_id_var

access_log = logging.getLogger("tessera.rpc")
_access_line = FastLine(access_log)

_PASS_THROUGH = ("/grpc.health.", "/grpc.reflection.")
_TRACE_KEYS = tracing.TRACE_METADATA_KEYS
_tracing_state = tracing._state  # ``provider``: set while spans are recorded (tracing.recording())
_NO_IDENTITY = "auth=none"  # the access log's word for a call no identity was asked of
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_ORDER_ID_READERS: dict[type, Callable[[Any], str | None] | None] = {}


# A request id made here: this process's random prefix (80 bits, drawn again in a forked
# child) and a counter, 32 hex digits like the 16 random bytes they replace, without the
# random source's lock and bytes per call. Unique per process and across processes; not
# secret and not meant to be unguessable (a caller may send its own). Made 4,096 at a
# time: the counter's last three hex digits run through a table of them, the rest of the
# id is formatted once per block (a call takes the next id of the block).
_ID_LOW_DIGITS = tuple(f"{n:03x}" for n in range(4096))
_id_prefix = [""]
_id_blocks = [itertools.count()]
_ids: list[Iterator[str]] = [iter(())]


def _new_prefix() -> None:
    _id_prefix[0] = random_bytes(10).hex()
    _id_blocks[0] = itertools.count()
    _ids[0] = iter(())


_new_prefix()
os.register_at_fork(after_in_child=_new_prefix)


def _id_block() -> str:
    """The next block of request ids made here (its own counter values: two threads
    that both find the last block used up each take a block of their own); its first."""
    high = f"{_id_prefix[0]}{next(_id_blocks[0]) & 0xFFFFFFFFF:09x}"  # the counter is 48 bits: 36 + 12
    ids = _ids[0] = iter([high + low for low in _ID_LOW_DIGITS])
    return next(ids)


def new_request_id() -> str:
    return next(_ids[0], None) or _id_block()


def note_order_id(order_id: str | None) -> None:
    """The current call's order id, for a method that parses its request itself (one
    that receives the request's bytes): its log lines and span carry it."""
    if order_id and order_id_var.get() is None:
        order_id_var.set(order_id)


def _flat_order_id(message: Any) -> str | None:
    return message.order_id or None


def _nested_order_id(message: Any) -> str | None:
    return message.order.order_id or None  # an unset ``order`` reads as empty, and stays unset


def _order_id_reader(message: Any) -> Callable[[Any], str | None] | None:
    descriptor = getattr(message, "DESCRIPTOR", None)
    fields = getattr(descriptor, "fields_by_name", None)
    if not fields:
        return None
    if "order_id" in fields and fields["order_id"].type == fields["order_id"].TYPE_STRING:
        return _flat_order_id
    if "order" in fields and fields["order"].message_type is not None \
            and "order_id" in fields["order"].message_type.fields_by_name:
        return _nested_order_id
    return None


def order_id_of(message: Any) -> str | None:
    """``message.order_id`` or ``message.order.order_id``, when the message has one (the
    way to read it found once per message class)."""
    kind = type(message)
    try:
        reader = _ORDER_ID_READERS[kind]
    except KeyError:
        reader = _ORDER_ID_READERS[kind] = _order_id_reader(message)
    return reader(message) if reader is not None else None


# Reads (Get*, List*, Query*) are frequent and change nothing: DEBUG; anything failing
# unexpectedly: WARNING; the rest (the order path, state changes, streams): INFO.
_READS = ("Get", "List", "Query")
_UNEXPECTED = frozenset({"UNKNOWN", "INTERNAL", "DATA_LOSS"})
_SAFE = {"tessera_safe": True}  # a line built here from names and numbers: nothing to redact


_METHOD_LEVELS: dict[str, int] = {}


def _access_level(method: str, code: str) -> int:
    if code in _UNEXPECTED:
        return logging.WARNING
    level = _METHOD_LEVELS.get(method)
    if level is None:
        level = _METHOD_LEVELS[method] = logging.DEBUG if method.rpartition("/")[2].startswith(_READS) else logging.INFO
    return level


def _access_log_enabled(environ: Any = os.environ) -> bool:
    return (environ.get("TESSERA_ACCESS_LOG", "") or "true").strip().lower() not in ("0", "false", "no", "off")


class _FinishedCalls:
    """The calls finished since the last drain, each as its observer saw it: counted
    into ``tessera_rpc_duration_seconds`` and written to the access log together, a
    moment later (``delay`` seconds on the event loop), at each scrape of the metrics,
    every ``limit`` calls, at once for an unexpected failure, and at exit. A call then
    costs its observer an append; the rest is one pass over many calls."""

    def __init__(self, delay: float = 0.05, limit: int = 1024) -> None:
        self.delay = delay
        self.limit = limit
        self.queue: deque[tuple[Any, ...]] = deque()  # appended and drained thread-safely
        self._scheduled = False
        metrics.RPC_DURATION.before_collect(self.drain)
        atexit.register(self.drain)

    def added(self) -> None:
        """What follows a call's append (the observer appends itself): the drain now,
        when ``limit`` calls wait, or a moment later."""
        if len(self.queue) >= self.limit:
            self.drain()
        elif not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(self.delay, self.drain)
            except RuntimeError:  # no loop: now
                self.drain()
                return
            self._scheduled = True

    def drain(self) -> None:
        self._scheduled = False
        queue, durations, lines = self.queue, [], []
        offset = time.time() - time.perf_counter()  # perf_counter readings as wall-clock times
        messages, callers = _ACCESS_MESSAGES, _ACCESS_CALLERS
        while True:
            try:
                (ended, started, service, method, code, who, request_id, order_id, response, trace_id, span_id,
                 logged) = queue.popleft()
            except IndexError:
                break
            elapsed, labels = ended - started, (service, method, code)
            durations.append((labels, elapsed))
            if logged:
                if order_id is None and response is not None:
                    order_id = order_id_of(response)
                message = messages.get(labels)
                if message is None:
                    message = messages[labels] = (_access_level(method, code), f"{method} {code} ")
                who = who if who.__class__ is str else (who.name, who.via)  # a Caller's own hash is Python's
                after = callers.get(who)
                if after is None:
                    after = _caller_text(who)
                lines.append((ended + offset, message[0], message[1], elapsed, after, request_id, order_id or "",
                              trace_id, span_id))
        if durations:
            metrics.RPC_DURATION.observe_many(durations)
        if lines:
            _access_line.write_timed(lines)


_ACCESS_MESSAGES: dict[tuple[str, str, str], tuple[int, str]] = {}  # (service, method, code) -> (level, "<method> <code> ")
_ACCESS_CALLERS: dict[Any, str] = {}  # the caller -> "ms <who>", the end of its access lines' messages


def _caller_text(who: str | tuple[str, str]) -> str:
    """The end of an access line's message for ``who`` (what the line says of the caller,
    or a Caller's name and how it was identified), kept for the next line up to a bound:
    callers come and go."""
    after = f"ms {who if isinstance(who, str) else f'principal={who[0]} via={who[1]}'}"
    if len(_ACCESS_CALLERS) >= 4096:
        _ACCESS_CALLERS.clear()
    _ACCESS_CALLERS[who] = after
    return after


_finished = _FinishedCalls()


class CallObserver:
    """Wraps a method's behaviour with what every call gets (see the module docstring)."""

    def __init__(self, *, access_log_enabled: bool | None = None) -> None:
        self.access_log = _access_log_enabled() if access_log_enabled is None else access_log_enabled

    def wrap(self, method: str, handler: grpc.RpcMethodHandler, guard: Any = None,
             decode: bool = False) -> grpc.RpcMethodHandler:
        """``handler`` with its behaviour observed (health checks and reflection pass).

        ``guard(request, metadata, context)``, when given, identifies the caller and checks
        its entitlement (:meth:`services.common.auth.Authorizer.guard`) before the
        behaviour runs: what it raises ends the call with that error's status. Without a
        guard, every access log line says ``auth=none``. ``decode``: the call decodes its
        request itself with the handler's decoder (gRPC hands it the bytes: no decoder of
        ours for gRPC to call per request) and answers bytes that are not the request
        message INVALID_ARGUMENT, MALFORMED_REQUEST once the guard has admitted it, as
        :func:`services.common.decoding.decode_safely` would."""
        if handler is None or method.startswith(_PASS_THROUGH):
            return handler
        parse = undecodable = refuse = None
        if decode and handler.request_deserializer is not None and not handler.request_streaming:
            from services.common import decoding  # it imports the errors, and they much else: servers only

            parse, refuse = handler.request_deserializer, decoding.refuse
            undecodable = decoding.Undecodable(decoding.message_type(method))  # what the guard and refuse see
            handler = handler._replace(request_deserializer=None)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(method, handler.unary_unary, guard, parse, undecodable,
                                                            refuse))
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return handler._replace(unary_stream=self._stream(method, handler.unary_stream, guard, parse, undecodable,
                                                              refuse))
        return handler

    # -- per call ----------------------------------------------------------------------
    # A unary call runs _unary's ``call`` and nothing else of this class unless it is
    # traced, refused or aborted: each function call and tuple on this path is paid per call.
    def _trace(self, method: str, metadata: Any, traced: bool, request_id: str) -> tuple[Any, Any]:
        """The call's span (recorded, or the caller's context passed on) and its scope."""
        parent = tracing.extract(metadata) if traced else None
        if tracing.recording():
            span = tracing.tracer().start_span(
                method.lstrip("/"),
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method, "tessera.request_id": request_id},
            )
        elif parent is not None:
            span = trace.get_current_span(parent)  # not recorded: the caller's context, passed on
        else:
            return None, None
        return span, otel_context.attach(trace.set_span_in_context(span))

    def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, ...]:
        """(request id, span, scope, metadata). The request and order ids are set in the
        call's context without a token to reset them: gRPC runs each call in a task of its
        own, whose context ends with the call (a reset costs more than the set)."""
        metadata = context.invocation_metadata() or ()
        request_id = None
        traced = False
        for key, value in metadata:
            if key == REQUEST_ID_METADATA:
                if request_id is None and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
                    request_id = value
            elif key in _TRACE_KEYS:
                traced = True
        if request_id is None:
            request_id = next(_ids[0], None) or _id_block()  # new_request_id()
        request_id_var.set(request_id)
        order_id = order_id_of(request)
        if order_id is not None or order_id_var.get() is not None:  # else it is None already
            order_id_var.set(order_id)
        context.set_trailing_metadata(((REQUEST_ID_METADATA, request_id),))
        if traced or _tracing_state["provider"] is not None:  # else nothing to extract, start or attach
            span, scope = self._trace(method, metadata, traced, request_id)
        else:
            span = scope = None
        return request_id, span, scope, metadata

    def _exit(self, method: str, code: str, started: float, response: Any, who: Any, request_id: str, span: Any,
              scope: Any) -> None:
        ended = time.perf_counter()
        try:
            order_id = order_id_var.get()
            trace_id = span_id = ""
            if span is not None:
                if order_id is None and response is not None:
                    order_id = order_id_of(response)
                    response = None
                span_context = span.get_span_context()
                if span_context.is_valid:
                    trace_id, span_id = f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
                if span.is_recording():
                    if order_id:
                        span.set_attribute("tessera.order_id", order_id)
                    span.set_attribute("rpc.grpc.status_code", code)
                    if code not in ("OK", "CANCELLED"):
                        span.set_status(Status(StatusCode.ERROR, code))
                    span.end()
            # The rest when the finished calls are written: the answer's order id (when the
            # request had none), the duration's bucket, the access line's text.
            finished = _finished
            queue = finished.queue
            queue.append((ended, started, SERVICE["name"], method, code, who, request_id, order_id,
                          response if order_id is None else None, trace_id, span_id, self.access_log))
            if code in _UNEXPECTED:
                finished.drain()  # a WARNING: now
            elif not finished._scheduled or len(queue) >= finished.limit:
                finished.added()
        finally:
            if scope is not None:
                try:
                    otel_context.detach(scope)
                except ValueError:  # a stream closed from another context: that context ends anyway
                    pass

    @staticmethod
    def _code(context: grpc.aio.ServicerContext, default: str) -> str:
        try:
            code = context.code()
        except Exception:  # noqa: BLE001 - older grpc without ServicerContext.code()
            code = None
        if isinstance(code, grpc.StatusCode):
            return code.name
        if isinstance(code, int):
            return next((c.name for c in grpc.StatusCode if c.value[0] == code), default)
        return default

    @staticmethod
    async def _refuse(error: Exception, context: grpc.aio.ServicerContext) -> None:
        """End the call its guard refused with the refusal's status (counted when NOT_ENTITLED)."""
        metadata = getattr(error, "metadata", None) or {}
        if getattr(error, "reason", "") == "NOT_ENTITLED":
            metrics.not_entitled(metadata.get("method", ""))
        from services.common.errors import abort_error  # errors imports this module

        await abort_error(context, error)

    @staticmethod
    def _refused(error: Exception) -> str:
        """What the access line of a call its guard refused says of the caller."""
        return f"principal={(getattr(error, 'metadata', None) or {}).get('principal') or '-'}"

    def _unary(self, method: str, behavior: Callable[..., Awaitable[Any]], guard: Any = None, parse: Any = None,
               undecodable: Any = None, refuse: Any = None) -> Callable[..., Awaitable[Any]]:
        enter, leave, perf_counter, get_order_id = self._enter, self._exit, time.perf_counter, order_id_var.get
        finished, logged = _finished, self.access_log
        queue = finished.queue

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if parse is not None:
                try:
                    request = parse(request)
                except Exception:  # noqa: BLE001 - DecodeError, or anything a hostile payload makes the parser raise
                    request = undecodable
            request_id, span, scope, metadata = enter(method, request, context)
            code, response, who = "UNKNOWN", None, _NO_IDENTITY
            started = perf_counter()
            try:
                if guard is not None:  # identity and entitlement: synchronous, no coroutine when admitted
                    try:
                        who = guard(request, metadata, context)
                    except Exception as error:  # noqa: BLE001 - a DomainError: UNAUTHENTICATED, NOT_ENTITLED
                        who = self._refused(error)
                        await self._refuse(error, context)
                        raise
                if request is undecodable and parse is not None:  # refused (an abort raises)
                    await refuse(context, request)
                response = await behavior(request, context)
                code = "OK"  # a handler that returns has not aborted (an abort raises)
                return response
            except grpc.aio.AbortError:
                code = self._code(context, "UNKNOWN")
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                if span is None and code == "OK":  # the usual end: _exit's, without a span or a warning
                    order_id = get_order_id()
                    queue.append((perf_counter(), started, SERVICE["name"], method, code, who, request_id, order_id,
                                  response if order_id is None else None, "", "", logged))
                    if not finished._scheduled or len(queue) >= finished.limit:
                        finished.added()
                else:
                    leave(method, code, started, response, who, request_id, span, scope)

        return call

    def _stream(self, method: str, behavior: Callable[..., Any], guard: Any = None, parse: Any = None,
                undecodable: Any = None, refuse: Any = None) -> Callable[..., Any]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if parse is not None:
                try:
                    request = parse(request)
                except Exception:  # noqa: BLE001 - DecodeError, or anything a hostile payload makes the parser raise
                    request = undecodable
            request_id, span, scope, metadata = self._enter(method, request, context)
            code, who = "UNKNOWN", _NO_IDENTITY
            started = time.perf_counter()
            try:
                if guard is not None:  # identity and entitlement: synchronous, no coroutine when admitted
                    try:
                        who = guard(request, metadata, context)
                    except Exception as error:  # noqa: BLE001 - a DomainError: UNAUTHENTICATED, NOT_ENTITLED
                        who = self._refused(error)
                        await self._refuse(error, context)
                        raise
                if request is undecodable and parse is not None:  # refused (an abort raises)
                    await refuse(context, request)
                async for item in behavior(request, context):
                    yield item
                code = self._code(context, "OK")
            except grpc.aio.AbortError:
                code = self._code(context, "UNKNOWN")
                raise
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            finally:
                self._exit(method, code, started, None, who, request_id, span, scope)

        return call


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """The :class:`CallObserver` as a gRPC server interceptor (applied at every call)."""

    def __init__(self, *, access_log_enabled: bool | None = None) -> None:
        self.observer = CallObserver(access_log_enabled=access_log_enabled)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return self.observer.wrap(details.method, await continuation(details))


_observer: list[CallObserver] = []


def observe_handler(method: str, handler: grpc.RpcMethodHandler, guard: Any = None,
                    decode: bool = False) -> grpc.RpcMethodHandler:
    """``handler`` of ``method`` (``/package.Service/Method``) observed, wrapped once at
    registration with the process's observer (``TESSERA_ACCESS_LOG`` read once), its
    calls admitted by ``guard``, their requests decoded by the call when ``decode`` (see
    :meth:`CallObserver.wrap`)."""
    if not _observer:
        _observer.append(CallObserver())
    return _observer[0].wrap(method, handler, guard, decode)


# -- the OMS's outgoing calls -------------------------------------------------------------
def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """The current call's trace context and request id, as metadata for a call it makes."""
    request_id = request_id_var.get()
    carried = tuple(tracing.inject())
    return (*carried, (REQUEST_ID_METADATA, request_id)) if request_id else carried


_NO_SPAN = contextlib.nullcontext()


def client_span(method: str) -> contextlib.AbstractContextManager[None]:
    """A client span around an outgoing call, when tracing records (else a shared no-op)."""
    return _recorded_client_span(method) if tracing.recording() else _NO_SPAN


@contextlib.contextmanager
def _recorded_client_span(method: str) -> Iterator[None]:
    with tracing.tracer().start_as_current_span(method, kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc"},
                                                record_exception=False, set_status_on_exception=False) as span:
        try:
            yield
        except grpc.aio.AioRpcError as error:
            span.set_attribute("rpc.grpc.status_code", error.code().name)
            span.set_status(Status(StatusCode.ERROR, error.code().name))
            raise

def _outgoing(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    metadata += tracing.inject()
    metadata += request_id_metadata()
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
    )


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else str(method)).lstrip("/")


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        if not tracing.recording():
            return await continuation(_outgoing(client_call_details), request)
        with tracing.tracer().start_as_current_span(
            _method_name(client_call_details), kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc"},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            call = await continuation(_outgoing(client_call_details), request)
            try:
                await call
            except grpc.aio.AioRpcError as error:
                span.set_attribute("rpc.grpc.status_code", error.code().name)
                span.set_status(Status(StatusCode.ERROR, error.code().name))
            except asyncio.CancelledError:
                span.set_status(Status(StatusCode.ERROR, "CANCELLED"))
                raise
            return call


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(_outgoing(client_call_details), request)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a channel from one Tessera service to another."""
    return [_UnaryUnary(), _UnaryStream()]


__all__ = [
    "REQUEST_ID_METADATA",
    "CallObserver",
    "ServerInterceptor",
    "client_interceptors",
    "client_span",
    "observe_handler",
    "outgoing_metadata",
    "new_request_id",
    "note_order_id",
    "order_id_of",
    "request_id_metadata",
]
