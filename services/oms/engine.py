"""The order management service layer: the last gate before a venue.

``submit`` verifies the risk token, moves the stored order APPROVED -> SUBMITTED with
a compare-and-set (so a token moves exactly one order, once), and only after that
commit calls the Exchange service. An Exchange answer that never came leaves the
order SUBMITTED: in doubt, to be resolved by asking the venue, never by resending.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
from typing import Any, AsyncIterator, Callable, TypeVar

import grpc

import core_ext
from services.common import convert
from services.common.db import Database
from services.common.tokens import batch_tokens, oms_call_metadata, verify_or_raise
from services.domain import Order, OrderEvent, OrderManager, OrderStatus, Trade, TradingState, utcnow
from services.domain import ledger
from services.domain.errors import (
    DomainError,
    OrderNotFound,
    PreconditionFailed,
    StaleOrder,
    TokenRejected,
    TokenReplayed,
    VenueUnavailable,
)
from services.domain.execution import ExecutionReport
from services.store import UnitOfWork
from tessera.exchange.v1 import exchange_pb2, exchange_pb2_grpc

from .fill_tracker import apply_report

log = logging.getLogger(__name__)
T = TypeVar("T")

# Exchange answers that prove the order never reached a venue: it can be closed.
DEFINITIVE_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# ...except these: the Exchange has executed the order already (a retry, or a call
# that reached it before this one), or the venue already holds an order with its client
# order id. The venue may hold it: in doubt, not refused (the reconciler asks the venue).
IN_DOUBT_REASONS = frozenset({"TOKEN_ALREADY_USED", "DUPLICATE_CLIENT_ORDER_ID"})
MAX_CAS_ATTEMPTS = 8
#: At most this many orders per ExecuteOrders call.
EXECUTE_BATCH = 1000
#: How many applied execution reports the OMS remembers (see ``report_key``).
RECENT_REPORTS = 100_000


def report_key(report: ExecutionReport) -> tuple[object, ...]:
    """What identifies one execution report: the same report arrives twice, on the
    ExecuteOrder answer and on the report stream."""
    return (
        report.order_id,
        report.order_status,
        report.fill.trade_id if report.fill is not None else None,
        report.transact_time,
        report.remote_order_id,
    )


@dataclasses.dataclass
class Submission:
    order: Order
    trades: list[Trade]


def _reason_of(error: grpc.aio.AioRpcError) -> str:
    details = error.details() or ""
    head = details.split(":", 1)[0]
    return head if head.isupper() and " " not in head else error.code().name


class OrderManagement:
    def __init__(
        self,
        db: Database,
        keyring: "core_ext.KeyRing",
        exchange: exchange_pb2_grpc.ExchangeServiceStub,
        *,
        ttl_seconds: int = 300,
        exchange_timeout: float = 10.0,
    ) -> None:
        self.db = db
        self.keyring = keyring
        self.exchange = exchange
        self.ttl_seconds = ttl_seconds
        self.exchange_timeout = exchange_timeout
        self._event_written = asyncio.Event()
        # Reports this OMS has applied (and committed), oldest first: the second copy of
        # a report is skipped without a transaction. The fill tracker still applies
        # each report at most once whatever this forgets.
        self._applied: collections.OrderedDict[tuple[object, ...], None] = collections.OrderedDict()

    def _unapplied(self, reports: list[ExecutionReport]) -> list[ExecutionReport]:
        return [report for report in reports if report_key(report) not in self._applied]

    def _remember(self, reports: list[ExecutionReport]) -> None:
        for report in reports:
            self._applied[report_key(report)] = None
        while len(self._applied) > RECENT_REPORTS:
            self._applied.popitem(last=False)

    # -- writes ---------------------------------------------------------------------------
    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read-modify-write, retrying when a concurrent writer won the CAS."""
        for attempt in range(MAX_CAS_ATTEMPTS):
            try:
                result = await self.db.run(fn, *args)
            except StaleOrder:
                if attempt == MAX_CAS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
                continue
            self._event_written.set()
            return result
        raise AssertionError("unreachable")

    async def submit(self, order: Order, token: str) -> Submission:
        stored = await self._verify_and_claim(order, token)
        try:
            response = await self.exchange.ExecuteOrder(
                exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(stored), risk_token=token),
                timeout=self.exchange_timeout,
                metadata=oms_call_metadata(self.keyring, "ExecuteOrder", token),
            )
        except grpc.aio.AioRpcError as error:
            return await self._not_executed(stored, error.code(), _reason_of(error), error.details() or "")
        return await self._executed(stored, response)

    async def submit_many(self, items: list[tuple[Order, str]]) -> list[Submission | DomainError]:
        """:meth:`submit` for each ``(order, risk token)``: the claims share transactions,
        the orders go to the Exchange in one ``ExecuteOrders`` call (per
        ``EXECUTE_BATCH``), and their reports are applied together. Each item gets its
        submission or the domain error :meth:`submit` would have raised for it, in order.

        Raises
        ------
        Exception
            An unexpected failure (the store down) of any item, once every item that
            could go on has gone on (claimed orders are sent, never left behind).
        """
        results: list[Submission | DomainError | None] = [None] * len(items)
        unexpected: list[BaseException] = []
        claimed = await asyncio.gather(
            *(self._verify_and_claim(order, token) for order, token in items), return_exceptions=True
        )
        to_send: list[tuple[int, Order, str]] = []
        for index, outcome in enumerate(claimed):
            if isinstance(outcome, DomainError):
                results[index] = outcome
            elif isinstance(outcome, BaseException):
                unexpected.append(outcome)
            else:
                to_send.append((index, outcome, items[index][1]))
        answers: list[Any] = []
        for start in range(0, len(to_send), EXECUTE_BATCH):
            answers += await self._execute_batch(to_send[start:start + EXECUTE_BATCH])

        async def finish(index: int, stored: Order, answer: Any) -> None:
            if isinstance(answer, exchange_pb2.ExecuteOrderResponse):
                results[index] = await self._executed(stored, answer)
            else:
                results[index] = await self._not_executed(stored, *answer)

        finished = await asyncio.gather(
            *(finish(index, stored, answer) for (index, stored, _), answer in zip(to_send, answers)),
            return_exceptions=True,
        )
        for (index, _, _), outcome in zip(to_send, finished):
            if isinstance(outcome, DomainError):
                results[index] = outcome
            elif isinstance(outcome, BaseException):
                unexpected.append(outcome)
        if unexpected:
            raise unexpected[0]
        return results  # type: ignore[return-value]

    async def _execute_batch(self, batch: list[tuple[int, Order, str]]) -> list[Any]:
        """One ExecuteOrders call: per order, its ExecuteOrderResponse, or (status code,
        reason, detail) of its refusal or of the call's failure (then every order of the
        call is in doubt, or refused, exactly as one ExecuteOrder call would leave it)."""
        tokens = [token for _, _, token in batch]
        try:
            response = await self.exchange.ExecuteOrders(
                exchange_pb2.ExecuteOrdersRequest(
                    orders=[
                        exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(stored), risk_token=token)
                        for _, stored, token in batch
                    ]
                ),
                timeout=self.exchange_timeout,
                metadata=oms_call_metadata(self.keyring, "ExecuteOrders", batch_tokens(tokens)),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                # An Exchange from before ExecuteOrders: one call per order.
                return list(await asyncio.gather(*(self._execute_one(stored, token) for _, stored, token in batch)))
            return [(error.code(), _reason_of(error), error.details() or "")] * len(batch)
        if len(response.results) != len(batch):
            detail = f"ExecuteOrders answered {len(response.results)} results for {len(batch)} orders"
            return [(grpc.StatusCode.INTERNAL, "INTERNAL", detail)] * len(batch)
        answers: list[Any] = []
        for result in response.results:
            if result.HasField("error"):
                code = getattr(grpc.StatusCode, result.error.code, grpc.StatusCode.UNKNOWN)
                answers.append((code, result.error.reason or code.name, result.error.message))
            else:
                answers.append(result.response)
        return answers

    async def _execute_one(self, stored: Order, token: str) -> Any:
        try:
            return await self.exchange.ExecuteOrder(
                exchange_pb2.ExecuteOrderRequest(order=convert.order_to_proto(stored), risk_token=token),
                timeout=self.exchange_timeout,
                metadata=oms_call_metadata(self.keyring, "ExecuteOrder", token),
            )
        except grpc.aio.AioRpcError as error:
            return (error.code(), _reason_of(error), error.details() or "")

    async def _verify_and_claim(self, order: Order, token: str) -> Order:
        verified = verify_or_raise(self.keyring, token, order, ttl_seconds=self.ttl_seconds)
        try:
            stored = await self.db.run(self._claim, order, verified)
        except StaleOrder:
            raise TokenReplayed("risk token already used: the order was submitted concurrently") from None
        self._event_written.set()
        return stored

    async def _executed(self, stored: Order, response: exchange_pb2.ExecuteOrderResponse) -> Submission:
        reports = [convert.report_from_proto(r) for r in response.reports]
        return await self.apply_reports(stored.order_id, reports)

    async def _not_executed(self, stored: Order, code: grpc.StatusCode, reason: str, detail: str) -> Submission:
        """The Exchange refused the order, or its answer never came."""
        if code in DEFINITIVE_REFUSALS and reason not in IN_DOUBT_REASONS:
            log.warning("exchange refused order %s: %s", stored.order_id, detail)
            stored = await self._write(self._refused, stored.order_id, reason, detail)
            return Submission(stored, [])
        # No answer: the venue may or may not have the order. It stays SUBMITTED.
        log.error("order %s in doubt: exchange call failed with %s", stored.order_id, code.name)
        return Submission(stored, [])

    def _claim(self, uow: UnitOfWork, order: Order, verified: "core_ext.VerifyResult") -> Order:
        stored = uow.orders.get(order.order_id)
        if stored is None:
            raise OrderNotFound(f"no order {order.order_id}: orders are created by the Risk service")
        if not stored.same_economics(order):
            raise TokenRejected("the order differs from the one Risk approved", reason="TOKEN_FIELDS_CHANGED")
        if stored.status.is_open or stored.status is OrderStatus.FILLED:
            raise TokenReplayed(f"risk token already used: the order is {stored.status.value}")
        if stored.status is not OrderStatus.APPROVED:
            raise PreconditionFailed(
                f"order is {stored.status.value}: only APPROVED orders can be submitted",
                reason="ORDER_NOT_APPROVED",
            )
        self._check_trading_state(uow, stored)
        stored.transition(
            OrderStatus.SUBMITTED,
            reason="oms: risk token verified",
            payload={"token_key_id": verified.key_id, "token_nonce": verified.nonce},
        )
        uow.orders.save(stored)
        return stored

    @staticmethod
    def _check_trading_state(uow: UnitOfWork, order: Order) -> None:
        """The trading state may have changed since Risk approved the order: the global
        state or the symbol's own (a quarantine), whichever is stricter, decides. A
        refused order stays APPROVED and may go once trading resumes."""
        state = uow.trading_state.effective(order.symbol)
        if state.state is TradingState.HALTED:
            raise PreconditionFailed(f"trading in {order.symbol} is halted: {state.reason}", reason="TRADING_HALTED")
        if state.state is TradingState.REDUCING:
            held = uow.positions.get(order.account, order.symbol).quantity
            if not ledger.only_reduces(held, order.side, order.quantity):
                raise PreconditionFailed(
                    f"trading in {order.symbol} is REDUCING: the order would not only reduce the "
                    f"position of {held}",
                    reason="REDUCING_ONLY",
                )

    def _refused(self, uow: UnitOfWork, order_id: str, reason: str, detail: str) -> Order:
        order = uow.orders.get(order_id)
        assert order is not None
        if order.status is OrderStatus.SUBMITTED:
            order.reject_reasons = [reason]
            order.transition(OrderStatus.REJECTED, reason=f"exchange: {reason}", payload={"detail": detail[:500]})
            uow.orders.save(order)
        return order

    async def apply_reports(self, order_id: str, reports: list[ExecutionReport]) -> Submission:
        """Apply reports, then answer with the order and all its trades as stored.

        The same reports may already have arrived on the report stream (those this OMS
        applied are skipped); the answer is read back in the same transaction, so it never
        depends on which path applied them first.
        """
        pending = self._unapplied(reports)

        def apply_and_read(uow: UnitOfWork) -> Submission:
            order = None
            for report in pending:
                applied, _ = apply_report(uow, report)
                if applied is not None and applied.order_id == order_id:
                    order = applied  # as just stored: no need to read it again
            if order is None:
                order = self._load(uow, order_id)
            return Submission(order, uow.trades.for_order(order_id))

        submission = await self._write(apply_and_read)
        self._remember(pending)
        return submission

    # -- cancels ----------------------------------------------------------------------------
    async def cancel(self, order_id: str) -> Order:
        order = await self._write(self._request_cancel, order_id)
        if order.status is not OrderStatus.PENDING_CANCEL:
            return order  # never reached a venue: cancelled locally
        try:
            response = await self.exchange.CancelOrder(
                self._cancel_request(order),
                timeout=self.exchange_timeout,
                metadata=oms_call_metadata(self.keyring, "CancelOrder"),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in DEFINITIVE_REFUSALS | {grpc.StatusCode.NOT_FOUND}:
                return await self._write(self._cancel_refused, order_id, _reason_of(error))
            # No answer: the cancel may or may not have reached the venue. The order stays
            # PENDING_CANCEL (a new cancel request sends it again); the caller is told UNAVAILABLE.
            raise VenueUnavailable(
                f"the Exchange did not answer the cancel of order {order_id} ({error.code().name}); "
                "it stays PENDING_CANCEL"
            ) from None
        submission = await self.apply_reports(order_id, [convert.report_from_proto(response.report)])
        return submission.order

    @staticmethod
    def _cancel_request(order: Order) -> exchange_pb2.CancelOrderRequest:
        return exchange_pb2.CancelOrderRequest(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            remote_order_id=order.remote_order_id or "",
            symbol=order.symbol,
            market_type=convert.enum_to_proto(order.market_type),
            account=order.account,
        )

    def _request_cancel(self, uow: UnitOfWork, order_id: str) -> Order:
        order = self._load(uow, order_id)
        if order.status is OrderStatus.PENDING_CANCEL:
            return order
        if order.status in (OrderStatus.PENDING, OrderStatus.APPROVED):
            order.transition(OrderStatus.CANCELLED, reason="cancel requested before submission")
        elif order.status.is_open:
            order.transition(OrderStatus.PENDING_CANCEL, reason="cancel requested")
        else:
            raise PreconditionFailed(f"order is {order.status.value}: nothing to cancel", reason="ORDER_NOT_OPEN")
        uow.orders.save(order)
        return order

    def _cancel_refused(self, uow: UnitOfWork, order_id: str, reason: str) -> Order:
        order = self._load(uow, order_id)
        if order.status is OrderStatus.PENDING_CANCEL and order.previous_status is not None:
            order.transition(order.previous_status, reason=f"cancel refused by venue: {reason}")
            uow.orders.save(order)
        return order

    async def cancel_all(self, symbol: str, account: str | None) -> list[Order]:
        open_orders = await self.db.read(lambda uow: uow.orders.open_orders(account=account, symbol=symbol))
        approved = await self.db.read(
            lambda uow: uow.orders.list(account=account, symbol=symbol, statuses=[OrderStatus.APPROVED], limit=10_000)[0]
        )
        results = []
        for order in [*approved, *open_orders]:
            try:
                results.append(await self.cancel(order.order_id))
            except (PreconditionFailed, VenueUnavailable):  # one unanswered cancel must not stop the rest
                results.append(await self.get_order(order.order_id))
        return results

    async def emergency_cancel_all(self, operator: str, reason: str) -> list[Order]:
        """Halt trading (latched) first, so nothing new starts, then cancel everything."""
        await self.db.run(
            lambda uow: uow.trading_state.set(TradingState.HALTED.value, operator, f"emergency cancel all: {reason}")
        )
        symbols = await self.db.read(
            lambda uow: sorted({o.symbol for o in uow.orders.open_orders()}
                               | {o.symbol for o in uow.orders.list(statuses=[OrderStatus.APPROVED], limit=10_000)[0]})
        )
        cancelled: list[Order] = []
        for symbol in symbols:
            cancelled += await self.cancel_all(symbol, None)
        return cancelled

    # -- expiry ---------------------------------------------------------------------------
    async def expire_due(self, now: dt.datetime | None = None) -> list[Order]:
        """Expire what is due: APPROVED orders whose risk token lapsed before anyone
        submitted them, and GTD orders whose expire time has come (a working one is
        cancelled at the venue first, and EXPIRED once the venue confirms)."""
        now = now or utcnow()
        lapsed_before = now - dt.timedelta(seconds=self.ttl_seconds + core_ext.DEFAULT_SKEW_SECONDS)
        due = await self.db.read(lambda uow: uow.orders.due_for_expiry(lapsed_before, now))
        expired = []
        for order in due:
            try:
                if order.status is OrderStatus.APPROVED:
                    expired.append(await self._write(self._expire_locally, order.order_id, lapsed_before, now))
                elif order.status is not OrderStatus.PENDING_CANCEL:
                    expired.append(await self._expire_at_venue(order))
            except (grpc.aio.AioRpcError, PreconditionFailed) as error:
                log.warning("could not expire order %s: %s", order.order_id, error)
        return expired

    def _expire_locally(self, uow: UnitOfWork, order_id: str, lapsed_before: dt.datetime, now: dt.datetime) -> Order:
        order = self._load(uow, order_id)
        if order.status is not OrderStatus.APPROVED:
            return order
        if order.expire_time is not None and order.expire_time <= now:
            reason = "GTD expire time reached before submission"
        elif order.updated_time < lapsed_before:
            reason = "risk token expired before submission"
        else:
            return order  # re-approved meanwhile (a fresh token)
        order.transition(OrderStatus.EXPIRED, reason=reason, at=now)
        uow.orders.save(order)
        return order

    async def _expire_at_venue(self, order: Order) -> Order:
        """Cancel a working GTD order whose time has come, straight at the venue (the
        state table has no PENDING_CANCEL -> EXPIRED); the fill tracker records the
        venue's confirmation as EXPIRED, whichever path brings it first."""
        response = await self.exchange.CancelOrder(
            self._cancel_request(order),
            timeout=self.exchange_timeout,
            metadata=oms_call_metadata(self.keyring, "CancelOrder"),
        )
        return (await self.apply_reports(order.order_id, [convert.report_from_proto(response.report)])).order

    # -- reads ------------------------------------------------------------------------------
    @staticmethod
    def _load(uow: UnitOfWork, order_id: str) -> Order:
        order = uow.orders.get(order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        return order

    async def get_order(self, order_id: str) -> Order:
        return await self.db.read(self._load, order_id)

    async def find_order_id(self, account: str, client_order_id: str) -> str:
        order = await self.db.read(lambda uow: uow.orders.get_by_client_order_id(account, client_order_id))
        if order is None:
            raise OrderNotFound(f"no order {client_order_id!r} for account {account!r}")
        return order.order_id

    async def order_details(self, order_id: str) -> tuple[Order, list[OrderEvent], list[Trade]]:
        def read(uow: UnitOfWork) -> tuple[Order, list[OrderEvent], list[Trade]]:
            return self._load(uow, order_id), uow.orders.events(order_id), uow.trades.for_order(order_id)

        return await self.db.read(read)

    async def list_orders(self, **filters: Any) -> tuple[list[Order], str | None]:
        return await self.db.read(lambda uow: uow.orders.list(**filters))

    async def list_trades(self, **filters: Any) -> tuple[list[Trade], str | None]:
        return await self.db.read(lambda uow: uow.trades.list(**filters))

    async def follow_events(
        self, *, order_id: str | None, account: str | None, after: int, history_only: bool, poll_seconds: float = 0.25
    ) -> AsyncIterator[tuple[int, OrderEvent, Order]]:
        """Stored events after ``after``, then new ones as they are written (by any process)."""
        cursor = after
        while True:
            batch = await self.db.read(self._events_with_orders, cursor, order_id, account)
            for event_id, event, order in batch:
                cursor = event_id
                yield event_id, event, order
            if len(batch) < 500:
                if history_only:
                    return
                self._event_written.clear()
                try:
                    await asyncio.wait_for(self._event_written.wait(), poll_seconds)
                except asyncio.TimeoutError:
                    pass

    @staticmethod
    def _events_with_orders(
        uow: UnitOfWork, cursor: int, order_id: str | None, account: str | None
    ) -> list[tuple[int, OrderEvent, Order]]:
        rows = uow.orders.events_after(cursor, order_id=order_id, account=account, limit=500)
        orders: dict[str, Order] = {}
        result = []
        for event_id, event in rows:
            if event.order_id not in orders:
                orders[event.order_id] = uow.orders.get(event.order_id)  # type: ignore[assignment]
            result.append((event_id, event, orders[event.order_id]))
        return result

    # -- order managers ----------------------------------------------------------------------
    async def create_order_manager(self, **fields: Any) -> tuple[OrderManager, bool]:
        return await self.db.run(lambda uow: uow.order_managers.create_batch(**fields))

    async def get_order_manager(self, unique_identifier: str) -> tuple[OrderManager, list[Order]]:
        def read(uow: UnitOfWork) -> tuple[OrderManager, list[Order]]:
            manager = uow.order_managers.get(unique_identifier)
            if manager is None:
                raise OrderNotFound(f"no order manager {unique_identifier!r}", reason="ORDER_MANAGER_NOT_FOUND")
            orders, _ = uow.orders.list(order_manager_id=unique_identifier, limit=10_000)
            return manager, orders

        return await self.db.read(read)

    # -- execution reports from the stream ----------------------------------------------------
    async def follow_exchange_reports(self, stop: asyncio.Event) -> None:
        """Apply reports from StreamExecutionReports until ``stop``; reconnect on failure."""
        backoff = 0.2
        while not stop.is_set():
            call = self.exchange.StreamExecutionReports(
                exchange_pb2.StreamExecutionReportsRequest(after_sequence=0),
                metadata=oms_call_metadata(self.keyring, "StreamExecutionReports"),
            )
            try:
                async for response in call:
                    report = convert.report_from_proto(response.report)
                    if report_key(report) not in self._applied:  # else the ExecuteOrder answer brought it
                        await self._write(apply_report, report)
                        self._remember([report])
                    backoff = 0.2
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.CANCELLED:
                    log.info("execution report stream interrupted (%s); reconnecting", error.code().name)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as error:  # noqa: BLE001 - e.g. the store is down: resubscribe later
                # The stream starts again from the Exchange's first retained report; the
                # fill tracker applies each report once, so nothing is lost or doubled.
                call.cancel()
                log.warning("applying execution reports failed (%s); resubscribing", type(error).__name__)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except asyncio.TimeoutError:
                backoff = min(backoff * 2, 5.0)


__all__ = ["OrderManagement", "Submission", "utcnow"]
