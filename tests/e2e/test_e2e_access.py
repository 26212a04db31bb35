"""Who may do what, against real servers: each role x each RPC as docs/access.md says (the
cases come from services/common/access.py, the table the servers enforce), refused
tokens, an unknown principal, the entitlements file reloaded, privileged actions
recorded with the principal, and the whole flow with mutual-TLS identities.

A request that gets past the entitlement check may still fail (an invalid field, a
missing risk token, the OMS's missing call credential at the Exchange): "allowed" means
the answer is anything but NOT_ENTITLED or an identity refusal. Destructive methods are
sent with a request that fails validation after the check (an EmergencyCancelAll without
a reason), so the stack stays as it was.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

import tessera_e2e as e2e
from services.cli.connection import channel_for
from services.cli.stack import Stack
from services.common import access
from services.common.identities import generate_key_pair, mint, write_entitlements
from tessera.common.v1 import types_pb2 as pb
from tessera.exchange.v1 import exchange_pb2
from tessera.oms.v1 import oms_pb2
from tessera.risk.v1 import risk_pb2

ISSUER, AUDIENCE = "tessera-local", "tessera"  # what provision_local configures (the suite's keys)
SIGNING_KEY = e2e.AUTH_DIR / "jwt-signing.pem"
MODULES = {access.RISK: risk_pb2, access.OMS: oms_pb2, access.EXCHANGE: exchange_pb2}
SERVICE_OF = {access.RISK: "risk", access.OMS: "oms", access.EXCHANGE: "exchange"}
ROLE_PRINCIPALS = {access.TRADER: "trader-a", access.OPERATOR: "operator-1", access.AUDITOR: "auditor-1",
                   access.SERVICE: "service-1"}
IDENTITY_REASONS = ("NOT_ENTITLED", "IDENTITY_MISSING", "IDENTITY_INVALID")


class World:
    """The stack, the accounts, an order and an order manager in each, a token per role."""

    def __init__(self, stack: Stack, entitlements: Path, principals: list[tuple[str, Any, Any]]) -> None:
        self.stack = stack
        self.entitlements = entitlements
        self.principals = principals
        self.tokens = {name: mint(SIGNING_KEY, name) for name in [*ROLE_PRINCIPALS.values(), "stranger"]}
        self.account_a = ""
        self.account_b = ""
        self.orders: dict[bool, str] = {}
        self.managers: dict[bool, str] = {}
        self.channels: dict[tuple[str, str], grpc.Channel] = {}

    def channel(self, service: str, token: str) -> grpc.Channel:
        key = (service, token)
        if key not in self.channels:
            self.channels[key] = channel_for(self.stack.addresses[service], token=token)
        return self.channels[key]

    def call(self, rule: access.Rule, request: Any, token: str) -> grpc.RpcError | None:
        """Make the call as the token's principal; the error, or None when it succeeded."""
        module = MODULES[rule.service]
        response = getattr(module, f"{rule.method}Response")
        channel = self.channel(SERVICE_OF[rule.service], token)
        streaming = rule.method.startswith("Stream")
        make = channel.unary_stream if streaming else channel.unary_unary
        stub = make(rule.full_name, request_serializer=type(request).SerializeToString,
                    response_deserializer=response.FromString)
        try:
            if streaming:
                for _ in stub(request, timeout=10):
                    pass
            else:
                stub(request, timeout=e2e.RPC_TIMEOUT)
        except grpc.RpcError as error:
            return error
        return None


def _submitted(stack: Stack, account: str) -> str:
    approved = e2e.approve(stack, account=account)
    answer = stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT)
    assert answer.order.status == pb.ORDER_STATUS_FILLED
    return answer.order.order_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("access")
    account_a, account_b = e2e.new_account(), e2e.new_account()
    principals = [
        ("local", access.ROLES, ["*"]),  # the suite's own token: sets the scene
        ("tessera-service", [access.SERVICE], []),  # the OMS's identity towards the Exchange
        ("trader-a", [access.TRADER], [account_a]),
        ("operator-1", [access.OPERATOR], []),
        ("auditor-1", [access.AUDITOR], []),
        ("service-1", [access.SERVICE], []),
    ]
    entitlements = write_entitlements(directory / "entitlements.yaml", principals)
    stack = e2e.start_stack(e2e.sqlite_url(directory / "access.db"), directory / "logs",
                            TESSERA_ENTITLEMENTS_FILE=str(entitlements))
    try:
        built = World(stack, entitlements, principals)
        built.account_a, built.account_b = account_a, account_b
        built.orders = {True: _submitted(stack, account_a), False: _submitted(stack, account_b)}
        for own, account in ((True, account_a), (False, account_b)):
            unique = f"access-{uuid.uuid4().hex[:12]}"
            stack.oms.CreateOrderManager(oms_pb2.CreateOrderManagerRequest(
                unique_identifier=unique, target_account_uid=account), timeout=e2e.RPC_TIMEOUT)
            built.managers[own] = unique
        yield built
    finally:
        stack.stop()


