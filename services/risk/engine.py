"""The risk gate: check an order from memory, store the decision, sign the approved ones.

A decision reads nothing from the store: the replica that owns the order's account
holds the account in its book (:mod:`services.risk.book`) and checks the order against
it, records the decision there at once (the next order of the account sees it), and
stores the order with its PENDING -> APPROVED (or REJECTED) events in the next group
commit (:data:`services.store.order_sets.NEW_ORDERS`, one multi-row statement per table
for every decision in flight). The token is returned only after that commit, so every
token Tessera has issued belongs to a stored, approved order; a decision that could not
be stored is taken back out of the book.

:meth:`RiskEngine.sync` keeps the book current: the OMS's order events since the last
look (submissions, fills, ends), the trading state of every scope, and the ledger
entries the fills made, written to the store. The service runs it in the background
(:meth:`RiskEngine.follow`); a kill switch set on another replica is obeyed within one
``state_poll_seconds`` of its commit (plus the read).

With ``lease_seconds`` (the service's), a replica also checks in to the store
(:meth:`RiskEngine.check_in`): it decides, and writes the ledger, only while no live
replica runs with another replica count, since two shard maps at once would give some
accounts two owners (docs/risk-sharding.md, "Two counts never decide at once").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import socket
import time
import uuid
from typing import Any, Callable

import core_ext
from services.common.observability import metrics
from services.common.venue_accounts import VenueAccounts
from services.domain import Order, OrderStatus, TradingState, new_id, utcnow
from services.domain.ledger import ZERO
from services.domain.order import APPROVAL_REASON, is_fill_after_close
from services.domain.errors import (Conflict, DomainError, InvalidOrder, OrderNotFound, PreconditionFailed,
                                    ShardMapUnsettled)
from services.store import DuplicateClientOrderId, TradingStateRecord, UnitOfWork
from services.store.database import Database
from services.store.order_sets import NEW_ORDERS
from services.store.risk_state import StoreSource

from .book import GLOBAL_SCOPE, Book, remaining
from .checks import Violation, check_order
from .context import last_reset
from .kill_switch import DAILY_LOSS_CODE, OPERATOR, trip_reason, tripped_account
from .limits import RiskLimits
from .prices import PriceSource, StaticPrices
from .sharding import Sharding

log = logging.getLogger(__name__)
_FILLS = (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED)
#: Ledger entries the book holds before it writes them without waiting for ``flush_seconds``.
FLUSH_ENTRIES = 5000
_ENDS = (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED)
#: Why an approval retried after its token lapsed ends EXPIRED (the OMS's sweep's words).
LAPSED_REASON = "risk token expired before submission"


@dataclasses.dataclass
class Decision:
    order: Order
    token: str = ""
    violations: list[Violation] = dataclasses.field(default_factory=list)


def new_client_order_id() -> str:
    return "tsr-" + new_id().replace("-", "")[:28]


class RiskEngine:
    """Pre-trade risk for the accounts this replica owns.

    Parameters
    ----------
    db, keyring, limits, prices
        The store, the signing keys, the controls, the reference prices.
    sharding
        Which accounts this replica owns (default: every account).
    clock, monotonic
        The current time (UTC), and the monotonic clock the polls and flushes are paced
        by: the real ones unless a test gives its own.
    source
        Where the book is loaded from, followed from, and its ledger written to
        (default: the store behind ``db``, :class:`~services.store.risk_state.StoreSource`).
    poll_seconds, state_poll_seconds
        How often :meth:`follow` reads the order events and the trading state.
    accounts
        The venue accounts: an order whose account or venue is not configured there is
        refused (``ACCOUNT_NOT_CONFIGURED``, ``VENUE_NOT_CONFIGURED``) before anything is
        stored. None: no registry, every account may trade.
    flush_seconds
        How often the ledger the book owes is written (sooner past ``FLUSH_ENTRIES``
        entries): it is the store's copy, for a replica that starts; decisions use the book.
    lease_seconds
        Take part in the replica-count check (see :meth:`check_in`; Risk's service does,
        with 10 s): the replica writes its row in the store at start and every tenth of
        the lease, and decides only while no replica seen within the lease runs with
        another count and its own last check-in is under half the lease old. None (the
        default, for a book driven by a test): no check.
    """

    def __init__(
        self,
        db: Database[Any],
        keyring: "core_ext.KeyRing",
        limits: RiskLimits,
        prices: PriceSource | None = None,
        *,
        sharding: Sharding | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        source: Any = None,
        poll_seconds: float = 0.1,
        state_poll_seconds: float = 0.1,
        flush_seconds: float = 1.0,
        accounts: VenueAccounts | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.db = db
        #: The venue accounts (None: every account may trade, as in paper mode without a registry).
        self.accounts = accounts
        self.keyring = keyring
        self.limits = limits
        self.prices = prices if prices is not None else StaticPrices(limits.reference_prices)
        self.clock = clock
        self.monotonic = monotonic
        self.source = source if source is not None else StoreSource(db, monotonic=monotonic)
        self.sharding = sharding or Sharding()
        self.book = Book(limits, self.sharding.owns, clock)
        self.poll_seconds = poll_seconds
        self.state_poll_seconds = state_poll_seconds
        self._loading: asyncio.Future[None] | None = None
        self._states_read = 0.0
        #: Counts this replica's own changes of the trading state: a poll that read the
        #: store across one does not apply what it read (it may predate the change).
        self._state_changes = 0
        self._flushed = 0.0
        self.flush_seconds = flush_seconds
        self._managers: dict[str, str] = {}  # order manager -> its target account (never changes)
        self._in_flight: dict[tuple[str, str], asyncio.Future[Any]] = {}
        #: Replacements being decided: their id -> what the order they replace had filled.
        self._replacing: dict[str, Any] = {}
        # -- the replica-count check (lease_seconds) --
        self.lease_seconds = lease_seconds
        #: This process among the replicas' rows (``risk_replicas``), and its host's name.
        self.instance = str(uuid.uuid4())
        self.host = socket.gethostname()
        #: The live replicas running with another count, at the last check-in.
        self.other_counts: list[Any] = []
        self._checked_in: float | None = None  # monotonic time of the last check-in that succeeded
        #: The book was loaded while the count was settled, and this replica has not since
        #: gone unconfirmed long enough for another count's replica to take it for gone.
        self._loaded = lease_seconds is None
        self._stopping = False
        self._lapses = 0
        self._beating: asyncio.Task[None] | None = None
        #: Calls deciding past the check (stop and a reload wait for them), and what wakes the waiter.
        self._deciding = 0
        self._idle: asyncio.Event | None = None

    # -- the book ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the book from the store (once; later calls wait for the first). With the
        replica-count check, check in first, and load only if no replica with another
        count runs (otherwise :meth:`sync` loads it once none does)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._start())
        await asyncio.shield(self._loading)

    async def _start(self) -> None:
        if self.lease_seconds is None:
            await self._load()
            return
        await self.check_in()
        self._beating = asyncio.ensure_future(self._heartbeat())
        if self._may_load():
            await self._load()

    # -- the replica count ----------------------------------------------------------------------
    async def check_in(self) -> None:
        """Write this replica's row (ordinal, count, seen now) and read which live replicas
        run with another count: while one does, two shard maps are in use at once and some
        accounts would have two owners, so neither side decides nor writes the ledger.

        A replica whose check-ins failed for half the lease may have been taken for gone
        by a replica with another count, which may have decided its accounts meanwhile:
        its book is loaded again before it decides again."""
        assert self.lease_seconds is not None
        now = self.clock()
        lease = dt.timedelta(seconds=self.lease_seconds)
        found = await self.source.check_in(
            instance=self.instance, ordinal=self.sharding.shard, shards=self.sharding.shards, host=self.host,
            now=now, live_since=now - lease, forget_before=now - 60 * lease)
        others = [replica for replica in found if replica.shards != self.sharding.shards]
        checked = self.monotonic()
        if self._checked_in is not None and checked - self._checked_in >= self.lease_seconds / 2:
            self._loaded = False
            self._lapses += 1  # a load under way read its snapshot before this: not good enough
            log.warning("risk replica %d of %d was not checked in for %.1f s: its book is loaded again before it "
                        "decides", self.sharding.shard, self.sharding.shards, checked - self._checked_in)
        if others and {r.instance for r in others} != {r.instance for r in self.other_counts}:
            log.error("risk replica %d of %d does not decide: %s", self.sharding.shard, self.sharding.shards,
                      _describe(others))
        elif self.other_counts and not others:
            log.warning("risk replica %d of %d: no replica with another count is left", self.sharding.shard,
                        self.sharding.shards)
        self.other_counts = others
        self._checked_in = checked

    async def _heartbeat(self) -> None:
        assert self.lease_seconds is not None
        while not self._stopping:
            await asyncio.sleep(self.lease_seconds / 10)
            if self._stopping:
                break
            try:
                await self.check_in()
            except Exception as error:  # noqa: BLE001 - the next beat tries again; decisions stop at half the lease
                log.warning("risk replica %d of %d could not check in: %s", self.sharding.shard,
                            self.sharding.shards, error)

    def settled(self) -> bool:
        """Whether this replica may decide: no replica with another count seen, its own
        check-in confirmed within half the lease, not stopping."""
        return self.unsettled() is None

    def unsettled(self) -> ShardMapUnsettled | None:
        """Why this replica may not decide now (None: it may)."""
        if self.lease_seconds is None:
            return None
        me = f"risk replica {self.sharding.shard} of {self.sharding.shards}"
        metadata = {"replica": self.sharding.shard, "shards": self.sharding.shards}
        if self._stopping:
            return ShardMapUnsettled(f"{me} is stopping: retry", metadata=metadata)
        if self.other_counts:
            return ShardMapUnsettled(
                f"{me} does not decide while {_describe(self.other_counts)}: two replica counts at once would give "
                "some accounts two owners; retry once every Risk replica runs with one TESSERA_RISK_SHARDS "
                "(docs/risk-sharding.md)", metadata=metadata)
        if self._checked_in is None or self.monotonic() - self._checked_in >= self.lease_seconds / 2:
            return ShardMapUnsettled(f"{me} has not confirmed the replica count in the store lately: retry",
                                     metadata=metadata)
        if not self._loaded:
            return ShardMapUnsettled(f"{me} is loading its book: retry", metadata=metadata)
        return None

    async def stop(self) -> None:
        """Stop deciding, write the ledger owed (when this replica may), and take this
        replica's row out of the store, only once no decision of it is being stored: a
        replica with another count may start deciding the moment it is gone."""
        self._stopping = True
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beating
        await self._quiet()
        with contextlib.suppress(Exception):
            await self.flush()
        if self.lease_seconds is None or self._checked_in is None:
            return
        try:
            await self.source.check_out(self.instance)
        except Exception as error:  # noqa: BLE001 - its row lapses after the lease
            log.warning("risk replica %d of %d could not check out (its row lapses after %.0f s): %s",
                        self.sharding.shard, self.sharding.shards, self.lease_seconds, error)

    async def _quiet(self) -> None:
        """Wait until no call is deciding past the check (each has stored its decisions)."""
        while self._deciding:
            self._idle = asyncio.Event()
            await self._idle.wait()

    async def _reload(self) -> None:
        """Load the book again (the count settled after it was not): nothing of the old one
        is kept, the store has all of it (a fill whose ledger entry was not written is
        among the fills the load applies)."""
        await self._quiet()
        self.book.clear()
        await self._load()

    async def _load(self) -> None:
        lapses = self._lapses
        now = self.clock()
        limits = self.limits
        snapshot = await self.source.load(
            now=now, approved_since=now - dt.timedelta(seconds=limits.approval_counted_seconds),
            window_start=now - dt.timedelta(seconds=limits.order_rate_window_seconds),
            reset=last_reset(now, limits.daily_reset_utc), owns=self.sharding.owns)
        book = self.book
        book.set_trading(snapshot.trading)
        book.load_positions(snapshot.positions)
        book.load_realised(snapshot.realised, last_reset(now, limits.daily_reset_utc), snapshot.realised_ahead)
        book.load_loss_trips((account for account in (tripped_account(*halt) for halt in snapshot.halts)
                              if account is not None), last_reset(now, limits.daily_reset_utc))
        # Fills whose ledger entries a stopped replica never wrote: they move the positions
        # and today's PnL. They are taken in before the working orders are loaded, whose
        # filled quantities in the store count them already.
        for trade in snapshot.unapplied:
            book.fill(final=False, **trade)
        book.load_working(snapshot.working)
        book.load_recent(snapshot.recent)
        self._states_read = self.monotonic()
        self._loaded = lapses == self._lapses
        log.info("risk book loaded: %d accounts, %d fills applied at start", len(book.accounts),
                 len(snapshot.unapplied))
        await self.flush()

    async def sync(self) -> int:
        """Bring the book up to date with the store now: order events, the trading state,
        and the ledger it owes. Returns how many events it applied."""
        await self.start()
        if not self._loaded:
            if not self._may_load():
                return 0  # no book to bring up to date until the count settles
            await self._reload()
        read_states = self.monotonic() - self._states_read >= self.state_poll_seconds
        changes = self._state_changes
        events, states = await self.source.follow(read_states)
        if states is not None and changes == self._state_changes:
            self.book.set_trading(states)
            self._states_read = self.monotonic()
        for event in events:
            self._apply(event)
        if (self.book.pending_entries >= FLUSH_ENTRIES
                or self.monotonic() - self._flushed >= self.flush_seconds):
            await self.flush()
        return len(events)

    def _apply(self, event: Any) -> None:
        book = self.book
        if event.to_status is OrderStatus.SUBMITTED:
            book.submitted(event.order_id, event.account, event.symbol, event.side,
                           remaining(event.quantity, event.filled_quantity), event.market_type)
        elif event.to_status in _FILLS:
            final = event.to_status is OrderStatus.FILLED
            if "trade_id" in event.payload:
                self._fill(event, final=final)
            if final:  # also the venue's word alone, for an order whose quantity it decides
                book.ended(event.order_id, event.account)
        elif event.to_status in _ENDS:
            if is_fill_after_close(event.from_status, event.to_status, event.payload):
                self._fill(event, final=True)  # a fill the venue reported after the order closed
            book.ended(event.order_id, event.account)

    def _fill(self, event: Any, *, final: bool) -> None:
        payload = event.payload
        try:
            self.book.fill(order_id=event.order_id, account=event.account, symbol=event.symbol, side=event.side,
                           venue=event.venue, trade_id=str(payload["trade_id"]),
                           quantity=core_ext_decimal(payload["quantity"]), price=core_ext_decimal(payload["price"]),
                           commission=core_ext_decimal(payload.get("commission", "0")), trade_time=event.event_time,
                           final=final, market_type=event.market_type, commission_asset=payload.get("commission_asset"))
        except (KeyError, ValueError, ArithmeticError) as error:
            log.error("fill event %s of order %s cannot be applied to the ledger: %s", event.sequence,
                      event.order_id, error)

    def _count_confirmed(self) -> bool:
        return (self._checked_in is not None and self.lease_seconds is not None
                and self.monotonic() - self._checked_in < self.lease_seconds / 2)

    def _may_load(self) -> bool:
        """Whether the count is settled for a load: no replica with another count, this
        replica's check-in confirmed, not stopping."""
        return not self._stopping and not self.other_counts and self._count_confirmed()

    def _may_write(self) -> bool:
        """Whether this replica's book may be written to the store as the ledger: not
        while a replica with another count runs, which may own the same accounts (their
        fills are in the store, and whoever owns an account once the count settles applies
        them), nor unconfirmed, nor before its book is loaded."""
        return self.lease_seconds is None or (self._loaded and not self.other_counts and self._count_confirmed())

    async def flush(self) -> None:
        """Write the ledger entries and positions the book owes the store (when it may:
        :meth:`_may_write`)."""
        self._flushed = self.monotonic()
        if not self._may_write():
            return
        entries, positions = self.book.drain()
        if not entries and not positions:
            return
        try:
            await self.source.write_ledger(entries, positions)
        except BaseException:
            self.book.undrain(entries, positions)
            raise

    async def follow(self, stop: asyncio.Event) -> None:
        """:meth:`sync` every ``poll_seconds`` until ``stop`` (a failed pass is retried)."""
        while not stop.is_set():
            try:
                applied = await self.sync()
            except Exception as error:  # noqa: BLE001 - the store may be back on the next pass
                log.warning("risk book not brought up to date: %s", error)
                applied = 0
            if applied >= 1000:
                continue  # behind: read on at once
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
        await self.stop()

    # -- decisions ----------------------------------------------------------------------------
    async def validate(self, order: Order, *, fresh_client_order_id: bool = False) -> Decision:
        """Decide ``order`` and store the decision.

        ``fresh_client_order_id``: Risk generated the order's client order id just now
        (the client sent none), so it cannot be a retry.

        Raises
        ------
        InvalidOrder, Conflict
            A malformed reference, or a client order id used for other content.
        """
        (outcome,) = await self.validate_many([(order, fresh_client_order_id)])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def validate_many(self, items: list[tuple[Order, bool]]) -> list[Decision | DomainError]:
        """:meth:`validate` for each ``(order, fresh client order id)``, decided in order
        (each sees the ones before it) and stored in one write. Each item gets its
        decision or the domain error that refused it.

        Raises
        ------
        Exception
            The store failed (no decision of the call was kept).
        """
        await self.start()
        unsettled = self.unsettled()
        if unsettled is not None:
            return [unsettled] * len(items)
        self._deciding += 1
        try:
            return await self._validate_many(items)
        finally:
            self._deciding -= 1
            if not self._deciding and self._idle is not None:
                self._idle.set()

    async def _validate_many(self, items: list[tuple[Order, bool]]) -> list[Decision | DomainError]:
        results: list[Any] = [None] * len(items)
        decided: list[tuple[int, Decision]] = []
        retries: list[int] = []
        now = self.clock()
        for index, (order, fresh) in enumerate(items):
            if not self.sharding.owns(order.account):
                results[index] = PreconditionFailed(
                    f"account {order.account!r} is decided by risk replica {self.sharding.owner(order.account)} "
                    f"of {self.sharding.shards} (this is replica {self.sharding.shard})", reason="NOT_ACCOUNT_OWNER",
                    metadata={"account": order.account, "owner_replica": self.sharding.owner(order.account)})
                continue
            if self.accounts is not None:
                try:
                    self.accounts.check(order.account, order.venue, order.market_type)
                except DomainError as error:  # nothing stored: the order never existed
                    results[index] = error
                    continue
            key = (order.account, order.client_order_id)
            if not fresh and (key in self._in_flight or self.book.client_order(*key) is not None):
                retries.append(index)  # a retry: answered from the store, below
                continue
            try:
                await self._check_references(order, now)
            except DomainError as error:
                results[index] = error
                continue
            decision = self._decide(order, now)
            decided.append((index, decision))
        if decided:
            await self._store(decided, results, items)
        for index in retries:
            try:
                results[index] = await self._retry(items[index][0])
            except DomainError as error:
                results[index] = error
        return results

    def _decide(self, order: Order, now: dt.datetime) -> Decision:
        """Check ``order`` against the book and record the decision in it (not yet stored)."""
        context = self.book.context(order, self.prices, now)
        violations = check_order(order, self.limits, context)
        order.order_time = order.updated_time = now
        token = ""
        if violations:
            codes = [v.code for v in violations]
            metrics.risk_rejected(codes)
            order.reject_reasons = codes
            order.record_creation(now)
            order.transition(OrderStatus.REJECTED, reason="risk: " + ",".join(codes), at=now,
                             payload={"violations": [dataclasses.asdict(v) for v in violations]})
        else:
            if order.replaces_order_id is None:
                order.record_approval(now)
            else:
                # A replacement's approval records what the OMS holds the replaced order to.
                # Its chain head then differs from every plain approval's, so SubmitOrder's
                # claim without a read can never move it: only ReplaceOrder's claim does.
                order.record_creation(now)
                order.transition(OrderStatus.APPROVED, reason=APPROVAL_REASON, at=now, payload={
                    "replaces_order_id": order.replaces_order_id,
                    "replaced_filled_quantity": str(self._replacing.get(order.order_id, ""))})
            token = self._sign(order, now)
        # A quote-amount order works as the base quantity it was measured at.
        sized = (order.quantity_at(ZERO, context.reference_prices.get(order.symbol))
                 if order.quantity is None and order.quote_order_qty is not None else None)
        self.book.record(order, sized)
        return Decision(order, token=token, violations=violations)

    async def _store(self, decided: list[tuple[int, Decision]], results: list[Any],
                     items: list[tuple[Order, bool]]) -> None:
        loop = asyncio.get_running_loop()
        waiting = {}
        for _, decision in decided:
            key = (decision.order.account, decision.order.client_order_id)
            waiting[key] = self._in_flight[key] = loop.create_future()
        try:
            trip = next((d for _, d in decided if self._trips_kill_switch(d)), None)
            stored = self.db.write_many(NEW_ORDERS, [d.order for _, d in decided])
            if trip is None:
                outcomes = await stored
            else:
                outcomes, _ = await asyncio.gather(stored, self._halt_on_daily_loss(trip))
        except BaseException:
            for _, decision in decided:
                self.book.forget(decision.order)
            raise
        finally:
            for key, future in waiting.items():
                self._in_flight.pop(key, None)
                future.set_result(None)
        for (index, decision), outcome in zip(decided, outcomes):
            if isinstance(outcome, DuplicateClientOrderId):
                # Decided here while the store already holds the client order id (from
                # before this replica remembers): answer as its retry would.
                self.book.forget(decision.order)
                try:
                    results[index] = await self._retry(items[index][0])
                except DomainError as error:
                    results[index] = error
            elif isinstance(outcome, BaseException):
                self.book.forget(decision.order)
                results[index] = outcome if isinstance(outcome, DomainError) else Conflict(str(outcome))
            else:
                results[index] = decision

    def _trips_kill_switch(self, decision: Decision) -> bool:
        """A daily loss breach while the global state is ACTIVE sets HALTED (as operator
        ``risk``), once per account and daily period; only an operator sets it back (see
        :mod:`services.risk.kill_switch`)."""
        if not any(v.code == DAILY_LOSS_CODE for v in decision.violations):
            return False
        order = decision.order
        if self.book.loss_tripped.get(order.account) == self.book.daily_reset.at(order.order_time):
            return False  # tripped today already: an operator has set trading back since
        return self.book.trading.get(GLOBAL_SCOPE, TradingState.ACTIVE) is TradingState.ACTIVE

    async def _halt_on_daily_loss(self, decision: Decision) -> None:
        breach = next(v for v in decision.violations if v.code == DAILY_LOSS_CODE)
        account = decision.order.account
        reason = trip_reason(account, breach.message)
        period = self.book.daily_reset.at(decision.order.order_time)
        self.book.trading[GLOBAL_SCOPE] = TradingState.HALTED
        self.book.loss_tripped[account] = period
        self._state_changes += 1

        def halt(uow: UnitOfWork) -> bool:
            if uow.trading_state.get().state is not TradingState.ACTIVE:
                return False
            uow.trading_state.set(TradingState.HALTED, operator=OPERATOR, reason=reason)
            return True

        halted = False
        try:
            halted = await self.db.run(halt)
        finally:
            self._state_changes += 1  # a poll that read the store before the commit
            if not halted and self.book.loss_tripped.get(account) == period:
                # Not this breach's halt (the write failed, or trading was no longer ACTIVE
                # in the store: halted or reduced elsewhere): it trips the switch at the
                # account's next order once trading is ACTIVE again.
                del self.book.loss_tripped[account]

    def _sign(self, order: Order, now: dt.datetime) -> str:
        token = core_ext.sign_token(self.keyring, order.token_body(), int(now.timestamp()))
        order.token_nonce = token.split(".")[3]
        return token

    async def _check_references(self, order: Order, now: dt.datetime) -> None:
        if order.expire_time is not None and order.expire_time <= now:
            raise InvalidOrder("expire_time", "is in the past", violation="IN_THE_PAST")
        manager_id = order.order_manager_id
        if manager_id is None:
            return
        target = self._managers.get(manager_id)
        if target is None:
            manager = await self.db.read(lambda uow: uow.order_managers.get(manager_id))
            if manager is None:
                raise InvalidOrder("order_manager_id", f"no order manager {manager_id!r}: create it first",
                                   violation="UNKNOWN_REFERENCE")
            target = self._managers[manager_id] = manager.target_account_uid
        if target != order.account:
            raise InvalidOrder("order_manager_id", f"order manager {manager_id!r} targets another account",
                               violation="NOT_ALLOWED")

    async def _retry(self, order: Order) -> Decision:
        """Idempotent retry: the same order again returns the stored one and sends nothing.

        A still-APPROVED order gets a fresh token (the retrying client may never have
        received the first); its approval time moves with it, so expiry sweeps count
        from the token the client holds. One whose token has lapsed (the OMS would no
        longer accept it, and its sweep is about to expire it) is not given a new one:
        the book let it go from the open orders when it lapsed, and a fresh token would
        bring the old decision back unchecked. It is expired here, as the sweep would,
        and answered EXPIRED.
        """
        key = (order.account, order.client_order_id)
        pending = self._in_flight.get(key)
        if pending is not None:
            await pending
        filled_now = self._replacing.get(order.order_id)  # a replacement: what the old order has filled now
        existing, filled_then = await self.db.read(lambda uow: _stored_decision(uow, key, order))
        if existing is None:  # remembered, but its decision was never stored: decide it now
            return await self.validate(order, fresh_client_order_id=True)
        order.order_id = existing.order_id
        if filled_then is not None:
            # A replacement's request names the new *total*: what the old order has filled
            # since the first answer makes the rebuilt replacement smaller, not the request
            # other. The same total and price is the same request, answered as it was.
            if (filled_now is not None and order.quantity is not None and existing.quantity is not None
                    and order.quantity + filled_now == existing.quantity + filled_then):
                order = dataclasses.replace(order, quantity=existing.quantity)
        if not _same_content(existing, order):
            raise Conflict(
                f"client_order_id {order.client_order_id!r} of account {order.account!r} "
                "is already used by an order with other fields",
                reason="DUPLICATE_CLIENT_ORDER_ID",
                metadata={"account": order.account, "client_order_id": order.client_order_id,
                          "order_id": existing.order_id},
            )
        self.book.remember_client_id(order.account, order.client_order_id, existing.order_id)
        violations = [Violation(code, "rejected when first validated") for code in existing.reject_reasons]
        token = ""
        now = self.clock()
        lapsed_before = now - dt.timedelta(seconds=self.limits.approval_counted_seconds)
        if existing.status is OrderStatus.APPROVED and existing.updated_time < lapsed_before:

            def expire(uow: UnitOfWork) -> Order:
                stored = uow.orders.get(existing.order_id)
                assert stored is not None
                if stored.status is OrderStatus.APPROVED and stored.updated_time < lapsed_before:
                    stored.transition(OrderStatus.EXPIRED, reason=LAPSED_REASON, at=now)
                    uow.orders.save(stored)
                return stored

            existing = await self.db.run(expire)
            if existing.status is OrderStatus.EXPIRED:
                self.book.ended(existing.order_id, existing.account)
        if existing.status is OrderStatus.APPROVED:
            token = self._sign(existing, now)

            def reapprove(uow: UnitOfWork) -> Order:
                stored = uow.orders.get(existing.order_id)
                assert stored is not None
                if stored.status is OrderStatus.APPROVED:
                    stored.updated_time = now
                    stored.token_nonce = existing.token_nonce
                    uow.orders.save(stored)
                return stored

            existing = await self.db.run(reapprove)
            if existing.status is OrderStatus.APPROVED:
                self.book.reapproved(existing)
            else:
                token = ""  # submitted or cancelled meanwhile: the new token moves nothing
        return Decision(existing, token=token, violations=violations)

    # -- replacements -----------------------------------------------------------------------------
    async def stored_order(self, order_id: str) -> Order:
        """An order as the store holds it.

        Raises
        ------
        OrderNotFound
            No such order.
        """
        found = await self.db.read(lambda uow: uow.orders.get(order_id))
        if found is None:
            raise OrderNotFound(f"no order {order_id}", metadata={"order_id": order_id})
        return found

    async def validate_replacement(self, replaced: Order, replacement: Order, *,
                                   fresh_client_order_id: bool = False) -> Decision:
        """Decide ``replacement`` (see :mod:`services.risk.replacement`) as :meth:`validate`
        does, measured without ``replaced``; its approval records what ``replaced`` had
        filled, which the OMS holds it to when it replaces it.

        Raises
        ------
        InvalidOrder, Conflict
            As :meth:`validate`; Conflict also when the client order id names an order
            that is not this replacement.
        """
        self._replacing[replacement.order_id] = replaced.filled_quantity
        try:
            decision = await self.validate(replacement, fresh_client_order_id=fresh_client_order_id)
        finally:
            self._replacing.pop(replacement.order_id, None)
        if decision.order.replaces_order_id != replaced.order_id:
            raise Conflict(
                f"client_order_id {replacement.client_order_id!r} of account {replacement.account!r} "
                "is already used by an order that does not replace this one", reason="DUPLICATE_CLIENT_ORDER_ID",
                metadata={"account": replacement.account, "client_order_id": replacement.client_order_id,
                          "order_id": decision.order.order_id})
        return decision

    # -- the trading state ------------------------------------------------------------------------
    async def trading_state(self) -> TradingStateRecord:
        return await self.db.read(lambda uow: uow.trading_state.get())

    async def set_trading_state(self, state: TradingState, operator: str, reason: str) -> TradingState:
        def change(uow: UnitOfWork) -> TradingState:
            previous = uow.trading_state.get().state
            uow.trading_state.set(state, operator, reason)
            return previous

        previous = await self.db.run(change)
        self.book.trading[GLOBAL_SCOPE] = state  # this replica at once; the others within a poll
        self._state_changes += 1
        return previous


