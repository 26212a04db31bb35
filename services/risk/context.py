"""What pre-trade risk knows about an order's account: :class:`RiskContext`.

:func:`load_context` reads it inside the unit of work that then stores the decision,
after taking the account's lock, so the checks see the ledger, the account's working
orders, its recent order count and today's PnL as they are when the order is decided,
on whichever replica decides it. The checks themselves (:mod:`services.risk.checks`)
stay pure functions of the order, the limits and this context.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from decimal import Context, Decimal, localcontext
from typing import Any, Mapping

from sqlalchemy import Select, and_, bindparam, func, literal, literal_column, or_, select

from services.domain import OPEN_STATUSES, Order, OrderStatus, TradingState
from services.domain.ledger import ZERO, Position
from services.store import UnitOfWork
from services.store.models import ledger_entries_table as entries_t
from services.store.models import orders_table as orders_t
from services.store.models import positions_table as positions_t
from services.store.models import trading_state_table as state_t
from services.store.repositories import GLOBAL_SCOPE, symbol_scope

from .limits import RiskLimits
from .prices import PriceSource, reference_prices

_WIDE = Context(prec=100)


@dataclasses.dataclass(frozen=True)
class RiskContext:
    """The account's state when an order is checked (the defaults: a fresh account)."""

    #: The state governing the order's symbol: the stricter of the global one and the
    #: symbol's own.
    trading_state: TradingState = TradingState.ACTIVE
    #: The account's ledger positions by symbol (flat ones too).
    positions: Mapping[str, Position] = dataclasses.field(default_factory=dict)
    #: Reference prices by symbol: the order's and those of the account's positions.
    reference_prices: Mapping[str, Decimal] = dataclasses.field(default_factory=dict)
    #: How many of the account's orders may still trade (APPROVED with a live token, or open).
    open_orders: int = 0
    #: What the account's working orders in the order's symbol, on its side, may still
    #: fill (read in REDUCING only: the one state whose checks use it).
    working_same_side: Decimal = ZERO
    #: The account's orders inside the throttle's window, this one not included.
    recent_orders: int = 0
    #: Realised PnL net of commissions of the fills since the last daily reset.
    realised_today: Decimal = ZERO

    def position(self, symbol: str) -> Decimal:
        held = self.positions.get(symbol)
        return ZERO if held is None else held.quantity

    def valuation_price(self, symbol: str) -> Decimal | None:
        """The reference price, else the position's own average entry price."""
        price = self.reference_prices.get(symbol)
        if price is None and symbol in self.positions:
            price = self.positions[symbol].average_entry_price
        return price

    def gross_exposure(self, symbol: str | None = None, quantity: Decimal | None = None) -> Decimal:
        """Sum of |quantity| x valuation price over the positions, with ``symbol`` held at
        ``quantity`` instead when given (a position after an order)."""
        holdings = {s: p.quantity for s, p in self.positions.items()}
        if symbol is not None and quantity is not None:
            holdings[symbol] = quantity
        total = ZERO
        for held_symbol, held in holdings.items():
            price = self.valuation_price(held_symbol)
            if held and price is not None:
                total = _WIDE.add(total, _WIDE.multiply(abs(held), price))
        return total

    def unrealised_pnl(self) -> Decimal:
        """Of every open position at its valuation price."""
        total = ZERO
        for symbol, position in self.positions.items():
            price = self.valuation_price(symbol)
            if price is not None:
                total = _WIDE.add(total, position.unrealised_pnl(price))
        return total

    def equity(self, capital: Decimal) -> Decimal:
        """Capital plus all realised PnL net of commissions plus unrealised PnL."""
        realised = sum((p.net_realised_pnl for p in self.positions.values()), ZERO)
        return _WIDE.add(_WIDE.add(capital, realised), self.unrealised_pnl())

    def pnl_today(self) -> Decimal:
        """Realised since the daily reset plus unrealised now."""
        return _WIDE.add(self.realised_today, self.unrealised_pnl())


def last_reset(now: dt.datetime, reset_time: dt.time) -> dt.datetime:
    """The latest instant at or before ``now`` whose UTC time of day is ``reset_time``."""
    now = now.astimezone(dt.timezone.utc)
    reset = dt.datetime.combine(now.date(), reset_time.replace(tzinfo=None), tzinfo=dt.timezone.utc)
    return reset if reset <= now else reset - dt.timedelta(days=1)


# -- the reads, built once -------------------------------------------------------------------
# A statement built per call costs SQLAlchemy about three times as much as executing a
# prebuilt one with bound parameters (cache-key generation and coercion), and a
# validation is mostly these reads: they are built once, here, and the scalar reads
# share one statement (one round trip).
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_POSITION_FIELDS = ("quantity", "cost_basis", "realised_pnl", "commission", "updated_time", "version")


def _state_of(scope: Any) -> Any:
    return select(state_t.c.state).where(state_t.c.scope == scope).scalar_subquery()


