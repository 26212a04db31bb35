"""Structured logs: one JSON object per line on stderr, with the request's context.

Each line carries ``timestamp`` (UTC, ISO 8601, milliseconds, ``Z``), ``level``,
``service``, ``logger`` and ``message``, and when known ``request_id`` and
``order_id`` (context variables the server interceptor sets for each call),
``trace_id`` and ``span_id`` (the current OpenTelemetry span), and ``exception``.
``TESSERA_LOG_FORMAT=text`` prints the same fields as one readable line instead.

Secrets are kept out of the code paths that log, and, as defence in depth, every
line is redacted before it is written: the values of the secret variables
(``AIS_RISK_HMAC_SECRET``, ``ASTER_API_SECRET``, ... and the files their ``_FILE``
variants name), the password of ``TESSERA_DATABASE_URL``, risk tokens and OMS call
credentials (whole), JWTs (bearer and service tokens: three base64url segments, the
first ``eyJ``, whole), 64-hex strings (HMAC signatures, private keys), and ``secret=``,
``signature=``, ``password=``, ``api_key=``, ``token=`` values.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import logging
import os
import re
import sys
import time
from typing import Any, Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace

#: Set by the server interceptor for the duration of each call.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tessera_request_id", default=None)

REQUEST_ID_METADATA = "x-request-id"


def request_id_metadata() -> tuple[tuple[str, str], ...]:
    """The current call's request id as a metadata entry (empty outside a call)."""
    request_id = request_id_var.get()
    return ((REQUEST_ID_METADATA, request_id),) if request_id else ()

order_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("tessera_order_id", default=None)

#: Variables whose values are secrets (each may also come from ``<name>_FILE``).
SECRET_VARIABLES = (
    "AIS_RISK_HMAC_SECRET",
    "AIS_RISK_HMAC_SECRET_PREVIOUS",
    "ASTER_API_SECRET",
    "ASTER_API_KEY",
    "ASTER_SIGNER_PRIVATE_KEY",
    "TESSERA_TEST_POSTGRES_ADMIN_URL",
)
REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 6

# One pass over each line finds any of: a risk token or OMS call credential
# (v1.<key id>.<issued at>.<nonce>.<body digest>.<signature>, docs/token.md), a JWT (a
# bearer or service token: header.payload.signature, base64url, the header's JSON '{"'
# encoding as "eyJ"; the signature may be empty), a 64+ hex string (an HMAC-SHA256
# signature, a hex key), a secret-looking key's value, a URL's password.
_SECRETS = re.compile(
    r"(?P<token>\bv\d+\.[A-Za-z0-9_-]{1,32}\.\d{1,12}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,})"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*)"
    r"|(?P<hex>\b(?:0x)?[0-9a-fA-F]{64,}\b)"
    r"|(?P<key>(?i:\b(?:[a-z0-9_-]*secret|signature|password|passwd|api[_-]?key|x-mbx-apikey|risk[_-]?token|token)"
    r"[\"']?\s*[:=]\s*[\"']?))(?P<value>[^\s\"'&,;}\]]+)"
    r"|(?P<scheme>://[^/\s:@]+:)(?P<password>[^@\s/]+)@"
)


def _mask(match: "re.Match[str]") -> str:
    if match.group("token"):
        return "[REDACTED-TOKEN]"
    if match.group("jwt"):
        return "[REDACTED-JWT]"
    if match.group("hex"):
        return REDACTED
    if match.group("key"):
        return match.group("key") + REDACTED
    return match.group("scheme") + REDACTED + "@"


def _file_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(4096).strip()
    except OSError:
        return ""


def _registry_secrets(path: str) -> set[str]:
    """The contents of the key files a venue accounts registry names (its ``*_file`` fields)."""
    if not path:
        return set()
    try:
        with open(path, encoding="utf-8") as handle:
            accounts = json.load(handle).get("accounts", {})
    except (OSError, ValueError, AttributeError):
        return set()
    found = set()
    base = os.path.dirname(path)
    for entry in accounts.values() if isinstance(accounts, dict) else ():
        for field, name in (entry.items() if isinstance(entry, dict) else ()):
            if field.endswith("_file") and isinstance(name, str) and name:
                value = _file_text(name if os.path.isabs(name) else os.path.join(base, name))
                if len(value) >= _MIN_SECRET_LENGTH:
                    found.add(value)
    return found


