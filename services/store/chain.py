"""The per-order hash chain of ``order_events_ts``: tamper evidence for the order history.

Every event row carries ``prev_hash`` (the hash of the order's previous event; NULL
for its first event) and ``hash``::

    hash = SHA-256(b"tessera.order-event.v1\\n" + canonical JSON of
                   [order_id, sequence, event_time, from_status, to_status, reason, payload, prev_hash])

and the order row carries the hash of its newest event (``orders_ts.last_event_hash``),
the chain's head. The repository computes the hashes when it writes events, in the
same transaction and under the same compare-and-set as the status change, so the head
it chains from is the one stored. ``tessera verify-store`` recomputes every chain: an
edited event no longer matches its hash, an inserted or deleted one breaks the links
or the head, and so does a reordering.

The encoding is over the values as the database gives them back, so the same event
hashes alike on SQLite and PostgreSQL: times as UTC with microseconds, the payload as
JSON (decimals and times as strings, as stored; an integral float as an integer, which
is what PostgreSQL's JSONB returns for it), statuses by name.

What a plain hash chain does not stop: someone with write access who rewrites an
order's whole chain *and* its head consistently. Against that, record the store
digest (:func:`store_digest`, printed by ``tessera verify-store``) somewhere the
database's writers cannot change, and compare later.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .engine import json_dumps

#: The encoding's version, first in every hashed body.
CHAIN_VERSION = b"tessera.order-event.v1\n"


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
        return int(value)
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
    stored_payload = json.loads(json_dumps(dict(payload or {})))
    body = [
        str(order_id),
        int(sequence),
        _time_text(event_time),
        _status(from_status),
        _status(to_status),
        str(reason or ""),
        _plain_json(stored_payload),
        prev_hash,
    ]
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return CHAIN_VERSION + encoded.encode("ascii")


def event_hash(prev_hash: str | None, **fields: Any) -> str:
    """The hex SHA-256 of an event (``fields``: the event's columns) chained to ``prev_hash``."""
    return hashlib.sha256(canonical_event(prev_hash=prev_hash, **fields)).hexdigest()


def chain_rows(rows: Iterable[dict[str, Any]], head: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Set ``prev_hash`` and ``hash`` on event rows (in sequence order) that follow ``head``.

    Returns the rows and the new head.
    """
    chained = []
    for row in rows:
        fields = {name: row[name] for name in
                  ("order_id", "sequence", "event_time", "from_status", "to_status", "reason", "payload")}
        row["prev_hash"] = head
        row["hash"] = head = event_hash(head, **fields)
        chained.append(row)
    return chained, head


def store_digest(heads: Iterable[tuple[str, str | None]]) -> str:
    """One digest over every order's chain head: ``(order_id, last_event_hash)`` pairs."""
    digest = hashlib.sha256(b"tessera.store-digest.v1\n")
    for order_id, head in sorted(heads, key=lambda item: item[0]):
        digest.update(f"{order_id}:{head or '-'}\n".encode())
    return digest.hexdigest()
