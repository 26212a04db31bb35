"""Venue settings in the store: each account's position mode and its futures symbols'
leverage and margin mode.

The Exchange reads them from the venue when it starts (so a restarted Exchange refuses no
order for them); the OMS copies what the Exchange holds into ``venue_settings`` each time
it (re)connects to the Exchange's report stream, and an operator changes one with
``SetVenueSetting`` (``tessera venue leverage|margin-mode|position-mode``): the OMS asks
the Exchange, which asks the venue, and stores what the venue applied, with the operator.
Every change (an operator's, or a value read from the venue that differs from the stored
one) is kept in ``venue_setting_changes`` with who made it and the operator's comment
(``tessera venue history``).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from services.domain import MarginMode
from services.domain.errors import DomainError, InvalidOrder, OrderNotFound, PreconditionFailed, VenueUnavailable
from services.store.venue_settings import ACCOUNT_ROW, VenueSetting, VenueSettingChange
from tessera.common.v1 import types_pb2 as common_pb

from .gateway import ExchangeGateway, refusal_of
from .submission import Submitter

log = logging.getLogger(__name__)

HEDGE, ONE_WAY = "HEDGE", "ONE_WAY"
VENUE_SOURCE = "venue"
_MARGIN = {common_pb.MARGIN_MODE_ISOLATED: MarginMode.ISOLATED, common_pb.MARGIN_MODE_CROSSED: MarginMode.CROSSED}


def error_of(error: grpc.aio.AioRpcError) -> DomainError:
    """The Exchange's refusal as the OMS passes it on: its reason (and so its code) kept."""
    refusal = refusal_of(error)
    kind = {grpc.StatusCode.NOT_FOUND: OrderNotFound, grpc.StatusCode.UNAVAILABLE: VenueUnavailable,
            grpc.StatusCode.DEADLINE_EXCEEDED: VenueUnavailable}.get(refusal.code, PreconditionFailed)
    detail = refusal.detail.split(": ", 1)[-1] if refusal.detail.startswith(refusal.reason) else refusal.detail
    return kind(f"the Exchange refused the setting: {detail}", reason=refusal.reason)


class VenueSettings:
    def __init__(self, submitter: Submitter, gateway: ExchangeGateway) -> None:
        self.submitter = submitter
        self.db = submitter.db
        self.gateway = gateway

    async def set(self, *, account: str, symbol: str, operator: str, leverage: int | None = None,
                  margin_mode: MarginMode | None = None, position_mode: str | None = None,
                  comment: str = "") -> VenueSetting:
        """Change one setting at the venue (exactly one of ``leverage``, ``margin_mode``,
        ``position_mode``) and store what the venue applied, with the change (``operator``,
        ``comment``) in the settings' history, in one transaction.

        Raises
        ------
        DomainError
            The Exchange's refusal (its reason kept: ACCOUNT_NOT_CONFIGURED, the venue's
            codes, VENUE_UNAVAILABLE, ...); nothing is stored then.
        """
        try:
            if leverage is not None:
                values: dict[str, Any] = {"leverage": await self.gateway.set_leverage(account, symbol, leverage)}
            elif margin_mode is not None:
                applied = await self.gateway.set_margin_mode(
                    account, symbol, common_pb.MARGIN_MODE_ISOLATED if margin_mode is MarginMode.ISOLATED
                    else common_pb.MARGIN_MODE_CROSSED)
                values = {"margin_mode": _MARGIN[applied].value}
            else:
                hedge = await self.gateway.set_position_mode(account, position_mode == HEDGE)
                values = {"position_mode": HEDGE if hedge else ONE_WAY}
                symbol = ACCOUNT_ROW
        except grpc.aio.AioRpcError as error:
            raise error_of(error) from None
        return await self.submitter.write(
            lambda uow: uow.venue_settings.put(account, symbol, source=operator, comment=comment, **values))

    async def list(self, account: str | None = None) -> list[VenueSetting]:
        return await self.db.read(lambda uow: uow.venue_settings.list(account))

    async def history(self, account: str | None = None) -> list[VenueSettingChange]:
        """The latest changes (of one account), oldest first."""
        return await self.db.read(lambda uow: uow.venue_settings.changes(account))

    async def sync(self) -> int:
        """Store what the Exchange holds (read from the venue when it started); rows that
        already say the same are left as they are (with who set them). Returns how many
        rows changed; 0 outside live mode."""
        try:
            answer = await self.gateway.list_venue_settings()
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                log.info("venue settings not read from the Exchange (%s)", error.code().name)
            return 0
        if answer.mode != common_pb.EXECUTION_MODE_LIVE:
            return 0
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for held in answer.accounts:
            rows.append((held.account, ACCOUNT_ROW, {"position_mode": HEDGE if held.hedge_mode else ONE_WAY}))
            for setting in held.symbols:
                rows.append((held.account, setting.symbol, {"leverage": int(setting.leverage),
                                                            "margin_mode": _MARGIN[setting.margin_mode].value}))

        def store(uow: Any) -> int:
            stored = {(s.account, s.symbol): s for s in uow.venue_settings.list()}
            changed = 0
            for account, symbol, values in rows:
                current = stored.get((account, symbol))
                if current is not None and all(getattr(current, k) == v for k, v in values.items()):
                    continue
                uow.venue_settings.put(account, symbol, source=VENUE_SOURCE, **values)
                changed += 1
            return changed

        return await self.submitter.write(store)


