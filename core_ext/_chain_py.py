"""The order-event hash chain's encoding, pure-Python twin of ``_chain_c``.

Every row of ``order_events_ts`` carries ``hash = SHA-256(CHAIN_VERSION + canonical
JSON of [order_id, sequence, event_time, from_status, to_status, reason, payload,
prev_hash])`` (see :mod:`services.store.chain` for what the chain proves). The
encoding is over the values as the database gives them back, so the same event hashes
alike on SQLite and PostgreSQL: times as UTC with microseconds, the payload as JSON
(decimals and times as strings, as stored; an integral float as the integer its JSON
text says, which is what PostgreSQL's JSONB returns for it: ``1e+23`` as 10**23),
statuses by name.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["CHAIN_VERSION", "canonical_event", "event_hash"]

#: The encoding's version, first in every hashed body.
CHAIN_VERSION = b"tessera.order-event.v1\n"


def _json_default(value: Any) -> Any:
    """What the store writes for values JSON has no type for (its ``json_serializer``)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _time_text(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.isoformat()  # never stored: the column refuses naive times on write
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain_json(value: Any) -> Any:
    """The payload as it reads back from either backend (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # The integer the JSON text says (``1e+23`` is 10**23), as PostgreSQL's JSONB keeps
        # it: not the float's binary value (int(1e23) is 99999999999999991611392).
        return int(Decimal(repr(value)))
    return value


def _status(value: Any) -> str | None:
    if value is None:
        return None
    return value.value if isinstance(value, enum.Enum) else str(value)


def canonical_event(
    *,
    order_id: str,
    sequence: int,
    event_time: dt.datetime,
    from_status: Any,
    to_status: Any,
    reason: str,
    payload: Mapping[str, Any] | None,
    prev_hash: str | None,
) -> bytes:
    """The bytes an event's hash covers."""
    stored = json.loads(json.dumps(dict(payload or {}), default=_json_default, separators=(",", ":")))
    body = [
        str(order_id),
        int(sequence),
        _time_text(event_time),
        _status(from_status),
        _status(to_status),
        str(reason or ""),
        _plain_json(stored),
        prev_hash,
    ]
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return CHAIN_VERSION + encoded.encode("ascii")


def event_hash(prev_hash: str | None, **fields: Any) -> str:
    """The hex SHA-256 of an event (``fields``: the event's columns) chained to ``prev_hash``."""
    return hashlib.sha256(canonical_event(prev_hash=prev_hash, **fields)).hexdigest()
