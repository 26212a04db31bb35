"""Live execution: real orders on Aster, V1 or V3, one or several venue accounts.

Safety first: an order for a futures symbol is refused (``FAILED_PRECONDITION``,
``LEVERAGE_NOT_SET`` / ``MARGIN_MODE_NOT_SET``) until its leverage and margin mode are
known: :meth:`LiveProvider.start` reads every account's settings from the venue
(position mode, and each symbol's leverage and margin type; again at the account's next
order when that read failed), and SetLeverage / SetMarginMode / SetPositionMode change
them. A restarted Exchange therefore trades on with what the venue holds; with
``TESSERA_VENUE_SETTINGS_SYMBOLS`` every futures account is read before the service
serves at all (:meth:`LiveProvider.restore_settings`), and :meth:`LiveProvider.start`
does not read it again. One read per account: orders that arrive while it is in flight
wait for it (:meth:`LiveProvider.read_settings`). An order the venue's filters would
refuse is refused before it is sent; the filters are read again when five minutes old,
and at once after the venue refused an order by them.

Accounts: each order is sent with the credentials of its account (the venue accounts
registry, :mod:`services.common.venue_accounts`, or ``credentials_for``; without either,
the transport's own), V1 and V3 side by side. With a registry, an order of an account or
venue it does not hold is refused (``ACCOUNT_NOT_CONFIGURED``, ``VENUE_NOT_CONFIGURED``)
and no other account's credentials are ever used for it.
Settings, cursors and user-data streams are kept per account (:class:`AccountSession`).

The venue's ``clientOrderId`` is the order's client order id, so Tessera can always ask
the venue about an order it sent, whatever happened to the answer. Fills come from the
account's user-data stream (``ORDER_TRADE_UPDATE`` / ``executionReport``); when the
stream (re)connects, the gap is filled from REST (``userTrades`` by ``startTime`` then
``fromId`` on futures, which has no ``orderId`` parameter; by ``orderId`` on spot); REST
polling runs only while a stream is down (or when no stream is configured). Trades are
matched to orders by the venue's order id (never symbol and side), and each trade id is
reported once, whichever path brings it first. Every report carries the venue payload
it came from as exact JSON text (``raw_json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Iterable, Iterator

from services.common.observability import metrics
from services.common.venue_accounts import VenueAccounts
from services.domain import LiquiditySide, MarginMode, MarketType, Order, OrderStatus, Side
from services.domain.errors import CancelAllIncomplete, OrderNotFound, PreconditionFailed, VenueUnavailable
from services.domain.execution import CancelFailure, ExecutionReport, Fill
from services.domain.trade import venue_trade_id as stored_trade_id

from ..aster import raw
from ..aster import requests as rq
from ..aster.credentials import VenueCredentials
from ..aster.errors import VenueCancelRejected, VenueInDoubt, VenueOrderUnknown, VenueRateLimited, VenueRejected
from ..aster.rules import SymbolRules, parse_exchange_info, round_to_tick
from ..aster.transport import AsterTransport
from ..aster.user_stream import UserDataStream, default_stream_url
from ..venue import OrderRef, Quote, ReportSink, VenueOrderState, make_report
from .live_tracking import (
    ENDED,
    FINAL,
    TRADE_LOOKBACK_MS,
    TRADE_PAGE,
    VENUE_STATUSES,
    AccountSession,
    CredentialsFor,
    Tracked,
    VenueSettings,
    _ms,
)

#: The venue this provider trades at (an order's ``venue`` field).
VENUE = "aster"

__all__ = ["LiveProvider", "AccountSession", "Tracked", "VenueSettings", "VENUE_STATUSES"]

log = logging.getLogger(__name__)

#: Venue refusals of an order by the symbol's rules: the rules held here may be out of date
#: (a tick, a step or a bound changed, the symbol closed), so they are read again.
RULES_REASONS = frozenset({
    "ORDER_NOT_REPRESENTABLE", "PRICE_NOT_ON_TICK", "QUANTITY_NOT_ON_STEP", "VENUE_BAD_PRECISION", "MIN_NOTIONAL",
    "SYMBOL_NOT_AT_VENUE", "SYMBOL_CLOSED",
})


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Mark a shared read's outcome as seen (its askers get it through their shields)."""
    if not future.cancelled():
        future.exception()


def _venue_filled(tracked: Tracked, status: str, executed: Decimal) -> bool:
    """An order whose quantity the venue decides, FILLED at the venue, every fill reported."""
    return status == "FILLED" and not tracked.quantity and 0 < executed <= tracked.filled


