"""The exchange's integration tests: the ``make_order`` fixture (the helpers are in
:mod:`venue_sim_support`)."""

from __future__ import annotations

from typing import Callable

import pytest
from venue_sim_support import build_order

from services.domain import Order


@pytest.fixture
def make_order() -> Callable[..., Order]:
    return build_order
