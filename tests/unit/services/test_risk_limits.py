"""Risk limits configuration: environment, file (TOML, JSON), defaults, errors, the table in docs/risk-controls.md."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from services.common.config import ConfigError
from services.risk.config import env_name
from services.risk.limits import DEFAULT_PRICES, DEFAULT_SYMBOLS, SETTINGS, RiskLimits

RISK_CONTROLS = Path(__file__).resolve().parents[3] / "docs" / "risk-controls.md"


# -- the environment -----------------------------------------------------------------------------
def test_from_env_defaults():
    limits = RiskLimits.from_env({})

    assert limits.allowed_symbols == frozenset(DEFAULT_SYMBOLS.split(","))
    assert limits.max_notional_per_order == Decimal("250000")
    assert limits.max_quantity_per_order == Decimal("1000000")
    assert limits.max_price == Decimal("10000000")
    assert limits.reference_prices == {k: Decimal(v) for k, v in (p.split("=") for p in DEFAULT_PRICES.split(","))}
    assert limits.price_band == Decimal("0.1")
    assert limits.max_position_notional == Decimal("5000000")
    assert limits.max_gross_exposure == Decimal("20000000")
    assert (limits.max_leverage, limits.account_equity) == (Decimal("10"), Decimal("5000000"))
    assert (limits.max_open_orders, limits.order_rate_limit, limits.order_rate_window_seconds) == (500, 1000, 60)
    assert limits.daily_loss_limit == Decimal("250000")
    assert limits.daily_reset_utc == dt.time(0, 0, tzinfo=dt.timezone.utc)
    assert limits.approval_lifetime_seconds == 300


def test_the_dataclass_defaults_are_the_documented_defaults():
    configured = RiskLimits.from_env({})
    built = RiskLimits(configured.allowed_symbols, configured.max_notional_per_order,
                       configured.max_quantity_per_order, configured.max_price, configured.reference_prices)

    assert built == configured


def test_from_env_parses_every_variable():
    limits = RiskLimits.from_env(
        {
            "TESSERA_RISK_ALLOWED_SYMBOLS": " btcusdt , ETHUSDT,,",
            "TESSERA_RISK_MAX_NOTIONAL": "1234.5",
            "TESSERA_RISK_MAX_QUANTITY": "0.75",
            "TESSERA_RISK_MAX_PRICE": "99999",
            "TESSERA_PRICES": "BTCUSDT=65000.5, ethusdt=3200",
            "TESSERA_RISK_PRICE_BAND": "0.025",
            "TESSERA_RISK_MAX_POSITION": "100000",
            "TESSERA_RISK_MAX_GROSS_EXPOSURE": "off",
            "TESSERA_RISK_MAX_LEVERAGE": "2.5",
            "TESSERA_RISK_ACCOUNT_EQUITY": "40000.5",
            "TESSERA_RISK_MAX_OPEN_ORDERS": "7",
            "TESSERA_RISK_ORDER_RATE_LIMIT": "OFF",
            "TESSERA_RISK_ORDER_RATE_WINDOW_SECONDS": "5",
            "TESSERA_RISK_DAILY_LOSS_LIMIT": "999.99",
            "TESSERA_RISK_DAILY_RESET_UTC": "21:30",
            "TESSERA_TOKEN_TTL_SECONDS": "120",
        }
    )

    assert limits.allowed_symbols == frozenset({"BTCUSDT", "ETHUSDT"})
    assert limits.max_notional_per_order == Decimal("1234.5")
    assert limits.max_quantity_per_order == Decimal("0.75")
    assert limits.max_price == Decimal("99999")
    assert limits.reference_prices == {"BTCUSDT": Decimal("65000.5"), "ETHUSDT": Decimal("3200")}
    assert limits.price_band == Decimal("0.025")
    assert (limits.max_position_notional, limits.max_gross_exposure) == (Decimal("100000"), None)
    assert (limits.max_leverage, limits.account_equity) == (Decimal("2.5"), Decimal("40000.5"))
    assert (limits.max_open_orders, limits.order_rate_limit, limits.order_rate_window_seconds) == (7, None, 5)
    assert limits.daily_loss_limit == Decimal("999.99")
    assert limits.daily_reset_utc == dt.time(21, 30, tzinfo=dt.timezone.utc)
    assert limits.approval_lifetime_seconds == 120


def test_from_env_treats_empty_variables_as_unset():
    empty = {name: "" for name in ("TESSERA_RISK_ALLOWED_SYMBOLS", "TESSERA_RISK_MAX_NOTIONAL", "TESSERA_PRICES",
                                   "TESSERA_RISK_DAILY_RESET_UTC", "TESSERA_RISK_CONFIG_FILE")}

    assert RiskLimits.from_env(empty) == RiskLimits.from_env({})


BAD_ENVIRONMENTS = [
    ("TESSERA_RISK_MAX_NOTIONAL", "abc"),
    ("TESSERA_RISK_MAX_NOTIONAL", "-1"),
    ("TESSERA_RISK_MAX_NOTIONAL", "NaN"),
    ("TESSERA_RISK_MAX_NOTIONAL", "Infinity"),
    ("TESSERA_RISK_MAX_QUANTITY", "1,000"),
    ("TESSERA_RISK_MAX_QUANTITY", "-0.5"),
    ("TESSERA_RISK_MAX_PRICE", "ten"),
    ("TESSERA_PRICES", "BTCUSDT=abc"),
    ("TESSERA_PRICES", "BTCUSDT=0"),
    ("TESSERA_PRICES", "BTCUSDT=-1"),
    ("TESSERA_PRICES", "BTCUSDT=Infinity"),
    ("TESSERA_PRICES", "BTCUSDT"),
    ("TESSERA_RISK_ALLOWED_SYMBOLS", " , ,"),
    ("TESSERA_RISK_PRICE_BAND", "5"),
    ("TESSERA_RISK_PRICE_BAND", "0"),
    ("TESSERA_RISK_MAX_POSITION", "lots"),
    ("TESSERA_RISK_ACCOUNT_EQUITY", "0"),
    ("TESSERA_RISK_ACCOUNT_EQUITY", "off"),
    ("TESSERA_RISK_MAX_OPEN_ORDERS", "0"),
    ("TESSERA_RISK_MAX_OPEN_ORDERS", "2.5"),
    ("TESSERA_RISK_ORDER_RATE_LIMIT", "-3"),
    ("TESSERA_RISK_ORDER_RATE_WINDOW_SECONDS", "off"),
    ("TESSERA_RISK_DAILY_LOSS_LIMIT", "-100"),
    ("TESSERA_RISK_DAILY_RESET_UTC", "25:00"),
    ("TESSERA_RISK_DAILY_RESET_UTC", "8pm"),
    ("TESSERA_RISK_DAILY_RESET_UTC", "22:00+02:00"),
    ("TESSERA_RISK_CONFIG_FILE", "/nonexistent/risk.toml"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_ENVIRONMENTS, ids=[f"{n}={v}" for n, v in BAD_ENVIRONMENTS])
def test_from_env_refuses_a_bad_value_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({variable: value})

    assert variable in str(raised.value)


def test_from_env_refuses_a_reference_price_without_a_symbol():
    # "=65000" names no symbol; it must not be stored as the price of symbol "".
    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({"TESSERA_PRICES": "=65000"})

    assert "TESSERA_PRICES" in str(raised.value)


# -- the file ----------------------------------------------------------------------------------------
TOML = """
allowed_symbols = ["btcusdt", "SOLUSDT"]
max_notional = 100000.10
price_band = 0.02
max_open_orders = 20
order_rate_limit = "off"
daily_loss_limit = "5000"
daily_reset_utc = "22:00"
"""


def test_a_toml_file_sets_the_same_keys_with_exact_decimals(tmp_path):
    path = tmp_path / "risk.toml"
    path.write_text(TOML)

    limits = RiskLimits.from_env({"TESSERA_RISK_CONFIG_FILE": str(path)})

    assert limits.allowed_symbols == frozenset({"BTCUSDT", "SOLUSDT"})
    assert limits.max_notional_per_order == Decimal("100000.10")  # a TOML float, read exactly
    assert limits.price_band == Decimal("0.02")
    assert (limits.max_open_orders, limits.order_rate_limit) == (20, None)
    assert limits.daily_loss_limit == Decimal("5000")
    assert limits.daily_reset_utc == dt.time(22, 0, tzinfo=dt.timezone.utc)
    assert limits.max_quantity_per_order == Decimal("1000000")  # not in the file: the default


def test_a_json_file_works_too_and_the_environment_overrides_the_file(tmp_path):
    path = tmp_path / "risk.json"
    path.write_text(json.dumps({"max_notional": 1e5, "max_leverage": "4"}).replace("100000.0", "100000.3"))

    limits = RiskLimits.from_env({"TESSERA_RISK_CONFIG_FILE": str(path), "TESSERA_RISK_MAX_LEVERAGE": "2"})

    assert limits.max_notional_per_order == Decimal("100000.3")
    assert limits.max_leverage == Decimal("2")


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("risk.toml", "max_notionl = 5\n", "unknown setting(s) max_notionl"),
        ("risk.toml", "max_notional = \n", "not valid TOML"),
        ("risk.json", "[1, 2]", "expected a table of settings"),
        ("risk.json", "{not json", "not valid JSON"),
    ],
    ids=["typo", "bad-toml", "not-a-table", "bad-json"],
)
def test_an_unusable_file_is_refused_naming_the_variable_and_the_file(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({"TESSERA_RISK_CONFIG_FILE": str(path)})

    assert f"TESSERA_RISK_CONFIG_FILE={path}" in str(raised.value)
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("line", "key"),
    [("max_notional = -5", "max_notional"), ("max_open_orders = 1.5", "max_open_orders"),
     ("allowed_symbols = 3", "allowed_symbols"), ("price_band = true", "price_band")],
)
def test_a_bad_value_in_the_file_names_the_key_and_the_file(tmp_path, line, key):
    path = tmp_path / "risk.toml"
    path.write_text(line + "\n")

    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({"TESSERA_RISK_CONFIG_FILE": str(path)})

    assert f"{key} in {path}" in str(raised.value)


# -- GetLimits and the documented table ----------------------------------------------------------------
def test_describe_lists_every_setting_with_its_code():
    described = RiskLimits.from_env({"TESSERA_RISK_ORDER_RATE_LIMIT": "off"}).describe()
    by_key = {key: (value, code) for key, value, code in described}

    assert {s.key for s in SETTINGS} <= set(by_key)
    assert by_key["order_rate_limit"] == ("off", "ORDER_RATE_EXCEEDED")
    assert by_key["daily_reset_utc"] == ("00:00:00", "DAILY_LOSS_LIMIT")
    assert ("trading_state", "REDUCING admits only reducing orders", "REDUCING_ONLY") in described


def _documented_risk_rows() -> list[list[str]]:
    text = RISK_CONTROLS.read_text(encoding="utf-8")
    section = text[: text.index("\n## ")]  # the controls table, before "Trading states and the kill switch"
    return [[cell.strip().strip("`") for cell in re.split(r"(?<!\\)\|", line.strip("|"))]
            for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_documented_table_lists_every_setting_with_its_variable_key_default_and_code():
    rows = {row[1]: row for row in _documented_risk_rows()}

    for setting in SETTINGS:
        row = rows.get(env_name(setting.key))
        assert row is not None, f"docs/risk-controls.md has no row for {env_name(setting.key)}"
        assert row[2] == setting.key and row[3] == setting.default and row[4] == setting.code, row


@pytest.mark.parametrize("value", ["12.30", "12,30", "09.30.00", "12:30.05", "1230", "123000"])
def test_a_daily_reset_not_written_as_hh_mm_is_refused_not_read_as_another_time(value):
    # Python's time parser reads "12.30" as 12:00:00.3 and "1230" as 12:30: the daily
    # loss would reset at a time the operator never wrote, or on a form it does not document.
    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({"TESSERA_RISK_DAILY_RESET_UTC": value})

    assert "TESSERA_RISK_DAILY_RESET_UTC" in str(raised.value)


@pytest.mark.parametrize("value", ["²", "5²", "①"])
def test_a_count_written_with_digit_signs_int_cannot_read_is_refused_naming_the_variable(value):
    # str.isdigit() accepts superscripts and circled digits, which int() cannot read: the
    # count must be refused with a message naming the variable, not a ValueError at start.
    with pytest.raises(ConfigError) as raised:
        RiskLimits.from_env({"TESSERA_RISK_MAX_OPEN_ORDERS": value})

    assert "TESSERA_RISK_MAX_OPEN_ORDERS" in str(raised.value)
