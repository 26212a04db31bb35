"""TLS settings: what each variable does, a clear error naming the variable for every
unusable file, and mutual TLS over a real in-process server with certificates this
test makes (a CA, a server and a client certificate, and a stranger from another CA)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tls_certs import CertificateAuthority

from services.common import tls
from services.common.config import ConfigError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory / "ca")
    other = CertificateAuthority(directory / "other", name="another-ca")
    return {"ca": ca, "server": ca.issue("server"), "client": ca.issue("client"), "stranger": other.issue("stranger")}


def server_env(pki: dict, *, mutual: bool = True) -> dict[str, str]:
    env = {"TESSERA_TLS_CERT_FILE": str(pki["server"].cert), "TESSERA_TLS_KEY_FILE": str(pki["server"].key)}
    if mutual:
        env["TESSERA_TLS_CA_FILE"] = str(pki["ca"].cert)
    return env


def test_nothing_set_is_plaintext() -> None:
    assert tls.server_credentials({}) is None
    assert tls.channel_credentials({}) == (None, [])


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TESSERA_TLS_CERT_FILE": "/nonexistent/server.crt", "TESSERA_TLS_KEY_FILE": "/nonexistent/k"},
         "TESSERA_TLS_CERT_FILE"),
        ({"TESSERA_TLS_CERT_FILE": "{cert}"}, "TESSERA_TLS_KEY_FILE"),
        ({"TESSERA_TLS_KEY_FILE": "{key}"}, "TESSERA_TLS_CERT_FILE"),
        ({"TESSERA_TLS_CERT_FILE": "{cert}", "TESSERA_TLS_KEY_FILE": "{cert}"}, "TESSERA_TLS_KEY_FILE"),
        ({"TESSERA_TLS_CERT_FILE": "{cert}", "TESSERA_TLS_KEY_FILE": "{key}", "TESSERA_TLS_CA_FILE": "{junk}"},
         "TESSERA_TLS_CA_FILE"),
        ({"TESSERA_TLS_CA_FILE": "{ca}"}, "TESSERA_TLS_CERT_FILE"),
    ],
)
def test_an_unusable_server_setting_names_its_variable(pki: dict, tmp_path: Path, env: dict, named: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    paths = {"cert": pki["server"].cert, "key": pki["server"].key, "ca": pki["ca"].cert, "junk": junk}
    env = {k: v.format(**paths) for k, v in env.items()}
    with pytest.raises(ConfigError, match=named):
        tls.server_credentials(env)


def test_the_client_side_falls_back_to_the_shared_variables_and_names_the_one_at_fault(pki: dict) -> None:
    shared = server_env(pki)
    credentials, options = tls.channel_credentials(shared)
    assert credentials is not None and options == []
    _, options = tls.channel_credentials({**shared, "TESSERA_EXCHANGE_TLS_SERVER_NAME": "exchange"})
    assert options == [("grpc.ssl_target_name_override", "exchange")]
    with pytest.raises(ConfigError, match="TESSERA_EXCHANGE_TLS_CA_FILE"):
        tls.channel_credentials({**shared, "TESSERA_EXCHANGE_TLS_CA_FILE": "/nonexistent/ca.crt"})


def call_health(pki: dict, server: dict[str, str], client: dict[str, str] | None) -> grpc.StatusCode:
    """A health check against a server configured by ``server``; the client uses TLS
    configured by ``client`` (None: plaintext)."""

    async def go() -> grpc.StatusCode:
        srv = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), srv)
        port = srv.add_secure_port("127.0.0.1:0", tls.server_credentials(server))
        await srv.start()
        try:
            if client is None:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            else:
                channel = tls.client_channel(f"127.0.0.1:{port}", client)
            async with channel:
                try:
                    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
                    return grpc.StatusCode.OK
                except grpc.aio.AioRpcError as error:
                    return error.code()
        finally:
            await srv.stop(0)

    return asyncio.run(go())


def client_env(pki: dict, who: str | None) -> dict[str, str]:
    env = {"TESSERA_EXCHANGE_TLS_CA_FILE": str(pki["ca"].cert)}
    if who is not None:
        env["TESSERA_EXCHANGE_TLS_CERT_FILE"] = str(pki[who].cert)
        env["TESSERA_EXCHANGE_TLS_KEY_FILE"] = str(pki[who].key)
    return env


def test_mutual_tls_admits_a_client_certificate_from_the_ca(pki: dict) -> None:
    assert call_health(pki, server_env(pki), client_env(pki, "client")) is grpc.StatusCode.OK


@pytest.mark.parametrize("who", [None, "stranger"], ids=["no-client-certificate", "certificate-from-another-ca"])
def test_mutual_tls_refuses_other_clients(pki: dict, who: str | None) -> None:
    assert call_health(pki, server_env(pki), client_env(pki, who)) is grpc.StatusCode.UNAVAILABLE


def test_a_tls_port_refuses_plaintext(pki: dict) -> None:
    assert call_health(pki, server_env(pki), None) is grpc.StatusCode.UNAVAILABLE


def test_without_a_ca_the_server_takes_any_tls_client(pki: dict) -> None:
    assert call_health(pki, server_env(pki, mutual=False), client_env(pki, None)) is grpc.StatusCode.OK
