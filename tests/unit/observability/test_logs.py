"""JSON log lines: the fields, the request context, and redaction of every secret."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import core_ext
from services.common.observability import logs
from services.common.observability.logs import JsonFormatter, Redactor, TextFormatter, secret_values

HMAC_SECRET = "unit-hmac-secret-0123456789abcdef-0123456789"
VENUE_SECRET = "venueSecretQ8vN2xR7tLm4Kp9Zs3Wd6Hf1"


def record(message: str, *args: object, level: int = logging.INFO, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("services.test", level, __file__, 1, message, args, exc_info)  # type: ignore[arg-type]


def a_token() -> str:
    keyring = core_ext.KeyRing.from_env({"AIS_RISK_HMAC_SECRET": HMAC_SECRET, "AIS_RISK_HMAC_KEY_ID": "k1"})
    return core_ext.sign_token(keyring, b"tessera.order.v1 body", 1_750_000_000)


def test_a_line_is_one_json_object_with_utc_timestamp_level_service_logger_message() -> None:
    line = JsonFormatter("oms").format(record("order %s filled", "o-1"))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["service"] == "oms" and entry["level"] == "INFO" and entry["logger"] == "services.test"
    assert entry["message"] == "order o-1 filled"
    assert entry["timestamp"].endswith("Z")
    stamp = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 60
    assert "request_id" not in entry and "order_id" not in entry and "trace_id" not in entry


def test_request_and_order_ids_come_from_the_call_context() -> None:
    tokens = logs.request_id_var.set("req-1"), logs.order_id_var.set("order-9")
    try:
        entry = json.loads(JsonFormatter("risk").format(record("approved")))
    finally:
        logs.request_id_var.reset(tokens[0])
        logs.order_id_var.reset(tokens[1])
    assert (entry["request_id"], entry["order_id"]) == ("req-1", "order-9")


def test_the_current_trace_is_in_the_line() -> None:
    span = NonRecordingSpan(SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True,
                                        TraceFlags(TraceFlags.SAMPLED)))
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        entry = json.loads(JsonFormatter("exchange").format(record("executed")))
    finally:
        otel_context.detach(token)
    assert entry["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert entry["span_id"] == "b7ad6b7169203331"


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        line = JsonFormatter("oms").format(record("failed", level=logging.ERROR, exc_info=sys.exc_info()))
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "RuntimeError: boom" in entry["exception"]


def test_secrets_of_the_environment_and_their_files_are_masked(tmp_path) -> None:
    secret_file = tmp_path / "previous"
    secret_file.write_text("previous-hmac-secret-from-a-mounted-file-000\n")
    environ = {
        "AIS_RISK_HMAC_SECRET": HMAC_SECRET,
        "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE": str(secret_file),
        "ASTER_API_SECRET": VENUE_SECRET,
        "TESSERA_DATABASE_URL": "postgresql://tessera:db-Pa55word@db:5432/tessera",
    }
    redact = Redactor(secret_values(environ))
    text = redact(
        f"key {HMAC_SECRET} previous previous-hmac-secret-from-a-mounted-file-000 venue {VENUE_SECRET} "
        "url postgresql://tessera:db-Pa55word@db:5432/tessera"
    )
    for secret in (HMAC_SECRET, "previous-hmac-secret-from-a-mounted-file-000", VENUE_SECRET, "db-Pa55word"):
        assert secret not in text
    assert text.count(logs.REDACTED) == 4


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("query timestamp=1&signature=" + "ab" * 32, "query timestamp=1&signature="),
        ('{"api_secret": "s3cr3tValue", "symbol": "BTCUSDT"}', '"symbol": "BTCUSDT"'),
        ("X-MBX-APIKEY: abcdefKEY123", "X-MBX-APIKEY: "),
        ("password=hunter22 user=alice", "user=alice"),
        ("risk_token=v1.abc", "risk_token="),
        ("digest " + "0123456789abcdef" * 4, "digest "),
        ("postgresql://u:pw123@host/db", "postgresql://u:"),
    ],
)
def test_things_that_look_like_secrets_are_masked(text: str, kept: str) -> None:
    redacted = Redactor()(text)
    assert logs.REDACTED in redacted and kept in redacted
    assert redacted != text


def test_a_risk_token_is_never_logged_whole_nor_its_signature() -> None:
    token = a_token()
    signature = token.rsplit(".", 1)[1]
    line = JsonFormatter("oms").format(record("refused token %s", token))
    assert token not in line and signature not in line
    assert "[REDACTED-TOKEN]" in line


def test_a_bearer_or_service_jwt_is_never_logged_whole_nor_its_signature(tmp_path) -> None:
    from services.common.identities import generate_key_pair, mint

    private, _ = generate_key_pair(tmp_path)
    signed = mint(private, "alice")  # EdDSA, as the local stack's tokens
    shared = mint(b"a-shared-hmac-key-of-32-bytes-or-more!!", "tessera-service", algorithm="HS256")
    unsigned = signed.rsplit(".", 1)[0] + "."  # alg "none": an empty signature
    for token in (signed, shared, unsigned):
        assert token.startswith("eyJ") and token.count(".") == 2
        line = JsonFormatter("oms").format(record("call with authorization: Bearer %s refused", token))
        assert token not in line and token.split(".")[1] not in line
        assert signed.rsplit(".", 1)[1] not in line
        assert "Bearer [REDACTED-JWT] refused" in json.loads(line)["message"]


def test_ordinary_lines_are_left_alone() -> None:
    text = ("/tessera.oms.v1.OrderManagementService/SubmitOrder OK 1.20ms order 187a78be-a32e-4676-bc15-1f33311cce3e "
            "TOKEN_EXPIRED: the risk token has expired; TOKEN_BAD_SIGNATURE")
    assert Redactor([HMAC_SECRET])(text) == text


def test_text_format_has_the_same_fields_on_one_line() -> None:
    token = logs.request_id_var.set("req-7")
    try:
        line = TextFormatter("oms", Redactor([HMAC_SECRET])).format(record("secret is %s", HMAC_SECRET))
    finally:
        logs.request_id_var.reset(token)
    assert line.endswith("Z INFO oms services.test: secret is [REDACTED] [request_id=req-7]")
    assert HMAC_SECRET not in line


def test_setup_logging_routes_the_root_logger_through_the_redacting_json_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        logs.setup_logging("risk", {"AIS_RISK_HMAC_SECRET": HMAC_SECRET}, stream=stream)
        logging.getLogger("services.anything").info("loaded key %s", HMAC_SECRET)
        logging.getLogger("services.anything").debug("not at INFO")
        logs.setup_logging("risk", {"TESSERA_LOG_FORMAT": "text", "TESSERA_LOG_LEVEL": "WARNING"}, stream=stream)
        logging.getLogger("services.anything").info("filtered out")
        logging.getLogger("services.anything").warning("kept")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert json.loads(lines[0])["message"] == "loaded key [REDACTED]"
    assert len(lines) == 2 and lines[1].endswith("WARNING risk services.anything: kept")


def test_the_key_files_of_the_venue_accounts_registry_and_a_0x_private_key_are_masked(tmp_path) -> None:
    (tmp_path / "a.key").write_text("0x" + "ab" * 32 + "\n")
    (tmp_path / "b.secret").write_text("registry-v1-secret-value")
    (tmp_path / "accounts.json").write_text(json.dumps({"accounts": {
        "a": {"venue": "aster", "user": "0x" + "1" * 40, "signer": "0x" + "2" * 40, "private_key_file": "a.key"},
        "b": {"venue": "aster", "api_key_file": str(tmp_path / "missing"), "secret_file": "b.secret"}}}))
    redact = Redactor(secret_values({"TESSERA_VENUE_ACCOUNTS_FILE": str(tmp_path / "accounts.json")}))

    line = redact("key 0x" + "ab" * 32 + " and registry-v1-secret-value, unrelated 0x" + "cd" * 32)

    assert "ab" * 32 not in line and "registry-v1-secret-value" not in line
    assert "cd" * 32 not in line  # any 0x-prefixed 64-hex value (a private key) is masked too


# -- the access log's fast path ------------------------------------------------------------------
@pytest.mark.parametrize("context", [
    (None, None, "", ""),
    ("req-1", "order-9", "", ""),
    ("req-2", 'an "odd" order\\ id \u00e9\u4e2d\n', "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
])
def test_a_fast_line_is_the_text_json_dumps_makes_of_the_entry(context) -> None:
    request_id, order_id, trace_id, span_id = context
    formatter = JsonFormatter("risk \"\u00e9\"")
    message = '/tessera.risk.v1.RiskService/ValidateOrder OK 0.42ms principal=al"ice\u00e9 via=bearer'
    fields = {k: v for k, v in (("request_id", request_id), ("order_id", order_id), ("trace_id", trace_id),
                                ("span_id", span_id)) if v}
    expected = json.dumps(formatter.entry(1_750_000_000.25, "INFO", "tessera.rpc", message, fields),
                          ensure_ascii=False)
    for _ in range(2):  # the parts encoded once, then reused
        assert formatter.line(1_750_000_000.25, "INFO", "tessera.rpc", message, *context) == expected


@pytest.mark.parametrize("formatter", [JsonFormatter("risk \"\u00e9\""), TextFormatter("risk")])
def test_timed_lines_are_the_lines_of_their_messages(formatter) -> None:
    """The access log's batch path: the same text :meth:`line` makes of each message."""
    before = '/tessera.risk.v1.RiskService/ValidateOrder OK '
    entries = [
        (1_750_000_000.25, logging.INFO, before, 0.00042, 'ms principal=al"ice\u00e9 via=bearer', "req-1", "order-9", "",
         ""),
        (1_750_000_000.9994, logging.DEBUG, "/tessera.oms.v1.OrderManagementService/GetOrder NOT_FOUND ", 1.5,
         "ms auth=none", "", 'an "odd" order\\ id \u00e9\u4e2d\n', "", ""),
        (1_750_000_001.0, logging.WARNING, "/x/Y INTERNAL ", 0.0, "ms principal=- \t\x01", "req-3", "",
         "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        (1_750_003_601.5, 25, before, 123.456789, "ms auth=none", "req-4", "order-4", "0af7651916cd43dd8448eb211c80319c",
         "b7ad6b7169203331"),
    ]
    for _ in range(2):  # the parts encoded once, then reused
        assert formatter.timed_lines("tessera.rpc", entries, "\n") == [
            formatter.line(created, logging.getLevelName(level), "tessera.rpc", f"{b}{seconds * 1000:.2f}{a}",
                           request_id, order_id, trace_id, span_id) + "\n"
            for created, level, b, seconds, a, request_id, order_id, trace_id, span_id in entries]


