"""The Exchange service's record of what it executed: each order id once, durably.

The Exchange writes an order's row before its provider (paper, shadow, live) is called,
as a set write of the group commit (:class:`Executions`): the executions of the moment
share one statement and one commit. The primary key settles each one: an order id
already recorded is refused (``TOKEN_ALREADY_USED``), whatever the Exchange's memory
lost, so a risk token and OMS credential replayed after a restart execute nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from .database import WriteContext
from .models import exchange_executions_table

COLUMNS = ("order_id", "client_order_id", "account", "venue", "symbol", "mode", "executed_time")
#: Rows per statement (SQLite binds at most 32,766 values: 7 columns x 4,000 stay below).
CHUNK = 4000


@dataclasses.dataclass(frozen=True)
class Execution:
    """One order the Exchange is about to send to its provider."""

    order_id: str
    client_order_id: str
    account: str
    venue: str
    symbol: str
    mode: str
    at: dt.datetime


def _sql(dialect: str, rows: int) -> str:
    columns = ", ".join(COLUMNS)
    if dialect == "sqlite":
        row = "(" + ", ".join("?" * len(COLUMNS)) + ")"
        values = ", ".join([row] * rows)
        return (f"INSERT INTO exchange_executions ({columns}) VALUES {values} "
                "ON CONFLICT DO NOTHING RETURNING order_id")
    if rows == 1:  # one row of values: cheaper than arrays of one (see order_sets._insert)
        values = ", ".join(["%s::text"] * (len(COLUMNS) - 1) + ["%s::timestamptz"])
        return (f"INSERT INTO exchange_executions ({columns}) VALUES ({values}) "
                "ON CONFLICT DO NOTHING RETURNING order_id")
    arrays = ", ".join(["%s::text[]"] * (len(COLUMNS) - 1) + ["%s::timestamptz[]"])
    return (f"INSERT INTO exchange_executions ({columns}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING RETURNING order_id")


class Executions:
    """The set write of executions: True for each order recorded now (execute it), False
    for one recorded before (or earlier in the same batch): never execute it again."""

    name = "exchange executions"

    def write(self, context: WriteContext, items: Sequence[Execution]) -> list[Any]:
        recorded: set[str] = set()
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            rows = [(e.order_id, e.client_order_id, e.account, e.venue, e.symbol, e.mode, context.codec.time(e.at))
                    for e in chunk]
            if context.dialect == "sqlite" or len(rows) == 1:
                parameters: Any = tuple(value for row in rows for value in row)
            else:
                parameters = tuple(list(column) for column in zip(*rows))
            recorded.update(row[0] for row in context.run(_sql(context.dialect, len(rows)), parameters).fetchall())
        outcomes: list[Any] = []
        for item in items:
            outcomes.append(item.order_id in recorded)
            recorded.discard(item.order_id)  # a second item of the same order id: already recorded
        return outcomes


EXECUTIONS = Executions()


def executed_order_ids(session: Session, order_ids: Sequence[str]) -> set[str]:
    """Which of ``order_ids`` the Exchange has recorded as executed."""
    table = exchange_executions_table
    found: set[str] = set()
    for start in range(0, len(order_ids), 500):
        chunk = list(order_ids[start:start + 500])
        found.update(session.execute(select(table.c.order_id).where(table.c.order_id.in_(chunk))).scalars())
    return found
