"""Statement helpers the repositories share: dialect-aware upserts and keyset pages."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from .errors import InvalidPage

@functools.lru_cache(maxsize=None)
def _insert_ignoring_conflicts(dialect: str, table: Table, conflict_columns: tuple[str, ...] | None) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``table``, built once per dialect: the
    values are bound at execution (a statement built per call costs SQLAlchemy several
    times as much as the insert itself)."""
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:  # pragma: no cover - only the two supported backends
        raise NotImplementedError(f"no INSERT ... ON CONFLICT for {dialect}")
    # SQLAlchemy keeps an INSERT's rowcount only when asked to.
    return statement.on_conflict_do_nothing(index_elements=conflict_columns).execution_options(preserve_rowcount=True)


def insert_unless_conflict(
    session: Session,
    table: Table,
    values: Mapping[str, Any],
    conflict_columns: Sequence[str] | None = None,
) -> bool:
    """``INSERT ... ON CONFLICT [(columns)] DO NOTHING``; True when the row was inserted.

    A concurrent insert of the same key waits for the other transaction and then does
    nothing, so racing duplicates are harmless (no IntegrityError, no aborted transaction).
    """
    statement = _insert_ignoring_conflicts(
        session.get_bind().dialect.name, table, tuple(conflict_columns) if conflict_columns is not None else None
    )
    return session.execute(statement, dict(values)).rowcount == 1  # type: ignore[attr-defined]


def _encode_cursor(kind: str, time: dt.datetime, key: Any) -> str:
    raw = json.dumps([kind, time.isoformat(), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: The range of a 64-bit key column: a key outside it is no row's.
_KEY_RANGE = range(-(2**63), 2**63)


def _decode_cursor(kind: str, cursor: str, key_type: type) -> tuple[dt.datetime, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_kind, time, key = json.loads(raw)
        when = dt.datetime.fromisoformat(time)
    except (ValueError, TypeError, binascii.Error) as error:
        raise InvalidPage("page_token", "malformed page cursor", violation="INVALID_FORMAT") from error
    # The key is compared with the key column: of another type (a string for an integer id,
    # a number for an order id, a list) it is no cursor this listing returned.
    if (cursor_kind != kind or when.tzinfo is None or type(key) is not key_type
            or (key_type is int and key not in _KEY_RANGE)):
        raise InvalidPage("page_token", f"not a cursor of {kind}", violation="INVALID_FORMAT")
    return when, key


def keyset_page(
    session: Session,
    statement: Select[Any],
    *,
    kind: str,
    time_column: ColumnElement[Any],
    key_column: ColumnElement[Any],
    limit: int,
    cursor: str | None,
    newest_first: bool = False,
) -> tuple[list[RowMapping], str | None]:
    """One page of ``statement`` ordered by ``(time_column, key_column)``.

    Returns the rows and an opaque cursor for the next page (None on the last page).
    Keyset, not OFFSET: rows added meanwhile never shift or repeat a page. ``limit``
    is not capped here (a silent cap would truncate internal scans); public
    endpoints cap what clients ask for.

    Raises
    ------
    InvalidPage
        ``limit`` is below 1 or ``cursor`` is not one this listing returned.
    """
    if limit < 1:
        raise InvalidPage("page_size", f"must be at least 1, got {limit}", violation="OUT_OF_RANGE")
    if cursor:
        time, key = _decode_cursor(kind, cursor, key_column.type.python_type)
        if newest_first:
            after = or_(time_column < time, and_(time_column == time, key_column < key))
        else:
            after = or_(time_column > time, and_(time_column == time, key_column > key))
        statement = statement.where(after)
    order = (time_column.desc(), key_column.desc()) if newest_first else (time_column, key_column)
    rows = list(session.execute(statement.order_by(*order).limit(limit + 1)).mappings())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(kind, last[time_column.name], last[key_column.name])
