"""Take-profit, trailing-stop, close-position and quote-amount orders.

Adds to ``orders_ts`` the fields the risk token (format v2) signs for them:
``close_position`` and ``price_protect`` (booleans, NOT NULL with a server default of
false, so the rows of earlier releases read as they were and the previous release's
inserts, which do not name them, still work during a rolling update), ``working_type``
(an enum name), ``activation_price``, ``callback_rate`` and ``quote_order_qty``
(decimals), all nullable; and lets ``quantity`` be NULL, for the orders whose quantity
the venue decides (a close-position order closes the position it finds when it
triggers; a quote-amount order buys what its amount buys).

Dropping the NOT NULL of ``quantity``: PostgreSQL's ``ALTER COLUMN ... DROP NOT NULL``
(no rewrite). SQLite has no such ALTER and batch mode's copy of the table cannot run
here: the migration holds a transaction, inside which SQLite cannot turn foreign keys
off, and dropping ``orders_ts`` while ``order_events_ts`` and ``trades_ts`` refer to it
fails once they hold rows. So the column's declaration is edited in the schema, as
SQLite documents for removing a NOT NULL constraint (a change that leaves the stored
data as it is: https://www.sqlite.org/lang_altertable.html, "making other kinds of table
schema changes"): ``writable_schema`` on, the table's SQL rewritten, the schema version
bumped so every connection reloads it, in the migration's transaction.

``orders_ts.raw_venue_payload`` (JSON, unwritten since migration 0007's
``raw_venue_json``) stays: the previous release's insert still names it, so dropping it
would break that release's writes during a rolling update. A later migration can drop
it once no release writes it.

Revision ID: 0008_conditional_orders
Revises: 0007_venue_settings_raw_json
Create Date: 2026-12-07
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from services.store.types import DecimalString

revision = "0008_conditional_orders"
down_revision = "0007_venue_settings_raw_json"
branch_labels = None
depends_on = None

CODE = sa.String(32)
COLUMNS = (
    ("close_position", lambda: sa.Column("close_position", sa.Boolean(), nullable=False, server_default=sa.false())),
    ("working_type", lambda: sa.Column("working_type", CODE, nullable=True)),
    ("price_protect", lambda: sa.Column("price_protect", sa.Boolean(), nullable=False, server_default=sa.false())),
    ("activation_price", lambda: sa.Column("activation_price", DecimalString(), nullable=True)),
    ("callback_rate", lambda: sa.Column("callback_rate", DecimalString(), nullable=True)),
    ("quote_order_qty", lambda: sa.Column("quote_order_qty", DecimalString(), nullable=True)),
)
#: The column's declaration in SQLite's schema as migration 0001 created it, and without NOT NULL
#: (``\b``: not ``filled_quantity``).
_SQLITE_NOT_NULL, _SQLITE_NULLABLE = "quantity TEXT NOT NULL", "quantity TEXT"


def _sqlite_quantity_declaration(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders_ts'").scalar()
    changed, count = re.subn(rf"\b{old}(?=,)", new, sql)
    if count != 1:
        raise RuntimeError(f"orders_ts.quantity is not declared as {old!r} here: cannot change it in place")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'orders_ts'",
                             (changed,))
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    for _, column in COLUMNS:
        op.add_column("orders_ts", column())
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_quantity_declaration(_SQLITE_NOT_NULL, _SQLITE_NULLABLE)
    else:
        op.alter_column("orders_ts", "quantity", existing_type=DecimalString(), nullable=True)


#: Shown at most, of the orders that keep a downgrade from running.
_NAMED = 10


def downgrade() -> None:
    """Refuses while an order has no quantity or uses a field of this migration (its
    terms, which the risk token signed, would be lost or changed); drops the six
    columns otherwise."""
    bind = op.get_bind()
    unsized = bind.exec_driver_sql("SELECT count(*) FROM orders_ts WHERE quantity IS NULL").scalar()
    if unsized:
        raise RuntimeError(f"{unsized} orders have no quantity (close_position, quote_order_qty): "
                           "orders_ts.quantity cannot be NOT NULL again while they are stored")
    using = ("close_position = true OR price_protect = true OR working_type IS NOT NULL "
             "OR activation_price IS NOT NULL OR callback_rate IS NOT NULL OR quote_order_qty IS NOT NULL")
    count = bind.exec_driver_sql(f"SELECT count(*) FROM orders_ts WHERE {using}").scalar()
    if count:
        named = bind.exec_driver_sql(
            f"SELECT order_id FROM orders_ts WHERE {using} ORDER BY order_id LIMIT {_NAMED}").scalars().all()
        raise RuntimeError(
            f"{count} orders use close_position, price_protect, working_type, activation_price, callback_rate or "
            f"quote_order_qty, which the schema before 0008 cannot hold (their terms would be lost): "
            f"{', '.join(named)}{' ...' if count > len(named) else ''}")
    if bind.dialect.name == "sqlite":
        _sqlite_quantity_declaration(_SQLITE_NULLABLE, _SQLITE_NOT_NULL)
    else:
        op.alter_column("orders_ts", "quantity", existing_type=DecimalString(), nullable=False)
    for name, _ in reversed(COLUMNS):
        if bind.dialect.name == "sqlite":
            # SQLite's own DROP COLUMN (3.35+), not batch mode's copy of the table (see above).
            bind.exec_driver_sql(f"ALTER TABLE orders_ts DROP COLUMN {name}")
        else:
            op.drop_column("orders_ts", name)
