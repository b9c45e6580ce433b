"""Real clients (TDLib, Telethon) and our own fake-TLS client through the proxy to the fake DC."""

import os
import secrets
import socket
import time

import pytest

import mtp
from helpers import User, tdlib, tdlib_many, telethon_many


def test_telethon_all_framings(proxy_factory, fakedc):
    """Telethon's MTProxy connections get a ResPQ with their nonce through the proxy:
    abridged and intermediate with a classic user, randomized intermediate with a dd user."""
    alice, dave = User("alice", "classic"), User("dave", "dd")
    px = proxy_factory([alice, dave])
    cases = [dict(host=px.host, port=px.port, secret=alice.client_secret, codec="abridged"),
             dict(host=px.host, port=px.port, secret=alice.client_secret, codec="intermediate"),
             dict(host=px.host, port=px.port, secret=dave.client_secret, codec="randomized")]
    res = telethon_many(cases)
    for c, r in zip(cases, res):
        assert r.ok and r.nonce_matches, (c["codec"], r.error)
    # Direct mode relays the framing unchanged, so the DC must see the client's tag (docs/protocol.md §2.7).
    tags = sorted(e["tag"] for e in fakedc.snapshot() if e["ev"] == "init")
    assert tags == ["abridged", "intermediate", "padded"]
    assert len(fakedc.received("req_pq_multi")) == 3
    for r in res:
        assert px.failures_for(r.client_port) == []
    px.assert_no_secrets()


def test_telethon_cuts_a_leading_dd_off_a_classic_secret(proxy_factory, fakedc, tls_cover):
    """Why the proxy never generates a secret whose first byte is 0xdd or 0xee
    (config::generate_secret): a classic secret is written as 32 plain hex characters, and
    Telethon 1.45 takes a leading `dd`/`ee` for the padded or fake-TLS prefix and cuts it off,
    so it refuses such a secret, while TDLib reads it by its length and connects."""
    odd = User("odd", "classic", secret="dd" + secrets.token_hex(15))
    px = proxy_factory([odd], mask=tls_cover.addr)
    r = telethon_many([dict(host=px.host, port=px.port, secret=odd.client_secret, codec="abridged")])[0]
    assert not r.ok and "16 bytes" in (r.error or ""), r.error
    t = tdlib(host=px.host, port=px.port, secret=odd.client_secret, action="ping")
    assert t["ok"] and t["result"]["@type"] == "seconds", t


def test_telethon_many_packets_one_connection(proxy_factory, fakedc):
    """50 req_pq_multi in one padded-intermediate connection, written in odd-sized chunks, all
    answered in order: the CTR streams and the relay keep state across packets and reads."""
    dave = User("dave", "dd")
    px = proxy_factory([dave])
    s = mtp.connect(px.host, px.port)
    try:
        wire, enc, dec = mtp.make_init(mtp.TAG_PADDED, 2, dave.key)
        nonces = [os.urandom(16) for _ in range(50)]
        stream = wire + enc(b"".join(mtp.encode_frame(mtp.TAG_PADDED, mtp.req_pq_multi(n)) for n in nonces))
        i = 0
        sizes = [1, 7, 63, 2, 64, 100, 5, 300]
        k = 0
        while i < len(stream):
            n = sizes[k % len(sizes)]
            s.sendall(stream[i:i + n])
            i += n
            k += 1
            time.sleep(0.002)
        fr = mtp.FrameReader(mtp.TAG_PADDED, server_side=False)
        got = []
        deadline = time.monotonic() + 15
        while len(got) < len(nonces) and time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = s.recv(65536)
            if not data:
                break
            got += [mtp.parse_res_pq(p)[0] for kind, p in fr.feed(dec(data)) if kind == "packet"]
    finally:
        s.close()
    assert got == nonces


def test_ipv4_and_ipv6_listeners(proxy_factory, fakedc):
    """Two listen addresses (v4 and v6) both serve clients."""
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback in this namespace")
    from helpers import free_port
    alice = User("alice", "classic")
    p4, p6 = free_port(), free_port("::1")
    px = proxy_factory([alice], listen=["127.0.0.1:%d" % p4, "[::1]:%d" % p6])
    r4 = mtp.obfs2_req_pq("127.0.0.1", p4, alice.key, mtp.TAG_INTERMEDIATE)
    r6 = mtp.obfs2_req_pq("::1", p6, alice.key, mtp.TAG_ABRIDGED)
    assert r4.res_nonce == r4.nonce and r6.res_nonce == r6.nonce
    assert px.proc.poll() is None


def test_fake_tls_session_own_client(proxy_factory, fakedc):
    """Our fake-TLS client: ServerHello flight verifies (docs/protocol.md §4.7), data phase works, DC sees dd."""
    bob = User("bob", "ee")
    px = proxy_factory([bob])
    r, hello, flight = mtp.fake_tls_req_pq(px.host, px.port, bob.key, bob.domain)
    assert r.res_nonce == r.nonce
    assert flight[:3] == b"\x16\x03\x03" and flight[44:76] == hello[44:76], "session id must be echoed"
    inits = [e for e in fakedc.snapshot() if e["ev"] == "init"]
    assert [e["tag"] for e in inits] == ["padded"]
    assert px.failures_for(r.client_port) == []


