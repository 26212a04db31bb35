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

The encoding (``core_ext.canonical_event``: the compiled core, with a pure-Python
twin) is over the values as the database gives them back, so the same event hashes
alike on SQLite and PostgreSQL: times as UTC with microseconds, the payload as JSON
(decimals and times as strings, as stored; an integral float as the integer its JSON
text says, which is what PostgreSQL's JSONB returns for it: ``1e+23`` as 10**23),
statuses by name.

What a plain hash chain does not stop: someone with write access who rewrites an
order's whole chain *and* its head consistently. Against that, record the store
digest (:func:`store_digest`, printed by ``tessera verify-store``) somewhere the
database's writers cannot change, and compare later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from core_ext import CHAIN_VERSION, canonical_event, event_hash

__all__ = ["CHAIN_VERSION", "canonical_event", "chain_rows", "event_hash", "store_digest"]


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
