"""What the venue-health alerts read (k8s/components/monitoring, docs/operations.md): the
user-data stream's state per venue account and market, and the dead-man switch's failed
heartbeats, as the live provider sets them against the simulator."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from prometheus_client import REGISTRY

from services.domain import MarketType, OrderType
from services.exchange.providers.live import LiveProvider
from services.venue_sim.app import Fault

from venue_sim_support import WALLET_A, running_venue, wallet
from test_live_v3 import ready, run, until

ACCOUNT = "v3:" + WALLET_A[0]  # the account key: the user address, as the wallet spells it


def stream_gauge(market: str = "FUTURES") -> float | None:
    return REGISTRY.get_sample_value("tessera_venue_user_stream_connected", {"account": ACCOUNT, "market": market})


def deadman(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_stream_gauge_is_1_while_connected_0_while_polling_stands_in_and_gone_once_closed():
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            credentials = wallet()
            assert credentials.account_key == ACCOUNT
            provider = LiveProvider(venue.transport(credentials=credentials), poll_seconds=0.05,
                                    reconnect_seconds=0.05)
            await provider.start(lambda reports: asyncio.sleep(0))
            stream = provider.sessions[credentials.account_key].streams[MarketType.FUTURES]
            seen = []
            assert await stream.wait_connected(5)
            seen.append(stream_gauge())
            venue.sim.streams.refuse_until = time.monotonic() + 0.5
            await venue.sim.streams.drop_all()
            await until(lambda: not stream.connected)
            seen.append(stream_gauge())  # down: the REST poller stands in
            await until(lambda: stream.connected, timeout=10)
            seen.append(stream_gauge())
            await provider.close()
            seen.append(stream_gauge())
            return seen

    assert run(scenario) == [1.0, 0.0, 1.0, None]


def test_failed_dead_man_heartbeats_are_counted_and_a_re_armed_one_resets_the_run(make_order):
    async def scenario():
        async with running_venue() as venue:
            venue.register(WALLET_A)
            provider = LiveProvider(venue.transport(credentials=wallet()), poll_seconds=0, user_stream=False,
                                    deadman_seconds=0.2)  # a beat every 0.05 s
            await provider.start(lambda reports: asyncio.sleep(0))
            await ready(provider)
            before = deadman("tessera_venue_deadman_failures_total", reason="VENUE_UNAVAILABLE")
            # The venue answers every countdownCancelAll with a 503 for a while.
            venue.sim.faults.append(Fault("error_5xx", method="POST", path="/countdownCancelAll", count=10**6))
            await provider.execute(make_order(order_type=OrderType.LIMIT, price=Decimal("60000"),
                                              quantity=Decimal("0.1")))  # an open order: its symbol is armed
            await until(lambda: deadman("tessera_venue_deadman_consecutive_failures") >= 3)
            failing = deadman("tessera_venue_deadman_consecutive_failures")
            failed = deadman("tessera_venue_deadman_failures_total", reason="VENUE_UNAVAILABLE") - before
            venue.sim.faults.clear()
            beats_before = len(venue.requests("POST", "/countdownCancelAll"))
            await until(lambda: deadman("tessera_venue_deadman_consecutive_failures") == 0)
            beats_after = len(venue.requests("POST", "/countdownCancelAll")) - beats_before
            await provider.close()
            return failing, failed, beats_after

    failing, failed, beats_after = run(scenario)

    assert failing >= 3 and failed >= failing  # each failed beat counted, by its reason
    assert beats_after >= 1  # the run ended with a beat the venue answered
