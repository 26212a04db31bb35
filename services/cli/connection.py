"""How the ``tessera`` client commands reach a deployment: TLS and the caller's identity.

- ``--token-file FILE`` (env ``TESSERA_TOKEN_FILE``): a bearer token (a JWT) sent as
  ``authorization: Bearer …`` with every call; ``--token`` (env ``TESSERA_TOKEN``) gives
  the token itself. Without either, ``var/auth/local.token`` under the current directory
  is used when it exists (the token ``tessera up`` writes for its local stack), unless a
  client certificate is presented (it then names the caller).
- ``--tls-ca FILE`` (env ``TESSERA_CLIENT_TLS_CA_FILE``) speaks TLS, trusting that CA;
  ``--tls-cert`` / ``--tls-key`` (``TESSERA_CLIENT_TLS_CERT_FILE`` / ``…_KEY_FILE``)
  present a client certificate (mutual TLS: the certificate is then the identity, unless
  a token is given too); ``--tls-server-name`` checks the server's certificate against
  that name when the address differs.
"""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path
from typing import Any, Mapping

import grpc

LOCAL_TOKEN = Path("var") / "auth" / "local.token"


def add_identity_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    group = parser.add_argument_group("identity and TLS")
    group.add_argument("--token-file", default=environ.get("TESSERA_TOKEN_FILE", ""), metavar="FILE",
                       help="bearer token file (env TESSERA_TOKEN_FILE; default var/auth/local.token if present "
                            "and no --tls-cert is given)")
    group.add_argument("--token", default=environ.get("TESSERA_TOKEN", ""), metavar="JWT",
                       help="bearer token itself (env TESSERA_TOKEN)")
    group.add_argument("--tls-ca", default=environ.get("TESSERA_CLIENT_TLS_CA_FILE", ""), metavar="FILE",
                       help="speak TLS, trusting this CA (env TESSERA_CLIENT_TLS_CA_FILE)")
    group.add_argument("--tls-cert", default=environ.get("TESSERA_CLIENT_TLS_CERT_FILE", ""), metavar="FILE",
                       help="client certificate for mutual TLS (env TESSERA_CLIENT_TLS_CERT_FILE)")
    group.add_argument("--tls-key", default=environ.get("TESSERA_CLIENT_TLS_KEY_FILE", ""), metavar="FILE",
                       help="its private key (env TESSERA_CLIENT_TLS_KEY_FILE)")
    group.add_argument("--tls-server-name", default=environ.get("TESSERA_CLIENT_TLS_SERVER_NAME", ""),
                       metavar="NAME", help="the name the server's certificate must carry (env "
                       "TESSERA_CLIENT_TLS_SERVER_NAME)")


class ConnectionError_(Exception):
    """A file the identity or TLS options name cannot be read."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConnectionError_(f"cannot read the {what} {path} ({error.strerror or type(error).__name__})") from None


def token_of(args: Any) -> str:
    """The bearer token the options give ("" for none). The local stack's token is the
    default only without a client certificate: a token sent along would name the caller
    instead of the certificate (and go to wherever the command connects)."""
    if getattr(args, "token", ""):
        return args.token.strip()
    local = LOCAL_TOKEN.is_file() and not getattr(args, "tls_cert", "")
    path = getattr(args, "token_file", "") or (str(LOCAL_TOKEN) if local else "")
    return _read(path, "token file").decode("utf-8", "replace").strip() if path else ""


_Details = collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                               "compression"))


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self.entry = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self.entry]
        return _Details(details.method, details.timeout, metadata, details.credentials,
                        details.wait_for_ready, getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)


def channel_for(address: str, *, token: str = "", ca: bytes | None = None, cert: bytes | None = None,
                key: bytes | None = None, server_name: str = "") -> grpc.Channel:
    """A blocking channel to ``address``: TLS when ``ca`` is given, the token on every call."""
    if ca is None:
        channel = grpc.insecure_channel(address)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert), options=options)
    return grpc.intercept_channel(channel, BearerToken(token)) if token else channel


def connect(args: Any, address: str) -> grpc.Channel:
    """The channel the command's options describe (see the module docstring)."""
    ca = _read(args.tls_ca, "TLS CA file") if getattr(args, "tls_ca", "") else None
    cert = _read(args.tls_cert, "TLS certificate") if getattr(args, "tls_cert", "") else None
    key = _read(args.tls_key, "TLS key") if getattr(args, "tls_key", "") else None
    if (cert is None) != (key is None):
        raise ConnectionError_("--tls-cert and --tls-key go together")
    if cert is not None and ca is None:
        raise ConnectionError_("--tls-cert needs --tls-ca (the CA the server's certificate chains to)")
    return channel_for(address, token=token_of(args), ca=ca, cert=cert, key=key,
                       server_name=getattr(args, "tls_server_name", ""))


__all__ = ["BearerToken", "ConnectionError_", "add_identity_arguments", "channel_for", "connect", "token_of"]