def secret_values(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The secret values this process may hold, longest first."""
    values = set()
    for name in SECRET_VARIABLES:
        for value in (environ.get(name, ""), _file_text(environ[f"{name}_FILE"]) if environ.get(f"{name}_FILE") else ""):
            if len(value.strip()) >= _MIN_SECRET_LENGTH:
                values.add(value.strip())
    values.update(_registry_secrets(environ.get("TESSERA_VENUE_ACCOUNTS_FILE", "")))
    match = re.search(r"://[^/\s:@]+:([^@\s/]+)@", environ.get("TESSERA_DATABASE_URL", ""))
    if match and len(match.group(1)) >= 3:
        values.add(match.group(1))
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Masks secrets in text (see the module docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRETS.sub(_mask, text)


def _context(record: logging.LogRecord | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    request_id = getattr(record, "request_id", None) or request_id_var.get()
    order_id = getattr(record, "order_id", None) or order_id_var.get()
    if request_id:
        fields["request_id"] = str(request_id)
    if order_id:
        fields["order_id"] = str(order_id)
    trace_id, span_id = _trace_ids()
    if trace_id:
        fields["trace_id"] = trace_id
        fields["span_id"] = span_id
    return fields


def _trace_ids() -> tuple[str, str]:
    span = trace.get_current_span()
    if span is _NO_SPAN:  # outside any trace: nothing to look up
        return "", ""
    context = span.get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


_NO_SPAN = trace.INVALID_SPAN


def _call_context() -> tuple[str | None, str | None, str, str]:
    """(request id, order id, trace id, span id) of the current call, as lines carry them."""
    if otel_context.get_current():  # else outside any trace: no span to look up
        trace_id, span_id = _trace_ids()
    else:
        trace_id = span_id = ""
    return request_id_var.get(), order_id_var.get(), trace_id, span_id
_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def utc_second(whole: int) -> str:
    """``2025-06-01T12:00:00`` for a whole ``time.time()`` second (the last one kept)."""
    if _second[0] != whole:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = whole
    return _second[1]


def utc_timestamp(created: float) -> str:
    """``2025-06-01T12:00:00.123Z`` for a ``time.time()`` value."""
    whole = int(created)
    return f"{utc_second(whole)}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, service: str, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.service = service
        self.redact = redactor or Redactor()
        self._heads: dict[tuple[str, str], str] = {}
        self._timed_heads: dict[str, dict[int, str]] = {}  # logger -> level -> the line's middle
        self._parts: dict[str, str] = {}  # message parts -> their JSON text (no quotes)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage() if getattr(record, "tessera_safe", False) else self.redact(record.getMessage())
        entry = self.entry(record.created, record.levelname, record.name, message, _context(record))
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def entry(self, created: float, level: str, logger: str, message: str, context: dict[str, str]
              ) -> dict[str, str]:
        """The fields of one line (the message as it is: redact it first unless it is safe)."""
        return {"timestamp": utc_timestamp(created), "level": level, "service": self.service, "logger": logger,
                "message": message, **context}

    def safe_line(self, created: float, level: str, logger: str, message: str) -> str:
        """The line of a record whose message has nothing to redact, in the current
        request's context, without building a ``LogRecord`` (the access log's path)."""
        return self.line(created, level, logger, message, *_call_context())

    def line(self, created: float, level: str, logger: str, message: str, request_id: str | None,
             order_id: str | None, trace_id: str = "", span_id: str = "") -> str:
        """The text ``json.dumps`` makes of :meth:`entry` for a message with nothing to
        redact and the context given, put together from parts (the fields that do not
        change from line to line encoded once per level and logger)."""
        head = self._heads.get((level, logger))
        if head is None:
            head = self._heads[(level, logger)] = (
                f', "level": {_quote(level)}, "service": {_quote(self.service)}, "logger": {_quote(logger)}, '
                f'"message": ')
        line = f'{{"timestamp": "{utc_timestamp(created)}"{head}{_quote(message)}'
        if request_id:
            line += f', "request_id": {_quote(str(request_id))}'
        if order_id:
            line += f', "order_id": {_quote(str(order_id))}'
        if trace_id:
            line += f', "trace_id": "{trace_id}", "span_id": "{span_id}"'
        return line + "}"

    def timed_lines(self, logger: str, entries: Iterable[tuple[Any, ...]], terminator: str) -> list[str]:
        """The lines :meth:`line` makes (each followed by ``terminator``) of ``entries``
        ``(created, level, before, seconds, after, request_id, order_id, trace_id,
        span_id)``, each a message with nothing to redact, ``f"{before}{seconds * 1000:.2f}{after}"``
        (the access log's "<method> <code> <ms>ms <caller>"), a level number and the ids
        as strings or empty. One pass: the parts that repeat from line to line (the level,
        the service and logger, ``before`` and ``after``) encoded once, the second of the
        timestamp formatted once per second."""
        heads = self._timed_heads.get(logger)
        if heads is None:
            heads = self._timed_heads[logger] = {}
        parts, quote, millis = self._parts, _quote, _MILLIS
        if len(parts) > _PARTS_LIMIT:  # callers named in ``after`` come and go: keep the cache bounded
            parts.clear()
        lines = []
        append = lines.append
        last, second = _second
        for created, level, before, seconds, after, request_id, order_id, trace_id, span_id in entries:
            whole = int(created)
            if whole != last:
                last, second = whole, utc_second(whole)
            head = heads.get(level)
            if head is None:
                head = heads[level] = (f'Z", "level": {quote(_level_name(level))}, "service": {quote(self.service)}, '
                                       f'"logger": {quote(logger)}, "message": "')
            encoded_before = parts.get(before)
            if encoded_before is None:
                encoded_before = parts[before] = quote(before)[1:-1]
            encoded_after = parts.get(after)
            if encoded_after is None:
                encoded_after = parts[after] = quote(after)[1:-1]
            if request_id and order_id and not trace_id:  # the usual context
                context = f', "request_id": {quote(request_id)}, "order_id": {quote(order_id)}'
            else:
                context = f', "request_id": {quote(request_id)}' if request_id else ""
                if order_id:
                    context += f', "order_id": {quote(order_id)}'
                if trace_id:
                    context += f', "trace_id": "{trace_id}", "span_id": "{span_id}"'
            append(f'{{"timestamp": "{second}.{millis[int((created - whole) * 1000)]}{head}{encoded_before}'
                   f'{seconds * 1000:.2f}{encoded_after}"{context}}}{terminator}')
        return lines


_PARTS_LIMIT = 4096
_MILLIS = [f"{n:03d}" for n in range(1000)]


def _level_name(level: int) -> str:
    return _LEVEL_NAMES.get(level) or logging.getLevelName(level)


#: A string as ``json.dumps(..., ensure_ascii=False)`` writes it (quotes included).
_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]


class TextFormatter(logging.Formatter):
    """``TESSERA_LOG_FORMAT=text``: the same fields on one readable line."""

    def __init__(self, service: str, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.service = service
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = self._line(record.created, record.levelname, record.name, self.redact(record.getMessage()),
                          _context(record))
        if record.exc_info:
            line += "\n" + self.redact(self.formatException(record.exc_info))
        return line

    def _line(self, created: float, level: str, logger: str, message: str, fields: dict[str, str]) -> str:
        context = " ".join(f"{k}={v}" for k, v in fields.items())
        return (f"{utc_timestamp(created)} {level} {self.service} {logger}: {message}"
                + (f" [{context}]" if context else ""))

    def safe_line(self, created: float, level: str, logger: str, message: str) -> str:
        """As :meth:`JsonFormatter.safe_line`."""
        return self.line(created, level, logger, message, *_call_context())

    def line(self, created: float, level: str, logger: str, message: str, request_id: str | None,
             order_id: str | None, trace_id: str = "", span_id: str = "") -> str:
        """As :meth:`JsonFormatter.line`."""
        fields = {}
        if request_id:
            fields["request_id"] = str(request_id)
        if order_id:
            fields["order_id"] = str(order_id)
        if trace_id:
            fields["trace_id"], fields["span_id"] = trace_id, span_id
        return self._line(created, level, logger, message, fields)

    def timed_lines(self, logger: str, entries: Iterable[tuple[Any, ...]], terminator: str) -> list[str]:
        """As :meth:`JsonFormatter.timed_lines`."""
        return [self.line(created, _level_name(level), logger, f"{before}{seconds * 1000:.2f}{after}", request_id,
                          order_id, trace_id, span_id) + terminator
                for created, level, before, seconds, after, request_id, order_id, trace_id, span_id in entries]


LOG_FORMATS = ("json", "text")


class FastLine:
    """Writes a line whose message needs no redaction to the process's log handler, with
    the fields and format its formatter gives every line, but without a ``LogRecord`` or
    the logging module's dispatch: the access log writes one per call.

    Lines below WARNING written on an event loop are collected and written together a
    moment later (``delay`` seconds, one ``write`` for all of them): a write per line is
    a system call per call, and on a busy gRPC server each such call hands the GIL to
    the server's other threads. What such a line needs is taken when it is written (the
    time, the level, the call's context) and the text is made when the lines are
    written: one pass over them, rather than a formatter run between each call's other
    work. WARNING and above, and lines written off a loop, go out at once; :meth:`flush`
    writes what is collected (at exit too)."""

    def __init__(self, logger: logging.Logger, delay: float = 0.05) -> None:
        self.logger = logger
        self.delay = delay
        self._pending: list[tuple[Any, ...]] = []
        self._scheduled = False
        atexit.register(self.flush)

    def __call__(self, level: int, message: str) -> None:
        """A line of ``message``, in the current call's context."""
        self.write(level, None, message, *_call_context())

    def write(self, level: int, render: Any, message: Any, request_id: str | None, order_id: str | None,
              trace_id: str = "", span_id: str = "") -> None:
        """A line in the context given: its message ``render(*message)`` when ``render``
        is given (called when the line is written, with what the caller passed), else
        ``message`` as it is."""
        handler = _handler[0]
        if handler is None or not isinstance(handler.formatter, (JsonFormatter, TextFormatter)):
            text = render(*message) if render is not None else message
            self.logger.log(level, "%s", text, extra={"tessera_safe": True, "request_id": request_id,
                                                      "order_id": order_id})
            return
        if level < handler.level or not self.logger.isEnabledFor(level):
            return
        self._pending.append((time.time(), level, render, message, request_id, order_id, trace_id, span_id))
        if level >= logging.WARNING:
            self.flush()
            return
        if not self._scheduled:
            try:
                asyncio.get_running_loop().call_later(self.delay, self.flush)
            except RuntimeError:  # no loop: now
                self.flush()
                return
            self._scheduled = True

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._emit(pending)

    def write_timed(self, entries: list[tuple[Any, ...]]) -> None:
        """Lines written together, now, each a measured call's: ``(created, level,
        before, seconds, after, request_id, order_id, trace_id, span_id)``, its message
        ``f"{before}{seconds * 1000:.2f}{after}"``, its ids strings or empty (see
        :meth:`JsonFormatter.timed_lines`); those below the handler's or the logger's
        level left out."""
        handler = _handler[0]
        if handler is None or not isinstance(handler.formatter, (JsonFormatter, TextFormatter)):
            for created, level, before, seconds, after, request_id, order_id, trace_id, span_id in entries:
                self.logger.log(level, "%s", f"{before}{seconds * 1000:.2f}{after}",
                                extra={"tessera_safe": True, "request_id": request_id, "order_id": order_id})
            return
        threshold, enabled = handler.level, self.logger.isEnabledFor
        levels = {entry[1] for entry in entries}
        if not all(level >= threshold and enabled(level) for level in levels):
            entries = [entry for entry in entries if entry[1] >= threshold and enabled(entry[1])]
        if not entries:
            return
        try:
            lines = handler.formatter.timed_lines(self.logger.name, entries, handler.terminator)
        except Exception:  # noqa: BLE001 - a log line must never fail a call
            return
        self._write(handler, lines)

    def _emit(self, entries: list[tuple[Any, ...]]) -> None:
        handler = _handler[0]
        if not entries or handler is None:
            return
        line, logger, terminator, names = handler.formatter.line, self.logger.name, handler.terminator, _LEVEL_NAMES
        lines = []
        try:
            for created, level, render, message, request_id, order_id, trace_id, span_id in entries:
                text = render(*message) if render is not None else message
                lines.append(line(created, names.get(level) or logging.getLevelName(level), logger, text, request_id,
                                  order_id, trace_id, span_id) + terminator)
        except Exception:  # noqa: BLE001 - a log line must never fail a call
            pass
        self._write(handler, lines)

    @staticmethod
    def _write(handler: logging.StreamHandler, lines: list[str]) -> None:  # type: ignore[type-arg]
        """``lines`` in one ``write``."""
        handler.acquire()
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except Exception:  # noqa: BLE001 - a log line must never fail a call
            pass
        finally:
            handler.release()


_LEVEL_NAMES = {level: logging.getLevelName(level)
                for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)}
