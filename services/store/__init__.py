"""Tessera's shared repository layer: schema, migrations, repositories, unit of work.

Repositories take and return the dataclasses of :mod:`services.domain`; the ORM rows
of :mod:`services.store.models` never leave this package.
"""

from .engine import database_url, make_engine
from .errors import DuplicateClientOrderId, DuplicateOrderId, InvalidPage, OrderManagerNotFound
from .migrate import upgrade
from .records import ExecutionAnomaly, TradingStateChange, TradingStateRecord
from .uow import AbstractUnitOfWork, Store, UnitOfWork

__all__ = [
    "AbstractUnitOfWork",
    "DuplicateClientOrderId",
    "DuplicateOrderId",
    "ExecutionAnomaly",
    "InvalidPage",
    "OrderManagerNotFound",
    "Store",
    "TradingStateChange",
    "TradingStateRecord",
    "UnitOfWork",
    "database_url",
    "make_engine",
    "upgrade",
]