def test_deferred_lines_carry_the_context_of_their_call_and_are_written_together() -> None:
    import asyncio

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._handler[0]
    stream = io.StringIO()
    logs.setup_logging("oms", {}, stream=stream)
    try:
        line = logs.FastLine(logging.getLogger("tessera.rpc"), delay=0.01)

        async def call(request_id: str) -> None:
            tokens = logs.request_id_var.set(request_id), logs.order_id_var.set(f"order-{request_id}")
            try:
                line.write(logging.INFO, "{} {}".format, ("GetOrder", request_id), *logs._call_context())
            finally:
                logs.request_id_var.reset(tokens[0])
                logs.order_id_var.reset(tokens[1])

        async def run() -> str:
            await call("a")
            await call("b")
            written = stream.getvalue()  # not yet: collected for a moment
            await asyncio.sleep(0.05)
            return written

        assert asyncio.run(run()) == ""
        entries = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert [(e["message"], e["request_id"], e["order_id"]) for e in entries] == [
            ("GetOrder a", "a", "order-a"), ("GetOrder b", "b", "order-b")]
        assert {e["service"] for e in entries} == {"oms"} and {e["level"] for e in entries} == {"INFO"}
    finally:
        root.handlers[:], level, logs._handler[0] = saved
        root.setLevel(level)


def test_timed_lines_are_written_in_one_go_below_the_threshold_left_out() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._handler[0]
    stream = io.StringIO()
    logs.setup_logging("risk", {"TESSERA_LOG_LEVEL": "INFO"}, stream=stream)
    try:
        logs.FastLine(logging.getLogger("tessera.rpc")).write_timed([
            (1_750_000_000.25, logging.INFO, "/a/B OK ", 0.001, "ms auth=none", "req-1", "order-1", "", ""),
            (1_750_000_000.26, logging.DEBUG, "/a/GetC OK ", 0.002, "ms auth=none", "req-2", "", "", ""),
            (1_750_000_000.27, logging.WARNING, "/a/B INTERNAL ", 0.003, "ms auth=none", "req-3", "", "", ""),
        ])
        entries = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert [(e["level"], e["message"], e["request_id"]) for e in entries] == [
            ("INFO", "/a/B OK 1.00ms auth=none", "req-1"), ("WARNING", "/a/B INTERNAL 3.00ms auth=none", "req-3")]
        assert entries[0]["order_id"] == "order-1" and "order_id" not in entries[1]
    finally:
        root.handlers[:], level, logs._handler[0] = saved
        root.setLevel(level)