def _describe(replicas: list[Any]) -> str:
    """The replicas running with another count, for a message."""
    return ", ".join(f"risk replica {r.ordinal} on {r.host} runs with TESSERA_RISK_SHARDS={r.shards}"
                     for r in replicas)


def _same_content(stored: Order, order: Order) -> bool:
    """Whether ``order`` asks for what ``stored`` was decided on: its signed fields, and the
    two a client sends that the token leaves unsigned (the OMS takes them from the store):
    the GTD expiry and the order manager."""
    return (stored.same_economics(order) and stored.expire_time == order.expire_time
            and stored.order_manager_id == order.order_manager_id)


def _stored_decision(uow: UnitOfWork, key: tuple[str, str], order: Order) -> tuple[Order | None, Any]:
    """The stored order of a client order id, and for a replacement of the same order,
    what that order had filled when the replacement was approved (None otherwise)."""
    existing = uow.orders.get_by_client_order_id(*key)
    if existing is None or order.replaces_order_id is None or existing.replaces_order_id != order.replaces_order_id:
        return existing, None
    for event in uow.orders.events(existing.order_id):
        if event.to_status is OrderStatus.APPROVED:
            recorded = event.payload.get("replaced_filled_quantity")
            return existing, core_ext_decimal(recorded) if recorded else None
    return existing, None


def core_ext_decimal(value: Any) -> Any:
    """A fill payload's decimal (a string, as stored) as a Decimal: plain text, or the
    exponent form (``5E-8``) the fill events of earlier releases recorded for small numbers.

    Raises
    ------
    ValueError, ArithmeticError
        Not a finite decimal number.
    """
    from decimal import Decimal

    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    return Decimal(core_ext.canonical_decimal(format(number, "f")))


__all__ = ["Decision", "RiskEngine", "new_client_order_id", "new_id"]
