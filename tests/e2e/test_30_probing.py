"""Active-probing resistance (docs/protocol.md §4.9): whatever fails the handshake is spliced, unchanged, to the
mask host, and each failure writes exactly one `handshake failed client=IP:PORT reason=R` line."""

import os
import socket
import ssl
import time

import pytest

import mtp
from helpers import User, probe, s_client_cert_fingerprint


def one_failure(px, client_port, reason, timeout=8.0):
    """Exactly one failure line for this client port, with this reason."""
    lines = px.wait_failure(client_port, None, timeout)
    assert lines, "no 'handshake failed client=...:%d' line; failures so far: %s" % (client_port, px.failures())
    time.sleep(0.5)  # a duplicate line would show up by now
    lines = px.failures_for(client_port)
    assert [r for _c, r in lines] == [reason], lines
    assert lines[0][0] == "127.0.0.1:%d" % client_port


def random_probe_bytes(n):
    while True:
        b = os.urandom(n)
        if b[0] != 0x16:  # not a TLS handshake record
            return b


@pytest.fixture
def ee_proxy(proxy_factory, echo_mask):
    bob = User("bob", "ee")
    alice = User("alice", "classic")
    return proxy_factory([alice, bob], mask=echo_mask.addr)


# --------------------------------------------------------------------------- TLS stand-in

@pytest.mark.parametrize("servername", ["cover.test", None])
def test_s_client_sees_cover_certificate(servername, proxy_factory, tls_cover):
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=tls_cover.addr)
    fp = s_client_cert_fingerprint(px.host, px.port, servername)
    assert fp == tls_cover.fingerprint
    assert px.wait_failure(), "the probe left no 'handshake failed' line"
    px.assert_no_secrets()


def test_full_tls_session_to_cover_through_proxy(proxy_factory, tls_cover):
    """A real TLS client (Python ssl, verifying the cover certificate and host name) completes a
    handshake and an HTTP exchange with the cover server through the proxy."""
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=tls_cover.addr)
    ctx = ssl.create_default_context(cafile=str(tls_cover.cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection((px.host, px.port), 10) as raw:
        raw.settimeout(10)
        with ctx.wrap_socket(raw, server_hostname="cover.test") as t:
            import hashlib
            assert hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest() == tls_cover.fingerprint
            t.sendall(b"GET / HTTP/1.0\r\nHost: cover.test\r\n\r\n")
            body = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    d = t.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not d:
                    break
                body += d
    assert body.startswith(b"HTTP/1.0 200 ok"), body[:200]
    assert b"s_server" in body


def test_replay_to_tls_cover_gets_real_server_hello(proxy_factory, fakedc, tls_cover):
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=tls_cover.addr)
    r, hello, _flight = mtp.fake_tls_req_pq(px.host, px.port, bob.key, bob.domain)
    assert r.res_nonce == r.nonce
    got, cport = probe(px.host, px.port, hello, want=200, timeout=8)
    assert got[:3] == b"\x16\x03\x03" and got[5] == 0x02, got[:16].hex()  # the cover's ServerHello
    assert got[44:76] == hello[44:76]  # TLS 1.3 echoes the session id
    assert not mtp.verify_server_flight(got, hello[11:43], bob.key)
    one_failure(px, cport, "replay")


# --------------------------------------------------------------------------- byte-exact echo stand-in

def test_random_bytes_are_fronted_byte_exact(ee_proxy, echo_mask, fakedc):
    data = random_probe_bytes(300)
    got, cport = probe(ee_proxy.host, ee_proxy.port, data)
    assert got == data
    assert echo_mask.saw(data)
    one_failure(ee_proxy, cport, "bad_secret")
    assert [e for e in fakedc.snapshot() if e["ev"] == "connect"] == []
    ee_proxy.assert_no_secrets()


def test_http_request_is_fronted_byte_exact(ee_proxy, echo_mask):
    data = (b"GET / HTTP/1.1\r\nHost: cover.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
            b"Accept: */*\r\n\r\n")
    assert len(data) > 64
    got, cport = probe(ee_proxy.host, ee_proxy.port, data)
    assert got == data
    one_failure(ee_proxy, cport, "bad_secret")


def test_wrong_secret_obfuscated2_is_fronted(ee_proxy, echo_mask):
    wire, enc, _ = mtp.make_init(mtp.TAG_INTERMEDIATE, 2, os.urandom(16))
    data = wire + enc(mtp.encode_frame(mtp.TAG_INTERMEDIATE, mtp.req_pq_multi(os.urandom(16))))
    got, cport = probe(ee_proxy.host, ee_proxy.port, data)
    assert got == data
    one_failure(ee_proxy, cport, "bad_secret")
    ee_proxy.assert_no_secrets()


def test_wrong_secret_fake_tls_is_fronted(ee_proxy, echo_mask):
    hello = mtp.build_client_hello(os.urandom(16), "cover.test")
    got, cport = probe(ee_proxy.host, ee_proxy.port, hello)
    assert got == hello
    assert echo_mask.saw(hello)
    one_failure(ee_proxy, cport, "bad_secret")


def test_replayed_hello_is_fronted_byte_exact(ee_proxy, echo_mask, fakedc):
    bob = ee_proxy.user("bob")
    hello = mtp.build_client_hello(bob.key, bob.domain)
    r, _, flight = mtp.fake_tls_req_pq(ee_proxy.host, ee_proxy.port, bob.key, bob.domain, hello=hello)
    assert r.res_nonce == r.nonce
    assert mtp.verify_server_flight(flight, hello[11:43], bob.key)
    got, cport = probe(ee_proxy.host, ee_proxy.port, hello)
    assert got == hello, "replayed hello was not spliced to the mask host unchanged"
    assert echo_mask.saw(hello)
    one_failure(ee_proxy, cport, "replay")
    assert len(fakedc.received("req_pq_multi")) == 1
    ee_proxy.assert_no_secrets()


def test_hello_split_across_segments_is_accepted(ee_proxy, fakedc):
    """The ClientHello may arrive in several TCP segments (docs/protocol.md §4.1)."""
    bob = ee_proxy.user("bob")
    hello = mtp.build_client_hello(bob.key, bob.domain)
    c = mtp.FakeTlsClient(ee_proxy.host, ee_proxy.port, bob.key, bob.domain)
    try:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(hello), 100):
            c.sock.sendall(hello[i:i + 100])
            time.sleep(0.02)
        flight = c.read_flight()
        assert mtp.verify_server_flight(flight, hello[11:43], bob.key)
        r = c.req_pq()
        assert r.res_nonce == r.nonce
    finally:
        c.close()


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_clock_skew_is_fronted(offset, ee_proxy, echo_mask):
    bob = ee_proxy.user("bob")
    hello = mtp.build_client_hello(bob.key, bob.domain, ts=int(time.time()) + offset)
    got, cport = probe(ee_proxy.host, ee_proxy.port, hello)
    assert got == hello
    one_failure(ee_proxy, cport, "clock_skew")


