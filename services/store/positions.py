"""The position repository: the ledger of fills, per account, market type and symbol.

Risk writes the ledger (:data:`services.store.risk_state.LEDGER`, in sets); this
repository reads it (``ListPositions``, ``tessera verify-store``) and keeps
:meth:`PositionRepository.apply_trade`, the same accounting one trade at a time in the
caller's transaction, for tools and tests. Each trade is applied at most once (a
ledger entry per venue trade id), and concurrent fills of one position queue on its row
lock (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so none is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Context, Decimal, localcontext

from sqlalchemy import bindparam, select, update
from sqlalchemy import tuple_ as sa_tuple
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from services.domain import MarketType, Side, Trade, utcnow
from services.domain.errors import StaleOrder
from services.domain.ledger import ZERO, LedgerEntry, Position, apply_fill, fee_in_quote

from ._sql import insert_unless_conflict
from .models import ledger_entries_table as entries_t
from .models import positions_table as positions_t

_WIDE = Context(prec=100)
_POSITION_FIELDS = ("quantity", "cost_basis", "realised_pnl", "commission", "updated_time", "version")
_VALUE_FIELDS = ("quantity", "cost_basis", "average_entry_price", "realised_pnl", "commission", "fees",
                 "updated_time")
# Built once (a statement built per call costs SQLAlchemy more than the statement itself).
_KEY = (positions_t.c.account == bindparam("key_account"), positions_t.c.market_type == bindparam("key_market"),
        positions_t.c.symbol == bindparam("key_symbol"))
_LOCKED = select(positions_t).where(*_KEY).with_for_update()
_UPDATE = (
    update(positions_t)
    .where(*_KEY, positions_t.c.version == bindparam("key_version"))
    .values(**{name: bindparam(f"new_{name}") for name in _VALUE_FIELDS}, version=positions_t.c.version + 1)
)


def _position(row: RowMapping) -> Position:
    return Position(account=row["account"], symbol=row["symbol"], market_type=MarketType(row["market_type"]),
                    fees=tuple(sorted((asset, Decimal(amount)) for asset, amount in (row["fees"] or {}).items())),
                    **{name: row[name] for name in _POSITION_FIELDS})


def _position_values(position: Position) -> dict[str, object]:
    return {
        "quantity": position.quantity,
        "cost_basis": position.cost_basis,
        "average_entry_price": position.average_entry_price,
        "realised_pnl": position.realised_pnl,
        "commission": position.commission,
        "fees": {asset: str(amount) for asset, amount in position.fees},
        "updated_time": position.updated_time,
    }


class PositionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def apply_trade(self, trade: Trade, market_type: MarketType = MarketType.FUTURES) -> Position:
        """Apply one fill to its account's position in its symbol and ``market_type`` (its
        order's); returns the position.

        Applying a trade already in the ledger (same venue and trade id) changes
        nothing and returns the position as it is.

        Raises
        ------
        ValueError
            The trade's quantity or price is not positive.
        StaleOrder
            The position row changed under its lock (never expected; the caller's
            retry handles it like any lost compare-and-set).
        """
        key = {"account": trade.account, "market_type": market_type.value, "symbol": trade.symbol}
        keys = {"key_account": trade.account, "key_market": market_type.value, "key_symbol": trade.symbol}
        row = self.session.execute(_LOCKED, keys).mappings().first()
        if row is None:  # the first fill in this symbol: create the row (or find a racing one), then lock it
            flat = Position(trade.account, trade.symbol, updated_time=trade.trade_time, market_type=market_type)
            insert_unless_conflict(
                self.session, positions_t, {**key, **_position_values(flat), "version": 0},
                ("account", "market_type", "symbol"),
            )
            row = self.session.execute(_LOCKED, keys).mappings().one()
        current = _position(row)
        update_ = apply_fill(current, trade.side, trade.quantity, trade.price, trade.commission, trade.trade_time,
                             trade.commission_asset)
        entry = {
            **key,
            "venue": trade.venue,
            "trade_id": trade.trade_id,
            "side": trade.side.value,
            "quantity": trade.quantity,
            "price": trade.price,
            "realised_pnl": update_.realised_pnl,
            "commission": trade.commission,
            "commission_asset": trade.commission_asset,
            "position_quantity": update_.position.quantity,
            "trade_time": trade.trade_time,
            "applied_time": utcnow(),
        }
        if not insert_unless_conflict(self.session, entries_t, entry, ("venue", "trade_id")):
            return current  # applied before
        values = {f"new_{name}": value for name, value in _position_values(update_.position).items()}
        if self.session.execute(_UPDATE, {**keys, "key_version": current.version, **values}).rowcount != 1:  # type: ignore[attr-defined]
            raise StaleOrder(f"position {trade.account}/{trade.symbol} changed under its lock")
        return dataclasses.replace(update_.position, version=current.version + 1)

    @staticmethod
    def _is(account: str, symbol: str, market_type: MarketType) -> tuple[object, ...]:
        return (positions_t.c.account == account, positions_t.c.market_type == market_type.value,
                positions_t.c.symbol == symbol)

    def get(self, account: str, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Position:
        """The position; a flat one at version 0 when the account never traded the symbol
        in that market."""
        row = self.session.execute(select(positions_t).where(*self._is(account, symbol, market_type))
                                   ).mappings().first()
        return Position(account, symbol, market_type=market_type) if row is None else _position(row)

    def for_account(self, account: str) -> list[Position]:
        """Every position the account ever held (flat ones too: they carry its realised
        PnL and commissions), by symbol, futures before spot."""
        return self.list(account=account)

    def list(self, *, account: str | None = None, market_type: MarketType | None = None,
             symbol: str | None = None, after: tuple[str, str, str] | None = None,
             limit: int | None = None) -> list[Position]:
        """Positions by (account, symbol, market type), filtered; ``after`` (account,
        symbol, market type) continues a listing where a previous page ended."""
        statement = select(positions_t)
        if account is not None:
            statement = statement.where(positions_t.c.account == account)
        if market_type is not None:
            statement = statement.where(positions_t.c.market_type == market_type.value)
        if symbol is not None:
            statement = statement.where(positions_t.c.symbol == symbol)
        if after is not None:
            statement = statement.where(sa_tuple(positions_t.c.account, positions_t.c.symbol,
                                                 positions_t.c.market_type) > sa_tuple(*after))
        statement = statement.order_by(positions_t.c.account, positions_t.c.symbol, positions_t.c.market_type)
        if limit is not None:
            statement = statement.limit(limit)
        return [_position(row) for row in self.session.execute(statement).mappings()]

    def realised_since(self, account: str, since: dt.datetime) -> Decimal:
        """The account's realised PnL net of commissions over the fills traded at or
        after ``since``, summed here, exactly (SQLite's SUM would add its decimal text as
        binary floats); a fee in another asset than the symbol's quote is not counted
        (:func:`services.domain.ledger.fee_in_quote`)."""
        total = ZERO
        with localcontext(_WIDE):
            for symbol, realised, commission, asset in self.session.execute(
                select(entries_t.c.symbol, entries_t.c.realised_pnl, entries_t.c.commission,
                       entries_t.c.commission_asset).where(entries_t.c.account == account,
                                                           entries_t.c.trade_time >= since)
            ):
                total += realised - commission if fee_in_quote(symbol, asset) else realised
        return total

    def entries(self, account: str, symbol: str | None = None, limit: int = 1000) -> list[LedgerEntry]:
        """The account's ledger entries in the order they were applied."""
        statement = select(entries_t).where(entries_t.c.account == account)
        if symbol is not None:
            statement = statement.where(entries_t.c.symbol == symbol)
        statement = statement.order_by(entries_t.c.id).limit(max(1, limit))
        return [
            LedgerEntry(**{**{n: row[n] for n in LedgerEntry.__dataclass_fields__}, "side": Side(row["side"]),
                           "market_type": MarketType(row["market_type"])})
            for row in self.session.execute(statement).mappings()
        ]
