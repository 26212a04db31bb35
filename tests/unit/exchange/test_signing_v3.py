"""Aster V3 signing (EIP-712 by the API wallet): the docs' example, the message, the wire form.

The values below are the demonstration API registration of Aster's V3 futures and spot
docs ("Example of POST /fapi/v3/order": user, signer, and the privateKey that
"corresponds to the signer"; the nonce example ``1748310859508867``). The docs publish
no signature for the current EIP-712 scheme, so the test checks what they do define:
the key belongs to the signer, the message is the sorted parameter string, and the
signature recovers to the signer under the documented typed data, built here
independently of the code under test.
"""

from __future__ import annotations

import urllib.parse

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from services.exchange.aster.credentials import (
    HmacCredentials,
    NonceSource,
    WalletCredentials,
    credentials_from_mapping,
)
from services.exchange.aster.requests import VenueRequest, prepare_cancel_order, prepare_listen_key, prepare_query_order
from services.exchange.aster.signing import API_KEY_HEADER, FORM_CONTENT_TYPE, sign_request
from services.domain import MarketType

DOC_USER = "0x63DD5aCC6b1aa0f563956C0e534DD30B6dcF7C4e"
DOC_SIGNER = "0x21cF8Ae13Bb72632562c6Fff438652Ba1a151bb0"
DOC_PRIVATE_KEY = "0x4fd0a42218f3eae43a6ce26d22544e986139a01e5b34a62db53757ffca81bae1"
DOC_NONCE = 1748310859508867
#: The docs' place_order parameters.
DOC_ORDER = (("symbol", "ASTERUSDT"), ("type", "LIMIT"), ("side", "BUY"), ("timeInForce", "GTC"),
             ("quantity", "20"), ("price", "0.5"))