def parse_request(request: Any) -> dict[str, Any]:
    """The fields of a ``SetVenueSettingRequest``, checked (every bad field at once).

    Raises
    ------
    InvalidOrder
        The problems, each by field.
    """
    from services.common import convert

    problems: convert.Problems = []
    account = convert.check_text(request.account, convert.ACCOUNT_PATTERN, "account", required=False,
                                 problems=problems) or ""
    # Who changes it is the caller's authenticated principal; the request's free-text
    # ``operator`` is only a comment (checked, logged with the action).
    from services.common import auth

    comment = auth.comment_of(request.operator, problems)
    operator = auth.principal_for_record()
    given = [name for name, present in (("leverage", bool(request.leverage)),
                                        ("margin_mode", request.margin_mode != common_pb.MARGIN_MODE_UNSPECIFIED),
                                        ("position_mode", bool(request.position_mode))) if present]
    fields: dict[str, Any] = {"account": account, "operator": operator, "comment": comment, "symbol": ""}
    if len(given) != 1:
        problems.append(InvalidOrder("setting", "give exactly one of leverage, margin_mode and position_mode",
                                     violation="REQUIRED" if not given else "NOT_ALLOWED"))
    elif given[0] == "position_mode":
        if request.symbol:
            problems.append(InvalidOrder("symbol", "a position mode is the account's, not a symbol's",
                                         violation="NOT_ALLOWED"))
        if request.position_mode not in (HEDGE, ONE_WAY):
            problems.append(InvalidOrder("position_mode", "HEDGE or ONE_WAY", violation="UNKNOWN_VALUE"))
        fields["position_mode"] = request.position_mode
    else:
        fields["symbol"] = convert.check_text(request.symbol, convert.SYMBOL_PATTERN, "symbol", problems=problems)
        if given[0] == "leverage":
            text = request.leverage
            if not text.isdigit() or not 1 <= int(text) <= int(convert.MAX_LEVERAGE):
                problems.append(InvalidOrder("leverage", f"a whole number from 1 to {convert.MAX_LEVERAGE}",
                                             violation="OUT_OF_RANGE"))
            else:
                fields["leverage"] = int(text)
        elif request.margin_mode in _MARGIN:
            fields["margin_mode"] = _MARGIN[request.margin_mode]
        else:
            problems.append(InvalidOrder("margin_mode", "ISOLATED or CROSSED", violation="UNKNOWN_VALUE"))
    convert.raise_problems(problems)
    return fields