def _working_count() -> Any:
    """How many of the account's orders may still trade (the repository's ``count_working``)."""
    return (
        select(func.count())
        .select_from(orders_t)
        .where(
            orders_t.c.account == bindparam("account"),
            or_(
                # The statuses as SQL literals: a bound list would be an "expanding"
                # parameter, rendered again at every execution.
                orders_t.c.status.in_([literal_column(f"'{s}'") for s in sorted(x.value for x in OPEN_STATUSES)]),
                and_(
                    orders_t.c.status == OrderStatus.APPROVED.value,
                    orders_t.c.updated_time >= bindparam("approved_since", type_=orders_t.c.updated_time.type),
                ),
            ),
        )
        .scalar_subquery()
    )


def _recent_count() -> Any:
    """How many orders the account sent since the window start (``orders_since``)."""
    return (
        select(func.count())
        .select_from(orders_t)
        .where(
            orders_t.c.account == bindparam("account"),
            orders_t.c.order_time >= bindparam("window_start", type_=orders_t.c.order_time.type),
        )
        .scalar_subquery()
    )


@functools.lru_cache(maxsize=None)
def _scalars_statement(open_orders: bool, recent_orders: bool) -> Select[Any]:
    """Both trading states and the counts whose controls are on, in one row."""
    columns = [
        _state_of(literal(GLOBAL_SCOPE)).label("global_state"),
        _state_of(bindparam("symbol_scope")).label("symbol_state"),
    ]
    if open_orders:
        columns.append(_working_count().label("open_orders"))
    if recent_orders:
        columns.append(_recent_count().label("recent_orders"))
    return select(*columns)


_POSITIONS = select(positions_t).where(positions_t.c.account == bindparam("account")).order_by(positions_t.c.symbol)
_SINCE = (entries_t.c.account == bindparam("account"),
          entries_t.c.trade_time >= bindparam("since", type_=entries_t.c.trade_time.type))
# PostgreSQL sums exact NUMERICs; SQLite's SUM would add decimal text as binary floats,
# so there the rows are summed here, exactly.
_REALISED_SUMS = select(func.sum(entries_t.c.realised_pnl), func.sum(entries_t.c.commission)).where(*_SINCE)
_REALISED_ROWS = select(entries_t.c.realised_pnl, entries_t.c.commission).where(*_SINCE)


def _state(value: str | None) -> TradingState:
    return TradingState.ACTIVE if value is None else TradingState(value)


def _realised_since(uow: UnitOfWork, account: str, since: dt.datetime) -> Decimal:
    session = uow.session
    assert session is not None
    params = {"account": account, "since": since}
    if session.get_bind().dialect.name == "postgresql":
        realised, commission = session.execute(_REALISED_SUMS, params).one()
        return ZERO if realised is None else _WIDE.subtract(realised, commission)
    total = ZERO
    with localcontext(_WIDE):
        for realised, commission in session.execute(_REALISED_ROWS, params):
            total += realised - commission
    return total


def load_context(
    uow: UnitOfWork, order: Order, limits: RiskLimits, prices: PriceSource, now: dt.datetime
) -> RiskContext:
    """Lock the order's account and read its risk context in ``uow``.

    The lock is held until ``uow`` ends, so the decision stored in the same unit of
    work is the only one made for the account meanwhile, on any replica.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        The store failed (the servicer answers UNAVAILABLE for an outage).
    """
    session = uow.session
    assert session is not None
    activity = uow.account_activity
    activity.lock_account(order.account)
    window_start = now - dt.timedelta(seconds=limits.order_rate_window_seconds)
    approved_since = now - dt.timedelta(seconds=limits.approval_lifetime_seconds)
    # Reads whose control is off are skipped (they stay at the defaults, which pass).
    count_open, count_recent = limits.max_open_orders is not None, limits.order_rate_limit is not None
    scalars = session.execute(
        _scalars_statement(count_open, count_recent),
        {"symbol_scope": symbol_scope(order.symbol), "account": order.account,
         "approved_since": approved_since, "window_start": window_start},
    ).one()
    # The stricter of the global state and the symbol's own (a reconciler's quarantine).
    overall, own = _state(scalars.global_state), _state(scalars.symbol_state)
    state = own if _STRICTNESS[own] > _STRICTNESS[overall] else overall
    positions = {
        row["symbol"]: Position(account=row["account"], symbol=row["symbol"], **{f: row[f] for f in _POSITION_FIELDS})
        for row in session.execute(_POSITIONS, {"account": order.account}).mappings()
    }
    reads: dict[str, object] = {}
    if count_open:
        reads["open_orders"] = int(scalars.open_orders)
    if count_recent:
        reads["recent_orders"] = int(scalars.recent_orders)
    if state is TradingState.REDUCING:
        reads["working_same_side"] = activity.working_quantity(order.account, order.symbol, order.side, approved_since)
    if limits.daily_loss_limit is not None:
        reads["realised_today"] = _realised_since(uow, order.account, last_reset(now, limits.daily_reset_utc))
    return RiskContext(
        trading_state=state,
        positions=positions,
        reference_prices=reference_prices(prices, [order.symbol, *positions]),
        **reads,  # type: ignore[arg-type]
    )
