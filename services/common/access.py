"""Who may call what: the roles and, for every RPC, the roles it admits. One table.

The servers enforce it (:mod:`services.common.auth` compiles each method's rule once, at
registration), ``docs/access.md`` is generated from it
(``python -m services.common.access --write``; a test fails when the page is stale), and
the role x RPC tests are parametrized from it.

A role admits a method for **any account** (``ALL``) or for **the principal's listed
accounts** only (``LISTED``). Where the account of a listed-accounts call comes from is
the rule's ``account``:

- a field of the request (``order.account``, ``orders[].account``,
  ``orders[].order.account``, ``account``, ``target_account_uid``): it must name one of
  the principal's accounts (an empty optional filter is refused: name your account);
- ``stored``: the method names an order (or an order manager) by id; the servicer checks
  the stored one's account after loading it (:func:`services.common.auth.check_account`).

Privileged actions (``privileged``) are recorded with the authenticated principal.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Mapping

TRADER, OPERATOR, AUDITOR, SERVICE = "trader", "operator", "auditor", "service"
#: Every role, in the docs' column order.
ROLES = (TRADER, OPERATOR, AUDITOR, SERVICE)
ROLE_MEANINGS = {
    TRADER: "trades its listed accounts: validates, submits, replaces and cancels their orders, reads their "
            "orders, trades and positions",
    OPERATOR: "the trading state and the kill switch, the emergency cancel-all, venue settings; reads everything",
    AUDITOR: "reads everything, changes nothing",
    SERVICE: "Tessera's own services: the OMS calling the Exchange, a Risk replica forwarding an order to the "
             "replica that decides its account",
}
ALL = "all"
LISTED = "listed"

RISK = "tessera.risk.v1.RiskService"
OMS = "tessera.oms.v1.OrderManagementService"
EXCHANGE = "tessera.exchange.v1.ExchangeService"
SERVICE_NAMES = {RISK: "risk", OMS: "oms", EXCHANGE: "exchange"}


@dataclasses.dataclass(frozen=True)
class Rule:
    """Who may call one method."""

    service: str
    method: str
    grants: Mapping[str, str]
    account: str = ""
    privileged: bool = False

    @property
    def full_name(self) -> str:
        return f"/{self.service}/{self.method}"


def _rule(api: str, method: str, account: str = "", privileged: bool = False, **grants: str) -> Rule:
    return Rule(api, method, grants, account, privileged)


_READERS = {OPERATOR: ALL, AUDITOR: ALL}
_EVERYONE = {TRADER: ALL, OPERATOR: ALL, AUDITOR: ALL}

RULES: tuple[Rule, ...] = (
    # Risk
    _rule(RISK, "ValidateOrder", "order.account", trader=LISTED, service=ALL),
    _rule(RISK, "ValidateOrders", "orders[].account", trader=LISTED, service=ALL),
    _rule(RISK, "ValidateReplacement", "stored", trader=LISTED, service=ALL),
    _rule(RISK, "GetTradingState", **_EVERYONE),
    _rule(RISK, "SetTradingState", privileged=True, operator=ALL),
    _rule(RISK, "GetLimits", **_EVERYONE),
    _rule(RISK, "ListPositions", "account", trader=LISTED, **_READERS),
    _rule(RISK, "GetPosition", "account", trader=LISTED, **_READERS),
    # OMS
    _rule(OMS, "SubmitOrder", "order.account", trader=LISTED),
    _rule(OMS, "SubmitOrders", "orders[].order.account", trader=LISTED),
    _rule(OMS, "ReplaceOrder", "order.account", trader=LISTED),
    _rule(OMS, "CancelOrder", "stored", trader=LISTED),
    _rule(OMS, "CancelAllOrders", "account", trader=LISTED),
    _rule(OMS, "EmergencyCancelAll", privileged=True, operator=ALL),
    _rule(OMS, "GetOrder", "stored", trader=LISTED, **_READERS),
    _rule(OMS, "ListOrders", "account", trader=LISTED, **_READERS),
    _rule(OMS, "ListTrades", "account", trader=LISTED, **_READERS),
    _rule(OMS, "StreamOrderEvents", "account", trader=LISTED, **_READERS),
    _rule(OMS, "CreateOrderManager", "target_account_uid", trader=LISTED),
    _rule(OMS, "GetOrderManager", "stored", trader=LISTED, **_READERS),
    _rule(OMS, "SetVenueSetting", privileged=True, operator=ALL),
    _rule(OMS, "ListVenueSettings", **_READERS),
    # Exchange: the OMS's (its HMAC call credential is checked as well), prices. The venue
    # settings too: operators change them through the OMS's SetVenueSetting, which stores
    # each change and its history (venue_settings, venue_setting_changes) before it calls these.
    _rule(EXCHANGE, "ExecuteOrder", service=ALL),
    _rule(EXCHANGE, "ExecuteOrders", service=ALL),
    _rule(EXCHANGE, "CancelOrder", service=ALL),
    _rule(EXCHANGE, "CancelAllOrders", service=ALL),
    _rule(EXCHANGE, "EmergencyCancelAll", service=ALL),
    _rule(EXCHANGE, "SetLeverage", privileged=True, service=ALL),
    _rule(EXCHANGE, "SetMarginMode", privileged=True, service=ALL),
    _rule(EXCHANGE, "SetPositionMode", privileged=True, service=ALL),
    _rule(EXCHANGE, "ListVenueSettings", service=ALL),
    _rule(EXCHANGE, "GetTicker", service=ALL, **_EVERYONE),
    _rule(EXCHANGE, "StreamExecutionReports", service=ALL),
    _rule(EXCHANGE, "QueryOrder", service=ALL),
    _rule(EXCHANGE, "ListVenuePositions", service=ALL),
)

#: Every rule by full method name (``/tessera.oms.v1.OrderManagementService/SubmitOrder``).
BY_METHOD: dict[str, Rule] = {rule.full_name: rule for rule in RULES}


# -- the documentation page ------------------------------------------------------------------
_HEADER = """# Access: roles and RPCs