class LiveProvider:
    mode = "LIVE"

    def __init__(
        self,
        transport: AsterTransport,
        *,
        poll_seconds: float = 1.0,
        require_settings: bool = True,
        credentials_for: CredentialsFor | None = None,
        user_stream: bool = True,
        stream_urls: dict[MarketType, str] | None = None,
        keepalive_seconds: float = 1800.0,
        reconnect_seconds: float = 1.0,
        mark_price_seconds: float = 1.0,
        round_prices: bool = True,
        rules_seconds: float = 300.0,
        accounts: VenueAccounts | None = None,
        deadman_seconds: float = 0.0,
        account_id: str | None = None,
    ) -> None:
        self.transport = transport
        #: Without a registry: the one Tessera account the transport's credentials trade for
        #: (``ASTER_ACCOUNT_ID``); an order of another account is refused. None: any account.
        self.account_id = account_id
        #: The venue's dead-man switch (futures ``countdownCancelAll``): while ``alive()``
        #: says the OMS follows the reports, every futures symbol with an order this
        #: process follows is armed for ``deadman_seconds`` and re-armed every quarter of
        #: it; when the OMS (or this process) is gone for that long, the venue cancels
        #: those symbols' open orders. 0: off.
        self.deadman_seconds = deadman_seconds
        self.alive: Any = None
        self._deadman: asyncio.Task[None] | None = None
        self._armed: set[tuple[str, str]] = set()
        #: The venue accounts: each order goes with its account's credentials, and an order
        #: of an account (or venue) the registry does not hold is refused. None: the
        #: transport's one set of credentials (the environment's single account).
        self.accounts = accounts
        if accounts is not None and credentials_for is None:
            credentials_for = accounts.credentials_for
        self.poll_seconds = poll_seconds
        self.require_settings = require_settings
        self.credentials_for = credentials_for
        self.user_stream = user_stream
        self.stream_urls = stream_urls or {
            MarketType.FUTURES: default_stream_url(transport.futures_url),
            MarketType.SPOT: default_stream_url(transport.spot_url),
        }
        self.keepalive_seconds = keepalive_seconds
        self.reconnect_seconds = reconnect_seconds
        self.mark_price_seconds = mark_price_seconds
        # False: a limit price off the tick is refused (PRICE_NOT_ON_TICK) rather than rounded,
        # for an order path that rounds before Risk approves (the price stored is the price sent).
        self.round_prices = round_prices
        #: The symbols' rules (exchange information) are read again before an order once
        #: they are older than this, and at once after the venue refused an order by a
        #: filter (:data:`RULES_REASONS`): the venue changes a tick or a step now and then.
        self.rules_seconds = rules_seconds
        self._rules_read: dict[MarketType, float] = {}
        self.sessions: dict[str, AccountSession] = {}
        self._default = self._session_for(transport.credentials)
        self._rules: dict[MarketType, dict[str, SymbolRules]] = {}
        self._marks: dict[tuple[MarketType, str], tuple[float, Decimal]] = {}
        #: Quotes (``GetTicker``) as last read, and those being read: one request per symbol
        #: and ``mark_price_seconds`` however many callers ask.
        self._quotes: dict[tuple[MarketType, str], tuple[float, Quote]] = {}
        self._quoting: dict[tuple[MarketType, str], asyncio.Future[Quote]] = {}
        self._tracked: dict[str, Tracked] = {}  # by order id
        self._by_venue_id: dict[tuple[str, MarketType, int], Tracked] = {}
        self._by_client_id: dict[tuple[str, MarketType, str], Tracked] = {}
        self._sink: ReportSink | None = None
        self._poller: asyncio.Task[None] | None = None
        self._started = False

    # -- accounts -------------------------------------------------------------------------------
    def _session_for(self, credentials: VenueCredentials | None) -> AccountSession:
        key = credentials.account_key if credentials is not None else "default"
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = AccountSession(key, credentials)
        elif credentials is not None and session.credentials is not credentials:
            session.credentials = credentials  # the registry was reloaded (a key rotated): sign with the new one
        return session

    def session(self, account: str | None = None) -> AccountSession:
        """The session of Tessera account ``account`` (the default credentials' without one).

        Raises
        ------
        PreconditionFailed
            ``ACCOUNT_NOT_CONFIGURED``: a registry is configured and does not hold ``account``,
            or, without one, ``account`` is not the one ``ASTER_ACCOUNT_ID`` names (no other
            account's credentials are ever used for it).
        """
        if account and self.credentials_for is not None:
            credentials = self.credentials_for(account)
            if credentials is not None:
                return self._session_for(credentials)
        if self.accounts is not None:
            raise PreconditionFailed(f"account {account!r} is not configured in the venue accounts",
                                     reason="ACCOUNT_NOT_CONFIGURED", metadata={"account": account or ""})
        if account and self.account_id is not None and account != self.account_id:
            raise PreconditionFailed(
                f"account {account!r} is not configured: this Exchange's venue credentials trade for "
                f"{self.account_id!r} (ASTER_ACCOUNT_ID); a venue accounts registry adds more",
                reason="ACCOUNT_NOT_CONFIGURED", metadata={"account": account})
        return self._default

    def account_names(self) -> list[str | None]:
        """The Tessera accounts this provider trades for (None: the environment's single one)."""
        if self.accounts is None:
            return [None]
        return sorted(self.accounts.accounts)

    def _credentialed(self) -> Iterator[tuple[str | None, AccountSession]]:
        """Each account this provider trades for that has credentials, with its session
        (one removed from the registry meanwhile is skipped)."""
        for account in self.account_names():
            try:
                session = self.session(account)
            except PreconditionFailed:
                continue
            if session.credentials is not None:
                yield account, session

    def _markets(self, account: str | None) -> list[MarketType]:
        if account is None or self.accounts is None:
            return [MarketType.FUTURES]
        found = self.accounts.get(account)
        return sorted(found.market_types, key=lambda m: m.value) if found is not None else []

    @property
    def leverage(self) -> dict[str, int]:
        return self._default.leverage

    @property
    def margin_modes(self) -> dict[str, MarginMode]:
        return self._default.margin_modes

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, sink: ReportSink) -> None:
        self._sink = sink
        self._started = True
        try:
            await self.transport.sync_clock()
        except Exception as error:  # noqa: BLE001 - reported; signed calls retry the sync on -1021
            log.warning("could not read the venue's clock: %s", error)
        if self.poll_seconds > 0 and self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="venue-fills")
        if self.deadman_seconds > 0 and self._deadman is None:
            self._deadman = asyncio.create_task(self._deadman_forever(), name="venue-dead-man")
        try:  # the venue's published limits (weight per host, orders per account) before any order
            self.transport.configure_limits(
                MarketType.FUTURES, await self.transport.send(rq.prepare_exchange_info(MarketType.FUTURES)))
        except Exception as error:  # noqa: BLE001 - the first order reads them again
            log.warning("could not read the venue's exchange information: %s", getattr(error, "reason", error))
        for account, session in self._credentialed():
            if self.user_stream:
                for market in self._markets(account):
                    self.ensure_stream(session, market)
            if MarketType.FUTURES in self._markets(account) and not session.settings_loaded:
                # The venue's leverage, margin types and position mode, before the first order
                # (unless read already, before serving): a restarted Exchange trades on with
                # what the venue holds.
                try:
                    await self.read_settings(account)
                except Exception as error:  # noqa: BLE001 - the first order of the account reads them again
                    log.warning("could not read the venue settings of %s: %s", account or "the account",
                                getattr(error, "reason", error))

    async def close(self) -> None:
        for task in (self._poller, self._deadman):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._poller = self._deadman = None
        for session in self.sessions.values():
            for stream in session.streams.values():
                await stream.close()
            session.streams.clear()
        await self.transport.close()

    def ensure_stream(self, session: AccountSession, market: MarketType) -> UserDataStream | None:
        """The account's user-data stream on ``market``, started if it is not yet."""
        if not (self.user_stream and self._started) or session.credentials is None:
            return None
        stream = session.streams.get(market)
        if stream is None:

            async def on_message(event: dict[str, Any], text: str) -> None:
                await self._emit(self._on_event(session, market, event, text))

            async def on_connected() -> None:
                await self._emit(await self._poll_session(session, market))

            stream = UserDataStream(
                self.transport, session.credentials, market, self.stream_urls[market], on_message, on_connected,
                keepalive_seconds=self.keepalive_seconds, reconnect_seconds=self.reconnect_seconds,
            )
            session.streams[market] = stream
            stream.start()
        return stream

    async def _emit(self, reports: list[ExecutionReport]) -> None:
        if reports and self._sink is not None:
            await self._sink(reports)

    # -- market data --------------------------------------------------------------------------
    async def price(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Decimal:
        payload = await self.transport.send(rq.prepare_ticker_price(symbol, market_type))
        return Decimal(str(payload["price"]))

    async def quote(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Quote:
        """The best bid and ask, read at most once per ``mark_price_seconds`` per symbol
        (callers meanwhile share the read), within the market-data share of the venue's
        request weight (:data:`~services.exchange.aster.limits.MARKET_DATA_SHARE`)."""
        key = (market_type, symbol)
        cached = self._quotes.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.mark_price_seconds:
            return cached[1]
        reading = self._quoting.get(key)
        if reading is None:
            reading = self._quoting[key] = asyncio.ensure_future(self._read_quote(symbol, market_type))
            reading.add_done_callback(lambda done: self._quoted(key, done))
        return await asyncio.shield(reading)

    def _quoted(self, key: tuple[MarketType, str], done: "asyncio.Future[Quote]") -> None:
        self._quoting.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone

    async def _read_quote(self, symbol: str, market_type: MarketType) -> Quote:
        payload = await self.transport.send(rq.prepare_book_ticker(symbol, market_type))
        bid, ask = Decimal(str(payload["bidPrice"])), Decimal(str(payload["askPrice"]))
        quote = Quote(symbol, (bid + ask) / 2, bid, ask)
        self._quotes[(market_type, symbol)] = (time.monotonic(), quote)
        return quote

    async def mark_price(self, symbol: str, market_type: MarketType = MarketType.FUTURES) -> Decimal:
        """The futures mark price (spot: the last price), cached for ``mark_price_seconds``."""
        cached = self._marks.get((market_type, symbol))
        if cached is not None and time.monotonic() - cached[0] < self.mark_price_seconds:
            return cached[1]
        if market_type is MarketType.SPOT:
            value = await self.price(symbol, market_type)
        else:
            value = Decimal(str((await self.transport.send(rq.prepare_mark_price(symbol)))["markPrice"]))
        self._marks[(market_type, symbol)] = (time.monotonic(), value)
        return value

    async def rules(self, symbol: str, market_type: MarketType) -> SymbolRules:
        """The symbol's rules, read from the venue's exchange information when unknown, older
        than ``rules_seconds``, or dropped after a filter refusal (a read that fails then
        leaves the rules last read)."""
        known = self._rules.get(market_type, {})
        read_at = self._rules_read.get(market_type)
        stale = read_at is None or time.monotonic() - read_at > self.rules_seconds
        if symbol not in known or stale:
            try:
                payload = await self.transport.send(rq.prepare_exchange_info(market_type))
            except (VenueInDoubt, VenueRateLimited) as error:
                if symbol not in known:
                    raise
                log.warning("the venue's exchange information was not read again (%s): %s's rules as last read",
                            error.reason, symbol)
            else:
                self.transport.configure_limits(market_type, payload)
                known = self._rules[market_type] = parse_exchange_info(payload)
                self._rules_read[market_type] = time.monotonic()
        try:
            return known[symbol]
        except KeyError:
            raise VenueRejected(f"{symbol} is not listed at the venue", reason="SYMBOL_NOT_AT_VENUE") from None

    # -- settings -----------------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: int, *, account: str | None = None) -> int:
        session = self.session(account)
        payload = await self.transport.send(rq.prepare_set_leverage(symbol, leverage), session.credentials)
        applied = int(payload.get("leverage", leverage)) if isinstance(payload, dict) else leverage
        session.leverage[symbol] = applied
        return applied

    async def set_margin_mode(self, symbol: str, margin_mode: MarginMode, *, account: str | None = None) -> MarginMode:
        session = self.session(account)
        try:
            await self.transport.send(rq.prepare_set_margin_type(symbol, margin_mode.value), session.credentials)
        except VenueRejected as error:
            if error.reason != "MARGIN_MODE_UNCHANGED":  # -4046: it already is
                raise
        session.margin_modes[symbol] = margin_mode
        return margin_mode

    async def set_position_mode(self, hedge: bool, *, account: str | None = None) -> bool:
        """One-way (``False``) or hedge mode (``True``) for every symbol of the account."""
        session = self.session(account)
        try:
            await self.transport.send(rq.prepare_set_position_mode(hedge), session.credentials)
        except VenueRejected as error:
            if error.reason != "POSITION_MODE_UNCHANGED":  # -4059: it already is
                raise
        session.hedge_mode = hedge
        return hedge

    async def load_settings(self, symbols: Iterable[str] | None = None, *, account: str | None = None) -> VenueSettings:
        """Read the account's position mode, and each symbol's leverage and margin type,
        from the venue (``positionSide/dual``, ``positionRisk``), and take them as set."""
        session = self.session(account)
        await self._read_position_mode(session)
        wanted = set(symbols) if symbols is not None else None
        rows = await self.transport.send(rq.prepare_position_risk(), session.credentials) or []
        for row in rows:
            symbol = str(row.get("symbol", ""))
            if wanted is not None and symbol not in wanted:
                continue
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a row without one: that symbol unset
                session.leverage[symbol] = int(row["leverage"])
            margin = str(row.get("marginType", "")).upper()
            if margin in ("ISOLATED", "CROSS", "CROSSED"):
                session.margin_modes[symbol] = MarginMode.ISOLATED if margin == "ISOLATED" else MarginMode.CROSSED
        session.settings_loaded = True  # both read: not read again at start or at the first order
        return VenueSettings(session.hedge_mode, dict(session.leverage), dict(session.margin_modes))

    async def _read_position_mode(self, session: AccountSession) -> bool:
        """The account's position mode as the venue has it (``positionSide/dual``), taken as set."""
        mode = await self.transport.send(rq.prepare_position_mode(), session.credentials)
        session.hedge_mode = bool(mode.get("dualSidePosition")) if isinstance(mode, dict) else False
        return session.hedge_mode

    async def read_settings(self, account: str | None) -> VenueSettings:
        """:meth:`load_settings` of ``account``, shared by everyone who asks while a read is in
        flight: the orders that arrive while the start reads (or before it has), each of which
        would otherwise read the settings again (``positionSide/dual`` weighs 30 of the
        venue's budget)."""
        session = self.session(account)  # accounts of one set of credentials share one session
        reading = session.settings_read
        if reading is None or reading.done():
            reading = session.settings_read = asyncio.ensure_future(self.load_settings(account=account))
            reading.add_done_callback(_retrieve)  # its failure is each asker's, never "never retrieved"
        return await asyncio.shield(reading)

    async def restore_settings(self, symbols: Iterable[str]) -> list[str]:
        """Read every futures account's settings from the venue before the service serves
        (see :meth:`load_settings`: every symbol's, as :meth:`start` would, which then does
        not read them again), for a restarted Exchange whose operator named the symbols
        they trade (``TESSERA_VENUE_SETTINGS_SYMBOLS``): their orders are taken from the
        first call. Returns those of ``symbols`` still without both a leverage and a margin
        mode (the venue does not list them), with the account in brackets when a registry
        names several."""
        wanted = sorted(set(symbols))
        missing: list[str] = []
        for account, _ in self._credentialed():
            if MarketType.FUTURES not in self._markets(account):
                continue
            settings = await self.read_settings(account)
            missing += [symbol if account is None else f"{symbol} ({account})" for symbol in wanted
                        if symbol not in settings.leverage or symbol not in settings.margin_modes]
        return missing

    def venue_settings(self) -> dict[str | None, VenueSettings]:
        """The settings held for each account (None: the environment's single account)."""
        return {account: VenueSettings(session.hedge_mode, dict(session.leverage), dict(session.margin_modes))
                for account, session in self._credentialed()}

    async def venue_positions(self, *, account: str | None = None) -> dict[str, Decimal]:
        """The venue account's futures positions (``positionRisk``), net per symbol: the sum
        of its rows' ``positionAmt`` (one row in one-way mode; ``LONG`` and ``SHORT`` in
        hedge mode, ``SHORT`` negative). Flat symbols are left out."""
        session = self.session(account)
        net: dict[str, Decimal] = {}
        for row in await self.transport.send(rq.prepare_position_risk(), session.credentials) or []:
            try:
                amount = Decimal(str(row["positionAmt"]))
                symbol = str(row["symbol"])
            except (KeyError, TypeError, ArithmeticError) as error:
                raise VenueUnavailable(f"positionRisk answered a row without positionAmt or symbol: {error}") from None
            if amount:
                net[symbol] = net.get(symbol, Decimal(0)) + amount
        return {symbol: amount for symbol, amount in sorted(net.items()) if amount}

    def _check_settings(self, order: Order, session: AccountSession) -> None:
        if order.market_type is not MarketType.FUTURES or not self.require_settings:
            return
        if order.symbol not in session.leverage:
            raise PreconditionFailed(
                f"live mode: set the leverage of {order.symbol} (SetLeverage) before its first order",
                reason="LEVERAGE_NOT_SET", metadata={"symbol": order.symbol},
            )
        if order.symbol not in session.margin_modes:
            raise PreconditionFailed(
                f"live mode: set the margin mode of {order.symbol} (SetMarginMode) before its first order",
                reason="MARGIN_MODE_NOT_SET", metadata={"symbol": order.symbol},
            )
        if order.leverage is not None and int(order.leverage) != session.leverage[order.symbol]:
            raise PreconditionFailed(
                f"the order asks for leverage {order.leverage}; {order.symbol} is set to {session.leverage[order.symbol]}",
                reason="LEVERAGE_MISMATCH", metadata={"symbol": order.symbol},
            )

    # -- orders -------------------------------------------------------------------------------
    async def execute(self, order: Order) -> list[ExecutionReport]:
        if self.accounts is not None:
            self.accounts.check(order.account, order.venue, order.market_type)
        elif order.venue != VENUE:
            raise PreconditionFailed(f"this Exchange trades at {VENUE!r}, not {order.venue!r}",
                                     reason="VENUE_NOT_CONFIGURED", metadata={"account": order.account,
                                                                             "venue": order.venue})
        elif self.account_id is not None and order.account != self.account_id:
            raise PreconditionFailed(
                f"account {order.account!r} is not configured: this Exchange's venue credentials trade for "
                f"{self.account_id!r} (ASTER_ACCOUNT_ID); a venue accounts registry adds more",
                reason="ACCOUNT_NOT_CONFIGURED", metadata={"account": order.account})
        session = self.session(order.account)
        if (self._started and order.market_type is MarketType.FUTURES and self.require_settings
                and not session.settings_loaded and order.symbol not in session.leverage):
            with contextlib.suppress(VenueInDoubt, VenueRateLimited, VenueRejected):
                await self.read_settings(order.account)  # not read at start (or not yet): read now, once
        self._check_settings(order, session)
        rules = await self.rules(order.symbol, order.market_type)
        if not self.round_prices:
            for name, value in (("price", order.price), ("stop price", order.stop_price),
                                ("activation price", order.activation_price)):
                if value is not None and round_to_tick(value, rules.tick_size, ROUND_HALF_EVEN,
                                                       rules.min_price) != value:
                    raise PreconditionFailed(
                        f"{name} {value} is not on the tick {rules.tick_size} of {order.symbol}",
                        reason="PRICE_NOT_ON_TICK")
        mark = await self.mark_price(order.symbol, order.market_type)
        request = rq.prepare_order(order, rules, hedge_mode=session.hedge_mode, reference_price=mark)
        self.ensure_stream(session, order.market_type)
        tracked = Tracked(OrderRef.of(order), order.quantity, None, session,
                          since_ms=self.transport.now_ms() - TRADE_LOOKBACK_MS)
        client_key = (session.key, order.market_type, order.client_order_id)
        self._by_client_id[client_key] = tracked  # stream events may beat the answer
        tracked.inflight = True
        try:
            answer = await self.transport.exchange(request, session.credentials)
        except VenueInDoubt:
            await self._emit(tracked.release())  # what the stream saw of it is news all the same
            raise  # followed by client order id until the reconciler settles it
        except asyncio.CancelledError:
            # The caller gave up (the OMS's deadline) with the order perhaps at the venue: in
            # doubt as above; its stream reports, held till now and to come, go out as they come.
            held = tracked.release()
            if held:
                asyncio.ensure_future(self._emit(held))
            raise
        except Exception as error:
            tracked.release()
            self._by_client_id.pop(client_key, None)
            if isinstance(error, VenueRejected) and error.venue_code is not None and error.reason in RULES_REASONS:
                self._rules_read.pop(order.market_type, None)  # the venue's filters changed: read them again
            if isinstance(error, VenueRejected) and error.reason == "POSITION_SIDE_MISMATCH":
                # -4061: the account's position mode is not the one held here (changed outside
                # Tessera): read it, so the next order carries the positionSide it needs.
                with contextlib.suppress(VenueInDoubt, VenueRateLimited, VenueRejected):
                    await self._read_position_mode(session)
            raise
        payload = answer.payload
        try:
            venue_order_id = int(payload["orderId"])
        except (KeyError, TypeError, ValueError):
            # A success without the venue's answer in it (a proxy's page, a body cut short):
            # the venue may hold the order. In doubt, as without an answer.
            await self._emit(tracked.release())
            raise metrics.venue_error(VenueInDoubt(
                f"POST {request.path}: the venue answered HTTP {answer.status} without an order id",
                reason="VENUE_ANSWER_UNKNOWN")) from None
        order.remote_order_id = str(venue_order_id)
        tracked = self._track(tracked, venue_order_id)
        try:
            learnt = await self._learn(tracked, payload, announce=True, raw_json=answer.raw_json)
        finally:
            held = tracked.release()
        reports = held + learnt
        if any(r.fill for r in reports):
            # Filled on arrival: the venue's NEW that came first on the stream says nothing
            # the fills do not (the answer reads as it would without a stream).
            reports = [r for r in reports if r.fill or r.order_status is not OrderStatus.ACCEPTED]
        return reports

    def _track(self, tracked: Tracked, venue_order_id: int) -> Tracked:
        ref = tracked.ref
        current = self._tracked.get(ref.order_id)
        if current is not None and current is not tracked:
            current.seen |= tracked.seen
            current.filled = max(current.filled, tracked.filled)
            current.held += tracked.release()
            current.inflight = current.inflight or bool(current.held)
            tracked = current
        tracked.venue_order_id = venue_order_id
        tracked.ref = dataclasses.replace(ref, remote_order_id=str(venue_order_id))
        self._tracked[ref.order_id] = tracked
        self._by_venue_id[(tracked.session.key, ref.market_type, venue_order_id)] = tracked
        self._by_client_id[(tracked.session.key, ref.market_type, ref.client_order_id)] = tracked
        return tracked

    def _untrack(self, tracked: Tracked) -> None:
        ref = tracked.ref
        if self._tracked.get(ref.order_id) is tracked:
            del self._tracked[ref.order_id]
        if tracked.venue_order_id is not None:
            self._by_venue_id.pop((tracked.session.key, ref.market_type, tracked.venue_order_id), None)
        if self._by_client_id.get((tracked.session.key, ref.market_type, ref.client_order_id)) is tracked:
            del self._by_client_id[(tracked.session.key, ref.market_type, ref.client_order_id)]

    def _untrack_settled(self) -> None:
        for tracked in list(self._tracked.values()):
            if tracked.settled:
                self._untrack(tracked)

    def _fill(self, tracked: Tracked, venue_trade_id: Any, quantity: Decimal, price: Decimal, commission: Decimal,
              commission_asset: str | None, maker: bool, at: Any, raw_payload: dict[str, Any] | None,
              raw_json: str) -> ExecutionReport | None:
        tid = stored_trade_id(tracked.ref.market_type, tracked.ref.symbol, tracked.ref.side, venue_trade_id)
        if tid in tracked.seen:
            return None
        tracked.seen.add(tid)
        tracked.filled += quantity
        fill = Fill(
            trade_id=tid,
            quantity=quantity,
            price=price,
            commission=commission,  # the venue's sign: negative is a rebate
            commission_asset=commission_asset or None,
            liquidity_side=LiquiditySide.MAKER if maker else LiquiditySide.TAKER,
        )
        if tracked.quantity:
            done = tracked.filled >= tracked.quantity
        else:  # the venue decides the quantity (close_position, quote_order_qty): filled when it says so
            done = tracked.venue_status == "FILLED" and tracked.filled >= tracked.venue_executed
            tracked.ended = tracked.ended or done     # this fill's report says FILLED: nothing more to say
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        return make_report(tracked.ref, status, fill=fill, cumulative=tracked.filled, raw=raw_payload,
                           raw_json=raw_json, at=_ms(at))

    def _trade_report(self, tracked: Tracked, trade: dict[str, Any], text: str) -> ExecutionReport | None:
        return self._fill(
            tracked, trade["id"], Decimal(str(trade["qty"])), Decimal(str(trade["price"])),
            Decimal(str(trade.get("commission", "0"))), trade.get("commissionAsset"), bool(trade.get("maker")),
            trade.get("time"), trade, raw.event_json("userTrade", text),
        )

    async def _read_trades(self, session: AccountSession, market: MarketType, symbol: str, *,
                           from_id: int | None = None, since_ms: int | None = None,
                           venue_order_id: int | None = None) -> list[tuple[dict[str, Any], str]]:
        """The account's trades on ``symbol`` from a trade id or a time, every page."""
        found: list[tuple[dict[str, Any], str]] = []
        request = rq.prepare_user_trades(symbol, market, venue_order_id=venue_order_id, from_id=from_id,
                                         start_time_ms=None if from_id is not None else since_ms, limit=TRADE_PAGE)
        for _ in range(20):
            answer = await self.transport.exchange(request, session.credentials)
            page = list(zip(answer.payload or [], raw.elements(answer.text or "[]")))
            found += page
            if len(page) < TRADE_PAGE:
                break
            last = max(int(trade["id"]) for trade, _ in page)
            request = rq.prepare_user_trades(symbol, market, venue_order_id=venue_order_id, from_id=last + 1,
                                             limit=TRADE_PAGE)
        return sorted(found, key=lambda item: int(item[0]["id"]))

    async def _order_trades(self, tracked: Tracked) -> list[tuple[dict[str, Any], str]]:
        ref = tracked.ref
        if ref.market_type is MarketType.SPOT:
            trades = await self._read_trades(tracked.session, ref.market_type, ref.symbol,
                                             venue_order_id=tracked.venue_order_id)
        else:
            trades = await self._read_trades(tracked.session, ref.market_type, ref.symbol, since_ms=tracked.since_ms)
        return [(t, text) for t, text in trades if int(t.get("orderId", -1)) == tracked.venue_order_id]

    async def _learn(self, tracked: Tracked, payload: dict[str, Any], *, announce: bool = False,
                     raw_json: str | None = None) -> list[ExecutionReport]:
        """Reports for what an order answer says: acknowledgement, fills (from its trades), end."""
        status = str(payload.get("status", "NEW"))
        tracked.venue_status = status
        tracked.venue_executed = max(tracked.venue_executed, Decimal(str(payload.get("executedQty", "0"))))
        if tracked.since_ms is None and payload.get("time") is not None:
            tracked.since_ms = int(payload["time"]) - TRADE_LOOKBACK_MS
        reports: list[ExecutionReport] = []
        if announce and not tracked.announced and status in ("NEW", "PARTIALLY_FILLED") and tracked.venue_executed == 0:
            tracked.announced = True
            reports.append(make_report(tracked.ref, OrderStatus.ACCEPTED, cumulative=Decimal(0), raw=payload,
                                       raw_json=raw_json))
        reports += await self._catch_up(tracked)
        reports += self._end(tracked, status, tracked.venue_executed, payload, raw_json)
        self._untrack_settled()
        return reports

    async def _catch_up(self, tracked: Tracked) -> list[ExecutionReport]:
        """The order's trades from REST when the venue says more was executed than reported."""
        if tracked.venue_executed <= tracked.filled:
            return []
        try:
            trades = await self._order_trades(tracked)
        except (VenueInDoubt, VenueRateLimited, VenueRejected, VenueOrderUnknown) as error:
            # A refused read of the trades says nothing about the order (placed, cancelled):
            # what it owes stays owed (owes_fills) and the next poll reads it.
            log.info("fills of %s not read yet (%s); the next poll will", tracked.ref.order_id, error.reason)
            return []
        return [r for r in (self._trade_report(tracked, t, text) for t, text in trades) if r is not None]

    def _end(self, tracked: Tracked, status: str, executed: Decimal, payload: Any,
             raw_json: str | None) -> list[ExecutionReport]:
        """The order's end: cancelled, expired, refused; or, for an order whose quantity the
        venue decides, filled once every fill it executed was reported (its last fill's
        report said PARTIALLY_FILLED: the venue's FILLED came after it)."""
        if tracked.ended or not (status in ENDED or _venue_filled(tracked, status, executed)):
            return []
        tracked.ended = True
        return [make_report(tracked.ref, VENUE_STATUSES[status], cumulative=executed,
                            reason=f"venue: {status.lower()}", raw=payload if isinstance(payload, dict) else None,
                            raw_json=raw_json)]

    # -- the user-data stream ---------------------------------------------------------------------
    def _on_event(self, session: AccountSession, market: MarketType, event: dict[str, Any],
                  text: str) -> list[ExecutionReport]:
        """Reports for one stream message (futures ``ORDER_TRADE_UPDATE``, spot ``executionReport``)."""
        kind = event.get("e")
        if kind == "ORDER_TRADE_UPDATE":
            body = event.get("o") or {}
        elif kind == "executionReport":
            body = event
        else:
            return []  # ACCOUNT_UPDATE, MARGIN_CALL, ACCOUNT_CONFIG_UPDATE: nothing about an order's fills
        tracked = self._by_venue_id.get((session.key, market, int(body.get("i", -1))))
        if tracked is None:
            tracked = self._by_client_id.get((session.key, market, str(body.get("c", ""))))
        if tracked is None:
            return []  # not an order this process follows (placed elsewhere, or settled)
        if tracked.venue_order_id is None and body.get("i") is not None:
            self._track(tracked, int(body["i"]))
        raw_json = raw.event_json("event", text)
        reports: list[ExecutionReport] = []
        status, execution = str(body.get("X", "")), str(body.get("x", ""))
        cumulative = Decimal(str(body.get("z", "0")))
        if execution == "NEW" and not tracked.announced and cumulative == 0 and tracked.filled == 0 and not tracked.ended:
            tracked.announced = True
            reports.append(make_report(tracked.ref, OrderStatus.ACCEPTED, cumulative=Decimal(0), raw_json=raw_json,
                                       at=_ms(event.get("E"))))
        if status in VENUE_STATUSES:
            # Messages may come out of order: a final status is never taken back. (Known
            # before the fill: an order whose quantity the venue decides is filled when the
            # venue says so.)
            if tracked.venue_status not in FINAL:
                tracked.venue_status = status
            tracked.venue_executed = max(tracked.venue_executed, cumulative)
        if execution in ("TRADE", "CALCULATED") and int(body.get("t", 0) or 0) > 0:
            report = self._fill(
                tracked, body["t"], Decimal(str(body.get("l", "0"))), Decimal(str(body.get("L", "0"))),
                Decimal(str(body.get("n", "0") or "0")), body.get("N"), bool(body.get("m")), body.get("T"),
                None, raw_json,
            )
            if report is not None:
                reports.append(report)
        if tracked.venue_status in ENDED or (tracked.venue_status == "FILLED" and not tracked.quantity):
            status = tracked.venue_status
            if tracked.venue_executed > tracked.filled:
                # A fill this stream never delivered: read it before saying the order ended.
                asyncio.ensure_future(self._finish_later(tracked, status, raw_json))
                return tracked.hold(reports)
            reports += self._end(tracked, status, tracked.venue_executed, None, raw_json)
        self._untrack_settled()
        return tracked.hold(reports)

    async def _finish_later(self, tracked: Tracked, status: str, raw_json: str) -> None:
        reports = await self._catch_up(tracked)
        reports += self._end(tracked, status, tracked.venue_executed, None, raw_json)
        self._untrack_settled()
        await self._emit(tracked.hold(reports))

    # -- cancels ----------------------------------------------------------------------------------
    async def cancel(
        self,
        order_id: str,
        *,
        symbol: str | None = None,
        client_order_id: str | None = None,
        market_type: MarketType | None = None,
        account: str | None = None,
    ) -> ExecutionReport:
        """Cancel one order. A refused cancel (``-2011``) of a followed order reads the
        order from the venue: when it has ended (filled meanwhile), that end is the answer
        (fills on the way go to the report stream); otherwise the refusal is raised.

        Raises
        ------
        OrderNotFound
            Neither followed here nor named by symbol and client order id.
        VenueCancelRejected, VenueOrderUnknown, VenueRejected, VenueInDoubt, VenueRateLimited
            See :mod:`..aster.errors`.
        """
        tracked = self._tracked.get(order_id)
        if tracked is None and not (symbol and client_order_id):
            raise OrderNotFound(f"no open order {order_id} known here; give its symbol and client order id")
        session = tracked.session if tracked else self.session(account)
        ref = tracked.ref if tracked else None
        symbol = ref.symbol if ref else symbol
        client_order_id = ref.client_order_id if ref else client_order_id
        market = ref.market_type if ref else (market_type or MarketType.FUTURES)
        assert symbol and client_order_id
        try:
            answer = await self.transport.exchange(rq.prepare_cancel_order(symbol, client_order_id, market),
                                                   session.credentials)
        except VenueCancelRejected:
            if tracked is None:
                raise
            reports = await self._refresh(tracked)
            if not reports or tracked.venue_status not in FINAL:
                await self._emit(reports)
                raise
            await self._emit(reports[:-1])
            return reports[-1]
        payload = answer.payload
        if tracked is None:
            tracked = Tracked(
                OrderRef(order_id, client_order_id, account or "", "", symbol, Side(payload.get("side", "BUY")),
                         market, str(payload.get("orderId"))),
                Decimal(str(payload.get("origQty", "0"))), int(payload.get("orderId", 0)), session,
            )
        reports = await self._learn(tracked, payload, raw_json=answer.raw_json)
        if len(reports) > 1:
            await self._emit(reports[:-1])  # fills learnt on the way go to the stream
        if reports:
            return reports[-1]
        return make_report(tracked.ref, VENUE_STATUSES.get(str(payload.get("status")), OrderStatus.CANCELLED),
                           cumulative=Decimal(str(payload.get("executedQty", "0"))), raw=payload,
                           raw_json=answer.raw_json)

    async def cancel_all(
        self, symbol: str | None = None, market_type: MarketType | None = None, *, account: str | None = None
    ) -> list[ExecutionReport]:
        """Cancel every open order of ``symbol`` at the venue (``allOpenOrders``: those placed
        outside Tessera too), and of every symbol with followed orders; reports for the
        followed ones.

        Every account and symbol is tried whatever happens to the others: an account whose
        open orders cannot be listed, or a symbol the venue does not cancel, is set aside as a
        :class:`CancelFailure` and the sweep goes on.

        Raises
        ------
        CancelAllIncomplete
            Something failed: the reports of what was cancelled, and the failures.
        """
        failures: list[CancelFailure] = []
        # (session key, market, symbol) -> the Tessera account it is cancelled for
        targets: dict[tuple[str, MarketType, str], str | None] = {}
        accounts = [account] if account is not None else self.account_names()
        for name in accounts:
            try:
                session = self.session(name)
            except PreconditionFailed:
                continue
            if session.credentials is None:
                continue
            for market in self._markets(name):
                if market_type not in (None, market):
                    continue
                if symbol is not None:
                    targets.setdefault((session.key, market, symbol), name)
                elif self.accounts is not None or name is None:
                    # Every symbol with an open order at the venue, whoever placed it.
                    try:
                        listed = await self.open_orders(None, market, account=name)
                    except Exception as error:  # noqa: BLE001 - one account must not stop the sweep
                        failures.append(CancelFailure.of(error, account=name or self.account_id, market_type=market))
                        continue
                    for row in listed:
                        targets.setdefault((session.key, market, str(row.get("symbol", ""))), name)
        for tracked in self._tracked.values():
            if symbol in (None, tracked.ref.symbol) and market_type in (None, tracked.ref.market_type):
                if account is None or tracked.session is self.session(account):
                    targets.setdefault((tracked.session.key, tracked.ref.market_type, tracked.ref.symbol),
                                       tracked.ref.account or None)
        answers: dict[tuple[str, MarketType, str], str] = {}
        for target in sorted(targets):
            key, market, name = target
            try:
                answer = await self.transport.exchange(rq.prepare_cancel_all(name, market),
                                                       self.sessions[key].credentials)
            except Exception as error:  # noqa: BLE001 - one symbol must not stop the sweep
                failures.append(CancelFailure.of(error, account=targets[target], market_type=market, symbol=name))
                continue
            answers[target] = answer.raw_json
        reports = await self._cancelled_reports(answers)
        if failures:
            for failure in failures:
                log.error("cancel-all at the venue failed: %s (%s)", failure.describe(), failure.message)
            raise CancelAllIncomplete(reports, failures)
        return reports

    async def _cancelled_reports(self, answers: dict[tuple[str, MarketType, str], str]) -> list[ExecutionReport]:
        """The followed orders of the symbols ``answers`` cancelled, as the venue now has them."""
        reports: list[ExecutionReport] = []
        for tracked in list(self._tracked.values()):
            target = (tracked.session.key, tracked.ref.market_type, tracked.ref.symbol)
            if target not in answers:
                continue
            try:
                refreshed = await self._refresh(tracked)
            except VenueOrderUnknown:
                continue
            except Exception as error:  # noqa: BLE001 - cancelled all the same; its stream or poll tells
                log.warning("order %s: not read back after the cancel of its symbol: %s", tracked.ref.order_id,
                            getattr(error, "reason", error))
                continue
            for report in refreshed:
                # The request that changed the order, then the venue's word on it.
                report.raw_json = f'{{"cancelAll":{answers[target]},"order":{report.raw_json or "null"}}}'
                reports.append(report)
        return reports

    async def cancel_all_open_orders(
        self, symbol: str, market_type: MarketType = MarketType.FUTURES, *, account: str | None = None
    ) -> list[ExecutionReport]:
        """The kill switch at the venue for one account and symbol: ``DELETE allOpenOrders``
        whatever placed the orders; reports for those this process follows."""
        return await self.cancel_all(symbol, market_type, account=account)

    async def open_orders(
        self, symbol: str | None = None, market_type: MarketType = MarketType.FUTURES, *, account: str | None = None
    ) -> list[dict[str, Any]]:
        """The account's open orders at the venue, as the venue lists them (all placers)."""
        request = rq.prepare_open_orders(symbol, market_type) if symbol else rq.VenueRequest(
            "GET", f"{rq.prefix_for(market_type)}/openOrders", signed=True, weight=40)
        return list(await self.transport.send(request, self.session(account).credentials) or [])

    async def countdown_cancel_all(self, symbol: str, countdown_ms: int, *, account: str | None = None) -> int:
        """Arm (or, with 0, stop) the venue's dead-man switch for ``symbol``: unless called
        again within ``countdown_ms``, the venue cancels every open order of the symbol.
        Call it as a heartbeat (the docs: every 30 s with 120000)."""
        payload = await self.transport.send(rq.prepare_countdown_cancel_all(symbol, countdown_ms),
                                            self.session(account).credentials)
        return int(payload.get("countdownTime", countdown_ms)) if isinstance(payload, dict) else countdown_ms

    async def heartbeat(self) -> list[tuple[str, str]]:
        """One beat of the dead-man switch: arm (again) every futures symbol with a followed
        open order, per account, while the OMS is alive; disarm the symbols that have none
        left. Returns the (account session, symbol) pairs armed now."""
        if self.alive is not None and not self.alive():
            return []  # the OMS is gone: let the countdowns run out
        wanted = {(t.session.key, t.ref.symbol) for t in self._tracked.values()
                  if t.ref.market_type is MarketType.FUTURES and t.venue_status not in FINAL}
        countdown_ms = int(self.deadman_seconds * 1000)
        for key, symbol in sorted(wanted):
            await self.transport.send(rq.prepare_countdown_cancel_all(symbol, countdown_ms),
                                      self.sessions[key].credentials)
        for key, symbol in sorted(self._armed - wanted):
            with contextlib.suppress(VenueInDoubt, VenueRateLimited, VenueRejected):
                await self.transport.send(rq.prepare_countdown_cancel_all(symbol, 0), self.sessions[key].credentials)
        self._armed = wanted
        return sorted(wanted)

    async def _deadman_forever(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except (VenueInDoubt, VenueRateLimited, VenueRejected) as error:
                log.warning("the venue's dead-man switch was not re-armed: %s", error.reason)
                metrics.deadman_heartbeat(error)
            except Exception as error:  # noqa: BLE001 - the heartbeat must outlive any one bad answer
                log.exception("the venue's dead-man switch was not re-armed")
                metrics.deadman_heartbeat(error)
            else:
                metrics.deadman_heartbeat(None)
            await asyncio.sleep(self.deadman_seconds / 4)

    async def _refresh(self, tracked: Tracked) -> list[ExecutionReport]:
        ref = tracked.ref
        answer = await self.transport.exchange(
            rq.prepare_query_order(ref.symbol, ref.client_order_id, ref.market_type), tracked.session.credentials
        )
        if tracked.venue_order_id is None:
            self._track(tracked, int(answer.payload["orderId"]))
        return await self._learn(tracked, answer.payload, raw_json=answer.raw_json)

    async def query_order(self, ref: OrderRef, *, account: str | None = None) -> VenueOrderState:
        session = self.session(account or ref.account)
        try:
            answer = await self.transport.exchange(
                rq.prepare_query_order(ref.symbol, ref.client_order_id, ref.market_type), session.credentials
            )
        except VenueOrderUnknown:
            return VenueOrderState(found=False)
        payload = answer.payload
        venue_order_id = int(payload["orderId"])
        ref = dataclasses.replace(ref, remote_order_id=str(venue_order_id))
        quantity = Decimal(str(payload.get("origQty", "0")))
        since = int(payload["time"]) - TRADE_LOOKBACK_MS if payload.get("time") is not None else None
        # origQty 0: a close-position order (the venue decides its quantity).
        probe = Tracked(ref, quantity or None, venue_order_id, session, since_ms=since)
        status = str(payload.get("status", "NEW"))
        probe.venue_status = status
        probe.venue_executed = Decimal(str(payload.get("executedQty", "0")))
        current = self._tracked.get(ref.order_id) or self._by_client_id.get((session.key, ref.market_type,
                                                                             ref.client_order_id))
        trades = await self._order_trades(probe)
        fills = [r for r in (self._trade_report(probe, t, text) for t, text in trades) if r is not None]
        if current is not None:
            current.seen |= probe.seen
            current.filled = max(current.filled, probe.filled)
        if status not in FINAL:
            tracked = self._track(current or probe, venue_order_id)
            tracked.seen |= probe.seen
            tracked.filled = max(tracked.filled, probe.filled)
        elif current is not None:
            current.venue_status, current.ended = status, True
            self._untrack(current)
        return VenueOrderState(
            found=True,
            status=VENUE_STATUSES.get(status),
            executed_quantity=Decimal(str(payload.get("executedQty", "0"))),
            original_quantity=quantity,
            remote_order_id=str(venue_order_id),
            fills=fills,
            raw=payload,
        )

    # -- REST: the gap after a (re)connect, and the fallback while a stream is down -------------------
    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                reports = await self.poll_once(skip_streaming=True)
            except (VenueInDoubt, VenueRateLimited, VenueRejected) as error:
                log.info("venue poll skipped: %s", error.reason)
                continue
            except Exception:  # noqa: BLE001 - the poller must outlive any one bad answer
                log.exception("venue poll failed")
                continue
            await self._emit(reports)

    async def poll_once(self, *, skip_streaming: bool = False) -> list[ExecutionReport]:
        """New fills of followed orders, then the end of those the venue closed (every
        account and market; with ``skip_streaming``, only those without a live stream)."""
        reports: list[ExecutionReport] = []
        for session in list(self.sessions.values()):
            for market in (MarketType.FUTURES, MarketType.SPOT):
                owed = any(t.owes_fills for t in self._tracked.values()
                           if t.session is session and t.ref.market_type is market)
                if skip_streaming and session.streaming(market) and not owed:
                    continue
                reports += await self._poll_session(session, market)
        return reports

    async def _poll_session(self, session: AccountSession, market: MarketType) -> list[ExecutionReport]:
        reports: list[ExecutionReport] = []
        followed_all = [t for t in self._tracked.values() if t.session is session and t.ref.market_type is market]
        for symbol in sorted({t.ref.symbol for t in followed_all}):
            followed = [t for t in followed_all if t.ref.symbol == symbol]
            cursor = session.cursors.get((market, symbol))
            since = min((t.since_ms for t in followed if t.since_ms is not None), default=None)
            trades = await self._read_trades(session, market, symbol,
                                             from_id=None if cursor is None else cursor + 1, since_ms=since)
            for trade, text in trades:
                session.cursors[(market, symbol)] = max(session.cursors.get((market, symbol), 0), int(trade["id"]))
                tracked = self._by_venue_id.get((session.key, market, int(trade.get("orderId", -1))))
                if tracked is not None:
                    report = self._trade_report(tracked, trade, text)
                    if report is not None:
                        reports.append(report)
            for tracked in followed:
                if tracked.owes_fills and tracked.venue_order_id is not None:
                    # Its trades may lie behind the cursor (read while its placement was in
                    # flight, not yet known by its venue id): read them by the order.
                    reports += await self._catch_up(tracked)
            if not any(t.venue_status not in FINAL or t.venue_order_id is None for t in followed):
                continue
            open_ids = {o.get("clientOrderId") for o in await self.transport.send(
                rq.prepare_open_orders(symbol, market), session.credentials)}
            for tracked in followed:
                if tracked.venue_status in FINAL or tracked.ref.client_order_id in open_ids:
                    continue
                try:
                    reports += await self._refresh(tracked)
                except VenueOrderUnknown:
                    if tracked.venue_order_id is None:
                        self._untrack(tracked)  # never reached the venue: the reconciler says so
        self._untrack_settled()
        return reports
