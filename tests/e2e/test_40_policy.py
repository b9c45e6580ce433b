"""Per-user policy: disabled users, which transports each secret kind may use, allow_any_transport,
and the first run that creates a config."""

import os
import re
import stat
import subprocess

import pytest

import mtp
from conftest import BIN
from helpers import (User, fake_tls_attempt, listening, probe, stop_group, tdlib, telethon_many, telethon_one,
                     wait_until)

REFUSED_DISABLED = {"user_disabled", "bad_secret"}


def test_disabled_user_cannot_connect(proxy_factory, fakedc, echo_mask):
    alice = User("alice", "classic")
    carol = User("carol", "classic", enabled=False)
    dora = User("dora", "dd", enabled=False)
    erin = User("erin", "ee", enabled=False)
    px = proxy_factory([alice, carol, dora, erin], mask=echo_mask.addr)

    assert mtp.obfs2_req_pq(px.host, px.port, alice.key, mtp.TAG_INTERMEDIATE).res_nonce

    for u, tag in ((carol, mtp.TAG_INTERMEDIATE), (carol, mtp.TAG_ABRIDGED), (dora, mtp.TAG_PADDED)):
        wire, enc, _ = mtp.make_init(tag, 2, u.key)
        data = wire + enc(mtp.encode_frame(tag, mtp.req_pq_multi(os.urandom(16))))
        got, cport = probe(px.host, px.port, data)
        assert got == data, "disabled user %s was not sent to the mask host" % u.name
        lines = px.wait_failure(cport)
        assert lines and lines[0][1] in REFUSED_DISABLED, (u.name, lines)

    hello = mtp.build_client_hello(erin.key, erin.domain)
    got, cport = probe(px.host, px.port, hello)
    assert got == hello, "disabled ee user was not sent to the mask host"
    lines = px.wait_failure(cport)
    assert lines and lines[0][1] in REFUSED_DISABLED, lines

    assert sum(e["ev"] == "init" for e in fakedc.snapshot()) == 1  # alice only
    px.assert_no_secrets()


def test_disabled_user_tdlib(proxy_factory, fakedc, tls_cover):
    erin = User("erin", "ee", enabled=False)
    px = proxy_factory([erin], mask=tls_cover.addr)
    r = tdlib(px.host, px.port, erin.client_secret, "ping", timeout=20)
    assert r["result"]["@type"] != "seconds", r
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []


def test_dd_user_with_plain_intermediate_is_refused(proxy_factory, fakedc, echo_mask, tls_cover):
    """A dd user reached with the classic secret form (intermediate / abridged framing)."""
    dave = User("dave", "dd")
    px = proxy_factory([dave], mask=echo_mask.addr)
    for tag in (mtp.TAG_INTERMEDIATE, mtp.TAG_ABRIDGED):
        wire, enc, _ = mtp.make_init(tag, 2, dave.key)
        data = wire + enc(mtp.encode_frame(tag, mtp.req_pq_multi(os.urandom(16))))
        got, cport = probe(px.host, px.port, data)
        assert got == data
        lines = px.wait_failure(cport)
        assert [r for _c, r in lines] == ["bad_transport"], lines
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []

    # Telethon with the plain secret against a proxy fronting to the TLS cover: refused.
    px2 = proxy_factory([dave], mask=tls_cover.addr)
    r = telethon_one(host=px2.host, port=px2.port, secret=dave.secret, codec="intermediate")
    assert not r.ok, "dd user reachable with plain intermediate framing"
    assert r.client_port and [x for _c, x in px2.wait_failure(r.client_port)] == ["bad_transport"]
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []


