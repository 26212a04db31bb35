"""The Exchange service's execution-report log.

Every report gets a sequence number; ``StreamExecutionReports`` subscribers resume
after the last sequence they applied, so a reconnecting OMS misses nothing that is
still retained.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import AsyncIterator

from services.domain.execution import ExecutionReport


class ReportLog:
    def __init__(self, retain: int = 100_000) -> None:
        self._reports: collections.deque[ExecutionReport] = collections.deque(maxlen=retain)
        self._sequence = 0
        self._changed = asyncio.Condition()
        #: How many StreamExecutionReports subscribers follow the log now (the OMS is
        #: alive while one does).
        self.followers = 0

    @property
    def last_sequence(self) -> int:
        return self._sequence

    async def append(self, reports: list[ExecutionReport]) -> None:
        async with self._changed:
            for report in reports:
                self._sequence += 1
                report.sequence = self._sequence
                self._reports.append(report)
            self._changed.notify_all()

    def after(self, sequence: int) -> list[ExecutionReport]:
        if not self._reports or sequence >= self._sequence:
            return []
        first = self._reports[0].sequence
        start = max(0, sequence + 1 - first)
        return list(itertools.islice(self._reports, start, None))

    async def follow(self, after_sequence: int) -> AsyncIterator[ExecutionReport]:
        cursor = after_sequence
        self.followers += 1
        try:
            while True:
                pending = self.after(cursor)
                if not pending:
                    async with self._changed:
                        await self._changed.wait_for(lambda: self._sequence > cursor)
                    continue
                for report in pending:
                    cursor = report.sequence
                    yield report
        finally:
            self.followers -= 1

