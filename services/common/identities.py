"""Signing keys and bearer tokens for identities, and the local stack's set of them.

An issuer (an identity provider, or ``tessera token mint`` for a small deployment)
signs tokens with a private key; the services verify them with the public key alone
(:mod:`services.common.auth`). :func:`provision_local` writes what a local stack
(``tessera up``, the tests' stacks) needs into one directory:

- ``jwt-signing.pem`` / ``jwt-public.pem``: an Ed25519 key pair (EdDSA tokens);
- ``entitlements.yaml``: the principal ``local`` with every role and every account,
  and ``tessera-service``, the services' own identity (role ``service``);
- ``local.token`` and ``service.token``: their tokens (the private key file and the
  tokens are readable by the owner only).

It returns the environment that points the services and the clients at them.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Iterable, Mapping

from services.common import access, auth

LOCAL_ISSUER = "tessera-local"
LOCAL_AUDIENCE = "tessera"
LOCAL_PRINCIPAL = "local"
SERVICE_PRINCIPAL = "tessera-service"
#: ``tessera``'s own client: a token in this file (or TESSERA_TOKEN_FILE).
CLIENT_TOKEN_VARIABLE = "TESSERA_TOKEN_FILE"
LOCAL_TOKEN_LIFETIME = 30 * 24 * 3600


def _write_private(path: Path, data: bytes) -> None:
    """``data`` in ``path``, readable by its owner only from the start (never a moment
    with the default permissions)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # a file that was there keeps its mode through O_CREAT
        file.write(data)


def generate_key_pair(directory: Path, name: str = "jwt", *, replace: bool = True) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files: (``<name>-signing.pem``, ``<name>-public.pem``).

    Raises
    ------
    FileExistsError
        ``replace`` is False and either file is there already (a key pair in use: tokens
        it signed would stop verifying once the services had the new public key).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory.mkdir(parents=True, exist_ok=True)
    private = directory / f"{name}-signing.pem"
    public = directory / f"{name}-public.pem"
    if not replace:
        for path in (private, public):
            if path.exists():
                raise FileExistsError(f"{path} exists: a key pair is there already (--replace to make a new one)")
    key = Ed25519PrivateKey.generate()
    _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _algorithm(key: object) -> str:
    name = type(key).__name__
    if "Ed25519" in name:
        return "EdDSA"
    if "EllipticCurve" in name:
        return "ES256"
    if "RSA" in name:
        return "RS256"
    raise ValueError(f"unsupported signing key {name}")


def mint(private_key: Path | bytes, subject: str, *, issuer: str = LOCAL_ISSUER, audience: str = LOCAL_AUDIENCE,
         lifetime: float = 3600, now: float | None = None, key_id: str | None = None,
         algorithm: str | None = None, extra: Mapping[str, object] | None = None) -> str:
    """A signed bearer token for ``subject``. ``private_key``: a PEM private key file (or
    its bytes); with ``algorithm="HS256"``, the shared key's bytes."""
    import jwt

    data = private_key.read_bytes() if isinstance(private_key, Path) else private_key
    if algorithm == "HS256":
        key: object = data.strip()
    else:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(data, password=None)
        algorithm = algorithm or _algorithm(key)
    issued = time.time() if now is None else now
    claims = {"sub": subject, "iss": issuer, "aud": audience, "iat": int(issued), "exp": int(issued + lifetime),
              "jti": uuid.uuid4().hex, **(extra or {})}
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def write_entitlements(path: Path, principals: Iterable[tuple[str, Iterable[str], Iterable[str]]]) -> Path:
    """An entitlements file: one ``(name, roles, accounts)`` per principal (YAML)."""
    lines = ["# Who may do what: docs/access.md. Reloaded by the services when it changes.", "principals:"]
    for name, roles, accounts in principals:
        lines.append(f"  - name: {name!r}".replace("'", '"'))
        lines.append("    roles: [" + ", ".join(roles) + "]")
        accounts = list(accounts)
        if accounts:
            lines.append("    accounts: [" + ", ".join(f'"{a}"' for a in accounts) + "]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def provision_local(directory: str | os.PathLike[str], *, lifetime: float = LOCAL_TOKEN_LIFETIME) -> dict[str, str]:
    """Identities for a local stack in ``directory`` (see the module docstring); the
    environment for its services and clients. Kept when already there (the tokens are
    minted again when they would expire within a day)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "jwt-signing.pem", directory / "jwt-public.pem"
    if not private.exists() or not public.exists():
        private, public = generate_key_pair(directory)
    entitlements = directory / "entitlements.yaml"
    if not entitlements.exists():
        write_entitlements(entitlements, [
            (LOCAL_PRINCIPAL, access.ROLES, ["*"]),
            (SERVICE_PRINCIPAL, [access.SERVICE], []),
        ])
    for name, subject in (("local", LOCAL_PRINCIPAL), ("service", SERVICE_PRINCIPAL)):
        token_file = directory / f"{name}.token"
        if not token_file.exists() or token_file.stat().st_mtime + lifetime - 86400 < time.time():
            _write_private(token_file, mint(private, subject, lifetime=lifetime).encode() + b"\n")
    return {
        auth.PUBLIC_KEYS_VARIABLE: str(public),
        auth.ISSUER_VARIABLE: LOCAL_ISSUER,
        auth.AUDIENCE_VARIABLE: LOCAL_AUDIENCE,
        auth.ENTITLEMENTS_VARIABLE: str(entitlements),
        auth.SERVICE_TOKEN_VARIABLE: str(directory / "service.token"),
        CLIENT_TOKEN_VARIABLE: str(directory / "local.token"),
    }


def identities_configured(environ: Mapping[str, str]) -> bool:
    """True when ``environ`` says how the services identify callers (or that they do not)."""
    return any(environ.get(name, "").strip() for name in (auth.MODE_VARIABLE, auth.ENTITLEMENTS_VARIABLE))


__all__ = ["generate_key_pair", "identities_configured", "mint", "provision_local", "write_entitlements"]