def test_ee_user_with_plain_obfuscated2_is_refused(proxy_factory, fakedc, echo_mask, tls_cover):
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=echo_mask.addr)
    for tag in (mtp.TAG_PADDED, mtp.TAG_INTERMEDIATE, mtp.TAG_ABRIDGED):
        wire, enc, _ = mtp.make_init(tag, 2, bob.key)
        data = wire + enc(mtp.encode_frame(tag, mtp.req_pq_multi(os.urandom(16))))
        got, cport = probe(px.host, px.port, data)
        assert got == data
        lines = px.wait_failure(cport)
        assert [r for _c, r in lines] == ["bad_transport"], (tag.hex(), lines)
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []

    # Telethon drops the ee prefix and the domain: plain obfuscated2, refused.
    px2 = proxy_factory([bob], mask=tls_cover.addr)
    res = telethon_many([dict(host=px2.host, port=px2.port, secret=bob.client_secret, codec="randomized"),
                         dict(host=px2.host, port=px2.port, secret=bob.client_secret, codec="intermediate")])
    assert not any(r.ok for r in res), "ee user reachable without fake-TLS"
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []


def test_ee_inner_tag_must_be_padded(proxy_factory, fakedc, echo_mask):
    """Inside fake-TLS only the padded intermediate tag is a valid client (docs/protocol.md §2.6)."""
    bob = User("bob", "ee")
    px = proxy_factory([bob], mask=echo_mask.addr)
    c = mtp.FakeTlsClient(px.host, px.port, bob.key, bob.domain)
    try:
        hello = mtp.build_client_hello(bob.key, bob.domain)
        assert mtp.verify_server_flight(c.handshake(hello), hello[11:43], bob.key)
        with pytest.raises((ConnectionError, TimeoutError, OSError, ValueError)):
            c.req_pq(tag=mtp.TAG_ABRIDGED)
    finally:
        c.close()
    assert [e for e in fakedc.snapshot() if e["ev"] == "init"] == []
    assert px.wait_failure(c.client_port), px.failures()


def test_allow_any_transport(proxy_factory, fakedc, tls_cover):
    """allow_any_transport = true: every user through every transport."""
    alice, dave, bob = User("alice", "classic"), User("dave", "dd"), User("bob", "ee")
    px = proxy_factory([alice, dave, bob], mask=tls_cover.addr, allow_any_transport=True)
    res = telethon_many([
        dict(host=px.host, port=px.port, secret=dave.secret, codec="intermediate"),
        dict(host=px.host, port=px.port, secret=dave.secret, codec="abridged"),
        dict(host=px.host, port=px.port, secret=alice.secret, codec="randomized"),
        dict(host=px.host, port=px.port, secret=bob.secret, codec="randomized"),
        dict(host=px.host, port=px.port, secret=bob.secret, codec="intermediate"),
    ])
    for r in res:
        assert r.ok and r.nonce_matches, r.error
    for u in (alice, dave):
        ok, _cport, err = fake_tls_attempt(px.host, px.port, u.key, "cover.test")
        assert ok, (u.kind, err)
    assert px.failures() == []


def test_first_run_creates_config(tmp_path, fakedc):
    """`serve` with a missing config creates it (one user `default`, kind dd, mode 0600), prints
    the links, and serves the printed secret."""
    cfg = tmp_path / "conf" / "config.toml"
    cfg.parent.mkdir()
    log = tmp_path / "first.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen([str(BIN), "serve", "--config", str(cfg),
                                 "--dc-override", "*=127.0.0.1:%d" % fakedc.port],
                                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                env=dict(os.environ, NO_COLOR="1"), start_new_session=True)
    try:
        link_re = re.compile(r"proxy\?server=([^&\s]+)&port=(\d+)&secret=([0-9a-fA-F]+)")
        m = wait_until(lambda: link_re.search(log.read_text(errors="replace")) or proc.poll() is not None, 20)
        m = link_re.search(log.read_text(errors="replace"))
        assert m, "no proxy link printed:\n%s" % log.read_text(errors="replace")
        assert cfg.exists()
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
        text = cfg.read_text()
        assert re.search(r"\[users\.\"?default\"?\]", text), text
        assert re.search(r'kind\s*=\s*"dd"', text), text
        port, secret = int(m.group(2)), m.group(3).lower()
        assert secret.startswith("dd") and len(secret) == 34, secret
        assert secret[2:] in text.lower()
        assert wait_until(lambda: listening(port), 10), "printed port %d is not listening" % port
        r = mtp.obfs2_req_pq("127.0.0.1", port, bytes.fromhex(secret[2:]), mtp.TAG_PADDED)
        assert r.res_nonce == r.nonce
    finally:
        stop_group(proc)
