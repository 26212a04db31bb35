"""Secrets and who may reach a venue.

- Every secret comes from a file (``*_FILE``): the HMAC key ring (current and previous)
  and the venue's API key and secret; the database password is in the PostgreSQL URL;
  the bearer JWTs (the client's, the services' own) and the key that signed them are the
  suite's identities. After a live run with successes and every kind of failure, none of
  them appears in any process's output, in any error a client received, or anywhere in
  the database.
- A weak, empty, unreadable or doubly-given secret stops each service at start with a
  message naming the variable, never the value.
- Only the OMS can call the Exchange service: every RPC that can move money or reveal
  orders refuses a call without the OMS's per-call credential (or with one for another
  call, another token, another key, or an expired one), and a direct ExecuteOrder with a
  valid risk token never reaches the live venue.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import tessera_e2e as e2e
import venue_harness as vh

import core_ext
from services.cli.connection import BearerToken
from services.common.tokens import oms_call_metadata
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2

pytestmark = pytest.mark.postgres

KEY_ID, PREVIOUS_KEY_ID = "secrets-k2", "secrets-k1"
CURRENT = "cur-" + secrets.token_urlsafe(36)
PREVIOUS = "prev-" + secrets.token_urlsafe(36)
API_KEY = "key-" + secrets.token_hex(16)
API_SECRET = "vsec-" + secrets.token_hex(24)
DB_PASSWORD = "dbpw-" + secrets.token_hex(12)  # trust authentication ignores it; it is in the URL all the same
NEEDLES = {"HMAC secret": CURRENT, "previous HMAC secret": PREVIOUS, "venue API key": API_KEY,
           "venue API secret": API_SECRET, "database password": DB_PASSWORD,
           **e2e.identity_secrets()}  # the bearer and service JWTs, the JWT signing key
KEYRING = core_ext.KeyRing(KEY_ID, CURRENT.encode(), [(PREVIOUS_KEY_ID, PREVIOUS.encode())])


def write(path: Path, content: str) -> str:
    path.write_text(content + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with e2e.fresh_postgres_database("tessera_secrets", password=DB_PASSWORD) as url:
        yield url


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Iterator[vh.VenueSim]:
    running = vh.VenueSim(tmp_path_factory.mktemp("secrets-sim"), "--api-key", API_KEY, "--api-secret", API_SECRET)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("secret-files")
    return {
        "AIS_RISK_HMAC_SECRET_FILE": write(folder / "hmac-current", CURRENT),
        "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE": write(folder / "hmac-previous", PREVIOUS),
        "ASTER_API_KEY_FILE": write(folder / "api-key", API_KEY),
        "ASTER_API_SECRET_FILE": write(folder / "api-secret", API_SECRET),
    }


@pytest.fixture(scope="module")
def live(pg_url, sim, secret_files, tmp_path_factory):
    env = vh.venue_env(sim, "live", ASTER_API_KEY=None, ASTER_API_SECRET=None, AIS_RISK_HMAC_SECRET=None,
                       AIS_RISK_HMAC_KEY_ID=KEY_ID, AIS_RISK_HMAC_KEY_ID_PREVIOUS=PREVIOUS_KEY_ID, **secret_files)
    stack = e2e.start_stack(pg_url, tmp_path_factory.mktemp("secrets-logs"), **env)
    try:
        for symbol in ("BTCUSDT", "ETHUSDT"):
            for method, request in (
                ("SetLeverage", exchange_pb2.SetLeverageRequest(symbol=symbol, leverage="10")),
                ("SetMarginMode", exchange_pb2.SetMarginModeRequest(symbol=symbol, margin_mode=pb.MARGIN_MODE_ISOLATED)),
            ):
                getattr(stack.exchange, method)(request, timeout=e2e.RPC_TIMEOUT,
                                                metadata=oms_call_metadata(KEYRING, method, request))
        yield stack
    finally:
        stack.stop()


def submit(stack, approved, token=None):
    token = approved.token if token is None else token
    return stack.oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=approved.order, risk_token=token),
                                 timeout=e2e.RPC_TIMEOUT)


def errors_of(*calls) -> list[str]:
    """Make each call; return what every failing one told the client (details and trailers)."""
    told = []
    for call in calls:
        try:
            call()
        except grpc.RpcError as error:
            told.append(f"{error.code().name} {error.details()} {error.trailing_metadata()}")
    return told


def forged_jwt() -> str:
    """The suite's client JWT with another subject in its payload and its own signature."""
    header, payload, signature = e2e.identity_secrets()["client bearer JWT"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "mallory"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


def sign_with(order: pb.Order, secret: str, key_id: str, issued_at: int | None = None) -> str:
    return e2e.sign(order, issued_at or int(time.time()), key_id=key_id, secret=secret)


# -- secrets from files, nowhere else ------------------------------------------------------------
def test_secrets_from_files_run_a_live_stack_and_appear_nowhere(live, sim, pg_url):
    told: list[str] = []
    filled = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")
    assert submit(live, filled).order.status == pb.ORDER_STATUS_FILLED  # the venue checked our signatures
    previous = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")
    assert submit(live, previous, sign_with(previous.order, PREVIOUS, PREVIOUS_KEY_ID)).order.status == \
        pb.ORDER_STATUS_FILLED  # a token of the previous key is still accepted
    resting = e2e.approve(live, symbol="ETHUSDT", quantity="0.1", order_type=pb.ORDER_TYPE_LIMIT, price="3000")
    submit(live, resting)
    live.oms.CancelOrder(oms_pb2.CancelOrderRequest(order_id=resting.order.order_id), timeout=e2e.RPC_TIMEOUT)

    refused = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")
    told += errors_of(
        lambda: submit(live, refused, e2e.tamper_signature(refused.token)),
        lambda: submit(live, refused, sign_with(refused.order, CURRENT, KEY_ID, int(time.time()) - 900)),
        lambda: submit(live, refused, sign_with(refused.order, "x" * 40, "unknown-key")),
        lambda: submit(live, refused, ""),
        lambda: live.oms.SubmitOrder(refused.request(quantity="0.02"), timeout=e2e.RPC_TIMEOUT),
        lambda: live.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(
            order=e2e.intent(symbol="DOGEUSDT", account=e2e.live_account(live))), timeout=e2e.RPC_TIMEOUT),
        lambda: live.risk.ValidateOrder(risk_pb2.ValidateOrderRequest(
            order=e2e.intent(quantity="-1", account=e2e.live_account(live))), timeout=e2e.RPC_TIMEOUT),
        lambda: live.oms.GetOrder(oms_pb2.GetOrderRequest(order_id=str(uuid.uuid4())), timeout=e2e.RPC_TIMEOUT),
        lambda: live.exchange.ExecuteOrder(exchange_pb2.ExecuteOrderRequest(order=refused.order,
                                                                            risk_token=refused.token),
                                           timeout=e2e.RPC_TIMEOUT),
        lambda: live.exchange.CancelAllOrders(exchange_pb2.CancelAllOrdersRequest(symbol="BTCUSDT"),
                                              timeout=e2e.RPC_TIMEOUT,
                                              metadata=(("tessera-oms-credential", refused.token),)),
    )
    for fault in ({"kind": "error_5xx", "status": 503}, {"kind": "timeout", "delay": 2}):
        sim.fault(method="POST", path="/fapi/v1/order", **fault)
        in_doubt = e2e.approve(live, symbol="BTCUSDT", quantity="0.01")
        assert submit(live, in_doubt).order.status == pb.ORDER_STATUS_SUBMITTED
    assert len(told) == 9, "\n".join(m.split(" (")[0] for m in told)  # all but the risk rejection fail
    # The client's JWT with its payload changed (another subject), its signature kept: refused.
    forged = grpc.intercept_channel(grpc.insecure_channel(live.addresses["oms"]), BearerToken(forged_jwt()))
    try:
        told += errors_of(lambda: oms_pb2_grpc.OrderManagementServiceStub(forged).GetOrder(
            oms_pb2.GetOrderRequest(order_id=filled.order.order_id), timeout=e2e.RPC_TIMEOUT))
    finally:
        forged.close()
    assert len(told) == 10 and "UNAUTHENTICATED" in told[-1], told[-1]
    live.stop()  # flush and close every log

    # The processes' output and every file they wrote, what the clients were told, the whole
    # database (every column of every row).
    assert len([p for p in live.log_dir.rglob("*") if p.is_file()]) >= 6
    tables, dump = e2e.assert_secrets_nowhere(NEEDLES, log_dir=live.log_dir, database_url=pg_url, told=told)
    assert "orders_ts" in tables and filled.order.order_id in dump
    assert filled.token not in dump and filled.token.rsplit(".", 1)[1] not in dump  # tokens: only their nonces


