"""Submission: verify the risk token from the wire, claim the order, execute, record the fills.

The OMS writes twice per order, in sets shared by every submission in flight:

1. **the claim**, before the venue: the token is verified on the request's own bytes
   (:func:`core_ext.verify_order_request`, the compiled core), then the stored order
   moves APPROVED -> SUBMITTED with a compare-and-set, with the trading state of its
   symbol checked in the same read (:data:`~services.store.order_sets.CLAIMS`): a token
   moves exactly one order, once, and never while trading is halted;
2. **the fills**, after the venue: the Exchange's answer is applied to the order the
   claim returned (nothing is read back) and stored with its events and trades in one
   write (:data:`~services.store.order_sets.FILLS`).

Each fill reaches the order path once: in the Exchange's answer (the Exchange streams
only what it learns later, see :mod:`services.exchange.engine`). An answer that never
came leaves the order SUBMITTED, in doubt, for the reconciler to settle by asking the
venue, never by resending. The rare answer the fast path does not store itself (a
refused fill, a lost compare-and-set) goes through the fill tracker's unit of work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

import core_ext
from services.common import convert
from services.common.observability.interceptors import note_order_id
from services.common.tokens import verify_or_raise
from services.domain import Order, OrderStatus, Trade, utcnow
from services.domain.errors import (DomainError, ExchangeUnavailable, InvalidOrder, MalformedRequest, StaleOrder,
                                    TokenReplayed)
from services.domain.execution import ExecutionReport
from services.store import UnitOfWork
from services.store.database import Database
from services.store.order_sets import CLAIMS, FILLS, Claim, Fill
from tessera.common.v1 import types_pb2 as common_pb
from tessera.oms.v1 import oms_pb2

from .fill_tracker import apply_report, apply_to_order
from .gateway import ExchangeGateway, Executed, Refusal
from .replay import REPLAY_REASONS, answer_replays

log = logging.getLogger(__name__)
MAX_CAS_ATTEMPTS = 8


#: The Order fields a client does not set (``OUTPUT_ONLY`` in the contract) but may echo.
OUTPUT_ONLY = ("status", "filled_quantity", "average_fill_price", "remote_order_id", "order_time", "updated_time",
                "reject_reasons", "version", "replaced_by_order_id", "venue_executed_quantity")


def client_message(order: Order) -> common_pb.Order:
    """A domain order as a client sends it to SubmitOrder: the fields a client sets (the
    output-only ones, which an order rebuilt from a message does not carry as Risk
    stored them, are left unset)."""
    message = convert.order_to_proto(order)
    for name in OUTPUT_ONLY:
        message.ClearField(name)
    return message


@dataclasses.dataclass
class Submission:
    order: Order
    trades: list[Trade]
    #: The answer to a repeated submission (same order, same token): the order as it is
    #: now, nothing sent again (see :mod:`.replay`).
    replayed: bool = False


def parse_request(raw: bytes) -> oms_pb2.SubmitOrderRequest:
    try:
        return oms_pb2.SubmitOrderRequest.FromString(raw)
    except Exception:  # noqa: BLE001 - DecodeError, or anything a hostile payload makes the parser raise
        raise MalformedRequest("SubmitOrderRequest") from None


def parse_batch(raw: bytes) -> oms_pb2.SubmitOrdersRequest:
    try:
        return oms_pb2.SubmitOrdersRequest.FromString(raw)
    except Exception:  # noqa: BLE001 - as above
        raise MalformedRequest("SubmitOrdersRequest") from None


class Submitter:
    """The OMS's order path (see the module docstring)."""

    def __init__(self, db: Database[Any], keyring: "core_ext.KeyRing", gateway: ExchangeGateway, *,
                 ttl_seconds: int = 300, clock: Callable[[], dt.datetime] = utcnow,
                 wall: Callable[[], float] = time.time, written: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.keyring = keyring
        self.gateway = gateway
        self.ttl_seconds = ttl_seconds
        #: The time a claim records (UTC), and the time tokens are verified at (epoch
        #: seconds): the real ones unless a test gives its own.
        self.clock = clock
        self.wall = wall
        self.written = written
        #: Batches sent and recorded apart from their callers (see :meth:`_apart`).
        self.running: set[asyncio.Task[Any]] = set()

    # -- entry points -----------------------------------------------------------------------------
    async def submit_wire(self, raw: bytes, *, remaining: float | None = None) -> Submission:
        """Submit a serialized ``SubmitOrderRequest`` (as it arrived).

        Raises
        ------
        DomainError
            The request, the token or the order refused (INVALID_ARGUMENT, the token's
            reason, NOT_FOUND, TOKEN_ALREADY_USED, TRADING_HALTED, ...).
        """
        verdict = core_ext.verify_order_request(self.keyring, raw, self.wall(), self.ttl_seconds)
        request = parse_request(raw)
        note_order_id(request.order.order_id)
        (outcome,) = await self.submit_verified([(verdict, request)], remaining=remaining)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def submit_wire_many(self, raw: bytes, *, remaining: float | None = None,
                               max_items: int | None = None) -> list[Submission | DomainError]:
        """Submit a serialized ``SubmitOrdersRequest``: each item gets its submission or
        the error :meth:`submit_wire` would have raised for it, in order.

        Raises
        ------
        MalformedRequest, InvalidOrder
            The batch is not a valid message, or has more than ``max_items`` orders.
        """
        try:
            verdicts = core_ext.verify_order_requests(self.keyring, raw, self.wall(), self.ttl_seconds)
        except ValueError:
            raise MalformedRequest("SubmitOrdersRequest") from None
        if max_items is not None and len(verdicts) > max_items:
            raise InvalidOrder("orders", f"at most {max_items} orders per batch, got {len(verdicts)}",
                               violation="TOO_MANY_ITEMS")
        return await self.submit_verified(list(zip(verdicts, parse_batch(raw).orders)), remaining=remaining)

    async def submit(self, order: Order, token: str) -> Submission:
        """Submit a domain order with its token: the request a client would send with the
        fields a client sets (the output-only ones, which an order rebuilt from a message
        does not carry as Risk stored them, are left unset)."""
        request = oms_pb2.SubmitOrderRequest(order=client_message(order), risk_token=token)
        return await self.submit_wire(request.SerializeToString())

    # -- the path ---------------------------------------------------------------------------------
    def _verified(self, verdict: "core_ext.VerifyResult", request: oms_pb2.SubmitOrderRequest) -> "core_ext.VerifyResult":
        """The token's verdict; when it is not OK, the request is checked field by field
        so the refusal says precisely what is wrong (an invalid field, then the token)."""
        if verdict.ok:
            return verdict
        if not request.HasField("order"):
            raise InvalidOrder("order", "required", violation="REQUIRED")
        order = convert.order_from_proto(request.order)
        return verify_or_raise(self.keyring, request.risk_token, order, ttl_seconds=self.ttl_seconds, now=self.wall())

    async def submit_verified(
        self, entries: Sequence[tuple["core_ext.VerifyResult", oms_pb2.SubmitOrderRequest]], *,
        remaining: float | None = None, replacing: str | None = None,
    ) -> list[Submission | DomainError]:
        """Claim, execute and record verified requests (``replacing``: the order a
        replacement replaces, when ReplaceOrder sends it, see :mod:`.replace`)."""
        results: list[Any] = [None] * len(entries)
        deadline = None if remaining is None else time.monotonic() + remaining
        verified_entries: list[tuple[int, oms_pb2.SubmitOrderRequest, "core_ext.VerifyResult"]] = []
        for index, (verdict, request) in enumerate(entries):
            try:
                verified = self._verified(verdict, request)
                # Unsigned fields that disagree with the approved order are refused, never ignored.
                convert.check_output_fields_as_approved(request.order)
                verified_entries.append((index, request, verified))
            except DomainError as error:
                results[index] = error
        if not verified_entries:
            return results
        # Claim only what can be sent at once: while the Exchange restarts, wait for it
        # within the caller's deadline; if it does not come back, nothing is claimed.
        if not await self.gateway.ready(remaining):
            for index, request, _ in verified_entries:
                results[index] = ExchangeUnavailable(
                    "the Exchange service is unreachable (restarting?): the order was not sent and is still "
                    "APPROVED; retry", metadata={"order_id": request.order.order_id})
            # A retry of a submission this token already made needs no Exchange: it gets
            # its answer (see .replay), never "not sent" for an order that was.
            await self._replayed(results, [(index, request.order.order_id, verified.key_id, verified.nonce)
                                           for index, request, verified in verified_entries])
            return results
        remaining = None if deadline is None else deadline - time.monotonic()
        now = self.clock()
        claims = [(index, request, Claim(request.order.order_id, verified.key_id, verified.nonce, now,
                                         convert.order_as_approved(request.order), replacing,
                                         convert.unsigned_fields_sent(request.order)))
                  for index, request, verified in verified_entries]
        outcomes = await self.db.write_many(CLAIMS, [claim for _, _, claim in claims])
        self.written()
        sending: list[tuple[int, Order, oms_pb2.SubmitOrderRequest]] = []
        replays: list[tuple[int, str, str, str]] = []  # claims refused as a retry would be (see .replay)
        for (index, request, claim), outcome in zip(claims, outcomes):
            if isinstance(outcome, StaleOrder):
                results[index] = TokenReplayed("risk token already used: the order was submitted concurrently",
                                               metadata={"order_id": request.order.order_id, "status": "SUBMITTED"})
                replays.append((index, claim.order_id, claim.key_id, claim.nonce))
            elif isinstance(outcome, BaseException):
                results[index] = outcome
                if getattr(outcome, "reason", None) in REPLAY_REASONS:
                    replays.append((index, claim.order_id, claim.key_id, claim.nonce))
            else:
                sending.append((index, outcome, request))
        if not sending:
            if replays:
                await self._replayed(results, replays)
            return results
        orders = [self._as_sent(order, request.order) for _, order, request in sending]
        tokens = [request.risk_token for _, _, request in sending]
        if len(sending) == 1:
            claimed = sending[0][1]
            answers = [await self.gateway.execute(orders[0], tokens[0], remaining=remaining,
                                                  orphaned=lambda answer: self._record([(claimed, answer)]))]
            finished = await self._record([(claimed, answers[0])])
        else:
            finished = await self._apart(self._send_and_record(
                list(zip(orders, tokens)), [order for _, order, _ in sending], remaining))
        for (index, _, _), outcome in zip(sending, finished):
            results[index] = outcome
        if replays:  # after the sends: a repeat inside this batch answers as its first did
            await self._replayed(results, replays)
        return results

    async def _send_and_record(self, items: list[tuple[common_pb.Order, str]], claimed: list[Order],
                               remaining: float | None) -> list[Submission | DomainError]:
        answers = await self.gateway.execute_many(items, remaining=remaining)
        return await self._record(list(zip(claimed, answers)))

    async def _apart(self, work: Awaitable[list[Any]]) -> list[Any]:
        """``work`` in a task of its own: a caller cancelled meanwhile (its client went
        away) leaves it to finish, so what the Exchange answers for a batch is stored as
        it comes, not left in doubt for the reconciler (as :meth:`ExchangeGateway.execute`
        does for one order)."""
        task = asyncio.ensure_future(work)
        self.running.add(task)
        task.add_done_callback(self._ran_apart)
        return await asyncio.shield(task)

    def _ran_apart(self, task: "asyncio.Task[Any]") -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a batch sent apart from its caller was not recorded: %r", task.exception())

    async def _replayed(self, results: list[Any], replays: list[tuple[int, str, str, str]]) -> None:
        """Answer the claims a retry of a submission made (see :mod:`.replay`)."""
        await answer_replays(self.db, results, replays, lambda order, trades: Submission(order, trades, True))

    @staticmethod
    def _as_sent(order: Order, message: common_pb.Order) -> common_pb.Order:
        """The client's order message (its signed fields verified), with the fields the
        token does not sign taken from the stored order."""
        message.status = common_pb.ORDER_STATUS_SUBMITTED
        message.filled_quantity = convert.format_decimal(order.filled_quantity)
        message.average_fill_price = convert.format_decimal(order.average_fill_price)
        message.remote_order_id = order.remote_order_id or ""
        message.order_manager_id = order.order_manager_id or ""
        if order.expire_time is not None:
            message.expire_time.FromDatetime(order.expire_time)
        else:
            message.ClearField("expire_time")
        message.version = order.version
        return message

    async def _record(self, answered: list[tuple[Order, Executed | Refusal]]) -> list[Submission | DomainError]:
        """Store what the Exchange answered: the fills in one set write; refusals and the
        rare answers the set write does not take through the fill tracker."""
        results: list[Any] = [None] * len(answered)
        fills: list[tuple[int, Fill]] = []
        slow: list[tuple[int, Order, Any]] = []
        for index, (order, answer) in enumerate(answered):
            if isinstance(answer, Refusal):
                slow.append((index, order, answer))
                continue
            stored_sequence, trades, clean = order.last_sequence, [], True
            for report in answer.reports:
                if report.order_id != order.order_id:
                    clean = False
                    break
                applied = apply_to_order(order, report, {t.trade_id for t in trades})
                if applied.anomaly is not None:
                    clean = False
                    break
                if applied.trade is not None:
                    trades.append(applied.trade)
            if not clean:
                slow.append((index, order, answer))
            elif order.new_events or order.last_sequence != stored_sequence or trades:
                fills.append((index, Fill(order, stored_sequence, trades)))
            else:
                results[index] = Submission(order, [])  # acknowledged with nothing new (or in doubt)
        if fills:
            outcomes = await self.db.write_many(FILLS, [fill for _, fill in fills])
            self.written()
            for (index, fill), outcome in zip(fills, outcomes):
                if isinstance(outcome, BaseException):
                    slow.append((index, fill.order, answered[index][1]))
                else:
                    results[index] = Submission(outcome, fill.trades)
        for index, order, answer in slow:
            try:
                if isinstance(answer, Refusal):
                    results[index] = await self._not_executed(order, answer)
                else:
                    results[index] = await self.apply_reports(order.order_id, answer.reports)
            except DomainError as error:
                results[index] = error
        return results

    async def _not_executed(self, order: Order, refusal: Refusal) -> Submission:
        """The Exchange refused the order, or its answer never came."""
        if refusal.definitive:
            log.warning("exchange refused order %s: %s", order.order_id, refusal.detail)
            stored = await self.write(_refused, order.order_id, refusal.reason, refusal.detail, self.clock(),
                                      refusal.venue_payload)
            return Submission(stored, [])
        # No answer: the venue may or may not have the order. It stays SUBMITTED.
        log.error("order %s in doubt: exchange call failed with %s", order.order_id, refusal.code.name)
        return Submission(order, [])

    # -- the unit-of-work path -------------------------------------------------------------------
    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a read-modify-write, retrying when a concurrent writer won the compare-and-set."""
        for attempt in range(MAX_CAS_ATTEMPTS):
            try:
                result = await self.db.run(fn, *args)
            except StaleOrder:
                if attempt == MAX_CAS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
                continue
            self.written()
            return result
        raise AssertionError("unreachable")

    async def apply_reports(self, order_id: str, reports: list[ExecutionReport]) -> Submission:
        """Apply reports through the fill tracker, then answer with the order and its
        trades as stored (read in the same transaction)."""

        def apply_and_read(uow: UnitOfWork) -> Submission:
            order = None
            for report in reports:
                applied, _ = apply_report(uow, report)
                if applied is not None and applied.order_id == order_id:
                    order = applied  # as just stored: no need to read it again
            if order is None:
                order = uow.orders.get(order_id)
                if order is None:
                    from services.domain.errors import OrderNotFound

                    raise OrderNotFound(f"no order {order_id}", metadata={"order_id": order_id})
            return Submission(order, uow.trades.for_order(order_id))

        return await self.write(apply_and_read)


def _refused(uow: UnitOfWork, order_id: str, reason: str, detail: str, at: dt.datetime,
             venue_payload: str | None = None) -> Order:
    order = uow.orders.get(order_id)
    assert order is not None
    if order.status is OrderStatus.SUBMITTED:
        order.reject_reasons = [reason]
        event = order.transition(OrderStatus.REJECTED, reason=f"exchange: {reason}", at=at,
                                 payload={"detail": detail[:500]})
        if venue_payload:  # the venue's refusal, as it answered
            event.raw_venue_json = order.raw_venue_json = venue_payload
        uow.orders.save(order)
    return order


__all__ = ["OUTPUT_ONLY", "Submission", "Submitter", "parse_batch", "parse_request"]