def test_fake_tls_large_and_sni_less_hellos(proxy_factory, fakedc):
    """A 1.8 KB hello (current clients) and a hello without SNI (iOS >= 12.2) are accepted."""
    bob = User("bob", "ee")
    px = proxy_factory([bob])
    big = mtp.build_client_hello(bob.key, bob.domain, total_len=1817)
    r1, _, _ = mtp.fake_tls_req_pq(px.host, px.port, bob.key, bob.domain, hello=big)
    r2, _, _ = mtp.fake_tls_req_pq(px.host, px.port, bob.key, None)
    assert r1.res_nonce == r1.nonce and r2.res_nonce == r2.nonce


def test_dc_override_specific_id(proxy_factory, fakedc_factory):
    """`--dc-override 2=...` beats `*=...`: DC 2 goes to one fake DC, DC 4 to the other."""
    dc_star, dc_two = fakedc_factory(), fakedc_factory()
    alice = User("alice", "classic")
    px = proxy_factory([alice], dc=dc_star, extra_args=["--dc-override", "2=127.0.0.1:%d" % dc_two.port])
    a = mtp.obfs2_req_pq(px.host, px.port, alice.key, mtp.TAG_INTERMEDIATE, dc=2)
    b = mtp.obfs2_req_pq(px.host, px.port, alice.key, mtp.TAG_INTERMEDIATE, dc=4)
    assert a.res_nonce == a.nonce and b.res_nonce == b.nonce
    assert len(dc_two.received("req_pq_multi")) == 1
    assert len(dc_star.received("req_pq_multi")) == 1


def test_config_from_env_and_dc_overrides_table(proxy_factory, fakedc):
    """VLESS_MTPROXY_CONFIG names the config; [dc_overrides] in the file routes to the fake DC."""
    alice = User("alice", "classic")
    px = proxy_factory([alice], config_via_env=True, dc_in_config=True)
    r = mtp.obfs2_req_pq(px.host, px.port, alice.key, mtp.TAG_ABRIDGED)
    assert r.res_nonce == r.nonce
    assert len(fakedc.received("req_pq_multi")) == 1


# --------------------------------------------------------------------------- TDLib

KINDS = ["classic", "dd", "ee"]
# TDLib opens and drops background connections on its own schedule (and at `close`), so a
# connection cut before its init may legitimately end as timeout/malformed; anything else from a
# client with the right secret is a proxy bug.
CLIENT_FAULT_REASONS = {"timeout", "malformed"}


def real_refusals(px):
    return [(c, r) for c, r in px.failures() if r not in CLIENT_FAULT_REASONS]


def test_tdlib_ping_each_kind(proxy_factory, fakedc, tls_cover):
    users = [User("u_" + k, k) for k in KINDS]
    px = proxy_factory(users, mask=tls_cover.addr)
    res = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping")
                      for u in users])
    for u, r in zip(users, res):
        assert r["ok"] and r["result"]["@type"] == "seconds", (u.kind, r)
        assert r["closed"], (u.kind, "TDLib did not reach authorizationStateClosed")
    tags = {e["tag"] for e in fakedc.snapshot() if e["ev"] == "init"}
    assert tags == {"intermediate", "padded"}, tags  # TDLib: classic -> intermediate; dd, ee -> padded
    assert len(fakedc.received("req_pq_multi")) >= 3
    assert real_refusals(px) == []
    px.assert_no_secrets()


@pytest.mark.parametrize("kind", KINDS)
def test_tdlib_test_proxy_reaches_req_dh_params(kind, proxy_factory, fakedc, tls_cover):
    """testProxy (dc 2) runs the real auth handshake: req_DH_params arriving at the fake DC means
    TDLib accepted our resPQ through the proxy (a full round trip both ways)."""
    u = User("u_" + kind, kind)
    px = proxy_factory([u], mask=tls_cover.addr)
    r = tdlib(px.host, px.port, u.client_secret, "test", dc=2, test_timeout=3, timeout=30)
    evs = fakedc.wait_for(lambda ev: any(e["ev"] == "message" and e["name"] == "req_DH_params"
                                         for e in ev), 10)
    names = [e["name"] for e in evs if e["ev"] == "message"]
    assert "req_DH_params" in names, (names, r)
    assert r["result"]["@type"] != "ok", "testProxy cannot succeed against a fake DC: %s" % r
    assert real_refusals(px) == []


@pytest.mark.parametrize("kind", KINDS)
def test_tdlib_wrong_secret_fails(kind, proxy_factory, fakedc, tls_cover):
    u = User("u_" + kind, kind)
    px = proxy_factory([u], mask=tls_cover.addr)
    wrong = User("wrong", kind)
    r = tdlib(px.host, px.port, wrong.client_secret, "ping", timeout=25)
    assert not r["ok"] and r["result"]["@type"] != "seconds", r
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == [], "a wrong secret reached the DC"
    assert any(reason == "bad_secret" for _c, reason in px.wait_failure(reason="bad_secret")), px.failures()