# -- weak or missing secrets stop the services -------------------------------------------------
def run_service(service: str, tmp_path: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    full = e2e.base_env(TESSERA_DATABASE_URL=e2e.sqlite_url(tmp_path / "t.db"), **{f"TESSERA_{service.upper()}_PORT": "0"},
                        **env)
    try:
        return subprocess.run([sys.executable, "-m", f"services.{service}"], env=full, cwd=str(e2e.PROJECT_ROOT),
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"{service} kept running: {timeout.stdout!r}")


WEAK = "weak-but-secret-9"  # 17 bytes


# Each case on one service, the three services in turn (they share config.load_keyring).
@pytest.mark.parametrize(
    ("service", "content", "variable", "extra"),
    [
        pytest.param("risk", WEAK, "AIS_RISK_HMAC_SECRET_FILE", {}, id="risk-too-short-file"),
        pytest.param("oms", "", "AIS_RISK_HMAC_SECRET_FILE", {}, id="oms-empty-file"),
        pytest.param("exchange", None, "AIS_RISK_HMAC_SECRET_FILE", {}, id="exchange-missing-file"),
        pytest.param("risk", CURRENT, "AIS_RISK_HMAC_SECRET", {"AIS_RISK_HMAC_SECRET": CURRENT}, id="risk-env-and-file"),
        pytest.param("oms", WEAK, "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE", {"AIS_RISK_HMAC_SECRET": CURRENT},
                     id="oms-weak-previous-file"),
        pytest.param("exchange", WEAK, "AIS_RISK_HMAC_SECRET_FILE", {}, id="exchange-too-short-file"),
    ],
)
def test_a_weak_or_missing_secret_file_stops_the_service_naming_the_variable(service, content, variable, extra,
                                                                               tmp_path):
    path = tmp_path / "secret"
    if content is not None:
        write(path, content)
    name = "AIS_RISK_HMAC_SECRET_PREVIOUS_FILE" if variable.endswith("PREVIOUS_FILE") else "AIS_RISK_HMAC_SECRET_FILE"
    env: dict[str, str | None] = {"AIS_RISK_HMAC_SECRET": None, "AIS_RISK_HMAC_KEY_ID": None, name: str(path), **extra}

    result = run_service(service, tmp_path, **env)

    assert result.returncode == 2, e2e.show(result)
    assert variable in result.stderr, e2e.show(result)
    assert "Traceback" not in result.stderr and "listening on" not in result.stdout, e2e.show(result)
    if content:
        assert content not in result.stderr + result.stdout, e2e.show(result)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"ASTER_API_SECRET_FILE": None}, "ASTER_API_SECRET_FILE: cannot read", id="missing-file"),
        pytest.param({"ASTER_API_SECRET_FILE": ""}, "live mode needs ASTER_API_SECRET", id="empty-file"),
        pytest.param({"ASTER_API_KEY_FILE": " padded-key "}, "ASTER_API_KEY_FILE has leading or trailing whitespace",
                     id="padded-key"),
        pytest.param({"ASTER_API_SECRET_FILE": API_SECRET, "ASTER_API_SECRET": API_SECRET},
                     "set either ASTER_API_SECRET or ASTER_API_SECRET_FILE", id="env-and-file"),
    ],
)
def test_live_exchange_with_an_unusable_venue_secret_file_refuses_to_start(files, expected, tmp_path):
    env: dict[str, str | None] = {"TESSERA_EXECUTION_MODE": "live", "AIS_ENABLE_LIVE_TRADING": "true",
                                  "ASTER_ACCOUNT_ID": "a1", "ASTER_API_KEY": API_KEY}
    for name, content in files.items():
        if name.endswith("_FILE"):
            path = tmp_path / name.lower()
            if content is not None:
                write(path, content)
            env[name] = str(path)
            if name == "ASTER_API_KEY_FILE":
                env["ASTER_API_KEY"] = None
        else:
            env[name] = content

    result = run_service("exchange", tmp_path, **env)

    assert result.returncode == 2, e2e.show(result)
    assert expected in result.stderr, e2e.show(result)
    assert API_SECRET not in result.stderr + result.stdout and "Traceback" not in result.stderr


