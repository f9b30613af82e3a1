"""Tests of ``ext.sign.HmacSigner``: every HMAC vector of venue-protocols.md section 4,
equality with :func:`hmac.new` on random keys and payloads, secret hygiene and errors.

Build first: ``python setup.py build_ext --inplace``.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.orders import signing
from engine.orders.signing import rest_encode, ws_payload
from ext.sign import BACKEND, HmacSigner

# Binance's illustrative key pair (venue-protocols.md 4.1).
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

REST_QUERY = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
              "&recvWindow=5000&timestamp=1499827319559")
REST_NON_ASCII = ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT"
                  "&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
WS_SORTED = (f"apiKey={API_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
             "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT")
WS_NON_ASCII = (f"apiKey={API_KEY}&price=0.10000000&quantity=1.00000000&recvWindow=5000&side=BUY"
                "&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532&type=LIMIT")
WS_OLD = (f"apiKey={API_KEY}&newOrderRespType=ACK&price=52000.00&quantity=0.01000000&recvWindow=100"
          "&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT")

# (name, exact signed text, expected hex): all HMAC vectors of section 4.1 and 4.2.
VECTORS = [
    ("rest", REST_QUERY, "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    ("rest_non_ascii", REST_NON_ASCII, "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"),
    ("rest_query_plus_body",
     "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC" "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"),
    ("ws", WS_SORTED, "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"),
    ("ws_non_ascii", WS_NON_ASCII, "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"),
    ("ws_old_docs", WS_OLD, "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"),
]


def ref(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


# -- section 4 vectors -----------------------------------------------------------------------------
@pytest.mark.parametrize("name,text,want", VECTORS, ids=[v[0] for v in VECTORS])
def test_section4_vectors(name, text, want):
    s = HmacSigner(SECRET)
    payload = text.encode()
    assert s.sign_hex(payload) == want
    assert s.sign_hex(bytearray(payload)) == want
    assert s.sign_hex(memoryview(payload)) == want
    assert ref(SECRET, payload) == want  # the vector itself, recomputed by the stdlib


def test_section4_vectors_from_params():
    """The payload rules of engine.orders.signing produce the vectors' exact signed text."""
    s = HmacSigner(SECRET)
    rest = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
            ("quantity", "1"), ("price", "0.1"), ("recvWindow", 5000), ("timestamp", 1499827319559)]
    assert rest_encode(rest) == REST_QUERY
    assert s.sign_hex(rest_encode(rest).encode()) == VECTORS[0][2]
    assert rest_encode([("symbol", "１２３４５６")] + rest[1:]) == REST_NON_ASCII
    assert s.sign_hex(REST_NON_ASCII.encode()) == VECTORS[1][2]
    assert s.sign_hex((rest_encode(rest[:4]) + rest_encode(rest[4:])).encode()) == VECTORS[2][2]
    ws = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
          "quantity": "0.01000000", "price": "52000.00", "recvWindow": 100, "timestamp": 1645423376532,
          "apiKey": API_KEY, "signature": "ignored"}
    assert ws_payload(ws) == WS_SORTED
    assert s.sign_hex(ws_payload(ws).encode()) == VECTORS[3][2]
    na = dict(ws, symbol="１２３４５６", side="BUY", quantity="1.00000000", price="0.10000000", recvWindow=5000)
    assert ws_payload(na) == WS_NON_ASCII and s.sign_hex(ws_payload(na).encode()) == VECTORS[4][2]
    old = dict(ws, newOrderRespType="ACK")
    assert ws_payload(old) == WS_OLD and s.sign_hex(ws_payload(old).encode()) == VECTORS[5][2]


def test_engine_signer_uses_ext_sign():
    s = signing.HmacSigner(API_KEY, SECRET.decode())
    assert isinstance(s._mac, HmacSigner)
    for _, text, want in VECTORS:
        assert s.sign(text) == want and s.sign(text.encode()) == want
    assert BACKEND in ("SHA256_CTX", "EVP_MD_CTX")