<!-- Generated by `python -m services.common.access --write` from
services/common/access.py, the table the servers enforce. Do not edit by hand: a test
fails when this page and the table disagree. -->

Every call names its caller: by the mutual-TLS client certificate (its URI subject
alternative name, else its first DNS name) or, without TLS, by a signed bearer token
(`authorization: Bearer <JWT>`; its `sub` claim). The entitlements file gives each
principal its roles and, for a trader, its accounts; [operations](operations.md#identities-and-entitlements)
says how to configure both. Health checks and reflection need no identity.

A call without a valid identity is refused `UNAUTHENTICATED` (`IDENTITY_MISSING`,
`IDENTITY_INVALID`); a call the caller's roles do not admit, or for an account it does
not hold, `PERMISSION_DENIED` `NOT_ENTITLED` (counted in `tessera_not_entitled_total`).

## Roles

| Role | What it is for |
|---|---|
"""

_LEGEND = """
## Who may call what

*any* : any account. *listed* : the principal's listed accounts only; the account is
taken from the request field named in the last column, or, for *stored*, from the stored
order (or order manager) the request names. An empty account filter is refused to a
trader: name one of your accounts. A principal with several roles gets the widest grant.
Privileged actions (marked **privileged**) are recorded with the authenticated principal:
a trading state change or an emergency cancel-all in the trading state's audit trail
(its `operator`), every one in the service's `tessera.audit` log.

"""


def render() -> str:
    lines = [_HEADER.rstrip("\n")]
    for role in ROLES:
        lines.append(f"| `{role}` | {ROLE_MEANINGS[role]} |")
    lines.append(_LEGEND.rstrip("\n"))
    current = None
    for rule in RULES:
        if rule.service != current:
            current = rule.service
            lines += ["", f"### {current.rsplit('.', 1)[-1]} (`{current}`)", "",
                      "| RPC | " + " | ".join(ROLES) + " | account from |",
                      "|---|" + "---|" * len(ROLES) + "---|"]
        cells = []
        for role in ROLES:
            grant = rule.grants.get(role)
            cells.append({ALL: "any", LISTED: "listed"}.get(grant or "", "—"))
        name = f"`{rule.method}`" + (" **privileged**" if rule.privileged else "")
        account = f"`{rule.account}`" if rule.account and rule.account != "stored" else (rule.account and "*stored*")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {account or ''} |")
    return "\n".join(lines) + "\n"


PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "access.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print (or --write) docs/access.md from the access table.")
    parser.add_argument("--write", action="store_true", help=f"write {PAGE}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        PAGE.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
