"""Column types that keep money, quantities and times exact on SQLite and PostgreSQL.

* :class:`DecimalString` stores a :class:`~decimal.Decimal` as ``NUMERIC(38, 18)`` on
  PostgreSQL and as the TEXT of its plain normalised form on SQLite (whose NUMERIC
  affinity would turn it into a binary float). Values PostgreSQL could not hold
  exactly (more than 18 fractional digits, more than 20 integer digits, NaN,
  infinities) are refused on *both* backends, so a test on SQLite never passes with a
  value production would round. Floats are refused: they are already inexact.
  A derived column (an average fill price, a non-terminating quotient) is declared
  ``DecimalString(rounding=ROUND_HALF_EVEN)``: excess fractional digits are then
  rounded to 18, identically on both backends, instead of refused.
* :class:`UTCDateTime` refuses naive datetimes, stores UTC (``timestamptz`` on
  PostgreSQL, naive-UTC text on SQLite) and always returns aware UTC datetimes.
* :data:`JSONType` is JSON, JSONB on PostgreSQL; Python ``None`` is SQL NULL.

``None`` is NULL for every type here: unknown stays unknown, never ``0`` or ``""``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

#: Digits PostgreSQL's NUMERIC(38, 18) holds: 20 before the point, 18 after.
DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18


#: Wide enough never to round: the default context's 28 digits would (38 are stored).
_EXACT = Context(prec=100)
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)


def plain_decimal(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and without an exponent (``1.50`` -> ``1.5``,
    ``1E+2`` -> ``100``), so both backends return the same representation. Exact."""
    normal = value.normalize(_EXACT)
    if normal.as_tuple().exponent > 0:  # type: ignore[operator]
        normal = normal.quantize(Decimal(1), context=_EXACT)
    return normal


def _checked_decimal(value: Any, rounding: str | None = None) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r}: pass a Decimal or a decimal string")
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"expected Decimal, int or decimal string, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"refusing non-finite decimal {number}")
    number = plain_decimal(number)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > DECIMAL_SCALE:
        if rounding is None:
            raise ValueError(f"{number} has more than {DECIMAL_SCALE} fractional digits")
        number = plain_decimal(number.quantize(_QUANTUM, rounding=rounding, context=_EXACT))
    if number.adjusted() >= DECIMAL_PRECISION - DECIMAL_SCALE:
        raise ValueError(f"{number} has more than {DECIMAL_PRECISION - DECIMAL_SCALE} integer digits")
    return number


class DecimalString(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(38, 18) on PostgreSQL, plain decimal TEXT elsewhere.

    ``rounding`` (a :mod:`decimal` rounding mode) rounds values with more than 18
    fractional digits instead of refusing them; only for derived values.
    """

    impl = Text
    cache_ok = True

    def __init__(self, rounding: str | None = None) -> None:
        super().__init__()
        self.rounding = rounding

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(DECIMAL_PRECISION, DECIMAL_SCALE, asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = _checked_decimal(value, self.rounding)
        return number if dialect.name == "postgresql" else format(number, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return plain_decimal(Decimal(value))


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC instant; naive datetimes are refused with ValueError."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing naive datetime {value.isoformat()}: give it a timezone")
        utc = value.astimezone(dt.timezone.utc)
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored as naive UTC
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


#: JSON on every backend, JSONB on PostgreSQL. ``None`` is stored as SQL NULL.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