# -- only the OMS reaches the Exchange --------------------------------------------------------------
def exchange_calls(approved: e2e.Approved) -> dict[str, tuple[str, Any, str]]:
    """Each Exchange RPC that needs the OMS's credential: (method, request, its risk token)."""
    order = approved.order
    return {
        "ExecuteOrder": ("ExecuteOrder", exchange_pb2.ExecuteOrderRequest(order=order, risk_token=approved.token),
                         approved.token),
        "ExecuteOrders": ("ExecuteOrders", exchange_pb2.ExecuteOrdersRequest(
            orders=[exchange_pb2.ExecuteOrderRequest(order=order, risk_token=approved.token)]),
            approved.token),
        "CancelOrder": ("CancelOrder", exchange_pb2.CancelOrderRequest(
            order_id=order.order_id, client_order_id=order.client_order_id, symbol=order.symbol,
            market_type=order.market_type), ""),
        "CancelAllOrders": ("CancelAllOrders", exchange_pb2.CancelAllOrdersRequest(symbol=order.symbol), ""),
        "EmergencyCancelAll": ("EmergencyCancelAll", exchange_pb2.EmergencyCancelAllRequest(), ""),
        "SetLeverage": ("SetLeverage", exchange_pb2.SetLeverageRequest(symbol=order.symbol, leverage="3"), ""),
        "SetMarginMode": ("SetMarginMode", exchange_pb2.SetMarginModeRequest(
            symbol=order.symbol, margin_mode=pb.MARGIN_MODE_CROSSED), ""),
        "QueryOrder": ("QueryOrder", exchange_pb2.QueryOrderRequest(
            order_id=order.order_id, client_order_id=order.client_order_id, symbol=order.symbol,
            market_type=order.market_type, account=order.account, venue=order.venue), ""),
    }