_handler: list[logging.StreamHandler | None] = [None]  # type: ignore[type-arg]


def setup_logging(service: str, environ: Mapping[str, str] = os.environ, stream=None) -> logging.Handler:  # type: ignore[no-untyped-def]
    """Route every log record of the process through one redacting handler on stderr.

    ``TESSERA_LOG_FORMAT`` (``json``, the default, or ``text``) and ``TESSERA_LOG_LEVEL``
    (``INFO`` by default) choose the format and the threshold; an unknown value falls
    back to the default with a warning.
    """
    fmt = (environ.get("TESSERA_LOG_FORMAT", "") or "json").strip().lower()
    level_name = (environ.get("TESSERA_LOG_LEVEL", "") or "INFO").strip().upper()
    redactor = Redactor(secret_values(environ))
    formatter = (TextFormatter if fmt == "text" else JsonFormatter)(service, redactor)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    # No caller frame, thread, process or task look-ups per record: no line shows them.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    _handler[0] = handler
    level = logging.getLevelName(level_name)
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if fmt not in LOG_FORMATS:
        logging.getLogger(__name__).warning("TESSERA_LOG_FORMAT %r is not json or text: using json", fmt)
    if not isinstance(level, int):
        logging.getLogger(__name__).warning("TESSERA_LOG_LEVEL %r is not a level: using INFO", level_name)
    return handler


__all__ = [
    "FastLine",
    "JsonFormatter",
    "Redactor",
    "TextFormatter",
    "order_id_var",
    "request_id_var",
    "secret_values",
    "setup_logging",
    "utc_timestamp",
]