def test_clock_within_window_is_accepted(ee_proxy, fakedc):
    """-300 s is inside max_clock_skew = 20m."""
    bob = ee_proxy.user("bob")
    hello = mtp.build_client_hello(bob.key, bob.domain, ts=int(time.time()) - 300)
    r, _, _ = mtp.fake_tls_req_pq(ee_proxy.host, ee_proxy.port, bob.key, bob.domain, hello=hello)
    assert r.res_nonce == r.nonce


def test_foreign_sni_is_fronted(ee_proxy, echo_mask):
    bob = ee_proxy.user("bob")
    hello = mtp.build_client_hello(bob.key, "other.test")
    got, cport = probe(ee_proxy.host, ee_proxy.port, hello)
    assert got == hello
    one_failure(ee_proxy, cport, "bad_sni")


def test_silent_connection_times_out(proxy_factory, echo_mask):
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=echo_mask.addr, timeouts={"handshake": "1s"})
    s = mtp.connect(px.host, px.port)
    try:
        cport = s.getsockname()[1]
        lines = px.wait_failure(cport, "timeout", timeout=6)
        assert lines, px.failures()
    finally:
        s.close()
    time.sleep(0.3)
    assert [r for _c, r in px.failures_for(cport)] == ["timeout"]


def test_fronting_disabled_closes_without_mask(proxy_factory, echo_mask):
    """With [fronting] enabled = false a bad client is not spliced anywhere."""
    alice = User("alice", "classic")
    px = proxy_factory([alice], mask=echo_mask.addr, fronting=False)
    before = echo_mask.connections()
    data = random_probe_bytes(200)
    got, cport = probe(px.host, px.port, data, timeout=3)
    assert got == b""
    assert echo_mask.connections() == before
    one_failure(px, cport, "bad_secret")


def test_failure_lines_never_carry_secrets(proxy_factory, echo_mask, fakedc):
    """A mix of good and bad clients; the whole proxy output holds no secret in hex."""
    users = [User("alice", "classic"), User("dave", "dd"), User("bob", "ee")]
    px = proxy_factory(users, mask=echo_mask.addr)
    for u in users:
        if u.kind == "ee":
            r = mtp.fake_tls_req_pq(px.host, px.port, u.key, u.domain)[0]
        else:
            tag = mtp.TAG_PADDED if u.kind == "dd" else mtp.TAG_ABRIDGED
            r = mtp.obfs2_req_pq(px.host, px.port, u.key, tag)
        assert r.res_nonce == r.nonce
    probe(px.host, px.port, random_probe_bytes(100))
    probe(px.host, px.port, mtp.build_client_hello(os.urandom(16), "cover.test"))
    wire, _, _ = mtp.make_init(mtp.TAG_INTERMEDIATE, 2, users[1].key)  # dd user, wrong transport
    probe(px.host, px.port, wire)
    assert len(px.wait_failure(None, None, 5)) >= 1
    time.sleep(0.5)
    assert len(px.failures()) == 3, px.failures()
    px.assert_no_secrets()
    # Nothing else that identifies a key either: the 16 raw bytes in base64 forms.
    import base64
    text = px.log()
    for u in users:
        for enc in (base64.b64encode(u.key).decode().rstrip("="),
                    base64.urlsafe_b64encode(u.key).decode().rstrip("=")):
            assert enc not in text