NOT_OMS = (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS")
MISMATCH = (grpc.StatusCode.PERMISSION_DENIED, "SERVICE_CREDENTIAL_MISMATCH")


def forged_credentials(method: str, request: Any, token: str
                       ) -> dict[str, tuple[tuple[tuple[str, str], ...], tuple[grpc.StatusCode, str]]]:
    """(metadata, the refusal expected) by label: none is the OMS's credential for this call."""
    other = "CancelAllOrders" if method != "CancelAllOrders" else "CancelOrder"
    stranger = core_ext.KeyRing(KEY_ID, b"not-the-oms-key-0123456789abcdef-xyz")
    another_request = exchange_pb2.CancelAllOrdersRequest(symbol="ETHUSDT")
    return {
        "none": ((), NOT_OMS),
        # A risk token is signed with the same key ring, over an order: genuine, for no call.
        "a risk token": ((("tessera-oms-credential", token or "v1.x.1.y.z.w"),), MISMATCH if token else NOT_OMS),
        "another method's": (oms_call_metadata(KEYRING, other, request), MISMATCH),
        "another request's": (oms_call_metadata(KEYRING, method, another_request), MISMATCH),
        "another key's": (oms_call_metadata(stranger, method, request), NOT_OMS),
        "an expired one": (oms_call_metadata(KEYRING, method, request, now=time.time() - 300),
                           (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_EXPIRED")),
    }


def test_every_money_moving_exchange_rpc_refuses_callers_other_than_the_oms(live_for_auth, sim):
    stack = live_for_auth
    approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
    placed_before = dict(sim.control("GET", "/_sim/placements"))
    requests_before = len(sim.requests())

    # As the services' own identity (the service role, which the Exchange admits) but without
    # the OMS's credential: an operator's identity alone admits venue settings (docs/access.md).
    channel = e2e.channel(stack.addresses["exchange"], token_file=e2e.SERVICE_TOKEN_FILE)
    exchange = exchange_pb2_grpc.ExchangeServiceStub(channel)
    refused = 0
    try:
        for name, (method, request, token) in exchange_calls(approved).items():
            for label, (metadata, (code, reason)) in forged_credentials(method, request, token).items():
                error = e2e.expect_error(
                    lambda: getattr(exchange, method)(request, timeout=e2e.RPC_TIMEOUT, metadata=metadata),
                    code, reason)
                assert method in error.details(), (name, label, error.details())
                refused += 1
        stream = exchange.StreamExecutionReports(exchange_pb2.StreamExecutionReportsRequest(), timeout=5)
        e2e.expect_error(lambda: next(iter(stream)), grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS")
    finally:
        channel.close()

    assert refused == 8 * 6
    # Nothing reached the venue: no placement, no cancel, no setting; not even a query.
    assert sim.control("GET", "/_sim/placements") == placed_before
    assert [r for r in sim.requests()[requests_before:] if r["method"] != "GET" or "/order" in r["path"]] == []


def test_a_service_credential_is_good_for_its_one_request_once(live_for_auth, sim):
    stack = live_for_auth
    approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
    order = approved.order
    query = exchange_pb2.QueryOrderRequest(order_id=order.order_id, client_order_id=order.client_order_id,
                                           symbol=order.symbol, market_type=order.market_type,
                                           account=order.account, venue=order.venue)
    credential = oms_call_metadata(KEYRING, "QueryOrder", query)
    assert stack.exchange.QueryOrder(query, timeout=e2e.RPC_TIMEOUT, metadata=credential).found is False

    # Captured and used again within its lifetime: refused.
    e2e.expect_error(lambda: stack.exchange.QueryOrder(query, timeout=e2e.RPC_TIMEOUT, metadata=credential),
                     grpc.StatusCode.PERMISSION_DENIED, "SERVICE_CREDENTIAL_REPLAYED")
    # A credential for one cancel, presented with another order's cancel: refused, nothing reaches the venue.
    requests_before = len(sim.requests())
    asked = exchange_pb2.CancelOrderRequest(order_id=order.order_id, client_order_id=order.client_order_id,
                                            symbol=order.symbol, market_type=order.market_type)
    other = exchange_pb2.CancelOrderRequest(order_id="another-order", client_order_id="another-cid",
                                            symbol=order.symbol, market_type=order.market_type)
    e2e.expect_error(lambda: stack.exchange.CancelOrder(other, timeout=e2e.RPC_TIMEOUT,
                                                        metadata=oms_call_metadata(KEYRING, "CancelOrder", asked)),
                     grpc.StatusCode.PERMISSION_DENIED, "SERVICE_CREDENTIAL_MISMATCH")
    assert sim.requests()[requests_before:] == []


def test_live_mode_cannot_be_reached_by_calling_the_exchange_directly(live_for_auth, sim):
    stack = live_for_auth
    store = e2e.StoreView(stack.env["TESSERA_DATABASE_URL"])
    try:
        approved = e2e.approve(stack, symbol="BTCUSDT", quantity="0.01")
        request = exchange_pb2.ExecuteOrderRequest(order=approved.order, risk_token=approved.token)

        e2e.expect_error(lambda: stack.exchange.ExecuteOrder(request, timeout=e2e.RPC_TIMEOUT),
                         grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS")
        e2e.expect_error(lambda: stack.exchange.ExecuteOrders(exchange_pb2.ExecuteOrdersRequest(orders=[request]),
                                                              timeout=e2e.RPC_TIMEOUT),
                         grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_OMS")

        assert approved.order.client_order_id not in sim.control("GET", "/_sim/placements")
        assert sim.orders(approved.order.client_order_id) == []
        store.assert_untouched(approved.order.order_id)
        # The token was good all along: through the OMS the same order executes, once.
        assert submit(stack, approved).order.status == pb.ORDER_STATUS_FILLED
        assert sim.control("GET", "/_sim/placements")[approved.order.client_order_id] == 1
    finally:
        store.close()


@pytest.fixture(scope="module")
def live_for_auth(sim, secret_files, tmp_path_factory):
    """A live stack (SQLite) that the secrets scan above does not stop."""
    env = vh.venue_env(sim, "live", ASTER_API_KEY=None, ASTER_API_SECRET=None, AIS_RISK_HMAC_SECRET=None,
                       AIS_RISK_HMAC_KEY_ID=KEY_ID, AIS_RISK_HMAC_KEY_ID_PREVIOUS=PREVIOUS_KEY_ID, **secret_files)
    url = e2e.sqlite_url(tmp_path_factory.mktemp("auth-db") / "tessera.db")
    stack = e2e.start_stack(url, tmp_path_factory.mktemp("auth-logs"), **env)
    try:
        for method, request in (
            ("SetLeverage", exchange_pb2.SetLeverageRequest(symbol="BTCUSDT", leverage="10")),
            ("SetMarginMode", exchange_pb2.SetMarginModeRequest(symbol="BTCUSDT", margin_mode=pb.MARGIN_MODE_ISOLATED)),
        ):
            getattr(stack.exchange, method)(request, timeout=e2e.RPC_TIMEOUT,
                                            metadata=oms_call_metadata(KEYRING, method, request))
        yield stack
    finally:
        stack.stop()
