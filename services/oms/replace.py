"""ReplaceOrder: amend a working order's price and/or quantity by cancel-replace.

The replacement is an order of its own that Risk approved (``ValidateReplacement``: the
new economics checked afresh, its own token, ``replaces_order_id`` naming the working
order). The OMS then, through the state machine the orders already follow:

1. **starts** the replace: the working order goes PENDING_CANCEL with
   ``replaced_by_order_id`` naming the replacement (a compare-and-set: one replace at a
   time), provided it filled nothing since Risk approved the replacement;
2. **cancels** it at the venue, as CancelOrder does;
3. once it is CANCELLED with nothing more filled, **submits** the replacement (APPROVED
   -> SUBMITTED, the claim only a replace may make, then the venue) and answers it.

A fill racing the replace ends consistent: a fill the venue reports with (or before) the
cancel's answer is recorded on the old order, and the replacement, which would then work
more than the client asked in all, is not sent: it is CANCELLED, and the answer says so
with the old order as it ended. Nothing is ever sent twice: a call whose answer was lost
is repeated with the same replacement and token and resumes where the first stopped (a
cancel still unconfirmed is sent again), or answers what the first did (``replayed``).

Every mode replaces this way (paper, shadow and live): see docs/replace.md for why the
venue's own modify (Aster futures' ``PUT /fapi/v3/order``) is not used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from decimal import Decimal
from typing import Any

import core_ext
from services.common import convert
from services.common.tokens import verify_or_raise
from services.domain import Order, OrderStatus, Trade
from services.domain.errors import InvalidOrder, PreconditionFailed, TokenReplayed, VenueUnavailable
from services.domain.execution import ExecutionReport
from services.store import UnitOfWork
from tessera.common.v1 import types_pb2 as common_pb
from tessera.oms.v1 import oms_pb2

from .cancels import closing_reports, load, settle_refused_cancel, venue_word
from .gateway import ExchangeGateway, Refusal
from .replay import claim_of
from .submission import OUTPUT_ONLY, Submitter

log = logging.getLogger(__name__)

_WORKING = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)

# What the start of a replace found (see _start).
_CANCEL, _SEND, _NOT_WORKING, _CHANGED, _ENDED, _TAKEN = "cancel", "send", "not working", "changed", "ended", "taken"


@dataclasses.dataclass
class Replacement:
    """The answer of ReplaceOrder."""

    order: Order  # the replacement, as it is now
    trades: list[Trade]  # its fills known now
    replaced: Order  # the order it replaces, as it is now
    replayed: bool = False


@dataclasses.dataclass
class _Stored:
    replacement: Order
    replaced_filled: Decimal | None  # what the replaced order had filled when Risk approved
    claim: dict[str, Any] | None  # the replacement's claim (its SUBMITTED event), if it has one
    trades: list[Trade]
    replaced: Order | None


def _read_stored(uow: UnitOfWork, order_id: str) -> _Stored:
    replacement = load(uow, order_id)
    events = uow.orders.events(order_id)
    approval = next((e.payload for e in events if e.to_status is OrderStatus.APPROVED), None) or {}
    filled = approval.get("replaced_filled_quantity")
    replaced = uow.orders.get(replacement.replaces_order_id) if replacement.replaces_order_id else None
    return _Stored(replacement, Decimal(filled) if filled else None, claim_of(events),
                   uow.trades.for_order(order_id), replaced)


def _start(uow: UnitOfWork, replaced_id: str, replacement_id: str, filled: Decimal | None, at: dt.datetime
           ) -> tuple[Order, str]:
    """Move the replaced order to PENDING_CANCEL for ``replacement_id`` (or find where an
    earlier attempt of the same replace got to)."""
    order = load(uow, replaced_id)
    if order.replaced_by_order_id == replacement_id:  # this replace started already
        if order.status is OrderStatus.PENDING_CANCEL:
            return order, _CANCEL  # its cancel is not confirmed: send it again
        if order.status is OrderStatus.CANCELLED:
            return order, _SEND
        return order, _ENDED
    if order.replaced_by_order_id is not None and order.status is OrderStatus.PENDING_CANCEL:
        return order, _TAKEN  # another replace's cancel is still pending
    # (A fill that crossed that replace's unanswered cancel left the order working: that
    # replace will not send its replacement, and this one may start.)
    if order.status.is_terminal:
        return order, _ENDED
    if order.status not in _WORKING:
        return order, _NOT_WORKING
    if filled is None or order.filled_quantity != filled:
        return order, _CHANGED
    order.replaced_by_order_id = replacement_id
    order.transition(OrderStatus.PENDING_CANCEL, reason=f"replace requested: by order {replacement_id}", at=at,
                     payload={"replaced_by_order_id": replacement_id})
    uow.orders.save(order)
    return order, _CANCEL


def _cancel_refused(uow: UnitOfWork, replaced_id: str, replacement_id: str, reason: str, at: dt.datetime,
                    venue_payload: str | None = None, word: list[ExecutionReport] | None = None) -> Order:
    """The venue refused the cancel. What it says became of the old order is recorded
    first (``word``, see :func:`services.oms.cancels.venue_word`): one the venue had
    cancelled (an earlier cancel of this replace, whose answer was lost) is CANCELLED and
    the replace goes on. Otherwise the old order goes back to where it was (or ends as the
    venue has it: filled), free to be replaced again, and the replacement is abandoned (in
    the same transaction)."""
    order = settle_refused_cancel(uow, replaced_id, reason, at, venue_payload, word or [])
    if order.replaced_by_order_id == replacement_id and order.status is OrderStatus.CANCELLED:
        return order
    if order.replaced_by_order_id == replacement_id:
        order.replaced_by_order_id = None
        uow.orders.save(order)
    _abandon(uow, replacement_id, f"the venue refused to cancel order {replaced_id}: {reason}", at)
    return order


def _abandon(uow: UnitOfWork, replacement_id: str, reason: str, at: dt.datetime) -> Order:
    """Cancel a replacement that will not be sent (its token then moves nothing)."""
    order = load(uow, replacement_id)
    if order.status is OrderStatus.APPROVED:
        order.transition(OrderStatus.CANCELLED, reason=f"replace abandoned: {reason}", at=at)
        uow.orders.save(order)
    return order


def _check_unsigned_as_approved(message: common_pb.Order, replacement: Order) -> None:
    """Refuse a replacement message whose order manager or expiry (set, unsigned by the
    token) is not the approved replacement's: ``DIFFERS_FROM_APPROVED``, naming each."""
    differing = [
        InvalidOrder(name, f"differs from the approved replacement's ({_shown(getattr(replacement, name))}): send "
                           "the replacement as Risk answered it, or leave the field unset",
                     violation=convert.DIFFERS)
        for name, value in convert.unsigned_fields_sent(message).items()
        if name != "order_time" and getattr(replacement, name) != value  # order_time: OUTPUT_ONLY
    ]
    if differing:
        raise InvalidOrder.of(differing)


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _without_output_only(message: common_pb.Order) -> common_pb.Order:
    """A copy of ``message`` without the OUTPUT_ONLY fields a client may echo (what Risk
    stored is read from the store)."""
    copy = common_pb.Order()
    copy.CopyFrom(message)
    for name in OUTPUT_ONLY:
        copy.ClearField(name)
    return copy


