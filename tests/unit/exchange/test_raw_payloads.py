"""Venue payloads kept as exact JSON text: integers stay integers, decimals as written."""

from __future__ import annotations

import json

import pytest

from services.exchange.aster import raw


def test_array_elements_keep_big_integers_and_decimal_text():
    text = '[{"id":9007199254740993,"qty":0.10,"commission":"-0.07819010","maker":false},{"id":2}]'

    first, second = raw.elements(text)

    assert first == '{"id":9007199254740993,"qty":0.10,"commission":"-0.07819010","maker":false}'
    assert second == '{"id":2}'


def test_an_exchange_keeps_the_answer_verbatim_and_leaves_authentication_out():
    request = raw.request_json("POST", "/fapi/v3/order", [("symbol", "BTCUSDT"), ("nonce", "1"),
                                                          ("signer", "0xabc"), ("signature", "0xdef")])
    answer = '{"orderId": 22542179, "avgPrice": "0.00000"}'

    record = raw.exchange_json(request, 200, answer)

    assert record.endswith(',"response":{"orderId": 22542179, "avgPrice": "0.00000"}}')
    decoded = json.loads(record)
    assert decoded["request"] == {"method": "POST", "path": "/fapi/v3/order", "params": {"symbol": "BTCUSDT"}}
    assert decoded["status"] == 200 and decoded["response"]["orderId"] == 22542179


def test_floats_are_never_written_back():
    with pytest.raises(TypeError):
        raw.encode({"price": 0.1})
