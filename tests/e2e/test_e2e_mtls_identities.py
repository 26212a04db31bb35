"""The whole flow with mutual-TLS identities and no bearer tokens at all: every caller is
named by its client certificate (its URI SAN, else its DNS name), the OMS by its own
certificate towards the Exchange, and the ``tessera`` command and the Node.js client
speak TLS with a certificate of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

import tessera_e2e as e2e
from services.cli.stack import PROJECT_ROOT, Stack
from services.common import access
from services.common.identities import write_entitlements
from tessera.common.v1 import types_pb2 as pb
from tessera.oms.v1 import oms_pb2, oms_pb2_grpc
from tessera.risk.v1 import risk_pb2, risk_pb2_grpc
from tls_certs import CertificateAuthority

#: The suite's token settings, removed: identities come from certificates alone here.
NO_TOKENS = {name: None for name in ("TESSERA_JWT_PUBLIC_KEY_FILES", "TESSERA_JWT_ISSUER", "TESSERA_JWT_AUDIENCE",
                                     "TESSERA_SERVICE_TOKEN_FILE", "TESSERA_TOKEN_FILE")}


class Mtls:
    def __init__(self, stack: Stack, ca: CertificateAuthority, certs: dict[str, Any], account: str) -> None:
        self.stack, self.ca, self.certs, self.account = stack, ca, certs, account

    def channel(self, service: str, who: str) -> grpc.Channel:
        cert, key = self.certs[who].pem()
        credentials = grpc.ssl_channel_credentials(self.ca.cert.read_bytes(), key, cert)
        return grpc.secure_channel(self.stack.addresses[service], credentials)


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mtls]:
    directory = tmp_path_factory.mktemp("mtls-identities")
    ca = CertificateAuthority(directory / "ca")
    certs = {
        "service": ca.issue("service", uris=("spiffe://tessera/service",)),
        "trader": ca.issue("trader", hosts=("trader.example",), uris=("spiffe://tessera/trader-a",)),
        "operator": ca.issue("operator", hosts=(), uris=("spiffe://tessera/operator-1",)),
        "auditor": ca.issue("auditor", hosts=("auditor.example",)),  # no URI: its DNS name names it
        "nobody": ca.issue("nobody", uris=("spiffe://tessera/nobody",)),
    }
    account = e2e.new_account()
    entitlements = write_entitlements(directory / "entitlements.yaml", [
        ("spiffe://tessera/service", [access.SERVICE], []),
        ("spiffe://tessera/trader-a", [access.TRADER], [account]),
        ("spiffe://tessera/operator-1", [access.OPERATOR], []),
        ("auditor.example", [access.AUDITOR], []),
    ])
    env = e2e.base_env(**NO_TOKENS, TESSERA_ENTITLEMENTS_FILE=str(entitlements),
                       TESSERA_TLS_CERT_FILE=str(certs["service"].cert), TESSERA_TLS_KEY_FILE=str(certs["service"].key),
                       TESSERA_TLS_CA_FILE=str(ca.cert))
    stack = Stack(database_url=e2e.sqlite_url(directory / "mtls.db"), env=env, log_dir=directory / "logs").start()
    try:
        yield Mtls(stack, ca, certs, account)
    finally:
        stack.stop()


def test_a_trader_named_by_its_certificate_trades_its_account_end_to_end(mtls: Mtls) -> None:
    with mtls.channel("risk", "trader") as risk_channel, mtls.channel("oms", "trader") as oms_channel:
        risk, oms = risk_pb2_grpc.RiskServiceStub(risk_channel), oms_pb2_grpc.OrderManagementServiceStub(oms_channel)
        decision = risk.ValidateOrder(risk_pb2.ValidateOrderRequest(order=e2e.intent(account=mtls.account)),
                                      timeout=e2e.RPC_TIMEOUT)
        assert decision.order.status == pb.ORDER_STATUS_APPROVED
        # The OMS reaches the Exchange as spiffe://tessera/service (its certificate; no token anywhere).
        answer = oms.SubmitOrder(oms_pb2.SubmitOrderRequest(order=decision.order, risk_token=decision.risk_token),
                                 timeout=e2e.RPC_TIMEOUT)
        assert answer.order.status == pb.ORDER_STATUS_FILLED
        read = oms.GetOrder(oms_pb2.GetOrderRequest(order_id=answer.order.order_id), timeout=e2e.RPC_TIMEOUT)
        assert read.order.status == pb.ORDER_STATUS_FILLED
        refused = e2e.expect_error(lambda: risk.ValidateOrder(
            risk_pb2.ValidateOrderRequest(order=e2e.intent()), timeout=e2e.RPC_TIMEOUT),
            grpc.StatusCode.PERMISSION_DENIED, "NOT_ENTITLED")
        assert e2e.error_details(refused)["ErrorInfo"].metadata["principal"] == "spiffe://tessera/trader-a"
    line = e2e.wait_for_log(mtls.stack.processes["oms"].stderr, "SubmitOrder OK")
    assert "principal=spiffe://tessera/trader-a via=mtls" in line, line


def test_a_dns_name_names_a_caller_without_a_uri(mtls: Mtls) -> None:
    with mtls.channel("oms", "auditor") as channel:
        oms = oms_pb2_grpc.OrderManagementServiceStub(channel)
        oms.ListOrders(oms_pb2.ListOrdersRequest(page_size=5), timeout=e2e.RPC_TIMEOUT)  # an auditor reads
        e2e.expect_error(lambda: oms.CancelAllOrders(oms_pb2.CancelAllOrdersRequest(symbol="BTCUSDT"),
                                                     timeout=e2e.RPC_TIMEOUT),
                         grpc.StatusCode.PERMISSION_DENIED, "NOT_ENTITLED")


def test_a_certificate_of_an_unknown_principal_is_not_entitled(mtls: Mtls) -> None:
    with mtls.channel("risk", "nobody") as channel:
        refused = e2e.expect_error(lambda: risk_pb2_grpc.RiskServiceStub(channel).GetTradingState(
            risk_pb2.GetTradingStateRequest(), timeout=e2e.RPC_TIMEOUT), grpc.StatusCode.PERMISSION_DENIED,
            "NOT_ENTITLED")
        assert e2e.error_details(refused)["ErrorInfo"].metadata["principal"] == "spiffe://tessera/nobody"


def _tls_options(mtls: Mtls, who: str) -> list[str]:
    return ["--tls-ca", str(mtls.ca.cert), "--tls-cert", str(mtls.certs[who].cert),
            "--tls-key", str(mtls.certs[who].key)]


def test_the_tessera_command_speaks_mutual_tls_and_an_operator_resets_trading(mtls: Mtls, tmp_path: Path) -> None:
    env = e2e.base_env(**NO_TOKENS)
    addresses = ["--risk", mtls.stack.addresses["risk"], "--oms", mtls.stack.addresses["oms"]]
    result = e2e.run_cli("kill-switch", "reset", "--reason", "mtls test", "--comment", "by certificate",
                         *addresses, *_tls_options(mtls, "operator"), env=env, cwd=tmp_path)
    assert result.returncode == 0, e2e.show(result)
    assert "spiffe://tessera/operator-1" in result.stdout  # recorded as the operator: the principal
    refused = e2e.run_cli("kill-switch", "reset", "--reason", "not mine to do", *addresses,
                          *_tls_options(mtls, "trader"), env=env, cwd=tmp_path)
    assert refused.returncode == 1 and "NOT_ENTITLED" in refused.stderr, e2e.show(refused)
    plaintext = e2e.run_cli("kill-switch", "status", *addresses, env=env, cwd=tmp_path)
    assert plaintext.returncode == 1, e2e.show(plaintext)  # a TLS-only port: no plaintext client gets through


def test_the_node_client_speaks_mutual_tls(mtls: Mtls, tmp_path: Path) -> None:
    node = shutil.which("node")
    client = PROJECT_ROOT / "clients" / "node"
    if node is None or not (client / "node_modules" / "@grpc" / "grpc-js").is_dir():
        message = "Node.js or clients/node/node_modules is missing: run `make setup`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [node, str(client / "order-flow.js"), "--risk", mtls.stack.addresses["risk"], "--oms",
         mtls.stack.addresses["oms"], "--account", mtls.account, "--timeout", "15", *_tls_options(mtls, "trader")],
        cwd=str(tmp_path), env=e2e.base_env(**NO_TOKENS), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, e2e.show(result)
    assert ", 0 failed" in result.stdout, result.stdout
