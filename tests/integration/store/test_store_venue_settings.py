"""Venue settings and their history: each change is recorded, with who made it and the
operator's comment, in the transaction that changes the setting."""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc
T1 = dt.datetime(2027, 1, 12, 9, 0, tzinfo=UTC)
T2 = T1 + dt.timedelta(minutes=5)


def test_every_change_is_kept_with_its_principal_and_comment_while_the_setting_holds_the_latest(store):
    with store.uow() as uow:
        uow.venue_settings.put("desk-a", "BTCUSDT", source="venue", leverage=20, margin_mode="CROSSED", at=T1)
        uow.commit()
    with store.uow() as uow:
        uow.venue_settings.put("desk-a", "BTCUSDT", source="operator-1", leverage=5, at=T2, comment="INC-42: de-risk")
        uow.venue_settings.put("desk-b", "", source="operator-2", position_mode="HEDGE", at=T2)
        uow.commit()
    with store.uow() as uow:
        settings = {(s.account, s.symbol): s for s in uow.venue_settings.list()}
        every = uow.venue_settings.changes()
        desk_a = uow.venue_settings.changes("desk-a")

    btc = settings[("desk-a", "BTCUSDT")]
    assert (btc.leverage, btc.margin_mode, btc.source, btc.updated_time) == (5, "CROSSED", "operator-1", T2)
    assert [(c.account, c.symbol, c.leverage, c.margin_mode, c.position_mode, c.principal, c.comment, c.changed_time)
            for c in every] == [
        ("desk-a", "BTCUSDT", 20, "CROSSED", None, "venue", "", T1),
        ("desk-a", "BTCUSDT", 5, None, None, "operator-1", "INC-42: de-risk", T2),  # what it set, nothing else
        ("desk-b", "", None, None, "HEDGE", "operator-2", "", T2),
    ]
    assert [c.id for c in desk_a] == [c.id for c in every[:2]]


def test_a_change_rolled_back_leaves_neither_the_setting_nor_its_history(store):
    with store.uow() as uow:
        uow.venue_settings.put("desk-a", "BTCUSDT", source="operator-1", leverage=5, comment="never committed")
    with store.uow() as uow:
        assert uow.venue_settings.list() == [] and uow.venue_settings.changes() == []


def test_the_history_answers_the_latest_changes_oldest_first(store):
    with store.uow() as uow:
        for leverage in range(1, 6):
            uow.venue_settings.put("desk-a", "BTCUSDT", source="operator-1", leverage=leverage, at=T1)
        uow.commit()
    with store.uow() as uow:
        latest = uow.venue_settings.changes(limit=2)
    assert [c.leverage for c in latest] == [4, 5]
