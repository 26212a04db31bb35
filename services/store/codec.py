"""Values as the database stores them, for the statements the order path runs directly.

The order path writes sets of rows with prebuilt SQL on a Core connection (see
:mod:`services.store.order_sets`), not through the column types of
:mod:`services.store.types`, whose per-value processing would cost more than the
writes. A :class:`Codec` produces exactly what those types store, so every reader
(the repositories, ``tessera verify-store``) finds the same values whichever path wrote
them; ``tests/integration/store/test_store_codec.py`` holds the two to that.

* decimals: the plain canonical text (``1.50`` -> ``1.5``, no exponent); at most 20
  integer and 18 fractional digits, else refused (derived values, such as an average
  fill price, are rounded half-even to 18 places first). SQLite stores the text;
  PostgreSQL casts it to ``NUMERIC(38, 18)`` in the statement.
* times: aware datetimes only, in UTC: naive UTC text with microseconds on SQLite
  (``2026-12-06 19:40:20.123456``), the aware datetime on PostgreSQL (``timestamptz``).
* JSON: the store's serializer (:func:`services.store.engine.json_dumps`); SQL NULL for
  None.
* flags: 1/0 on SQLite, booleans on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

import core_ext

from .engine import json_dumps
from .types import DECIMAL_PRECISION, DECIMAL_SCALE

_UTC = dt.timezone.utc
_EXACT = Context(prec=100)
_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_MAX_INTEGER_DIGITS = DECIMAL_PRECISION - DECIMAL_SCALE


def decimal_text(value: Decimal, *, rounding: bool = False) -> str:
    """The canonical plain text of ``value`` as the store keeps it.

    Raises
    ------
    ValueError
        Not finite, more than 20 integer digits, or (unless ``rounding``) more than 18
        fractional digits.
    TypeError
        Not a Decimal (floats are inexact: refused, as the column type does).
    """
    if type(value) is not Decimal:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = Decimal(value)
        else:
            raise TypeError(f"expected Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"refusing non-finite decimal {value}")
    text = core_ext.canonical_decimal(format(value, "f"))
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction) > DECIMAL_SCALE:
        if not rounding:
            raise ValueError(f"{text} has more than {DECIMAL_SCALE} fractional digits")
        text = core_ext.canonical_decimal(format(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN, context=_EXACT), "f"))
        whole = text.lstrip("-").partition(".")[0]
    if len(whole) > _MAX_INTEGER_DIGITS:
        raise ValueError(f"{text} has more than {_MAX_INTEGER_DIGITS} integer digits")
    return text


def _utc(value: dt.datetime) -> dt.datetime:
    tz = value.tzinfo
    if tz is _UTC:
        return value
    if tz is None or value.utcoffset() is None:
        raise ValueError(f"refusing naive datetime {value.isoformat()}: give it a timezone")
    return value.astimezone(_UTC)


class Codec:
    """Python values to what one dialect's columns hold, and back."""

    def __init__(self, dialect: str) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"no codec for {dialect}")
        self.dialect = dialect
        self.sqlite = dialect == "sqlite"

    # -- to the database ----------------------------------------------------------------
    def decimal(self, value: Decimal | None) -> str | None:
        return None if value is None else decimal_text(value)

    def derived_decimal(self, value: Decimal | None) -> str | None:
        """A computed value (a quotient): rounded half-even to 18 places, never refused for it."""
        return None if value is None else decimal_text(value, rounding=True)

    def time(self, value: dt.datetime | None) -> Any:
        if value is None:
            return None
        utc = _utc(value)
        return utc.isoformat(" ", "microseconds")[:26] if self.sqlite else utc

    def json(self, value: Any) -> str | None:
        return None if value is None else json_dumps(value)

    def flag(self, value: bool) -> Any:
        return (1 if value else 0) if self.sqlite else bool(value)

    # -- from the database --------------------------------------------------------------
    @staticmethod
    def decimal_from(value: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) if isinstance(value, str) else Decimal(core_ext.canonical_decimal(format(value, "f")))

    def time_from(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite: naive UTC text
            return dt.datetime.fromisoformat(value).replace(tzinfo=_UTC)
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)

    @staticmethod
    def json_from(value: Any) -> Any:
        if value is None or not isinstance(value, (str, bytes)):
            return value  # PostgreSQL: psycopg decodes jsonb
        import json

        return json.loads(value)


__all__ = ["Codec", "decimal_text"]
