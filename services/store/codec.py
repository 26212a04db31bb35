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
import json
import operator
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Callable, Sequence

import core_ext

from .engine import json_default
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
    if type(value) is Decimal and not rounding:
        known = _DECIMAL_TEXTS.get(value) if value.is_finite() else None
        if known is not None:
            return known
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
    if not rounding:
        if len(_DECIMAL_TEXTS) >= 4096:
            _DECIMAL_TEXTS.clear()
        _DECIMAL_TEXTS[value] = text
    return text


#: Values already stored -> their text (the canonical form depends on the value alone):
#: the order path stores the same few quantities and prices over and over.
_DECIMAL_TEXTS: dict[Decimal, str] = {}


#: One encoder, made once (``json.dumps`` with ``default`` builds one per call): the
#: same text as :func:`services.store.engine.json_dumps`.
_ENCODER = json.JSONEncoder(default=json_default, separators=(",", ":"))


def json_text(value: Any) -> str | None:
    """``value`` as the store's JSON text; None for None."""
    if value is None:
        return None
    if not value:
        if value == []:
            return "[]"
        if value == {}:
            return "{}"
    return _ENCODER.encode(value)


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
        self._plans: dict[tuple[str, ...], RowPlan] = {}
        # The last time stored and its value as stored: a batch stamps its orders and
        # events with one clock reading (replaced whole, so threads see a consistent pair).
        self._last_time: tuple[dt.datetime | None, Any] = (None, None)

    # -- to the database ----------------------------------------------------------------
    def decimal(self, value: Decimal | None) -> str | None:
        return None if value is None else decimal_text(value)

    def derived_decimal(self, value: Decimal | None) -> str | None:
        """A computed value (a quotient): rounded half-even to 18 places, never refused for it."""
        return None if value is None else decimal_text(value, rounding=True)

    def time(self, value: dt.datetime | None) -> Any:
        if value is None:
            return None
        last = self._last_time
        if last[0] is value:
            return last[1]
        utc = _utc(value)
        stored = utc.isoformat(" ", "microseconds")[:26] if self.sqlite else utc
        self._last_time = (value, stored)
        return stored

    def json(self, value: Any) -> str | None:
        return json_text(value)

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


    # -- rows, as plans made once per column list ----------------------------------------------
    def converter(self, kind: str) -> Callable[[Any], Any] | None:
        """What a column of ``kind`` (``decimal``, ``derived``, ``time``, ``flag``, ``json``,
        ``enum``, ``plain``) needs done to a non-None value; None: nothing."""
        return {
            "decimal": decimal_text,
            "derived": lambda value: decimal_text(value, rounding=True),
            "time": self.time,
            "flag": self.flag,
            "json": json_text,
            "enum": _enum_value,
        }.get(kind)

    def plan(self, columns: Sequence[str], kinds: dict[str, str]) -> "RowPlan":
        """The :class:`RowPlan` of ``columns`` (made once per column list)."""
        key = tuple(columns)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = RowPlan(self, key, kinds)
        return found


_enum_value = operator.attrgetter("_value_")


class RowPlan:
    """Reads ``columns`` off an object as one row of database values: one attribute
    getter for all of them, a converter only where a column needs one."""

    __slots__ = ("_get", "_steps", "_single")

    def __init__(self, codec: Codec, columns: Sequence[str], kinds: dict[str, str]) -> None:
        self._get = operator.attrgetter(*columns)
        self._single = len(columns) == 1
        self._steps = tuple((index, convert) for index, name in enumerate(columns)
                            if (convert := codec.converter(kinds.get(name, "plain"))) is not None)

    def __call__(self, item: Any) -> list[Any]:
        row = [self._get(item)] if self._single else list(self._get(item))
        for index, convert in self._steps:
            value = row[index]
            if value is not None:
                row[index] = convert(value)
        return row


__all__ = ["Codec", "RowPlan", "decimal_text", "json_text"]
