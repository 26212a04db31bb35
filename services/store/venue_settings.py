"""The venue settings repository: each account's position mode and its futures symbols'
leverage and margin mode, as the venue last reported or an operator last set them
(``venue_settings``), and the history of every change with who made it and why
(``venue_setting_changes``, written in the same transaction)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.domain import utcnow

from .models import venue_setting_changes_table as changes_t
from .models import venue_settings_table as settings_t

#: The symbol of an account's position-mode row.
ACCOUNT_ROW = ""
#: The most changes :meth:`VenueSettingRepository.changes` returns (the latest ones).
CHANGES_LIMIT = 1000


@dataclasses.dataclass(frozen=True)
class VenueSetting:
    account: str
    symbol: str
    leverage: int | None
    margin_mode: str | None
    position_mode: str | None
    source: str
    updated_time: dt.datetime


@dataclasses.dataclass(frozen=True)
class VenueSettingChange:
    """One change: what it set (the settings it did not set are None), who (an operator's
    principal, or ``venue``), the operator's comment, when."""

    id: int
    account: str
    symbol: str
    leverage: int | None
    margin_mode: str | None
    position_mode: str | None
    principal: str
    comment: str
    changed_time: dt.datetime


class VenueSettingRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def put(self, account: str, symbol: str, *, source: str, leverage: int | None = None,
            margin_mode: str | None = None, position_mode: str | None = None,
            at: dt.datetime | None = None, comment: str = "") -> VenueSetting:
        """Store what is given of one row (the fields left None keep their stored value),
        and the change in the history, with ``source`` (who) and ``comment``."""
        at = at or utcnow()
        given = {"leverage": leverage, "margin_mode": margin_mode, "position_mode": position_mode}
        self.session.execute(changes_t.insert().values(account=account, symbol=symbol, principal=source,
                                                       comment=comment, changed_time=at, **given))
        row = self.session.execute(select(settings_t).where(
            settings_t.c.account == account, settings_t.c.symbol == symbol)).mappings().first()
        values = given
        if row is not None:
            values = {name: value if value is not None else row[name] for name, value in values.items()}
        values.update(source=source, updated_time=at)
        if row is None:
            self.session.execute(settings_t.insert().values(account=account, symbol=symbol, **values))
        else:
            self.session.execute(settings_t.update().where(
                settings_t.c.account == account, settings_t.c.symbol == symbol).values(**values))
        return VenueSetting(account=account, symbol=symbol, **values)

    def list(self, account: str | None = None) -> list[VenueSetting]:
        """Every stored setting (of one account), by account then symbol (the account's row first)."""
        statement = select(settings_t).order_by(settings_t.c.account, settings_t.c.symbol)
        if account is not None:
            statement = statement.where(settings_t.c.account == account)
        return [VenueSetting(**{name: row[name] for name in VenueSetting.__dataclass_fields__})
                for row in self.session.execute(statement).mappings()]

    def changes(self, account: str | None = None, *, limit: int = CHANGES_LIMIT) -> list[VenueSettingChange]:
        """The latest ``limit`` changes (of one account), oldest first."""
        statement = select(changes_t).order_by(changes_t.c.id.desc()).limit(limit)
        if account is not None:
            statement = statement.where(changes_t.c.account == account)
        rows = list(self.session.execute(statement).mappings())
        return [VenueSettingChange(**{name: row[name] for name in VenueSettingChange.__dataclass_fields__})
                for row in reversed(rows)]
