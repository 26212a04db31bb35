"""Observability and mutual TLS over the real processes.

One stack, started here with an OTLP endpoint (a collector this test runs) and venue
credentials in its environment, takes an order flow: a fill, a risk rejection, a
tampered token, a caller that is not the OMS, a halt. Then:

- each service's ``/metrics`` shows the counters moved as expected;
- each service's stderr is JSON lines (service, UTC timestamp, level, logger,
  message), and the order-path lines carry the order id and the request id;
- neither the logs nor the database hold the HMAC secret, the venue credentials or
  any risk token;
- a ``traceparent`` the client sent reaches the Exchange: its log lines and its
  exported spans carry the same trace id, the spans chained client -> Risk/OMS ->
  Exchange.

A second stack runs with mutual TLS between every service (certificates made here):
an order still fills through the OMS's TLS channel, and the Exchange refuses a client
without a certificate, with one from another CA, and in plaintext; its plaintext health
port (for the kubelet's probes) answers health checks and nothing else.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
import tessera_e2e as e2e
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tls_certs import CertificateAuthority

from services.cli.stack import PROJECT_ROOT, Stack
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
REQUEST_ID = "e2e-obs-request-1"
VENUE_KEY = "e2eVenueApiKeyZ7q4Lm2Xw9"
VENUE_SECRET = "e2eVenueApiSecretR8k3Np6Vb1Ty5"
SERVICES = ("risk", "oms", "exchange")
TIMEOUT = e2e.RPC_TIMEOUT


# -- an OTLP collector, in this process -------------------------------------------------
class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name, span)
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                name = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((name, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def in_trace(self, trace_id: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(name, span) for name, span in self.spans if span.trace_id.hex() == trace_id]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def observed(collector: tuple[Collector, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack, the flow run through it, and what it left behind (read after it stopped)."""
    _, port = collector
    db_dir = tmp_path_factory.mktemp("obs-db")
    env = e2e.base_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
        ASTER_API_KEY=VENUE_KEY,
        ASTER_API_SECRET=VENUE_SECRET,
    )
    stack = Stack(database_url=e2e.sqlite_url(db_dir / "tessera.db"), env=env,
                  log_dir=tmp_path_factory.mktemp("obs-logs")).start()
    try:
        flow = run_flow(stack)
        flow["metrics"] = {name: scrape(stack, name) for name in SERVICES}
        flow["halted_state"] = flow["metrics"]["risk"].get(("tessera_trading_state", (("scope", "global"),)))
        reset = stack.risk.SetTradingState(
            risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_ACTIVE, operator="e2e", reason="done"), timeout=TIMEOUT
        )
        assert reset.previous_state == pb.TRADING_STATE_HALTED
        flow["active_state"] = scrape(stack, "oms").get(("tessera_trading_state", (("scope", "global"),)))
    finally:
        flow_codes = stack.stop()
    assert flow_codes == {"oms": 0, "risk": 0, "exchange": 0}, stack.logs()
    flow["stack"] = stack
    flow["stderr"] = {name: stack.processes[name].stderr() for name in SERVICES}
    flow["files"] = [*stack.log_dir.iterdir(), *db_dir.iterdir()]
    yield flow