def documented_typed_data(message: str, chain_id: int = 1666) -> dict:
    """The typed data exactly as Aster's example writes it."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Message": [{"name": "msg", "type": "string"}],
        },
        "primaryType": "Message",
        "domain": {
            "name": "AsterSignTransaction",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": "0x0000000000000000000000000000000000000000",
        },
        "message": {"msg": message},
    }


def recover(message: str, signature: str, chain_id: int = 1666) -> str:
    return Account.recover_message(encode_typed_data(full_message=documented_typed_data(message, chain_id)),
                                   signature=signature)


@pytest.fixture
def wallet() -> WalletCredentials:
    return WalletCredentials(DOC_USER, DOC_SIGNER, DOC_PRIVATE_KEY)


def test_the_documented_private_key_belongs_to_the_documented_signer(wallet):
    assert Account.from_key(DOC_PRIVATE_KEY).address == DOC_SIGNER
    assert (wallet.user, wallet.signer, wallet.chain_id) == (DOC_USER, DOC_SIGNER, 1666)


def test_the_docs_order_is_signed_as_sorted_parameters_with_nonce_user_and_signer(wallet):
    request = VenueRequest("POST", "/fapi/v1/order", DOC_ORDER, signed=True)

    signed = sign_request(request, wallet, timestamp_ms=0, nonce=DOC_NONCE)

    message, _, signature = signed.body.rpartition("&signature=")
    assert message == (
        "nonce=1748310859508867&price=0.5&quantity=20&side=BUY"
        f"&signer={DOC_SIGNER}&symbol=ASTERUSDT&timeInForce=GTC&type=LIMIT&user={DOC_USER}"
    )
    assert recover(message, signature) == DOC_SIGNER
    # RFC 6979 signatures are deterministic: this pins the whole scheme against drift.
    assert signature == (
        "0x57a0751c8c851f4e50140dc10dd54350202098a4ad3e435ab49c91e62e612e9f"
        "721c73c1b6bc09a954867e99958e6f2fac974e067465f0fa5cc2dfaa0500ceed1b"
    )


def test_v3_moves_the_path_to_v3_and_sends_post_as_a_form_body(wallet):
    signed = sign_request(VenueRequest("POST", "/fapi/v1/order", DOC_ORDER, signed=True), wallet,
                          timestamp_ms=0, nonce=DOC_NONCE)

    assert (signed.method, signed.path, signed.query) == ("POST", "/fapi/v3/order", "")
    assert signed.headers == {"Content-Type": FORM_CONTENT_TYPE}  # no API key header in V3
    assert "timestamp" not in signed.body and "recvWindow" not in signed.body


def test_spot_gets_and_deletes_use_the_spot_v3_paths(wallet):
    query = sign_request(prepare_query_order("BNBUSDT", "c1", MarketType.SPOT), wallet, timestamp_ms=0, nonce=1)
    cancel = sign_request(prepare_cancel_order("BNBUSDT", "c1", MarketType.SPOT), wallet, timestamp_ms=0, nonce=2)

    assert query.path == "/api/v3/order" and query.body == "" and "&signature=0x" in query.query
    assert dict(urllib.parse.parse_qsl(query.query))["nonce"] == "1"
    assert cancel.path == "/api/v3/order" and cancel.query == "" and "signature=0x" in cancel.body


def test_the_signature_covers_the_encoded_parameters_exactly_as_sent(wallet):
    request = VenueRequest("DELETE", "/fapi/v1/order", (("symbol", "BTCUSDT"), ("origClientOrderId", "a:b/c")), True)

    signed = sign_request(request, wallet, timestamp_ms=0, nonce=7)

    message, _, signature = signed.body.rpartition("&signature=")
    assert "origClientOrderId=a%3Ab%2Fc" in message
    assert recover(message, signature) == DOC_SIGNER


def test_testnet_signatures_use_chain_714_and_do_not_verify_on_mainnet():
    testnet = WalletCredentials(DOC_USER, DOC_SIGNER, DOC_PRIVATE_KEY, chain_id=714)

    signed = sign_request(VenueRequest("GET", "/fapi/v1/openOrders", (("symbol", "BTCUSDT"),), True), testnet,
                          timestamp_ms=0, nonce=5)

    message, _, signature = signed.query.rpartition("&signature=")
    assert recover(message, signature, chain_id=714) == DOC_SIGNER
    assert recover(message, signature, chain_id=1666) != DOC_SIGNER


def test_user_stream_requests_are_fully_signed_in_v3_and_key_only_in_v1(wallet):
    v3 = sign_request(prepare_listen_key(), wallet, timestamp_ms=0, nonce=9)
    v1 = sign_request(prepare_listen_key(), HmacCredentials("key-1", "secret-1"), timestamp_ms=0)

    assert v3.path == "/fapi/v3/listenKey" and "signature=0x" in v3.body
    assert v1.path == "/fapi/v1/listenKey" and v1.query == "" and v1.headers == {API_KEY_HEADER: "key-1"}


def test_nonces_are_microseconds_and_strictly_increasing_even_in_the_same_microsecond():
    source = NonceSource(clock=lambda: 1748310859.508867)

    nonces = [source.next() for _ in range(3)]

    assert nonces[0] == DOC_NONCE
    assert nonces == [DOC_NONCE, DOC_NONCE + 1, DOC_NONCE + 2]


def test_a_clock_that_steps_back_never_repeats_a_nonce():
    times = iter([100.0, 99.0, 99.5])
    source = NonceSource(clock=lambda: next(times))

    assert [source.next() for _ in range(3)] == [100_000_000, 100_000_001, 100_000_002]


def test_consecutive_requests_draw_fresh_nonces(wallet):
    first = sign_request(prepare_listen_key(), wallet, timestamp_ms=0)
    second = sign_request(prepare_listen_key(), wallet, timestamp_ms=0)

    nonce = [int(dict(urllib.parse.parse_qsl(s.body))["nonce"]) for s in (first, second)]
    assert nonce[1] > nonce[0]


def test_the_private_key_never_shows_and_a_foreign_key_is_refused_without_quoting_it(wallet):
    for text in (repr(wallet), str(wallet)):
        assert DOC_PRIVATE_KEY[2:] not in text and "hidden" in text
    other_key = "0x" + "11" * 32
    with pytest.raises(ValueError) as refused:
        WalletCredentials(DOC_USER, DOC_SIGNER, other_key)
    assert "11" * 8 not in str(refused.value) and "does not belong" in str(refused.value)
    with pytest.raises(ValueError) as malformed:
        WalletCredentials(DOC_USER, DOC_SIGNER, "0xnot-a-key")
    assert "not-a-key" not in str(malformed.value)


def test_credentials_are_chosen_per_account_from_their_fields():
    v3 = credentials_from_mapping({"user": DOC_USER, "signer": DOC_SIGNER, "private_key": DOC_PRIVATE_KEY,
                                   "chain_id": "714"})
    v1 = credentials_from_mapping({"api_key": "k", "secret": "s"})

    assert isinstance(v3, WalletCredentials) and v3.api == "v3" and v3.chain_id == 714
    assert isinstance(v1, HmacCredentials) and v1.api == "v1" and "s" not in repr(v1).split("secret=")[1][:1]
    with pytest.raises(ValueError, match="not both"):
        credentials_from_mapping({"api_key": "k", "secret": "s", "user": DOC_USER})
    with pytest.raises(ValueError, match="lack private_key"):
        credentials_from_mapping({"user": DOC_USER, "signer": DOC_SIGNER})


def test_a_signed_requests_repr_shows_no_signature(wallet):
    # A signature in a log line or a traceback could be replayed while it is valid.
    v1 = sign_request(prepare_query_order("BTCUSDT", "c1"), HmacCredentials("key-1", "secret-1"), timestamp_ms=1)
    v3 = sign_request(prepare_query_order("BTCUSDT", "c1"), wallet, timestamp_ms=0, nonce=DOC_NONCE)

    for signed in (v1, v3):
        signature = signed.query.rpartition("&signature=")[2]
        assert signature and signature not in repr(signed) and "signature" not in repr(signed)
        assert "/order" in repr(signed)  # what was asked still shows
