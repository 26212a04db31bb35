"""Pre-trade risk limits: one table of settings (the table in docs/risk-controls.md).

Each :class:`Setting` names its key (file key; the variable is ``TESSERA_RISK_`` + KEY),
its default, the control it configures and the reason code that control reports.
:meth:`RiskLimits.from_env` reads them (see :mod:`services.risk.config`); limits may be
``off`` (None here), which disables the control.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from decimal import Decimal
from typing import Any, Callable, Mapping

from core_ext import DEFAULT_SKEW_SECONDS
from services.common.config import env_int, env_prices

from . import config

DEFAULT_SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT"
DEFAULT_PRICES = "BTCUSDT=65000,ETHUSDT=3200,SOLUSDT=150"


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str
    field: str
    parse: Callable[[Any, str], Any]
    default: str
    control: str
    code: str


SETTINGS: tuple[Setting, ...] = (
    Setting("allowed_symbols", "allowed_symbols", config.symbol_set, DEFAULT_SYMBOLS,
            "symbols Risk approves", "SYMBOL_NOT_ALLOWED"),
    Setting("max_quantity", "max_quantity_per_order", config.decimal_limit, "1000000",
            "max quantity per order", "MAX_QUANTITY_EXCEEDED"),
    Setting("max_price", "max_price", config.decimal_limit, "10000000",
            "max limit or stop price", "PRICE_OUT_OF_RANGE"),
    Setting("max_notional", "max_notional_per_order", config.decimal_limit, "250000",
            "max notional per order: quantity x the most it may trade at (a buy's limit or stop price, a sell's or "
            "the market it meets if higher, a market order's reference price)", "MAX_NOTIONAL_EXCEEDED"),
    Setting("price_band", "price_band", config.fraction_limit, "0.1",
            "price band: max |limit or stop price - reference| / reference (fat-finger guard)",
            "PRICE_BAND_EXCEEDED"),
    Setting("max_position", "max_position_notional", config.decimal_limit, "5000000",
            "max position per symbol: |net quantity once the order and those working on its side fill| x reference "
            "price", "MAX_POSITION_EXCEEDED"),
    Setting("max_gross_exposure", "max_gross_exposure", config.decimal_limit, "20000000",
            "max gross exposure per account: sum of |quantity| x reference price, this order included",
            "MAX_GROSS_EXPOSURE_EXCEEDED"),
    Setting("max_leverage", "max_leverage", config.decimal_limit, "10",
            "max leverage: gross exposure / equity, and the order's own leverage", "MAX_LEVERAGE_EXCEEDED"),
    Setting("account_equity", "account_equity", config.positive_decimal, "5000000",
            "capital of each account (equity = capital + realised + unrealised PnL), for the leverage",
            "MAX_LEVERAGE_EXCEEDED"),
    Setting("max_open_orders", "max_open_orders", config.count_limit, "500",
            "max open orders per account (APPROVED with a live token, or working at a venue)",
            "MAX_OPEN_ORDERS_EXCEEDED"),
    Setting("order_rate_limit", "order_rate_limit", config.count_limit, "1000",
            "order-rate throttle: max orders approved per account per rolling window", "ORDER_RATE_EXCEEDED"),
    Setting("order_rate_window_seconds", "order_rate_window_seconds", config.positive_integer, "60",
            "the throttle's rolling window, in seconds", "ORDER_RATE_EXCEEDED"),
    Setting("daily_loss_limit", "daily_loss_limit", config.decimal_limit, "250000",
            "daily loss limit per account: realised since the reset + unrealised; trips the kill switch",
            "DAILY_LOSS_LIMIT"),
    Setting("daily_reset_utc", "daily_reset_utc", config.utc_time_of_day, "00:00",
            "when the daily loss resets, UTC time of day", "DAILY_LOSS_LIMIT"),
)
KNOWN_KEYS = frozenset(setting.key for setting in SETTINGS)
_DEFAULTS = {setting.field: setting.parse(setting.default, setting.key) for setting in SETTINGS}


@dataclasses.dataclass(frozen=True)
class RiskLimits:
    """Every control's configuration; None disables a limit. Defaults as in docs/risk-controls.md."""

    allowed_symbols: frozenset[str]
    max_notional_per_order: Decimal | None
    max_quantity_per_order: Decimal | None
    max_price: Decimal | None
    reference_prices: Mapping[str, Decimal]
    price_band: Decimal | None = _DEFAULTS["price_band"]
    max_position_notional: Decimal | None = _DEFAULTS["max_position_notional"]
    max_gross_exposure: Decimal | None = _DEFAULTS["max_gross_exposure"]
    max_leverage: Decimal | None = _DEFAULTS["max_leverage"]
    account_equity: Decimal = _DEFAULTS["account_equity"]
    max_open_orders: int | None = _DEFAULTS["max_open_orders"]
    order_rate_limit: int | None = _DEFAULTS["order_rate_limit"]
    order_rate_window_seconds: int = _DEFAULTS["order_rate_window_seconds"]
    daily_loss_limit: Decimal | None = _DEFAULTS["daily_loss_limit"]
    daily_reset_utc: dt.time = _DEFAULTS["daily_reset_utc"]
    #: How long an APPROVED order may still be submitted: the token TTL.
    approval_lifetime_seconds: int = 300

    @property
    def approval_counted_seconds(self) -> int:
        """How long an unsubmitted approval counts among the open orders: its token's TTL
        plus the clock skew the OMS and the Exchange allow a token (a token is accepted until
        ``issued_at + ttl + skew``), so Risk never lets an approval go while it can still be
        submitted."""
        return self.approval_lifetime_seconds + DEFAULT_SKEW_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "RiskLimits":
        """The limits from ``TESSERA_RISK_*``, over ``TESSERA_RISK_CONFIG_FILE``, over the defaults;
        reference prices from ``TESSERA_PRICES``.

        Raises
        ------
        ConfigError
            A value is unusable, or the file is unreadable or names an unknown key;
            the message names the variable or the key and file.
        """
        sources = config.SettingSources(environ, KNOWN_KEYS)
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            found = sources.raw(setting.key)
            raw, where = found if found is not None else (setting.default, setting.key)
            values[setting.field] = setting.parse(raw, where)
        values["reference_prices"] = env_prices(environ, "TESSERA_PRICES", DEFAULT_PRICES)
        values["approval_lifetime_seconds"] = env_int(environ, "TESSERA_TOKEN_TTL_SECONDS", 300, minimum=1)
        return cls(**values)

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, violation code) of every setting, for GetLimits."""
        rows = [(s.key, _shown(getattr(self, s.field)), s.code) for s in SETTINGS]
        rows.append(("trading_state", "REDUCING admits only reducing orders", "REDUCING_ONLY"))
        rows.append(("trading_state", "HALTED refuses every new order", "TRADING_HALTED"))
        return rows


def _shown(value: Any) -> str:
    if value is None:
        return config.OFF
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
