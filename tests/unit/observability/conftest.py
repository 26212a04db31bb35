"""What the observability tests share."""

from __future__ import annotations

import io
import logging
from typing import Iterator

import pytest

from services.common.observability import logs


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's logs set up as a service's (``setup_logging("unit")``, INFO) into a
    string, and put back as they were after the test."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._handler[0]
    stream = io.StringIO()
    logs.setup_logging("unit", {}, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level, logs._handler[0] = saved
        root.setLevel(level)
