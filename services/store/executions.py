"""The Exchange service's record of what it executed: each order id once, durably, and
none while trading is halted.

The Exchange writes an order's row before its provider (paper, shadow, live) is called,
as a set write of the group commit (:class:`Executions`): the executions of the moment
share one statement and one commit. The primary key settles each one: an order id
already recorded is refused (``TOKEN_ALREADY_USED``), whatever the Exchange's memory
lost, so a risk token and OMS credential replayed after a restart execute nothing.

The same statement inserts a row only while trading in the order's symbol is not
HALTED: neither the ``global`` trading state nor the symbol's own (``symbol:<SYMBOL>``,
a quarantine), read in the statement itself, as the OMS's claim reads them
(:data:`~services.store.order_sets.CLAIMS`). An order the OMS claimed before a halt and
sent after it is refused here (``TRADING_HALTED``): not recorded, so the Exchange never
calls its provider. REDUCING does not refuse: whether an order only reduces is the
claim's to judge, from the ledger, and it judged. The check costs the order path no
statement and no commit; only an order the insert did not record (a replay, a halt,
both rare) costs two reads more, in the same transaction, to tell which.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.domain import TradingState
from services.domain.errors import trading_halted

from .database import WriteContext
from .models import exchange_executions_table
from .trading_state import GLOBAL_SCOPE, symbol_scope

COLUMNS = ("order_id", "client_order_id", "account", "venue", "symbol", "mode", "executed_time")
#: Rows per statement (SQLite binds at most 32,766 values: 7 columns x 4,000 stay below).
CHUNK = 4000
#: At most this many ids in one ``IN (...)`` list on SQLite.
IN_CHUNK = 500


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


#: Trading in the row's symbol is not HALTED, globally or for the symbol (``{symbol}``:
#: the row's symbol column). Only HALTED refuses here: REDUCING is the claim's to judge.
_NOT_HALTED = ("NOT EXISTS (SELECT 1 FROM trading_state WHERE scope IN "
               f"('{GLOBAL_SCOPE}', 'symbol:' || {{symbol}}) AND state = '{TradingState.HALTED.value}')")
#: The halted scopes and their reasons (read only for rows the insert did not record).
_HALTED_SCOPES = f"SELECT scope, reason FROM trading_state WHERE state = '{TradingState.HALTED.value}'"


@functools.lru_cache(maxsize=64)
def _sql(dialect: str, rows: int) -> str:
    """The insert of ``rows`` executions, each only while its symbol's trading is not
    HALTED, returning the order ids it recorded. SQLite: rows of values; PostgreSQL: one
    row of values for 1 (cheaper than arrays of one, see ``order_sets._insert``), else
    one array per column ``unnest``ed."""
    columns = ", ".join(COLUMNS)
    insert = f"INSERT INTO exchange_executions ({columns}) SELECT * FROM "
    done = " ON CONFLICT DO NOTHING RETURNING order_id"
    if dialect == "sqlite":  # the columns of VALUES are column1, column2, ...
        row = "(" + ", ".join("?" * len(COLUMNS)) + ")"
        symbol = f"v.column{COLUMNS.index('symbol') + 1}"
        return (f"{insert}(VALUES {', '.join([row] * rows)}) AS v WHERE "
                + _NOT_HALTED.format(symbol=symbol) + done)
    if rows == 1:
        values = ", ".join(["%s::text"] * (len(COLUMNS) - 1) + ["%s::timestamptz"])
        source = f"(VALUES ({values})) AS v({columns})"
    else:
        arrays = ", ".join(["%s::text[]"] * (len(COLUMNS) - 1) + ["%s::timestamptz[]"])
        source = f"unnest({arrays}) AS v({columns})"
    return f"{insert}{source} WHERE " + _NOT_HALTED.format(symbol="v.symbol") + done


def _executed(context: WriteContext, order_ids: list[str]) -> set[str]:
    """Which of ``order_ids`` are recorded (as of now, in the write's transaction)."""
    if context.dialect != "sqlite":
        sql = "SELECT order_id FROM exchange_executions WHERE order_id = ANY(%s)"
        return {row[0] for row in context.run(sql, (order_ids,)).fetchall()}
    found: set[str] = set()
    for start in range(0, len(order_ids), IN_CHUNK):
        chunk = order_ids[start:start + IN_CHUNK]
        sql = f"SELECT order_id FROM exchange_executions WHERE order_id IN ({', '.join('?' * len(chunk))})"
        found.update(row[0] for row in context.run(sql, tuple(chunk)).fetchall())
    return found


class Executions:
    """The set write of executions: for each order, True when recorded now (execute it),
    False when recorded before (or earlier in the same batch: never execute it again),
    or the ``TRADING_HALTED`` refusal of one not recorded because trading in its symbol
    is HALTED (do not execute it). An order recorded before is False whatever the state
    now: it may be at the venue, and only the venue can tell."""

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
        left: list[int] = []
        for index, item in enumerate(items):
            if item.order_id in recorded:
                outcomes.append(True)
                recorded.discard(item.order_id)  # a second item of the same order id: not recorded by it
            else:
                outcomes.append(None)
                left.append(index)
        if left:
            self._not_recorded(context, items, left, outcomes)
        return outcomes

    @staticmethod
    def _not_recorded(context: WriteContext, items: Sequence[Execution], left: list[int], outcomes: list[Any]
                      ) -> None:
        """Why the insert did not record the items at ``left``: recorded before (False),
        else trading in the symbol was HALTED when the insert read the state (refused;
        the halt's reason as read now, when it is still HALTED)."""
        executed = _executed(context, list(dict.fromkeys(items[index].order_id for index in left)))
        halted = dict(context.run(_HALTED_SCOPES, ()).fetchall())
        for index in left:
            item = items[index]
            if item.order_id in executed:
                outcomes[index] = False
                continue
            why = halted.get(GLOBAL_SCOPE, halted.get(symbol_scope(item.symbol)))
            outcomes[index] = trading_halted(item.symbol, why if why is not None else "halted when its execution "
                                                                                     "was to be recorded")


EXECUTIONS = Executions()


def executed_order_ids(session: Session, order_ids: Sequence[str]) -> set[str]:
    """Which of ``order_ids`` the Exchange has recorded as executed."""
    table = exchange_executions_table
    found: set[str] = set()
    for start in range(0, len(order_ids), 500):
        chunk = list(order_ids[start:start + 500])
        found.update(session.execute(select(table.c.order_id).where(table.c.order_id.in_(chunk))).scalars())
    return found
