"""A risk violation, and how numbers are shown in its message."""

from __future__ import annotations

import dataclasses
from decimal import Context, Decimal

_WIDE = Context(prec=100)


@dataclasses.dataclass(frozen=True)
class Violation:
    """One failed control: a stable reason ``code`` and a message for people."""

    code: str
    message: str


def plain(value: Decimal | int) -> str:
    """A decimal in plain notation without trailing zeros (``150000``, never ``1.5E+5``)."""
    if isinstance(value, int):
        return str(value)
    return format(value.normalize(_WIDE), "f")


def rounded(value: Decimal, places: int) -> Decimal:
    """``value`` rounded half-even to ``places`` decimal places, for a message; a value too
    large to carry them (a deviation of 10^27 %) as it is. ``round()`` would raise there:
    it rounds in the default context, 28 digits."""
    if value.is_finite() and value.adjusted() + places >= _WIDE.prec:
        return value
    return value.quantize(Decimal(1).scaleb(-places), context=_WIDE)
