"""The daily loss limit trips the kill switch, once per account and day.

When an order is rejected with DAILY_LOSS_LIMIT while the global trading state is
ACTIVE, Risk sets it to HALTED, as operator ``risk``, with the account and the loss in
the reason, so the audit trail shows who halted trading and why. Only an operator sets
it back (REDUCING to unwind, or ACTIVE); the daily reset clears the loss, not the kill
switch.

An account trips the switch once per daily period (from one reset to the next): once an
operator has set trading back, that account's orders are still refused with
DAILY_LOSS_LIMIT while its loss is beyond the limit, but the same breach does not halt
trading again, which would undo the operator's decision at the account's next order.
Another account's breach trips it as the first did. Only a halt Risk wrote counts: a
breach that found trading already halted or reducing in the store (set elsewhere) has
not tripped the switch, and does once trading is ACTIVE again. A replica that starts
reads which accounts tripped it since the reset from the audit trail
(:func:`tripped_account`), so a restart does not trip it again either.
"""

from __future__ import annotations

OPERATOR = "risk"
DAILY_LOSS_CODE = "DAILY_LOSS_LIMIT"
#: How the reason of Risk's halt starts; the account follows, then ": " and the loss.
REASON_PREFIX = f"{DAILY_LOSS_CODE}: account "


def trip_reason(account: str, breach: str) -> str:
    """The audited reason of a halt for ``account``'s daily loss (``breach``: the
    violation's message), at most 500 characters (an account name is at most 64)."""
    return f"{REASON_PREFIX}{account}: {breach}"[:500]


def tripped_account(operator: str | None, reason: str | None) -> str | None:
    """The account whose daily loss made a trading state change, if it was one (an
    account name has no spaces, so the first ": " after it ends it)."""
    if operator != OPERATOR or not reason or not reason.startswith(REASON_PREFIX):
        return None
    account, separator, _ = reason[len(REASON_PREFIX):].partition(": ")
    return account if separator and account else None
