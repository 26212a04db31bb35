"""A fill event's payload carries the fill's decimals as text, and Risk's ledger reads
them back: plain text is written, and the exponent form ``str(Decimal)`` gives small
numbers (``5E-8``), which fill events of earlier releases hold, is still read."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.domain import LiquiditySide
from services.domain.execution import Fill
from services.oms.fill_tracker import fill_payload
from services.risk.engine import core_ext_decimal

D = Decimal


def test_a_fill_payload_writes_its_decimals_as_plain_text():
    payload = fill_payload(Fill("t-1", D("0.0000001"), D("1E+5"), D("0.00000000"), "BNB", LiquiditySide.TAKER))

    assert (payload["quantity"], payload["price"], payload["commission"]) == ("0.0000001", "100000", "0")


@pytest.mark.parametrize(("stored", "expected"), [
    ("0.00000005", D("0.00000005")), ("5E-8", D("0.00000005")), ("0E-8", D("0")), ("1E+3", D("1000")),
    ("65000.10", D("65000.1")),
])
def test_risk_reads_a_payload_decimal_written_plain_or_with_an_exponent(stored, expected):
    read = core_ext_decimal(stored)

    assert (read, str(read)) == (expected, str(expected))


@pytest.mark.parametrize("stored", ["NaN", "Infinity", "", "1,5"])
def test_risk_refuses_a_payload_decimal_that_is_not_a_finite_number(stored):
    with pytest.raises((ValueError, ArithmeticError)):
        core_ext_decimal(stored)