def run_flow(stack: Stack) -> dict[str, Any]:
    metadata = (("traceparent", TRACEPARENT), ("x-request-id", REQUEST_ID))
    answer, call = stack.risk.ValidateOrder.with_call(
        risk_pb2.ValidateOrderRequest(order=e2e.intent(quantity="0.01")), metadata=metadata, timeout=TIMEOUT
    )
    assert answer.order.status == pb.ORDER_STATUS_APPROVED
    risk_trailers = dict(call.trailing_metadata())
    submitted, call = stack.oms.SubmitOrder.with_call(
        oms_pb2.SubmitOrderRequest(order=answer.order, risk_token=answer.risk_token), metadata=metadata, timeout=TIMEOUT
    )
    assert submitted.order.status == pb.ORDER_STATUS_FILLED
    oms_trailers = dict(call.trailing_metadata())

    rejected = stack.risk.ValidateOrder(
        risk_pb2.ValidateOrderRequest(order=e2e.intent(quantity="10")), timeout=TIMEOUT  # 650,000 > 250,000
    )
    assert [v.code for v in rejected.violations] == ["MAX_NOTIONAL_EXCEEDED"]

    other = e2e.approve(stack, quantity="0.02")
    e2e.expect_error(lambda: stack.oms.SubmitOrder(other.request(quantity="0.03"), timeout=TIMEOUT),
                     grpc.StatusCode.PERMISSION_DENIED, "TOKEN_FIELDS_CHANGED")
    e2e.expect_error(
        lambda: stack.exchange.ExecuteOrder(
            exchange_pb2.ExecuteOrderRequest(order=other.order, risk_token=other.token), timeout=TIMEOUT
        ),
        grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS",
    )
    stack.risk.SetTradingState(
        risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_HALTED, operator="e2e", reason="observability test"),
        timeout=TIMEOUT,
    )
    return {
        "order_id": answer.order.order_id,
        "rejected_id": rejected.order.order_id,
        "tokens": [answer.risk_token, other.token],
        "trailers": {"risk": risk_trailers, "oms": oms_trailers},
    }


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(stack: Stack, name: str) -> Samples:
    with urllib.request.urlopen(f"http://{stack.metrics_addresses[name]}/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def rpc_count(samples: Samples, service: str, method: str, code: str) -> float:
    return sample(samples, "tessera_rpc_duration_seconds_count", service=service, method=method, code=code)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- metrics ----------------------------------------------------------------------------
def test_every_service_prints_where_its_metrics_are(observed: dict[str, Any]) -> None:
    stack = observed["stack"]
    assert set(stack.metrics_addresses) == set(SERVICES)
    for name in SERVICES:
        assert f"{name} metrics on 127.0.0.1:" in stack.processes[name].stdout()


def test_order_counters_follow_the_flow(observed: dict[str, Any]) -> None:
    risk, oms = observed["metrics"]["risk"], observed["metrics"]["oms"]
    assert sample(risk, "tessera_orders_total", status="PENDING") == 3
    assert sample(risk, "tessera_orders_total", status="APPROVED") == 2
    assert sample(risk, "tessera_orders_total", status="REJECTED") == 1
    assert sample(oms, "tessera_orders_total", status="SUBMITTED") == 1
    assert sample(oms, "tessera_orders_total", status="FILLED") == 1
    assert sample(risk, "tessera_risk_rejections_total", reason="MAX_NOTIONAL_EXCEEDED") == 1
    assert sample(oms, "tessera_submit_to_fill_seconds_count") == 1
    assert 0 <= sample(oms, "tessera_submit_to_fill_seconds_sum") < 10


def test_every_services_store_writer_counts_its_group_commits(observed: dict[str, Any]) -> None:
    # Risk stored three decisions, the OMS one claim and its fills, the Exchange one execution.
    for name, writes in (("risk", 3), ("oms", 2), ("exchange", 1)):
        scraped = observed["metrics"][name]
        commits = sample(scraped, "tessera_store_commit_items_count")
        assert 1 <= commits <= sample(scraped, "tessera_store_commit_items_sum"), name
        assert sample(scraped, "tessera_store_commit_items_sum") >= writes, name
        assert sample(scraped, "tessera_store_write_wait_seconds_count") == commits, name
        assert sample(scraped, "tessera_store_write_held_seconds_count") == commits, name
        assert 0 < sample(scraped, "tessera_store_write_held_seconds_sum") < 10, name


def test_token_failures_are_counted_by_reason_and_service(observed: dict[str, Any]) -> None:
    oms, exchange = observed["metrics"]["oms"], observed["metrics"]["exchange"]
    assert sample(oms, "tessera_token_failures_total", reason="TOKEN_FIELDS_CHANGED", service="oms") == 1
    assert sample(exchange, "tessera_token_failures_total", reason="CALLER_NOT_OMS", service="exchange") == 1


def test_rpc_histograms_count_calls_per_method_and_code(observed: dict[str, Any]) -> None:
    risk, oms, exchange = (observed["metrics"][n] for n in SERVICES)
    assert rpc_count(risk, "risk", "/tessera.risk.v1.RiskService/ValidateOrder", "OK") == 3
    assert rpc_count(oms, "oms", "/tessera.oms.v1.OrderManagementService/SubmitOrder", "OK") == 1
    assert rpc_count(oms, "oms", "/tessera.oms.v1.OrderManagementService/SubmitOrder", "PERMISSION_DENIED") == 1
    assert rpc_count(exchange, "exchange", "/tessera.exchange.v1.ExchangeService/ExecuteOrder", "OK") == 1
    assert rpc_count(exchange, "exchange", "/tessera.exchange.v1.ExchangeService/ExecuteOrder",
                     "PERMISSION_DENIED") == 1
    # Buckets are cumulative: the +Inf bucket holds every call.
    assert sample(risk, "tessera_rpc_duration_seconds_bucket", service="risk",
                  method="/tessera.risk.v1.RiskService/ValidateOrder", code="OK", le="+Inf") == 3


def test_the_trading_state_gauge_reads_the_shared_state(observed: dict[str, Any]) -> None:
    assert observed["halted_state"] == 2
    assert sample(observed["metrics"]["oms"], "tessera_trading_state", scope="global") == 2  # set via Risk
    assert observed["active_state"] == 0


# -- logs -------------------------------------------------------------------------------
def test_stderr_is_json_lines_with_service_and_utc_timestamp(observed: dict[str, Any]) -> None:
    for name in SERVICES:
        entries = json_lines(observed["stderr"][name])
        assert entries, f"{name} logged nothing"
        for entry in entries:
            assert entry["service"] == name
            assert {"timestamp", "level", "logger", "message"} <= set(entry)
            assert entry["timestamp"].endswith("Z")
            stamp = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            assert stamp.utcoffset() == dt.timedelta(0)


def test_order_path_lines_carry_the_order_id_and_the_request_id(observed: dict[str, Any]) -> None:
    order_id = observed["order_id"]
    expected = {
        "risk": "/tessera.risk.v1.RiskService/ValidateOrder OK",
        "oms": "/tessera.oms.v1.OrderManagementService/SubmitOrder OK",
        "exchange": "/tessera.exchange.v1.ExchangeService/ExecuteOrder OK",
    }
    for name, call in expected.items():
        mine = [e for e in json_lines(observed["stderr"][name]) if e.get("order_id") == order_id]
        assert any(e["message"].startswith(call) for e in mine), (name, mine)
        # The client's request id, passed by the OMS on to the Exchange.
        assert all(e.get("request_id") == REQUEST_ID for e in mine), (name, mine)
    assert observed["trailers"] == {"risk": {"x-request-id": REQUEST_ID}, "oms": {"x-request-id": REQUEST_ID}}
    rejected = [e for e in json_lines(observed["stderr"]["risk"]) if e.get("order_id") == observed["rejected_id"]]
    assert rejected and all(e.get("request_id") for e in rejected)


def test_no_secret_and_no_token_in_any_log_or_in_the_database(observed: dict[str, Any]) -> None:
    needles = {"HMAC secret": e2e.SECRET, "venue secret": VENUE_SECRET, "venue API key": VENUE_KEY}
    for token in observed["tokens"]:
        needles[f"risk token {token[:12]}..."] = token
        needles[f"signature of {token[:12]}..."] = token.rsplit(".", 1)[1]
    checked = 0
    for path in observed["files"]:
        if not path.is_file():
            continue
        data = path.read_bytes()
        checked += 1
        for what, needle in needles.items():
            assert needle.encode() not in data, f"{what} found in {path.name}"
    assert checked >= 7  # six process logs and the database


# -- traces -----------------------------------------------------------------------------
def test_the_client_trace_reaches_the_exchange_logs(observed: dict[str, Any]) -> None:
    for name in SERVICES:
        traced = [e for e in json_lines(observed["stderr"][name]) if e.get("trace_id") == TRACE_ID]
        assert traced, f"{name} logged nothing in the client's trace"
    execute = [e for e in json_lines(observed["stderr"]["exchange"])
               if e["message"].startswith("/tessera.exchange.v1.ExchangeService/ExecuteOrder OK")]
    assert [e.get("trace_id") for e in execute] == [TRACE_ID]


def test_spans_are_exported_and_chained_through_to_the_exchange(observed: dict[str, Any],
                                                                collector: tuple[Collector, int]) -> None:
    servicer, _ = collector
    assert e2e.wait_until(lambda: len(servicer.in_trace(TRACE_ID)) >= 4, timeout=10), servicer.spans
    spans = {(service, span.name): span for service, span in servicer.in_trace(TRACE_ID)}
    validate = spans[("tessera-risk", "tessera.risk.v1.RiskService/ValidateOrder")]
    submit = spans[("tessera-oms", "tessera.oms.v1.OrderManagementService/SubmitOrder")]
    outgoing = spans[("tessera-oms", "tessera.exchange.v1.ExchangeService/ExecuteOrder")]
    execute = spans[("tessera-exchange", "tessera.exchange.v1.ExchangeService/ExecuteOrder")]
    assert validate.parent_span_id.hex() == CLIENT_SPAN and submit.parent_span_id.hex() == CLIENT_SPAN
    assert outgoing.parent_span_id == submit.span_id
    assert execute.parent_span_id == outgoing.span_id
    attributes = {a.key: a.value.string_value for a in execute.attributes}
    assert attributes["tessera.order_id"] == observed["order_id"]


# -- mutual TLS -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory / "ca")
    return {
        "ca": ca,
        "service": ca.issue("tessera-service"),
        "client": ca.issue("tessera-client"),
        "stranger": CertificateAuthority(directory / "other", name="other-ca").issue("stranger"),
    }


def ticker(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = e2e.channel(address, credentials)
    with channel:
        try:
            exchange_pb2_grpc.ExchangeServiceStub(channel).GetTicker(
                exchange_pb2.GetTickerRequest(symbol="BTCUSDT"), timeout=5
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()


def test_with_mutual_tls_orders_fill_and_only_holders_of_a_ca_certificate_reach_the_exchange(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    env = e2e.base_env(
        TESSERA_TLS_CERT_FILE=str(pki["service"].cert),
        TESSERA_TLS_KEY_FILE=str(pki["service"].key),
        TESSERA_TLS_CA_FILE=str(pki["ca"].cert),
        TESSERA_EXCHANGE_HEALTH_PORT="0",
    )
    with Stack(database_url=e2e.sqlite_url(tmp_path / "tls.db"), env=env, log_dir=tmp_path / "logs") as stack:
        approved = e2e.approve(stack)
        answer = stack.oms.SubmitOrder(
            oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=approved.token), timeout=TIMEOUT
        )
        assert answer.order.status == pb.ORDER_STATUS_FILLED  # OMS -> Exchange over mutual TLS

        address = stack.addresses["exchange"]
        ca = pki["ca"].cert.read_bytes()

        def with_certificate(issued: Any) -> grpc.ChannelCredentials:
            cert, key = issued.pem()
            return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

        assert ticker(address, with_certificate(pki["client"])) is grpc.StatusCode.OK
        assert ticker(address, grpc.ssl_channel_credentials(root_certificates=ca)) is grpc.StatusCode.UNAVAILABLE
        assert ticker(address, with_certificate(pki["stranger"])) is grpc.StatusCode.UNAVAILABLE
        assert ticker(address, None) is grpc.StatusCode.UNAVAILABLE
        for name in SERVICES:
            assert "(TLS)" in stack.processes[name].stderr()

        # The probes' plaintext port answers health checks, and nothing else.
        health_line = re.search(r"^exchange health on (\S+):(\d+)$", stack.processes["exchange"].stdout(), re.M)
        assert health_line, stack.processes["exchange"].stdout()
        with grpc.insecure_channel(f"127.0.0.1:{health_line.group(2)}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                exchange_pb2_grpc.ExchangeServiceStub(channel).GetTicker(
                    exchange_pb2.GetTickerRequest(symbol="BTCUSDT"), timeout=5
                )
            assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TESSERA_TLS_CERT_FILE", "/nonexistent/exchange.crt"), ("TESSERA_TLS_CA_FILE", "{junk}")],
)
def test_an_unreadable_certificate_file_stops_the_service_naming_the_variable(
    pki: dict[str, Any], tmp_path: Path, variable: str, value: str
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not PEM")
    settings = {
        "TESSERA_TLS_CERT_FILE": str(pki["service"].cert),
        "TESSERA_TLS_KEY_FILE": str(pki["service"].key),
        "TESSERA_EXCHANGE_PORT": "0",
        variable: value.format(junk=junk),
    }
    env = e2e.base_env(**settings)
    result = subprocess.run([sys.executable, "-m", "services.exchange"], env=env, cwd=str(PROJECT_ROOT),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, e2e.show(result)
    assert f"tessera-exchange: configuration error: {variable}" in result.stderr
    assert "listening on" not in result.stdout