# -- equality with the stdlib ----------------------------------------------------------------------
@settings(max_examples=1500, deadline=None)
@given(key=st.binary(min_size=1, max_size=200), payload=st.binary(max_size=1200))
def test_matches_hmac_new(key, payload):
    # Keys cover < 64, == 64 (one block) and > 64 bytes (hashed first, RFC 2104).
    s = HmacSigner(key)
    want = ref(key, payload)
    assert s.sign_hex(payload) == want
    assert s.sign_hex(bytearray(payload)) == want
    assert s.sign_hex(memoryview(b"xx" + payload + b"yy")[2:-2]) == want
    assert s.sign_hex(payload) == want  # the prepared key state is not consumed


@pytest.mark.parametrize("n", [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 200, 4096, 1 << 20])
@pytest.mark.parametrize("klen", [1, 32, 63, 64, 65, 128])
def test_block_boundaries(n, klen):
    key = bytes((i * 7 + klen) & 255 for i in range(klen))
    payload = bytes((i * 31 + 3) & 255 for i in range(n))
    assert HmacSigner(key).sign_hex(payload) == ref(key, payload)


def test_output_is_lowercase_hex_str():
    out = HmacSigner(b"k").sign_hex(b"")
    assert type(out) is str and len(out) == 64 and out == out.lower() and int(out, 16) >= 0
    assert out.isascii()


def test_reinit_replaces_key():
    s = HmacSigner(b"first")
    s.__init__(b"second")
    assert s.sign_hex(b"m") == ref(b"second", b"m")


def test_concurrent_signing_on_one_signer():
    s = HmacSigner(SECRET)
    payloads = [f"symbol=BTCUSDT&timestamp={i}".encode() for i in range(2000)]
    want = [ref(SECRET, p) for p in payloads]
    bad = []

    def work():
        for p, w in zip(payloads, want):
            if s.sign_hex(p) != w:
                bad.append(p)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


# -- secret hygiene --------------------------------------------------------------------------------
def test_secret_never_in_repr_str_pickle_or_copy():
    s = HmacSigner(SECRET)
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert SECRET.decode() not in text and SECRET[:8].decode() not in text
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError) as e:
            pickle.dumps(s, protocol=proto)
        assert SECRET[:8].decode() not in str(e.value)
    for f in (copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            f(s)
    assert not hasattr(s, "__dict__")
    with pytest.raises(AttributeError):
        s.secret = SECRET  # no place to stash anything


def test_engine_signer_keeps_no_raw_secret():
    s = signing.HmacSigner(API_KEY, SECRET.decode())
    assert not any(getattr(s, slot, None) in (SECRET, SECRET.decode()) for slot in ("_mac", "_key"))
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert SECRET.decode() not in repr(s)


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("payload", ["text", 1, None, 1.5, ["a"], object()])
def test_non_bytes_payload_is_type_error(payload):
    with pytest.raises(TypeError):
        HmacSigner(SECRET).sign_hex(payload)


def test_non_contiguous_buffer_is_type_error():
    with pytest.raises(TypeError):
        HmacSigner(SECRET).sign_hex(memoryview(b"abcdef")[::2])


@pytest.mark.parametrize("secret", [b"", bytearray(), memoryview(b"")])
def test_empty_secret_is_value_error(secret):
    with pytest.raises(ValueError):
        HmacSigner(secret)


@pytest.mark.parametrize("secret", [SECRET.decode(), None, 42])
def test_non_bytes_secret_is_type_error_without_echo(secret):
    with pytest.raises(TypeError) as e:
        HmacSigner(secret)
    assert SECRET.decode()[:8] not in str(e.value)


def test_signer_without_key_refuses_to_sign():
    s = HmacSigner.__new__(HmacSigner)
    with pytest.raises(ValueError):
        s.sign_hex(b"x")
