"""HMAC key material for the risk token: validation and reading it from the environment.

Shared by both ``KeyRing`` implementations: each twin validates its constructor
arguments with :func:`check_key_material` and builds ``from_env`` on
:func:`read_key_material_from_env`, so the rules (and the error messages, which
name the variable and never contain a secret) exist once.

Environment variables (each also as ``<NAME>_FILE``: a path whose content, minus
one trailing newline, is the value; setting both forms is an error):

``AIS_RISK_HMAC_SECRET``            current secret, required, at least 32 bytes
``AIS_RISK_HMAC_KEY_ID``            its key id, optional (default derived from the secret)
``AIS_RISK_HMAC_SECRET_PREVIOUS``   previous secret, optional, accepted during rotation
``AIS_RISK_HMAC_KEY_ID_PREVIOUS``   its key id, optional (default derived from the secret)

An optional variable set to the empty string counts as unset.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence

from core_ext.errors import KeyConfigError

__all__ = [
    "ENV_KEY_ID",
    "ENV_KEY_ID_PREVIOUS",
    "ENV_SECRET",
    "ENV_SECRET_PREVIOUS",
    "MIN_SECRET_BYTES",
    "check_key_material",
    "derive_key_id",
    "read_key_material_from_env",
    "read_variable",
]

ENV_SECRET = "AIS_RISK_HMAC_SECRET"
ENV_KEY_ID = "AIS_RISK_HMAC_KEY_ID"
ENV_SECRET_PREVIOUS = "AIS_RISK_HMAC_SECRET_PREVIOUS"
ENV_KEY_ID_PREVIOUS = "AIS_RISK_HMAC_KEY_ID_PREVIOUS"

MIN_SECRET_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

KeyMaterial = tuple[tuple[str, bytes], ...]


def derive_key_id(secret: bytes) -> str:
    """Return the default key id of a secret: ``"k"`` + first 8 hex chars of SHA-256(secret)."""
    return "k" + hashlib.sha256(secret).hexdigest()[:8]


def _check_key_id(key_id: object, source: str) -> str:
    if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
        raise KeyConfigError(f"{source}: key id must match [A-Za-z0-9_-]{{1,32}}", source)
    return key_id


def _check_secret(secret: object, source: str) -> bytes:
    if not isinstance(secret, (bytes, bytearray, memoryview)):
        raise KeyConfigError(f"{source}: secret must be bytes", source)
    secret = bytes(secret)
    if not secret:
        raise KeyConfigError(f"{source} is empty; set a secret of at least {MIN_SECRET_BYTES} bytes", source)
    if len(secret) < MIN_SECRET_BYTES:
        raise KeyConfigError(
            f"{source} is too short ({len(secret)} bytes); it must be at least {MIN_SECRET_BYTES} bytes",
            source,
        )
    return secret


def check_key_material(
    current_key_id: object,
    current_secret: object,
    previous: Sequence[tuple[str, bytes]] = (),
    *,
    sources: Sequence[tuple[str, str]] | None = None,
) -> KeyMaterial:
    """Validate a key ring's keys and return them as ``((key_id, secret), ...)``, current first.

    Parameters
    ----------
    current_key_id, current_secret
        The key new tokens are signed with.
    previous
        ``(key_id, secret)`` pairs still accepted for verification.
    sources
        ``(key id source, secret source)`` names per key, used in error messages
        (environment variable names when reading the environment).

    Raises
    ------
    KeyConfigError
        A key id that does not match ``[A-Za-z0-9_-]{1,32}``, a secret shorter than
        32 bytes, or the same key id twice. The message never contains a secret.
    """
    try:
        pairs = [(current_key_id, current_secret), *[tuple(p) for p in previous]]
    except TypeError:
        raise KeyConfigError("previous must be a sequence of (key_id, secret) pairs", "previous") from None
    if sources is None:
        sources = [("current_key_id", "current_secret")] + [
            (f"previous[{i}] key id", f"previous[{i}] secret") for i in range(len(pairs) - 1)
        ]
    material: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for pair, (id_source, secret_source) in zip(pairs, sources):
        if len(pair) != 2:
            raise KeyConfigError(f"{id_source}: expected a (key_id, secret) pair", id_source)
        key_id = _check_key_id(pair[0], id_source)
        secret = _check_secret(pair[1], secret_source)
        if key_id in seen:
            raise KeyConfigError(f"{id_source}: duplicate key id {key_id!r}", id_source)
        seen.add(key_id)
        material.append((key_id, secret))
    return tuple(material)


def _read_variable(environ: Mapping[str, str], name: str) -> tuple[str | None, str]:
    """Return ``(value, source)`` of ``name`` or ``name_FILE``; value None when unset or empty."""
    file_name = f"{name}_FILE"
    value = environ.get(name) or None
    path = environ.get(file_name) or None
    if value is not None and path is not None:
        raise KeyConfigError(f"set either {name} or {file_name}, not both", name)
    if path is None:
        return value, name
    try:
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        raise KeyConfigError(f"{file_name}: cannot read {path!r} ({exc.strerror})", file_name) from None
    if content.endswith(b"\r\n"):
        content = content[:-2]
    elif content.endswith(b"\n"):
        content = content[:-1]
    return os.fsdecode(content) if content else "", file_name


def read_variable(environ: Mapping[str, str], name: str) -> tuple[str | None, str]:
    """Return ``(value, source)`` of a secret given as ``name`` or as a file ``name_FILE``.

    The value is None when neither is set (or ``name`` is empty), ``""`` for an empty
    file; ``source`` is the variable it came from, for messages. Other secrets (the
    venue's API credentials) are read the same way.

    Raises
    ------
    KeyConfigError
        Both ``name`` and ``name_FILE`` are set, or the file cannot be read; the
        message names the variable and the path, never the content.
    """
    return _read_variable(environ, name)


def _encode_secret(value: str) -> bytes:
    # os.environ decodes with surrogateescape; this recovers the original bytes.
    return value.encode("utf-8", "surrogateescape")


def read_key_material_from_env(environ: Mapping[str, str] | None = None) -> KeyMaterial:
    """Read and validate the key ring configuration from environment variables.

    Returns
    -------
    tuple
        ``((key_id, secret), ...)``: the current key first, then the previous one if set.

    Raises
    ------
    KeyConfigError
        The current secret is missing, empty or shorter than 32 bytes; a key id is
        invalid; a key id is given without its secret; both ``X`` and ``X_FILE`` are
        set; a ``_FILE`` cannot be read. The message names the variable.
    """
    if environ is None:
        environ = os.environ
    secret, secret_source = _read_variable(environ, ENV_SECRET)
    if secret is None:
        raise KeyConfigError(
            f"{ENV_SECRET} is not set; set it (or {ENV_SECRET}_FILE) to a secret of at least "
            f"{MIN_SECRET_BYTES} bytes",
            ENV_SECRET,
        )
    if secret == "":
        raise KeyConfigError(f"{secret_source} is empty", secret_source)
    key_id, key_id_source = _read_variable(environ, ENV_KEY_ID)
    current = _encode_secret(secret)
    pairs = [(key_id if key_id else derive_key_id(current), current)]
    sources = [(key_id_source, secret_source)]

    previous, previous_source = _read_variable(environ, ENV_SECRET_PREVIOUS)
    previous_id, previous_id_source = _read_variable(environ, ENV_KEY_ID_PREVIOUS)
    if previous:
        old = _encode_secret(previous)
        pairs.append((previous_id if previous_id else derive_key_id(old), old))
        sources.append((previous_id_source, previous_source))
    elif previous_id:
        raise KeyConfigError(
            f"{previous_id_source} is set but {ENV_SECRET_PREVIOUS} is not", previous_id_source
        )
    (current_id, current_secret), *rest = pairs
    return check_key_material(current_id, current_secret, rest, sources=sources)
