"""mtcute, the TypeScript MTProto library, as a second independent real client next to TDLib and
Telethon: its own MTProxy transport (obfuscated2 with classic and `dd` secrets, fake-TLS with `ee`)
connects through the proxy to the fake DC.

Two kinds of proof per secret kind:
  - reqpq: mtcute's transport and codecs carry one req_pq_multi and bring back a resPQ with its
    nonce (and mtcute knows a key fingerprint the fake DC offers and can factorize pq);
  - auth: mtcute's high-level client runs its own auth key exchange; req_DH_params arriving at the
    fake DC means mtcute accepted the resPQ through the proxy (a round trip both ways, like the
    TDLib testProxy case in test_10_clients.py).
A wrong secret gets no resPQ, the DC sees nothing, and the proxy logs bad_secret.
"""

import pytest

from helpers import User
from mtcute_client import mtcute_many, mtcute_req_pq

KINDS = ["classic", "dd", "ee"]
# mtcute's framing per secret kind, as the fake DC sees it after the proxy (direct mode relays the
# client's framing unchanged): classic -> intermediate, dd and ee -> padded intermediate.
TAG = {"classic": "intermediate", "dd": "padded", "ee": "padded"}


def _show(r):
    return {k: r.get(k) for k in ("ok", "error", "elapsed_ms", "rc", "stderr", "log")}


def test_mtcute_req_pq_each_kind(proxy_factory, fakedc, tls_cover):
    users = [User("m_" + k, k) for k in KINDS]
    px = proxy_factory(users, mask=tls_cover.addr)
    res = mtcute_many([dict(host=px.host, port=px.port, client_secret=u.client_secret) for u in users])
    for u, r in zip(users, res):
        assert r["ok"] and r["nonce_matches"], (u.kind, _show(r))
        assert r["rc"] == 0, (u.kind, _show(r))
        assert r["answer"] == "mt_resPQ"
        # mtcute could go on with the exchange: it knows the TDLib key the fake DC lists and pq
        # (0x17ED48941A08F981) factors into the two primes it should.
        assert r["known_key"] == "d09d1d85de64fd85", (u.kind, r["fingerprints"])
        assert sorted(int(x, 16) for x in r["pq_factors"]) == [0x494C553B, 0x53911073]
        assert px.failures_for(r["client_port"]) == [], (u.kind, px.failures())
    inits = [e for e in fakedc.snapshot() if e["ev"] == "init"]
    assert sorted(e["tag"] for e in inits) == sorted(TAG[k] for k in KINDS), inits
    assert {e["dc"] for e in inits} == {2}
    assert len(fakedc.received("req_pq_multi")) == 3
    px.assert_no_secrets()


@pytest.mark.parametrize("kind", KINDS)
def test_mtcute_auth_reaches_req_dh_params(kind, proxy_factory, fakedc, tls_cover):
    """mtcute's own client starts the auth key exchange with DC 4 through the proxy: the fake DC
    receives req_pq_multi and then req_DH_params on the same connection."""
    u = User("m_" + kind, kind)
    px = proxy_factory([u], mask=tls_cover.addr)
    r = mtcute_req_pq(px.host, px.port, u.client_secret, dc=4, mode="auth", timeout=20)
    assert r["ok"] and r["received_res_pq"] and r["sent_req_dh_params"], _show(r)
    evs = fakedc.wait_for(lambda ev: any(e["ev"] == "message" and e["name"] == "req_DH_params"
                                         for e in ev), 10)
    msgs = [e for e in evs if e["ev"] == "message"]
    names = [e["name"] for e in msgs]
    assert "req_DH_params" in names, (names, _show(r))
    dh = next(e for e in msgs if e["name"] == "req_DH_params")
    first = [e["name"] for e in msgs if e["conn"] == dh["conn"]]
    assert first[:2] == ["req_pq_multi", "req_DH_params"], first
    assert dh["dc"] == 4 and dh["tag"] == TAG[kind], dh
    assert [(c, x) for c, x in px.failures() if x not in {"timeout", "malformed"}] == []


@pytest.mark.parametrize("kind", KINDS)
def test_mtcute_wrong_secret_gets_no_res_pq(kind, proxy_factory, fakedc, tls_cover):
    """A secret the proxy does not know: no resPQ, nothing reaches the DC, the proxy logs
    bad_secret (and fronts the connection: for ee, mtcute sees the cover server's real TLS
    answer, whose HMAC cannot verify)."""
    u = User("m_" + kind, kind)
    px = proxy_factory([u], mask=tls_cover.addr)
    wrong = User("wrong", kind)
    r = mtcute_req_pq(px.host, px.port, wrong.client_secret, timeout=8)
    assert not r["ok"] and not r["nonce_matches"] and r["rc"] == 1, _show(r)
    assert r.get("answer") is None, r
    if kind == "ee":
        assert "Response hash is invalid" in (r["error"] or ""), _show(r)
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == [], "a wrong secret reached the DC"
    assert any(x == "bad_secret" for _c, x in px.wait_failure(reason="bad_secret")), px.failures()
