"""Venue payloads kept for audit as exact JSON text: integers stay integers.

An answer is kept as the venue sent it (its text, verbatim). Where one part of an
answer is needed (one trade of a ``userTrades`` array), it is decoded with numbers as
:class:`int` and :class:`~decimal.Decimal` (never ``float``) and written back as JSON
with every number as it was, so an order id ``9007199254740993`` or a quantity
``0.10`` survives unchanged. The request half names the method, the path and the
parameters that say what was asked; the authentication parameters (``signature``,
``nonce``, ``user``, ``signer``, ``timestamp``, ``recvWindow``) are left out.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterable

AUTH_PARAMS = frozenset({"signature", "nonce", "user", "signer", "timestamp", "recvWindow"})


def decode(text: str) -> Any:
    """JSON with integers as ``int`` and other numbers as ``Decimal`` (exact)."""
    return json.loads(text, parse_float=Decimal)


def encode(value: Any) -> str:
    """Compact JSON of a value from :func:`decode`; every number as it was written."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        raise TypeError("floats are not kept: decode venue payloads with raw.decode")
    return json.dumps(value)


def elements(text: str) -> list[str]:
    """Each element of a JSON array answer as its own exact JSON text."""
    value = decode(text)
    return [encode(item) for item in value] if isinstance(value, list) else [encode(value)]


def request_json(method: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """The request half: method, path and the parameters (authentication left out)."""
    kept = {name: value for name, value in params if name not in AUTH_PARAMS}
    return json.dumps({"method": method, "path": path, "params": kept}, separators=(",", ":"))


def exchange_json(request: str, status: int, answer_text: str) -> str:
    """``{"request": ..., "status": ..., "response": ...}`` with the answer verbatim."""
    try:
        decode(answer_text)
        answer = answer_text.strip() or "null"
    except ValueError:
        answer = json.dumps(answer_text)
    return f'{{"request":{request},"status":{int(status)},"response":{answer}}}'


def event_json(kind: str, text: str) -> str:
    """A user-data stream message, or a part of an answer, under a name saying what it is."""
    return f'{{"{kind}":{text}}}'