class Replacer:
    """ReplaceOrder (see the module docstring)."""

    def __init__(self, submitter: Submitter, gateway: ExchangeGateway, *, ttl_seconds: int = 300) -> None:
        self.submitter = submitter
        self.db = submitter.db
        self.gateway = gateway
        self.keyring = submitter.keyring
        self.ttl_seconds = ttl_seconds

    async def replace(self, message: common_pb.Order, token: str, *, remaining: float | None = None) -> Replacement:
        """Replace the order ``message`` (a replacement as Risk answered it) replaces.

        Raises
        ------
        DomainError
            The replacement, its token or the order it replaces refused (INVALID_ARGUMENT,
            the token's reasons, ORDER_NOT_FOUND, NOT_A_REPLACEMENT, ORDER_NOT_WORKING,
            ORDER_NOT_OPEN, ORDER_CHANGED, the venue's refusal of the cancel), or the
            venue's answer to the cancel not known yet (VENUE_UNAVAILABLE: call again).
        """
        presented = convert.order_from_proto(message)
        verified = verify_or_raise(self.keyring, token, presented, ttl_seconds=self.ttl_seconds,
                                   now=self.submitter.wall())
        stored = await self.db.read(_read_stored, presented.order_id)
        replacement = stored.replacement
        if replacement.replaces_order_id is None or stored.replaced is None:
            raise PreconditionFailed(f"order {replacement.order_id} replaces no order: submit it with SubmitOrder",
                                     reason="NOT_A_REPLACEMENT", metadata={"order_id": replacement.order_id})
        # Before anything moves: the unsigned fields the request sets must be the approved
        # replacement's (refused as SubmitOrder refuses them, never after the old order
        # was cancelled), and its OUTPUT_ONLY fields are ignored (see the contract).
        _check_unsigned_as_approved(message, replacement)
        message = _without_output_only(message)
        if replacement.status is not OrderStatus.APPROVED:
            return self._answered(stored, verified)
        replaced_id, replacement_id = replacement.replaces_order_id, replacement.order_id
        replaced, found = await self.submitter.write(_start, replaced_id, replacement_id, stored.replaced_filled,
                                                     self.submitter.clock())
        if found == _NOT_WORKING:
            # (A cancel is pending, or the order is in doubt: the replacement is not sent, and
            # no longer holds the account's limits at Risk until its token lapses.)
            await self._abandon(replacement_id, f"order {replaced_id} is {replaced.status.value}")
            raise PreconditionFailed(
                f"order {replaced_id} is {replaced.status.value}: only an order working at the venue can be replaced",
                reason="ORDER_NOT_WORKING", metadata={"order_id": replaced_id, "status": replaced.status.value})
        if found == _TAKEN:
            await self._abandon(replacement_id, f"order {replaced_id} is replaced by {replaced.replaced_by_order_id}")
            raise PreconditionFailed(
                f"order {replaced_id} is being replaced by order {replaced.replaced_by_order_id}",
                reason="ORDER_NOT_WORKING", metadata={"order_id": replaced_id, "status": replaced.status.value})
        if found == _CHANGED:
            await self._abandon(replacement_id, f"order {replaced_id} filled since the replacement was approved")
            raise PreconditionFailed(
                f"order {replaced_id} filled {replaced.filled_quantity} (it had filled {stored.replaced_filled} when "
                "the replacement was approved): validate a new replacement", reason="ORDER_CHANGED",
                metadata={"order_id": replaced_id, "status": replaced.status.value,
                          "replacement_order_id": replacement_id})
        if found == _ENDED and replaced.replaced_by_order_id != replacement_id:
            await self._abandon(replacement_id, f"order {replaced_id} is {replaced.status.value}")
            raise PreconditionFailed(f"order {replaced_id} is {replaced.status.value}: nothing to replace",
                                     reason="ORDER_NOT_OPEN",
                                     metadata={"order_id": replaced_id, "status": replaced.status.value})
        cumulative = None
        if found == _CANCEL:
            replaced, cumulative = await self._cancel(replaced, replacement_id)
        if cumulative is None:
            # Closed by another path (the report stream, the reconciler, an earlier call):
            # what the venue said it executed then, when more than the order has filled.
            cumulative = replaced.venue_executed_quantity
        if (replaced.status is OrderStatus.CANCELLED and replaced.filled_quantity == stored.replaced_filled
                and (cumulative is None or cumulative == stored.replaced_filled)):
            return await self._send(message, token, verified, replaced, remaining)
        if replaced.status is OrderStatus.PENDING_CANCEL:
            raise VenueUnavailable(f"the cancel of order {replaced_id} is not confirmed yet; it stays PENDING_CANCEL: "
                                   "call ReplaceOrder again", metadata={"order_id": replaced_id})
        # It filled while the cancel was on its way (or ended otherwise): the replacement would
        # work more than was asked in all. It is not sent.
        why = (f"order {replaced_id} ended {replaced.status.value} having filled {replaced.filled_quantity}, "
               f"{stored.replaced_filled} when the replacement was approved")
        log.info("replacement %s not sent: %s", replacement_id, why)
        abandoned = await self._abandon(replacement_id, why)
        return Replacement(abandoned, [], replaced)

    async def _abandon(self, replacement_id: str, reason: str) -> Order:
        return await self.submitter.write(_abandon, replacement_id, reason, self.submitter.clock())

    async def _cancel(self, replaced: Order, replacement_id: str) -> tuple[Order, Decimal | None]:
        """Cancel the replaced order at the venue; the order as the answer left it, and
        what the venue said it executed in all (None when it did not say)."""
        answer = await self.gateway.cancel(replaced)
        if isinstance(answer, Refusal):
            if answer.definitive or answer.not_found:
                # The venue has no open order by that id: ask it what became of the order.
                word = await venue_word(self.gateway, replaced, answer, self.submitter.clock())
                settled = await self.submitter.write(_cancel_refused, replaced.order_id, replacement_id,
                                                     answer.reason, self.submitter.clock(), answer.venue_payload,
                                                     word)
                if settled.status is OrderStatus.CANCELLED and settled.replaced_by_order_id == replacement_id:
                    # Cancelled by this replace's earlier cancel, whose answer was lost: the replace goes on.
                    status = word[-1] if word and word[-1].fill is None else None
                    return settled, status.cumulative_quantity if status is not None else None
                raise PreconditionFailed(f"the venue refused to cancel order {replaced.order_id}: {answer.detail}",
                                         reason=answer.reason, metadata={"order_id": replaced.order_id})
            raise VenueUnavailable(
                f"the Exchange did not answer the cancel of order {replaced.order_id} ({answer.code.name}); it stays "
                "PENDING_CANCEL: call ReplaceOrder again", metadata={"order_id": replaced.order_id})
        # Fills the cancel crossed on the wire are still on their way (the report stream):
        # read from the venue and recorded before the order closes.
        applied = await self.submitter.apply_reports(replaced.order_id,
                                                     await closing_reports(self.gateway, replaced, answer))
        return applied.order, answer.cumulative_quantity

    async def _send(self, message: common_pb.Order, token: str, verified: "core_ext.VerifyResult",
                    replaced: Order, remaining: float | None) -> Replacement:
        request = oms_pb2.SubmitOrderRequest(order=message, risk_token=token)
        (outcome,) = await self.submitter.submit_verified([(verified, request)], remaining=remaining,
                                                          replacing=replaced.order_id)
        if isinstance(outcome, BaseException):
            raise outcome  # the replaced order stays cancelled, the replacement APPROVED: call again
        return Replacement(outcome.order, outcome.trades, replaced, outcome.replayed)

    @staticmethod
    def _answered(stored: _Stored, verified: "core_ext.VerifyResult") -> Replacement:
        """A replacement past APPROVED: the answer of the replace that moved it (to a
        repeat with the same token), else the refusal a spent token gets."""
        replacement, replaced = stored.replacement, stored.replaced
        assert replaced is not None
        claim = stored.claim
        if claim is not None and claim.get("token_nonce") == verified.nonce and claim.get("token_key_id") == verified.key_id:
            return Replacement(replacement, stored.trades, replaced, replayed=True)
        if claim is None and replaced.replaced_by_order_id == replacement.order_id:
            return Replacement(replacement, [], replaced, replayed=True)  # the replace ended without sending it
        metadata = {"order_id": replacement.order_id, "status": replacement.status.value}
        if claim is not None:
            raise TokenReplayed(f"risk token already used: the replacement is {replacement.status.value}",
                                metadata=metadata)
        raise PreconditionFailed(f"the replacement is {replacement.status.value}: only an APPROVED replacement can "
                                 "replace an order", reason="ORDER_NOT_APPROVED", metadata=metadata)


__all__ = ["Replacement", "Replacer"]