def _request(rule: access.Rule, world: World, own: bool) -> Any:
    """A request of ``rule``'s method for the trader's own account (``own``) or another's."""
    account = world.account_a if own else world.account_b
    order_id = world.orders[own]
    intent = e2e.intent(account=account)
    name = rule.method
    risk, oms, exchange = risk_pb2, oms_pb2, exchange_pb2
    if rule.service == access.RISK:
        return {
            "ValidateOrder": lambda: risk.ValidateOrderRequest(order=intent),
            "ValidateOrders": lambda: risk.ValidateOrdersRequest(orders=[intent]),
            "ValidateReplacement": lambda: risk.ValidateReplacementRequest(order_id=order_id, quantity="0.02"),
            "GetTradingState": lambda: risk.GetTradingStateRequest(),
            "SetTradingState": lambda: risk.SetTradingStateRequest(reason="unspecified state: refused after the check"),
            "GetLimits": lambda: risk.GetLimitsRequest(),
            "ListPositions": lambda: risk.ListPositionsRequest(account=account),
            "GetPosition": lambda: risk.GetPositionRequest(account=account, market_type=pb.MARKET_TYPE_FUTURES,
                                                           symbol="BTCUSDT"),
        }[name]()
    if rule.service == access.OMS:
        order = pb.Order(order_id=str(uuid.uuid4()), account=account, symbol="BTCUSDT")
        return {
            "SubmitOrder": lambda: oms.SubmitOrderRequest(order=order, risk_token="not-a-token"),
            "SubmitOrders": lambda: oms.SubmitOrdersRequest(
                orders=[oms.SubmitOrderRequest(order=order, risk_token="not-a-token")]),
            "ReplaceOrder": lambda: oms.ReplaceOrderRequest(order=order, risk_token="not-a-token"),
            "CancelOrder": lambda: oms.CancelOrderRequest(order_id=order_id),  # FILLED: nothing to cancel
            "CancelAllOrders": lambda: oms.CancelAllOrdersRequest(symbol="BTCUSDT", account=account),
            "EmergencyCancelAll": lambda: oms.EmergencyCancelAllRequest(),  # no reason: refused after the check
            "GetOrder": lambda: oms.GetOrderRequest(order_id=order_id),
            "ListOrders": lambda: oms.ListOrdersRequest(account=account, page_size=5),
            "ListTrades": lambda: oms.ListTradesRequest(account=account, page_size=5),
            "StreamOrderEvents": lambda: oms.StreamOrderEventsRequest(account=account, history_only=True),
            "CreateOrderManager": lambda: oms.CreateOrderManagerRequest(
                unique_identifier=f"access-{uuid.uuid4().hex[:12]}", target_account_uid=account),
            "GetOrderManager": lambda: oms.GetOrderManagerRequest(unique_identifier=world.managers[own]),
            "SetVenueSetting": lambda: oms.SetVenueSettingRequest(account=account),  # no setting: refused after
            "ListVenueSettings": lambda: oms.ListVenueSettingsRequest(),
        }[name]()
    return {
        "ExecuteOrder": lambda: exchange.ExecuteOrderRequest(),
        "ExecuteOrders": lambda: exchange.ExecuteOrdersRequest(),
        "CancelOrder": lambda: exchange.CancelOrderRequest(order_id=order_id, symbol="BTCUSDT"),
        "CancelAllOrders": lambda: exchange.CancelAllOrdersRequest(),
        "EmergencyCancelAll": lambda: exchange.EmergencyCancelAllRequest(symbols=["not a symbol"]),
        "SetLeverage": lambda: exchange.SetLeverageRequest(symbol="BTCUSDT", leverage="0"),
        "SetMarginMode": lambda: exchange.SetMarginModeRequest(symbol="BTCUSDT", margin_mode=99),
        "GetTicker": lambda: exchange.GetTickerRequest(symbol="BTCUSDT"),
        "StreamExecutionReports": lambda: exchange.StreamExecutionReportsRequest(after_sequence=-1),
        "QueryOrder": lambda: exchange.QueryOrderRequest(order_id=order_id),
        "ListVenuePositions": lambda: exchange.ListVenuePositionsRequest(),
        "SetPositionMode": lambda: exchange.SetPositionModeRequest(account=account),  # paper: refused after
        "ListVenueSettings": lambda: exchange.ListVenueSettingsRequest(),
    }[name]()


