"""The trade repository: fills, de-duplicated by ``(venue, trade_id)``."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from services.domain import Trade

from ._sql import insert_unless_conflict, keyset_page
from .mapping import trade_from_row, trade_to_row
from .models import trades_table as trades_t


# Read for every fill and every submission's answer: built once.
_BY_TRADE_ID = select(trades_t).where(trades_t.c.venue == bindparam("venue"), trades_t.c.trade_id == bindparam("trade_id"))
_FOR_ORDER = (
    select(trades_t).where(trades_t.c.order_id == bindparam("order_id")).order_by(trades_t.c.trade_time, trades_t.c.id)
)


class TradeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add_if_absent(self, trade: Trade) -> bool:
        """Insert the trade unless the venue's trade id is stored already.

        Returns True when this call stored it. Safe under concurrency: of two
        transactions adding the same trade, exactly one gets True, and the other
        neither fails nor aborts its transaction.
        """
        return insert_unless_conflict(
            self.session, trades_t, trade_to_row(trade), conflict_columns=("venue", "trade_id")
        )

    def get(self, venue: str, trade_id: str) -> Trade | None:
        row = self.session.execute(_BY_TRADE_ID, {"venue": venue, "trade_id": trade_id}).mappings().first()
        return None if row is None else trade_from_row(row)

    def for_order(self, order_id: str) -> list[Trade]:
        """Every trade of one order, oldest first."""
        return [trade_from_row(row) for row in self.session.execute(_FOR_ORDER, {"order_id": order_id}).mappings()]

    def list(
        self,
        order_id: str | None = None,
        account: str | None = None,
        symbol: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Trade], str | None]:
        """A page of trades by ``(trade_time, id)`` and the next page's cursor.

        Raises
        ------
        InvalidPage
            Bad ``limit`` or ``cursor``.
        """
        statement = select(trades_t)
        if order_id is not None:
            statement = statement.where(trades_t.c.order_id == order_id)
        if account is not None:
            statement = statement.where(trades_t.c.account == account)
        if symbol is not None:
            statement = statement.where(trades_t.c.symbol == symbol)
        rows, next_cursor = keyset_page(
            self.session,
            statement,
            kind="trades",
            time_column=trades_t.c.trade_time,
            key_column=trades_t.c.id,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )
        return [trade_from_row(row) for row in rows], next_cursor
