"""The user-data stream's listenKey keepalive: its schedule, read through an injected sleep
(the venue and the socket are stand-ins; nothing waits)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.domain import MarketType
from services.exchange.aster.errors import VenueInDoubt, VenueRateLimited, VenueRejected
from services.exchange.aster.user_stream import UserDataStream


class Stop(Exception):
    """Ends the keepalive loop once the test has seen enough."""


class Venue:
    """Answers each keepalive with the next outcome of a script (None: accepted)."""

    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = outcomes
        self.keepalives = 0

    async def send(self, request: Any, credentials: Any = None) -> Any:
        assert (request.method, request.path) == ("PUT", "/fapi/v1/listenKey")
        self.keepalives += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return {}


class Socket:
    closed = False

    async def close(self) -> None:
        self.closed = True


def keepalive_waits(outcomes: list[Exception | None], rounds: int, **options: Any) -> tuple[list[float], Venue, Socket]:
    """The waits before each keepalive, over ``rounds`` of them."""
    venue, socket, waits = Venue(outcomes), Socket(), []

    async def sleep(seconds: float) -> None:
        if len(waits) == rounds:
            raise Stop
        waits.append(seconds)

    async def ignore(*_: Any) -> None:
        return None

    stream = UserDataStream(venue, None, MarketType.FUTURES, "ws://venue.test", ignore, ignore, sleep=sleep, **options)
    stream.listen_key = "key"
    try:
        asyncio.run(stream._keepalive(socket))
    except Stop:
        pass
    return waits, venue, socket


def test_keepalives_go_every_interval_while_the_venue_takes_them():
    waits, venue, _ = keepalive_waits([], 3, keepalive_seconds=1800.0)

    assert waits == [1800.0, 1800.0, 1800.0]


def test_a_keepalive_without_an_answer_is_tried_again_within_a_minute_not_at_the_next_interval():
    # 30 minutes into the key's 60, a keepalive in doubt: waiting the whole interval again
    # would send the next one when the key expires.
    waits, venue, socket = keepalive_waits([VenueInDoubt("no answer", reason="VENUE_TIMEOUT"), None], 3,
                                           keepalive_seconds=1800.0)

    assert waits == [1800.0, 60.0, 1800.0]
    assert venue.keepalives == 3 and not socket.closed


def test_a_rate_limited_keepalive_is_tried_again_when_the_venue_allows_it():
    limited = VenueRateLimited("slow down", retry_after=90.0)

    waits, _, _ = keepalive_waits([limited, None], 3, keepalive_seconds=1800.0)

    assert waits == [1800.0, 90.0, 1800.0]


def test_a_refused_keepalive_closes_the_socket_for_a_new_key():
    waits, venue, socket = keepalive_waits([VenueRejected("gone", reason="VENUE_INVALID_LISTEN_KEY")], 3,
                                           keepalive_seconds=1800.0)

    assert waits == [1800.0] and venue.keepalives == 1 and socket.closed
