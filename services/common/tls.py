"""Optional (mutual) TLS for the gRPC servers and the OMS's channel to the Exchange.

Server side, every service (docs/operations.md, "Mutual TLS"):

- ``TESSERA_TLS_CERT_FILE`` and ``TESSERA_TLS_KEY_FILE``: the server's PEM certificate
  (chain) and key; with them the port speaks TLS only.
- ``TESSERA_TLS_CA_FILE``: with it, clients must present a certificate signed by this
  CA (mutual TLS); without it, any client may connect over TLS.

Client side, the OMS's calls to the Exchange: ``TESSERA_EXCHANGE_TLS_CA_FILE`` (the CA
the Exchange's certificate must chain to; it turns TLS on), ``..._CERT_FILE`` and
``..._KEY_FILE`` (the client certificate the OMS presents) and ``..._SERVER_NAME`` (the
name to check the Exchange's certificate against, when the address differs). Each
falls back to the ``TESSERA_TLS_*`` variable of the same suffix, so one certificate per
service, signed by one CA, serves both directions.

A variable naming a file that is missing, unreadable or not PEM stops the service at
start with a message naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import grpc

from services.common.config import ConfigError

SERVER_PREFIX = "TESSERA_TLS_"
EXCHANGE_CLIENT_PREFIXES = ("TESSERA_EXCHANGE_TLS_", SERVER_PREFIX)


def _lookup(environ: Mapping[str, str], prefixes: Sequence[str], suffix: str) -> tuple[str, str]:
    """(variable, value) of the first prefix that sets ``suffix``; ("", "") when none does."""
    for prefix in prefixes:
        value = environ.get(prefix + suffix, "").strip()
        if value:
            return prefix + suffix, value
    return "", ""


def _read_pem(variable: str, path: str, marker: bytes) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise ConfigError(f"{variable}: cannot read {path} ({error.strerror or type(error).__name__})") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise ConfigError(f"{variable}: {path} holds no PEM {marker.decode().strip('- ').lower() or 'data'}")
    return data


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """PEM material read from the files the variables name."""

    cert: bytes | None
    key: bytes | None
    ca: bytes | None
    server_name: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], prefixes: Sequence[str]) -> "TlsFiles":
        cert_var, cert_path = _lookup(environ, prefixes, "CERT_FILE")
        key_var, key_path = _lookup(environ, prefixes, "KEY_FILE")
        ca_var, ca_path = _lookup(environ, prefixes, "CA_FILE")
        _, server_name = _lookup(environ, prefixes, "SERVER_NAME")
        if bool(cert_path) != bool(key_path):
            missing = f"{prefixes[0]}KEY_FILE" if cert_path else f"{prefixes[0]}CERT_FILE"
            present = cert_var or key_var
            raise ConfigError(f"{present} is set but {missing} is not: a certificate needs its key")
        return cls(
            cert=_read_pem(cert_var, cert_path, b"CERTIFICATE-----") if cert_path else None,
            key=_read_pem(key_var, key_path, b"PRIVATE KEY-----") if key_path else None,
            ca=_read_pem(ca_var, ca_path, b"CERTIFICATE-----") if ca_path else None,
            server_name=server_name,
        )


def server_credentials(environ: Mapping[str, str] = os.environ) -> grpc.ServerCredentials | None:
    """TLS credentials for a server, or None for plaintext.

    Raises
    ------
    ConfigError
        A file is missing, unreadable or not PEM, or a certificate has no key (or a CA
        file is given without a server certificate); the message names the variable.
    """
    files = TlsFiles.from_env(environ, (SERVER_PREFIX,))
    if files.cert is None:
        if files.ca is not None:
            raise ConfigError(
                f"{SERVER_PREFIX}CA_FILE is set but {SERVER_PREFIX}CERT_FILE and {SERVER_PREFIX}KEY_FILE are not: "
                "mutual TLS needs the server's own certificate"
            )
        return None
    return grpc.ssl_server_credentials(
        [(files.key, files.cert)], root_certificates=files.ca, require_client_auth=files.ca is not None
    )


def channel_credentials(
    environ: Mapping[str, str] = os.environ, prefixes: Sequence[str] = EXCHANGE_CLIENT_PREFIXES
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    """(credentials, channel options) for a client; (None, []) for plaintext.

    TLS is on when a CA file is configured under one of ``prefixes``.

    Raises
    ------
    ConfigError
        As :func:`server_credentials`.
    """
    files = TlsFiles.from_env(environ, prefixes)
    if files.ca is None:
        return None, []
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca, private_key=files.key, certificate_chain=files.cert
    )
    options = [("grpc.ssl_target_name_override", files.server_name)] if files.server_name else []
    return credentials, options


def client_channel(
    address: str,
    environ: Mapping[str, str] = os.environ,
    prefixes: Sequence[str] = EXCHANGE_CLIENT_PREFIXES,
    *,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    options: Sequence[tuple[str, object]] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to ``address``: TLS when configured (see the module docstring)."""
    credentials, tls_options = channel_credentials(environ, prefixes)
    all_options = [*options, *tls_options]
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=all_options, interceptors=list(interceptors))
    return grpc.aio.secure_channel(address, credentials, options=all_options, interceptors=list(interceptors))


__all__ = ["TlsFiles", "channel_credentials", "client_channel", "server_credentials"]
