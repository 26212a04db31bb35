"""What a Risk replica knows about the accounts it owns, in memory: the book.

Per account: the ledger's positions (by market type and symbol: spot and futures apart),
the orders that may still trade (APPROVED with a
live token, or working at a venue) with what they may still fill, the order times
inside the throttle's window, and the realised PnL net of commissions since the daily
reset (a running sum: the daily loss costs the same whatever the account's history; a
fill counts on the day of its trade time, so one traded past the next reset, the venue's
clock ahead of this replica's, waits for that reset).

The book is loaded from the store when the replica starts (:mod:`services.store.risk_state`)
and kept current from two sources: the replica's own decisions, recorded the moment
they are made (so two orders of one account decided back to back see each other), and
the order events the OMS writes (submissions, fills, ends), which the replica follows
in the store. Fills update positions through :func:`services.domain.ledger.apply_fill`,
and each becomes a ledger entry the replica writes to the store in batches
(:meth:`Book.drain`): the replica that owns an account is the one writer of its ledger.

Everything here runs on the replica's event loop, so a decision (read, check, record)
is never interleaved with another.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from decimal import Context, Decimal
from typing import Any, Callable, Iterable

from services.domain import MarketType, Order, OrderStatus, Side, TradingState
from services.domain.ledger import ZERO, LedgerUpdate, Position, apply_fill

from .context import DailyReset, RiskContext
from .limits import RiskLimits
from .prices import PriceSource, reference_prices

_WIDE = Context(prec=100)
_DAY = dt.timedelta(days=1)
_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
GLOBAL_SCOPE = "global"
#: How many (venue, trade id) keys of applied fills the book remembers, to apply a fill
#: the store delivers twice (a re-read after a gap, the start-up overlap) once.
APPLIED_TRADES = 200_000
#: How many client order ids the book remembers for idempotent retries (older ones are
#: found by the store's unique key instead).
CLIENT_IDS = 200_000
_FILLS = frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED})
_ENDS = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


def symbol_scope(symbol: str) -> str:
    return f"symbol:{symbol}"


def remaining(quantity: Decimal | None, filled: Decimal) -> Decimal | None:
    """What an order may still fill; None when the venue decides its quantity."""
    return None if quantity is None else quantity - filled


@dataclasses.dataclass(slots=True)
class Working:
    """An order that may still trade: what it may still fill, on which side, in which market."""

    order_id: str
    symbol: str
    side: Side
    #: None for an order whose quantity the venue decides (close_position; a quote_order_qty
    #: one this replica did not size itself: loaded at start, or re-signed on a retry): it
    #: adds nothing to the working quantity and works until its end.
    remaining: Decimal | None
    approved: bool  # APPROVED (counts while its token lives) rather than at a venue
    approved_at: float  # epoch seconds of the token the client holds
    #: Spot or futures: it fills against the position in its own market only.
    market_type: MarketType


class Account:
    """One account's state; the queues are made on first use (most accounts hold
    positions and nothing else).

    ``working`` is read freely but changed through :meth:`hold` and :meth:`release` only:
    they keep the working orders indexed by market type, symbol and side, so what one
    side of one instrument may still fill is summed over its own orders, not the
    account's every order (each decision asks it: the position limit measures it)."""

    __slots__ = ("positions", "working", "_sides", "approvals", "recent", "realised_today", "reset_at", "ahead")

    def __init__(self) -> None:
        self.positions: dict[tuple[MarketType, str], Position] = {}
        self.working: dict[str, Working] = {}
        self._sides: dict[tuple[MarketType, str, Side], dict[str, Working]] | None = None
        self.approvals: collections.deque[tuple[float, str]] | None = None
        self.recent: collections.deque[float] | None = None
        #: The realised PnL of the fills traded since ``reset_at`` and before the next reset.
        self.realised_today: Decimal = ZERO
        self.reset_at: dt.datetime | None = None
        #: The realised PnL of fills traded on a later day (their trade time past the next
        #: reset: the venue's clock ahead of this replica's), by that day's reset.
        self.ahead: dict[dt.datetime, Decimal] | None = None

    # -- what may still trade -------------------------------------------------------------
    def hold(self, held: Working) -> None:
        """``held`` works (in place of what worked under its order id before)."""
        self.release(held.order_id)
        self.working[held.order_id] = held
        if self._sides is None:
            self._sides = {}
        key = (held.market_type, held.symbol, held.side)
        side = self._sides.get(key)
        if side is None:
            side = self._sides[key] = {}
        side[held.order_id] = held

    def release(self, order_id: str) -> Working | None:
        """``order_id`` works no more; what worked under it, if anything."""
        held = self.working.pop(order_id, None)
        if held is not None and self._sides is not None:
            key = (held.market_type, held.symbol, held.side)
            side = self._sides.get(key)
            if side is not None:
                side.pop(order_id, None)
                if not side:
                    del self._sides[key]
        return held

    def open_orders(self, approved_since: float) -> int:
        """Working orders, approvals whose token lapsed before ``approved_since`` let go."""
        approvals = self.approvals
        while approvals and approvals[0][0] < approved_since:
            at, order_id = approvals.popleft()
            held = self.working.get(order_id)
            if held is not None and held.approved and held.approved_at == at:
                self.release(order_id)  # its token lapsed: it can never be submitted
        return len(self.working)

    def working_quantity(self, symbol: str, side: Side, approved_since: float, market_type: MarketType) -> Decimal:
        """What the working orders in ``symbol`` of ``market_type`` on ``side`` may still fill."""
        total = ZERO
        if self._sides is None:
            return total
        for held in self._sides.get((market_type, symbol, side), {}).values():
            if held.remaining is not None and (not held.approved or held.approved_at >= approved_since):
                total = _WIDE.add(total, held.remaining)
        return total

    def recent_orders(self, since: float) -> int:
        recent = self.recent
        if recent is None:
            return 0
        while recent and recent[0] < since:
            recent.popleft()
        return len(recent)

    def realised_since(self, reset: dt.datetime) -> Decimal:
        self._roll(reset)
        return self.realised_today

    def _roll(self, reset: dt.datetime) -> None:
        if self.reset_at is None or reset > self.reset_at:
            self.reset_at = reset
            self.realised_today = ZERO
            ahead = self.ahead
            if ahead:
                self.realised_today = ahead.pop(reset, ZERO)
                for day in [day for day in ahead if day < reset]:
                    del ahead[day]
                if not ahead:
                    self.ahead = None

    def add_realised(self, reset: dt.datetime, traded: dt.datetime, net: Decimal) -> None:
        """Count ``net``, realised by a fill traded at ``traded``, on the day it was traded:
        today's when between ``reset`` (the current reset) and the next, a later day's
        when after (counted from that day's reset on), nothing when before ``reset``."""
        self._roll(reset)
        if traded < reset:
            return
        if traded < reset + _DAY:
            self.realised_today = _WIDE.add(self.realised_today, net)
            return
        day = reset + _DAY * ((traded - reset) // _DAY)
        if self.ahead is None:
            self.ahead = {}
        self.ahead[day] = _WIDE.add(self.ahead.get(day, ZERO), net)


class Book:
    """The accounts a replica owns, and the trading state every replica obeys.

    Parameters
    ----------
    limits
        The controls (the throttle's window, the token lifetime, the daily reset).
    owns
        Whether this replica owns an account (see :mod:`services.risk.sharding`).
    clock
        The current time (tests inject theirs).
    """

    def __init__(self, limits: RiskLimits, owns: Callable[[str], bool] = lambda account: True,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        from services.domain import utcnow

        self.limits = limits
        self.owns = owns
        self.clock = clock or utcnow
        self.accounts: dict[str, Account] = {}
        self.trading: dict[str, TradingState] = {}
        self._applied: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._client_ids: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        #: Ledger entries and positions to write to the store (see :meth:`drain`).
        self._entries: list[dict[str, Any]] = []
        self._dirty: dict[tuple[str, MarketType, str], Position] = {}
        self.daily_reset = DailyReset(limits.daily_reset_utc)
        #: The accounts whose daily loss tripped the kill switch, with the reset that began
        #: the period they tripped it in (once per period: :mod:`services.risk.kill_switch`).
        self.loss_tripped: dict[str, dt.datetime] = {}

    def clear(self) -> None:
        """Forget everything (the book is about to be loaded again)."""
        self.__init__(self.limits, self.owns, self.clock)  # type: ignore[misc]

    def account(self, name: str) -> Account:
        found = self.accounts.get(name)
        if found is None:
            found = self.accounts[name] = Account()
        return found

    # -- the trading state ------------------------------------------------------------------
    def state_for(self, symbol: str) -> TradingState:
        """The stricter of the global state and the symbol's own (a quarantine)."""
        overall = self.trading.get(GLOBAL_SCOPE, TradingState.ACTIVE)
        own = self.trading.get(symbol_scope(symbol), TradingState.ACTIVE)
        return own if _STRICTNESS[own] > _STRICTNESS[overall] else overall

    def set_trading(self, states: dict[str, TradingState]) -> None:
        """The trading state of every scope, as the store holds it (no row: ACTIVE)."""
        self.trading = dict(states)

    # -- deciding ----------------------------------------------------------------------------
    def context(self, order: Order, prices: PriceSource, now: dt.datetime) -> RiskContext:
        """What the checks measure ``order`` against, from memory.

        A replacement (``order.replaces_order_id``) is measured without the order it
        replaces, which it supersedes: that order does not count among the open orders,
        nor what it may still fill among the working quantity (the position limit's and
        REDUCING's). The book keeps holding it until its end (the OMS cancels it before
        the replacement goes out)."""
        limits = self.limits
        account = self.accounts.get(order.account) or Account()
        stamp = now.timestamp()
        approved_since = stamp - limits.approval_counted_seconds
        state = self.state_for(order.symbol)
        positions = account.positions
        open_orders = account.open_orders(approved_since)
        working = account.working_quantity(order.symbol, order.side, approved_since, order.market_type)
        replaced = account.working.get(order.replaces_order_id) if order.replaces_order_id else None
        if replaced is not None:
            open_orders -= 1
            if (working and replaced.remaining and replaced.symbol == order.symbol and replaced.side is order.side
                    and replaced.market_type is order.market_type):
                working = max(ZERO, _WIDE.subtract(working, replaced.remaining))
        return RiskContext(
            trading_state=state,
            positions=positions,
            reference_prices=reference_prices(prices, [order.symbol, *(symbol for _, symbol in positions)]),
            market_type=order.market_type,
            open_orders=open_orders,
            working_same_side=working,
            recent_orders=account.recent_orders(stamp - limits.order_rate_window_seconds),
            realised_today=account.realised_since(self.daily_reset.at(now)),
        )

    def record(self, order: Order, sized: Decimal | None = None) -> None:
        """An order just decided (and about to be stored): an approved one counts in the
        throttle's window and among the account's working orders. A rejected one counts
        in neither: it never reaches a venue, and counted in the window, the attempts the
        throttle itself refuses would keep it full (a client sending faster than the
        limit would get nothing through, not the limit's rate).

        ``sized``: the base quantity a quote-amount order was measured at (its amount at
        the reference price), which it works as until it ends."""
        account = self.account(order.account)
        stamp = order.order_time.timestamp()
        if order.status is OrderStatus.APPROVED:
            if account.recent is None:
                account.recent = collections.deque()
            account.recent.append(stamp)
            self._approve(account, order, stamp, sized)
        self.remember_client_id(order.account, order.client_order_id, order.order_id)

    def forget(self, order: Order) -> None:
        """Undo :meth:`record`: the decision was not stored."""
        account = self.accounts.get(order.account)
        if account is None:
            return
        stamp = order.order_time.timestamp()
        if account.recent and order.status is OrderStatus.APPROVED:
            try:
                account.recent.remove(stamp)
            except ValueError:
                pass
        account.release(order.order_id)
        self._client_ids.pop((order.account, order.client_order_id), None)

    def reapproved(self, order: Order) -> None:
        """A retried APPROVED order got a fresh token: its approval counts from now."""
        self._approve(self.account(order.account), order, order.updated_time.timestamp())

    def _approve(self, account: Account, order: Order, stamp: float, sized: Decimal | None = None) -> None:
        left = remaining(order.quantity, order.filled_quantity) if order.quantity is not None else sized
        account.hold(Working(order.order_id, order.symbol, order.side, left, True, stamp, order.market_type))
        if account.approvals is None:
            account.approvals = collections.deque()
        account.approvals.append((stamp, order.order_id))

    def client_order(self, account: str, client_order_id: str) -> str | None:
        """The order id of a client order id this replica decided or loaded, if it remembers."""
        return self._client_ids.get((account, client_order_id))

    def remember_client_id(self, account: str, client_order_id: str, order_id: str) -> None:
        self._client_ids[(account, client_order_id)] = order_id
        if len(self._client_ids) > CLIENT_IDS:
            self._client_ids.popitem(last=False)

    # -- from the store ------------------------------------------------------------------------
    def load_working(self, orders: Iterable[tuple[str, str, str, str, str, Decimal, Decimal, str, dt.datetime,
                                                  str]]) -> None:
        """Orders that may still trade: (order_id, account, client_order_id, symbol, side,
        quantity, filled, status, updated_time, market_type)."""
        for (order_id, account_name, client_order_id, symbol, side, quantity, filled, status, updated,
             market_type) in orders:
            if not self.owns(account_name):
                continue
            account = self.account(account_name)
            approved = status == OrderStatus.APPROVED.value
            stamp = updated.timestamp()
            account.hold(Working(order_id, symbol, Side(side), remaining(quantity, filled), approved, stamp,
                                 MarketType(market_type)))
            if approved:
                if account.approvals is None:
                    account.approvals = collections.deque()
                account.approvals.append((stamp, order_id))
            self.remember_client_id(account_name, client_order_id, order_id)
        for account in self.accounts.values():
            if account.approvals:
                account.approvals = collections.deque(sorted(account.approvals))

    def load_recent(self, orders: Iterable[tuple[str, dt.datetime]]) -> None:
        """(account, order_time) of the orders Risk approved inside the throttle's window,
        oldest first."""
        for account_name, order_time in orders:
            if self.owns(account_name):
                account = self.account(account_name)
                if account.recent is None:
                    account.recent = collections.deque()
                account.recent.append(order_time.timestamp())

    def load_positions(self, positions: Iterable[Position]) -> None:
        for position in positions:
            if self.owns(position.account):
                self.account(position.account).positions[position.key] = position

    def load_realised(self, sums: Iterable[tuple[str, Decimal]], reset: dt.datetime,
                      ahead: Iterable[tuple[str, dt.datetime, Decimal]] = ()) -> None:
        """Realised PnL net of commissions per account since ``reset`` (the ledger's), and
        ``ahead``: (account, a later day's reset, net) of the fills traded on a later day."""
        for account_name, net in sums:
            if self.owns(account_name):
                account = self.account(account_name)
                account._roll(reset)
                account.realised_today = _WIDE.add(account.realised_today, net)
        for account_name, day, net in ahead:
            if self.owns(account_name):
                self.account(account_name).add_realised(reset, day, net)

    def load_loss_trips(self, accounts: Iterable[str], reset: dt.datetime) -> None:
        """The accounts whose daily loss tripped the kill switch since ``reset``."""
        for account_name in accounts:
            if self.owns(account_name):
                self.loss_tripped[account_name] = reset

    def submitted(self, order_id: str, account_name: str, symbol: str, side: Side, remaining: Decimal | None,
                  market_type: MarketType) -> None:
        """The OMS sent the order to a venue: it works until it ends, whatever its token."""
        if not self.owns(account_name):
            return
        account = self.account(account_name)
        held = account.working.get(order_id)
        if held is None:
            account.hold(Working(order_id, symbol, side, remaining, False, 0.0, market_type))
        else:
            held.approved = False

    def ended(self, order_id: str, account_name: str) -> None:
        account = self.accounts.get(account_name)
        if account is not None:
            account.release(order_id)

    def fill(self, *, order_id: str, account: str, symbol: str, side: Side, venue: str, trade_id: str,
             quantity: Decimal, price: Decimal, commission: Decimal, trade_time: dt.datetime,
             final: bool, market_type: MarketType = MarketType.FUTURES,
             commission_asset: str | None = None) -> LedgerUpdate | None:
        """Apply one fill to its position (once per venue trade id); None when it was
        applied before or the account is another replica's."""
        if not self.owns(account):
            return None
        key = (venue, trade_id)
        if key in self._applied:
            return None
        self._applied[key] = None
        if len(self._applied) > APPLIED_TRADES:
            self._applied.popitem(last=False)
        holder = self.account(account)
        key = (market_type, symbol)
        current = holder.positions.get(key) or Position(account, symbol, market_type=market_type)
        update = apply_fill(current, side, quantity, price, commission, trade_time, commission_asset)
        holder.positions[key] = update.position
        holder.add_realised(self.daily_reset.at(self.clock()), trade_time,
                            _WIDE.subtract(update.realised_pnl, update.commission))
        held = holder.working.get(order_id)
        if held is not None:
            held.approved = False
            if held.remaining is not None:
                held.remaining = _WIDE.subtract(held.remaining, quantity)
            if final or (held.remaining is not None and held.remaining <= 0):
                holder.release(order_id)
        self._entries.append({
            "account": account, "symbol": symbol, "venue": venue, "trade_id": trade_id, "side": side,
            "quantity": quantity, "price": price, "realised_pnl": update.realised_pnl, "commission": commission,
            "position_quantity": update.position.quantity, "trade_time": trade_time, "market_type": market_type,
            "commission_asset": commission_asset,
        })
        self._dirty[(account, market_type, symbol)] = update.position
        return update

    # -- to the store --------------------------------------------------------------------------
    def drain(self) -> tuple[list[dict[str, Any]], list[Position]]:
        """The ledger entries and positions to write since the last drain."""
        entries, positions = self._entries, list(self._dirty.values())
        self._entries, self._dirty = [], {}
        return entries, positions

    def undrain(self, entries: list[dict[str, Any]], positions: list[Position]) -> None:
        """Put back what a failed write did not store (positions newer since stay)."""
        self._entries[:0] = entries
        for position in positions:
            self._dirty.setdefault((position.account, position.market_type, position.symbol), position)

    @property
    def pending_entries(self) -> int:
        return len(self._entries)


__all__ = ["Account", "Book", "GLOBAL_SCOPE", "Working", "symbol_scope"]
