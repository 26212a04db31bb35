"""Decimals, times and JSON keep their meaning through both backends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import StatementError

from services.store.models import orders_table
from services.store.types import DecimalString, UTCDateTime

EXACT_VALUES = [
    "0.000000012345678901",
    "123456789012.123456789",
    "99999999999999999999.999999999999999999",
    "-0.5",
    "1",
]


@pytest.mark.parametrize("value", EXACT_VALUES)
def test_decimal_round_trips_exactly(store, make_order, add_orders, value):
    order = make_order(quantity=Decimal(value), price=Decimal(value), leverage=Decimal(value))
    add_orders(store, order)
    with store.uow(read_only=True) as uow:
        loaded = uow.orders.get(order.order_id)
    for field in ("quantity", "price", "leverage"):
        assert isinstance(getattr(loaded, field), Decimal)
        assert getattr(loaded, field) == Decimal(value)
        assert format(getattr(loaded, field), "f") == value


def test_decimals_come_back_in_plain_normalised_form(store, make_order, add_orders):
    order = make_order(quantity=Decimal("1.50"), price=Decimal("1E+2"))
    add_orders(store, order)
    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
    assert (str(loaded.quantity), str(loaded.price)) == ("1.5", "100")


def test_unknown_values_stay_null_never_zero_or_empty(store, make_order, add_orders):
    order = make_order(price=None, stop_price=None)
    add_orders(store, order)
    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
        null_count = uow.session.execute(
            text(
                "SELECT count(*) FROM orders_ts WHERE price IS NULL AND stop_price IS NULL"
                " AND leverage IS NULL AND average_fill_price IS NULL AND expire_time IS NULL"
                " AND raw_venue_payload IS NULL AND remote_order_id IS NULL AND token_nonce IS NULL"
            )
        ).scalar_one()
    assert null_count == 1
    assert (loaded.price, loaded.stop_price, loaded.average_fill_price) == (None, None, None)
    assert (loaded.expire_time, loaded.raw_venue_payload, loaded.remote_order_id) == (None, None, None)


def test_aware_datetimes_come_back_aware_utc_and_equal(store, make_order, add_orders):
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    order_time = dt.datetime(2025, 3, 4, 10, 0, 0, 654321, tzinfo=india)
    order = make_order(order_time=order_time, expire_time=order_time + dt.timedelta(days=1))
    add_orders(store, order)
    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
    assert loaded.order_time == order_time
    assert loaded.order_time.utcoffset() == dt.timedelta(0)
    assert loaded.order_time.hour == 4 and loaded.order_time.minute == 30
    assert loaded.expire_time == order_time + dt.timedelta(days=1)
    assert loaded.expire_time.tzinfo is not None


def test_naive_datetime_is_refused_on_write(store, make_order):
    order = make_order(order_time=dt.datetime(2025, 1, 1, 12, 0))
    with store.uow() as uow, pytest.raises(StatementError) as raised:
        uow.orders.add(order)
    assert isinstance(raised.value.orig, ValueError)
    assert "naive" in str(raised.value.orig)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_utc_datetime_type_raises_value_error_for_naive_datetimes(dialect):
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(dt.datetime(2025, 1, 1), dialect)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize(
    "value, error",
    [
        (1.5, TypeError),  # floats are already inexact
        (Decimal("0.0000000000000000001"), ValueError),  # 19 fractional digits
        (Decimal("100000000000000000000"), ValueError),  # 21 integer digits
        (Decimal("NaN"), ValueError),
        (Decimal("Infinity"), ValueError),
    ],
)
def test_decimal_type_refuses_values_postgresql_could_not_store_exactly(dialect, value, error):
    with pytest.raises(error):
        DecimalString().process_bind_param(value, dialect)


def test_decimal_is_stored_as_plain_text_on_sqlite(sqlite_store, make_order, add_orders):
    add_orders(sqlite_store, make_order(quantity=Decimal("1E-9")))
    with sqlite_store.engine.connect() as connection:
        raw = connection.execute(text("SELECT quantity, typeof(quantity) FROM orders_ts")).one()
    assert tuple(raw) == ("0.000000001", "text")


def test_decimals_in_json_payloads_are_stored_as_decimal_strings(store, make_order, add_orders):
    order = make_order(raw_venue_payload={"price": Decimal("0.1"), "at": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)})
    add_orders(store, order)
    with store.uow() as uow:
        payload = uow.session.execute(select(orders_table.c.raw_venue_payload)).scalar_one()
    assert payload == {"price": "0.1", "at": "2025-01-01T00:00:00+00:00"}


def test_average_fill_price_is_rounded_half_even_to_18_places_on_both_backends(store, make_order, add_orders):
    order = make_order(average_fill_price=Decimal(10) / Decimal(3))  # 28 significant digits
    add_orders(store, order)
    with store.uow() as uow:
        loaded = uow.orders.get(order.order_id)
    assert format(loaded.average_fill_price, "f") == "3.333333333333333333"


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://tessera:s3cret@db:5432/tessera",
    "postgresql+psycopg://tessera@db:5432/tessera?password=s3cret&sslmode=require",
    "postgresql+psycopg://tessera@db:5432/tessera?sslmode=verify-full&sslpassword=s3cret",
])
def test_a_database_url_shown_in_messages_never_carries_its_password(url):
    from services.store.engine import safe_url

    shown = safe_url(url)

    assert "s3cret" not in shown and "db:5432/tessera" in shown