def _cases() -> Iterator[Any]:
    for rule in access.RULES:
        for role in access.ROLES:
            for own in ((True, False) if rule.account else (True,)):
                grant = rule.grants.get(role)
                allowed = grant == access.ALL or (grant == access.LISTED and own)
                label = f"{SERVICE_OF[rule.service]}.{rule.method}-{role}" + ("" if own else "-other-account")
                yield pytest.param(rule, role, own, allowed, id=label)


def reason_of(error: grpc.RpcError | None) -> str | None:
    return None if error is None else e2e.error_reason(error)


@pytest.mark.parametrize(("rule", "role", "own", "allowed"), list(_cases()))
def test_each_role_may_call_what_the_access_table_says(world: World, rule: access.Rule, role: str, own: bool,
                                                       allowed: bool) -> None:
    error = world.call(rule, _request(rule, world, own), world.tokens[ROLE_PRINCIPALS[role]])
    if allowed:
        assert reason_of(error) not in IDENTITY_REASONS, (
            f"{role} was refused {rule.method}: {error.code().name if error else ''} {error.details() if error else ''}")
    else:
        assert error is not None, f"{role} was allowed {rule.method}"
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error.details()
        assert reason_of(error) == "NOT_ENTITLED", error.details()


def test_every_method_of_the_contract_is_in_the_access_table() -> None:
    for module, service in ((risk_pb2, "RiskService"), (oms_pb2, "OrderManagementService"),
                            (exchange_pb2, "ExchangeService")):
        descriptor = module.DESCRIPTOR.services_by_name[service]
        missing = {m.name for m in descriptor.methods} - {r.method for r in access.RULES
                                                           if r.service == descriptor.full_name}
        assert not missing, f"{service}: {sorted(missing)} not in services/common/access.py"


# -- identities refused -------------------------------------------------------------------------
GET_STATE = access.BY_METHOD["/tessera.risk.v1.RiskService/GetTradingState"]


def _refused(world: World, token: str) -> grpc.RpcError:
    error = world.call(GET_STATE, risk_pb2.GetTradingStateRequest(), token)
    assert error is not None
    return error


def test_an_unknown_principal_is_not_entitled_and_counted(world: World) -> None:
    def counted() -> float:
        address = world.stack.metrics_addresses["risk"]
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("tessera_not_entitled_total{") and 'method="GetTradingState"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = counted()
    error = _refused(world, world.tokens["stranger"])
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "NOT_ENTITLED"
    assert e2e.error_details(error)["ErrorInfo"].metadata["principal"] == "stranger"
    assert counted() == before + 1


def _problem(error: grpc.RpcError) -> str:
    return e2e.error_details(error)["ErrorInfo"].metadata.get("problem", "")


@pytest.mark.parametrize(("problem", "token"), [
    ("expired", lambda: mint(SIGNING_KEY, "auditor-1", now=time.time() - 7200, lifetime=600)),
    ("audience", lambda: mint(SIGNING_KEY, "auditor-1", audience="someone-else")),
    ("issuer", lambda: mint(SIGNING_KEY, "auditor-1", issuer="someone-else")),
    ("signature", lambda: mint(generate_key_pair(Path(e2e.AUTH_DIR) / f"other-{uuid.uuid4().hex[:6]}")[0],
                               "auditor-1")),
    ("algorithm", lambda: mint(b"a shared secret of more than thirty-two bytes", "auditor-1", algorithm="HS256")),
    ("malformed", lambda: "not.a.jwt"),
])
def test_a_token_that_does_not_verify_is_unauthenticated(world: World, problem: str,
                                                         token: Callable[[], str]) -> None:
    error = _refused(world, token())
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert reason_of(error) == "IDENTITY_INVALID"
    assert _problem(error) == problem, error.details()


def test_a_tampered_token_is_unauthenticated(world: World) -> None:
    head, payload, signature = world.tokens["auditor-1"].split(".")
    claims = json.loads(e2e_b64decode(payload))
    claims["sub"] = "operator-1"
    forged = ".".join([head, e2e_b64encode(json.dumps(claims).encode()), signature])
    error = _refused(world, forged)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED and _problem(error) == "signature"


def e2e_b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def e2e_b64encode(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_no_identity_is_unauthenticated_but_health_and_reflection_stay_open(world: World) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    error = _refused(world, "")
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED and reason_of(error) == "IDENTITY_MISSING"
    with grpc.insecure_channel(world.stack.addresses["risk"]) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for reply in listed for s in reply.list_services_response.service}
        assert "tessera.risk.v1.RiskService" in names


