"""The cyclic collector's thresholds every service sets at start (TESSERA_GC_THRESHOLDS)."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.common.server import GC_THRESHOLDS, gc_thresholds


def test_gc_thresholds_default_when_unset_or_blank() -> None:
    assert gc_thresholds({}) == GC_THRESHOLDS
    assert gc_thresholds({"TESSERA_GC_THRESHOLDS": "  "}) == GC_THRESHOLDS


def test_gc_thresholds_are_read_from_the_environment() -> None:
    assert gc_thresholds({"TESSERA_GC_THRESHOLDS": "700,10,10"}) == (700, 10, 10)


@pytest.mark.parametrize("raw", ["700", "700,10", "a,b,c", "0,10,10", "700,-1,10", "1,2,3,4"])
def test_gc_thresholds_refuse_anything_but_three_integers_with_a_positive_first(raw: str) -> None:
    with pytest.raises(ConfigError, match="TESSERA_GC_THRESHOLDS"):
        gc_thresholds({"TESSERA_GC_THRESHOLDS": raw})
