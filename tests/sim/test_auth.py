"""Signature and timing checks of the simulator against venue-protocols.md section 4 vectors."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.sim.auth import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_ED25519_API_KEY,
    AuthError,
    Authenticator,
    KeyStore,
    default_ed25519_private_key,
    ed25519_sign_b64,
    hmac_sha256_hex,
    rest_payload,
    ws_payload,
    ws_payload_encoded,
)

DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
REST_TS = 1499827319559
WS_TS = 1645423376532

# venue-protocols.md 4.1 (REST): (query, body, signature)
REST_VECTORS = [
    ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "", "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"),
    ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC"
     "&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "", "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"),
    ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
     "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
     "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"),
]

WS_BASE = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
           "quantity": "0.01000000", "price": "52000.00", "recvWindow": "100",
           "timestamp": str(WS_TS), "apiKey": DOC_KEY}
# venue-protocols.md 4.2 (WS API): (params, sorted payload, signature)
WS_VECTORS = [
    (WS_BASE,
     "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00&quantity=0.01000000"
     "&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT",
     "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"),
    ({**WS_BASE, "symbol": "１２３４５６", "side": "BUY", "quantity": "1.00000000", "price": "0.10000000",
      "recvWindow": "5000"},
     "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=0.10000000"
     "&quantity=1.00000000&recvWindow=5000&side=BUY&symbol=１２３４５６&timeInForce=GTC&timestamp=1645423376532"
     "&type=LIMIT",
     "b33892ae8e687c939f4468c6268ddd4c40ac1af18ad19a064864c47bae0752cd"),
    ({**WS_BASE, "newOrderRespType": "ACK"},
     "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&newOrderRespType=ACK"
     "&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC"
     "&timestamp=1645423376532&type=LIMIT",
     "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"),
]


def auth_at(now_ms: int) -> Authenticator:
    return Authenticator(KeyStore.from_env({}), clock_ms=lambda: now_ms)


def test_default_hmac_pair_is_the_docs_pair():
    assert (DEFAULT_API_KEY, DEFAULT_API_SECRET) == (DOC_KEY, DOC_SECRET)


@pytest.mark.parametrize("query,body,sig", REST_VECTORS)
def test_rest_vectors_hmac(query, body, sig):
    payload, none = rest_payload(query, body)
    assert none is None
    assert hmac_sha256_hex(DOC_SECRET, payload) == sig


@pytest.mark.parametrize("query,body,sig", REST_VECTORS)
def test_rest_vectors_verify_with_signature_in_query_or_body(query, body, sig):
    a = auth_at(REST_TS + 10)
    if body:
        a.verify_rest(DOC_KEY, query, body + "&signature=" + sig, str(REST_TS), "5000")
    else:
        a.verify_rest(DOC_KEY, query + "&signature=" + sig, "", str(REST_TS), "5000")
        # The same pairs moved to the body verify too (payload = query + body, no separator).
        a.verify_rest(DOC_KEY, "", query + "&signature=" + sig.upper(), str(REST_TS), "5000")


def test_rest_unencoded_payload_is_rejected_since_2026():
    # A client that signs the raw UTF-8 text but sends the percent-encoded form (pre-2026 habit).
    query_sent = REST_VECTORS[1][0]
    bad_sig = hmac_sha256_hex(DOC_SECRET, query_sent.replace(
        "%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96", "１２３４５６"))
    with pytest.raises(AuthError) as e:
        auth_at(REST_TS).verify_rest(DOC_KEY, query_sent + "&signature=" + bad_sig, "", str(REST_TS), "5000")
    assert (e.value.code, e.value.msg) == (-1022, "Signature for this request is not valid.")


@pytest.mark.parametrize("params,payload,sig", WS_VECTORS)
def test_ws_vectors_sorted_payload(params, payload, sig):
    assert ws_payload({**params, "signature": "ignored"}) == payload
    assert hmac_sha256_hex(DOC_SECRET, payload) == sig
    key = auth_at(WS_TS).verify_ws({**params, "signature": sig})
    assert key.api_key == DOC_KEY and key.kind == "HMAC"


def test_ws_accepts_connector_percent_encoded_form():
    params = {**WS_BASE, "newClientOrderId": "a:b/c"}
    enc = ws_payload_encoded(params)
    assert "newClientOrderId=a%3Ab%2Fc" in enc
    auth_at(WS_TS).verify_ws({**params, "signature": hmac_sha256_hex(DOC_SECRET, enc)})
    auth_at(WS_TS).verify_ws({**params, "signature": hmac_sha256_hex(DOC_SECRET, ws_payload(params))})


def test_ws_wrong_signature_is_1022():
    sig = WS_VECTORS[0][2]
    tampered = {**WS_BASE, "price": "52000.01", "signature": sig}
    with pytest.raises(AuthError) as e:
        auth_at(WS_TS).verify_ws(tampered)
    assert e.value.code == -1022 and e.value.status == 400
    assert sig not in e.value.msg


@pytest.mark.parametrize("now,msg", [
    (WS_TS + 101, "Timestamp for this request is outside of the recvWindow."),
    (WS_TS - 1000, "Timestamp for this request was 1000ms ahead of the server's time."),
])
def test_ws_timestamp_outside_window_is_1021(now, msg):
    with pytest.raises(AuthError) as e:
        auth_at(now).verify_ws({**WS_BASE, "signature": WS_VECTORS[0][2]})
    assert (e.value.code, e.value.msg) == (-1021, msg)


def test_timestamp_edges_and_microseconds():
    a = auth_at(WS_TS)
    a.check_timestamp(str(WS_TS - 5000), None)          # default recvWindow 5000 ms, inclusive
    a.check_timestamp(str(WS_TS + 999), None)           # less than 1000 ms ahead
    a.check_timestamp(str((WS_TS - 100) * 1000), "100")  # µs timestamp
    a.check_timestamp(str(WS_TS - 100), "100.5")        # recvWindow with decimals (µs precision)
    with pytest.raises(AuthError) as e:
        a.check_timestamp(str(WS_TS - 101), "100.5")
    assert e.value.code == -1021
    with pytest.raises(AuthError) as e:
        a.check_timestamp(str(WS_TS - 5001), None)
    assert e.value.code == -1021
    with pytest.raises(AuthError) as e:
        a.check_timestamp(str(WS_TS), "60001")
    assert e.value.code == -1102
    with pytest.raises(AuthError) as e:
        a.check_timestamp(None, None)
    assert e.value.code == -1102


def test_stale_rest_request_is_1021_even_with_valid_signature():
    q, _, sig = REST_VECTORS[0]
    with pytest.raises(AuthError) as e:
        auth_at(REST_TS + 5001).verify_rest(DOC_KEY, q + "&signature=" + sig, "", str(REST_TS), "5000")
    assert e.value.code == -1021


def test_api_key_errors():
    ks = KeyStore.from_env({})
    with pytest.raises(AuthError) as e:
        ks.lookup("A" * 64)
    assert (e.value.code, e.value.status) == (-2015, 401)
    for bad in (None, "", "short", "x" * 65, "bad key!" * 8):
        with pytest.raises(AuthError) as e:
            ks.lookup(bad)
        assert (e.value.code, e.value.status) == (-2014, 401)


def test_ed25519_ws_and_rest():
    prv = default_ed25519_private_key()
    params = {"apiKey": DEFAULT_ED25519_API_KEY, "timestamp": str(WS_TS)}
    sig = ed25519_sign_b64(prv, ws_payload(params))
    a = auth_at(WS_TS)
    assert a.verify_ws({**params, "signature": sig}).kind == "ED25519"
    # Ed25519 signatures are case-sensitive.
    with pytest.raises(AuthError) as e:
        a.verify_ws({**params, "signature": sig.swapcase()})
    assert e.value.code == -1022
    # REST: the base64 signature travels percent-encoded (4.3).
    from urllib.parse import quote
    query = f"symbol=BTCUSDT&timestamp={WS_TS}"
    rsig = ed25519_sign_b64(prv, query)
    a.verify_rest(DEFAULT_ED25519_API_KEY, query + "&signature=" + quote(rsig, safe=""), "", str(WS_TS), None)


def test_keys_from_env():
    other = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    pem = other.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    env = {"MM_SIM_API_KEY": "K" * 64, "MM_SIM_API_SECRET": "s3cr3t", "MM_SIM_ED25519_PUBLIC_KEY": pem}
    ks = KeyStore.from_env(env)
    a = Authenticator(ks, clock_ms=lambda: WS_TS)
    p = {"apiKey": "K" * 64, "timestamp": str(WS_TS)}
    a.verify_ws({**p, "signature": hmac_sha256_hex("s3cr3t", ws_payload(p))})
    with pytest.raises(AuthError):
        a.verify_ws({**p, "signature": hmac_sha256_hex(DOC_SECRET, ws_payload(p))})
    with pytest.raises(AuthError) as e:
        ks.lookup(DOC_KEY)  # the default key is replaced, not added
    assert e.value.code == -2015
    q = {"apiKey": DEFAULT_ED25519_API_KEY, "timestamp": str(WS_TS)}
    a.verify_ws({**q, "signature": ed25519_sign_b64(other, ws_payload(q))})


def test_secrets_never_in_repr_or_errors():
    ks = KeyStore.from_env({})
    key = ks.lookup(DOC_KEY)
    a = auth_at(WS_TS)
    texts = [repr(ks), repr(key), str(key), repr(a)]
    for exc_args in ({**WS_BASE, "signature": "00"}, {**WS_BASE}, {**WS_BASE, "timestamp": "1"}):
        with pytest.raises(AuthError) as e:
            a.verify_ws(exc_args)
        texts += [e.value.msg, repr(e.value), str(e.value)]
    for t in texts:
        assert DOC_SECRET not in t
        assert DOC_KEY not in t