# -- privileged actions and the access log --------------------------------------------------------
def test_a_trading_state_change_is_recorded_with_the_principal_and_the_comment(world: World) -> None:
    rule = access.BY_METHOD["/tessera.risk.v1.RiskService/SetTradingState"]
    request = risk_pb2.SetTradingStateRequest(state=pb.TRADING_STATE_ACTIVE, reason="access test",
                                              operator="claims to be alice")
    assert world.call(rule, request, world.tokens["operator-1"]) is None
    state = world.stack.risk.GetTradingState(risk_pb2.GetTradingStateRequest(), timeout=e2e.RPC_TIMEOUT)
    assert state.operator == "operator-1"  # the authenticated principal, not the free text
    assert state.reason == "access test (comment: claims to be alice)"
    store = e2e.StoreView(world.stack.env["TESSERA_DATABASE_URL"])
    try:
        with store.uow() as uow:
            latest = uow.trading_state.history(limit=1)[0]
    finally:
        store.close()
    assert (latest.operator, latest.reason) == ("operator-1", "access test (comment: claims to be alice)")
    audit = world.stack.processes["risk"].stderr()
    assert "privileged action SetTradingState by operator-1 (token)" in audit


def test_the_access_log_names_the_principal(world: World) -> None:
    world.call(GET_STATE, risk_pb2.GetTradingStateRequest(), world.tokens["auditor-1"])
    rule = access.BY_METHOD["/tessera.risk.v1.RiskService/ValidateOrder"]
    world.call(rule, risk_pb2.ValidateOrderRequest(order=e2e.intent(account=world.account_a)),
               world.tokens["trader-a"])
    line = e2e.wait_for_log(world.stack.processes["risk"].stderr, "ValidateOrder OK", "principal=trader-a via=token")
    assert "/tessera.risk.v1.RiskService/ValidateOrder OK" in line


# -- the entitlements file, changed under a running stack (last: it edits the file) --------------
def test_a_changed_entitlements_file_is_reloaded(world: World) -> None:
    stranger = world.tokens["stranger"]
    assert reason_of(_refused(world, stranger)) == "NOT_ENTITLED"
    original = world.entitlements.read_text()
    try:
        write_entitlements(world.entitlements, [*world.principals, ("stranger", [access.AUDITOR], [])])
        deadline = time.monotonic() + 10
        while world.call(GET_STATE, risk_pb2.GetTradingStateRequest(), stranger) is not None:
            assert time.monotonic() < deadline, "the new entitlements were not picked up"
            time.sleep(0.2)
        # Still an auditor only: the trading state is not its to change.
        rule = access.BY_METHOD["/tessera.risk.v1.RiskService/SetTradingState"]
        assert reason_of(world.call(rule, risk_pb2.SetTradingStateRequest(), stranger)) == "NOT_ENTITLED"
    finally:
        world.entitlements.write_text(original)
    deadline = time.monotonic() + 10
    while reason_of(world.call(GET_STATE, risk_pb2.GetTradingStateRequest(), stranger)) != "NOT_ENTITLED":
        assert time.monotonic() < deadline, "the entitlements were not restored"
        time.sleep(0.2)


# -- without identities, only when asked --------------------------------------------------------
def test_without_identities_only_when_asked_and_then_every_line_says_so(tmp_path: Path) -> None:
    stack = e2e.start_stack(e2e.sqlite_url(tmp_path / "none.db"), tmp_path / "logs", TESSERA_AUTH="none",
                            TESSERA_TOKEN_FILE=None)
    try:
        with grpc.insecure_channel(stack.addresses["risk"]) as channel:  # no token at all
            answer = channel.unary_unary(
                GET_STATE.full_name, request_serializer=risk_pb2.GetTradingStateRequest.SerializeToString,
                response_deserializer=risk_pb2.GetTradingStateResponse.FromString)(
                risk_pb2.GetTradingStateRequest(), timeout=e2e.RPC_TIMEOUT)
            assert answer.state == pb.TRADING_STATE_ACTIVE
        approved = e2e.approve(stack)
        assert stack.oms.SubmitOrder(approved.request(), timeout=e2e.RPC_TIMEOUT).order.status == pb.ORDER_STATUS_FILLED
        for name in ("risk", "oms", "exchange"):  # said at start, by each
            assert "identities OFF (TESSERA_AUTH=none)" in stack.processes[name].stderr(), name
        assert "auth=none" in e2e.wait_for_log(stack.processes["oms"].stderr, "SubmitOrder OK")
        lines = [x for x in stack.processes["risk"].stderr().splitlines() if '"tessera.rpc"' in x]
        assert lines and all("auth=none" in x for x in lines), lines[-3:]
    finally:
        stack.stop()
