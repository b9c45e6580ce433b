"""The proxy side by side with its cover site (docs/indistinguishability.md).

A prober records what a server answers and when. For each of three real covers — openssl
s_server with a one-certificate chain, nginx from Debian with a two-certificate chain from a CA
made here, and nginx with a ~13 KB chain — the proxy learns the cover's TLS flight, and:

* its fake-TLS flight for a TDLib-shaped ClientHello has the cover's ServerHello length, JA3S
  and key-share group, a ChangeCipherSpec, and encrypted bytes within the cover's own
  run-to-run range (in one record: every client verifies exactly one, test_36_one_record.py),
  with a key share that is a real curve point; TDLib and mtcute connect through every shape;
* every probe (TLS without secret, HTTP GET/POST/CONNECT, random bytes, a TLS garbage record,
  a replayed hello, unknown and missing SNI) gets the cover's own answer, its first byte within
  50 ms of the cover's;
* nDPI gives the ee session no risk that the same ClientHello straight to the cover does not get.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

import mtp
from covers import make_chain, start_nginx, start_s_server
from helpers import User, tdlib, wait_until
from mtcute_client import mtcute_req_pq
from tlsshape import Flight, answer, on_curve25519, read_flight, records, tdlib_like_hello

DOMAIN = "cover.test"
SAMPLES = 5


@pytest.fixture(scope="module")
def covers(tmp_path_factory):
    base = tmp_path_factory.mktemp("covers")
    one = make_chain(base / "one", DOMAIN)
    two = make_chain(base / "two", DOMAIN)
    big = make_chain(base / "big", DOMAIN, extra_names=520)
    started = {
        "s_server": start_s_server(base / "one", one),
        "nginx": start_nginx(base / "two", two, DOMAIN),
        "nginx-13k": start_nginx(base / "big", big, DOMAIN),
    }
    yield started
    for c in started.values():
        c.stop()


def learned(px, domain=DOMAIN, timeout=30.0) -> dict:
    """The proxy's cover cache entry for `domain`, once it has learned it."""
    path = Path(str(px.config) + ".covers")

    def entry():
        try:
            return json.loads(path.read_text())["covers"].get(domain)
        except (OSError, ValueError, KeyError):
            return None
    e = wait_until(entry, timeout)
    assert e, "the proxy did not learn %s within %ss; log:\n%s" % (domain, timeout, px.log()[-3000:])
    return e


def emulated_flight(px, user: User, apple: bool) -> Flight:
    """A fake-TLS session with a TDLib-shaped hello: the flight verifies (HMAC) and the session
    carries a req_pq_multi round trip to the fake DC."""
    hello = tdlib_like_hello(user.domain, secret=user.key, apple=apple)
    c = mtp.FakeTlsClient(px.host, px.port, user.key, user.domain, 10)
    try:
        flight = c.handshake(hello)
        assert mtp.verify_server_flight(flight, hello[11:43], user.key), "the shaped flight does not verify"
        r = c.req_pq()
        assert r.res_nonce == r.nonce
    finally:
        c.close()
    return Flight(flight, records(flight))


@pytest.mark.parametrize("name", ["s_server", "nginx", "nginx-13k"])
def test_flight_has_the_covers_shape(name, covers, proxy_factory):
    cover = covers[name]
    bob = User("bob", "ee", domain=DOMAIN)
    px = proxy_factory([bob], mask=cover.addr)
    entry = learned(px)
    assert entry["target"] == cover.addr
    for apple in (False, True):
        ref = [read_flight(cover.host, cover.port, tdlib_like_hello(DOMAIN, apple=apple)) for _ in range(SAMPLES)]
        ours = [emulated_flight(px, bob, apple) for _ in range(SAMPLES)]
        kind = "apple" if apple else "default"
        for f in ref:
            assert f.types[0] == 0x16 and 0x17 in f.types, "%s did not answer TLS 1.3: %s" % (name, f.records)
        for f in ours:
            assert f.types == [0x16, 0x14, 0x17], f.records
        assert {f.records[0][1] for f in ours} == {f.records[0][1] for f in ref}, "ServerHello length (%s)" % kind
        assert {f.ja3s() for f in ours} == {f.ja3s() for f in ref}, "JA3S (%s)" % kind
        assert {f.key_share()[0] for f in ours} == {f.key_share()[0] for f in ref}, "key share group (%s)" % kind
        assert all(on_curve25519(f.key_share()[1][-32:]) for f in ours), "an x25519 share off the curve"
        assert (0x14 in ref[0].types) == (0x14 in ours[0].types), "ChangeCipherSpec"
        lo, hi = min(f.encrypted_total for f in ref), max(f.encrypted_total for f in ref)
        got = sorted(f.encrypted_total for f in ours)
        assert lo <= got[0] and got[-1] <= hi, "%s %s: encrypted bytes %s outside the cover's %d..%d" % (name, kind, got, lo, hi)
        # For docs/indistinguishability.md (shown with pytest -s).
        print("\nSHAPE %s/%s cover %s %s | proxy %s %s | encrypted cover %d..%d proxy %s" % (
            name, kind, ref[0].records, ref[0].ja3s(), ours[0].records, ours[0].ja3s(), lo, hi, got))
    if name == "nginx-13k":
        assert 12_000 <= ref[0].encrypted_total <= 16_000, "the big chain is %d bytes" % ref[0].encrypted_total
    r = tdlib(px.host, px.port, bob.client_secret)
    assert r["ok"], "TDLib through the %s shape: %s" % (name, r)
    m = mtcute_req_pq(px.host, px.port, bob.client_secret)
    assert m["ok"] and m["nonce_matches"], "mtcute through the %s shape: %s" % (name, m)
    px.assert_no_secrets()


def test_without_emulation_a_prober_tells_the_flight_apart(covers, proxy_factory):
    """The control of the test above: with `emulate_cover = false` the flight is the generic one
    of docs/protocol.md §4.7, and the same comparison sees it (so the comparison is not vacuous)."""
    cover = covers["nginx"]
    bob = User("bob", "ee", domain=DOMAIN)
    px = proxy_factory([bob], mask=cover.addr, fake_tls={"emulate_cover": "false"})
    ref = read_flight(cover.host, cover.port, tdlib_like_hello(DOMAIN))
    ours = emulated_flight(px, bob, apple=False)
    assert ours.ja3s() == "771,4865,51-43" != ref.ja3s() == "771,4865,43-51"
    assert 2500 + 5 <= ours.encrypted_total < 4700 + 5 and ours.encrypted_total != ref.encrypted_total
    time.sleep(1)
    assert not Path(str(px.config) + ".covers").exists(), "nothing is learned when emulation is off"


def _random(n: int) -> bytes:
    while True:
        b = os.urandom(n)
        # Not a TLS handshake record start: those wait for the rest, as the cover does.
        if b[0] != 0x16:
            return b


def probes(user: User) -> dict[str, bytes]:
    return {
        "tls-without-secret": tdlib_like_hello(DOMAIN),
        "tls-unknown-sni": tdlib_like_hello("unknown.test"),
        "tls-no-sni": tdlib_like_hello(None),
        "http-get": b"GET / HTTP/1.1\r\nHost: cover.test\r\n\r\n",
        "http-post": b"POST /login HTTP/1.1\r\nHost: cover.test\r\nContent-Length: 5\r\n\r\nhello",
        "http-connect": b"CONNECT cover.test:443 HTTP/1.1\r\nHost: cover.test:443\r\n\r\n",
        "random-1": _random(1),
        "random-20": _random(20),
        "random-63": _random(63),
        "random-64": _random(64),
        "random-1000": _random(1000),
        "tls-garbage-record": b"\x16\x03\x01\x00\x40\x99" + os.urandom(63),
    }


DATE = re.compile(rb"\r\nDate: [^\r]*")


def shape(a) -> object:
    """What must be equal between cover and proxy: TLS answers by record types and lengths
    (their bytes are fresh randoms), anything else byte for byte but the HTTP Date."""
    recs = records(a.data)
    if a.data[:1] in (b"\x15", b"\x16") and recs:
        return ("tls", recs)
    return ("bytes", DATE.sub(b"\r\nDate: -", a.data))


def compare(name: str, cover, px, data: bytes, runs: int = 3):
    ref = [answer(cover.host, cover.port, data) for _ in range(runs)]
    ours = [answer(px.host, px.port, data) for _ in range(runs)]
    assert shape(ours[0]) == shape(ref[0]), "%s: proxy answered %r, the cover %r" % (name, ours[0].data[:120], ref[0].data[:120])
    for what in ("first_byte", "closed"):
        r = [getattr(a, what) for a in ref]
        o = [getattr(a, what) for a in ours]
        assert (None in r) == (None in o), "%s: %s cover %s proxy %s" % (name, what, r, o)
        if None not in r:
            delta = abs(statistics.median(o) - statistics.median(r))
            print("\nTIMING %s %s cover %.1f ms proxy %.1f ms" % (name, what, statistics.median(r) * 1000, statistics.median(o) * 1000))
            assert delta <= 0.050, "%s: %s differs by %.0f ms (cover %s, proxy %s)" % (name, what, delta * 1000, r, o)
    return ref, ours


def test_every_probe_gets_the_covers_answer_with_its_timing(covers, proxy_factory):
    cover = covers["nginx"]
    bob = User("bob", "ee", domain=DOMAIN)
    px = proxy_factory([bob], mask=cover.addr)
    learned(px)
    results = {}
    for name, data in probes(bob).items():
        results[name] = compare(name, cover, px, data)
    # A replayed valid hello: the proxy answers it once (the client's own session) and fronts
    # the replay, which then gets exactly what the cover answers that hello.
    hello = tdlib_like_hello(DOMAIN, secret=bob.key)
    first = answer(px.host, px.port, hello, window=1.0)
    assert records(first.data)[:3] and records(first.data)[2][0] == 0x17, "the original hello was not answered"
    compare("replayed-valid-hello", cover, px, hello)
    assert px.failures(), "probes left no failed-handshake line"
    # The answers are what nginx gives: 400 to plain HTTP, an alert to an unknown name.
    assert results["http-get"][0][0].data.startswith(b"HTTP/1.1 400 Bad Request")
    assert records(results["tls-unknown-sni"][0][0].data)[0][0] == 0x15
    px.assert_no_secrets()


def test_mixed_kinds_front_impossible_openings_at_once_and_wait_for_partial_inits(proxy_factory, echo_mask):
    """With classic and dd users too, a short opening that may still become an obfuscated2 init
    waits for the handshake timeout; one that cannot (a forbidden first word, a request line, a
    decode that fails) is fronted at once."""
    users = [User("c", "classic"), User("d", "dd"), User("e", "ee")]
    px = proxy_factory(users, mask=echo_mask.addr, timeouts={"handshake": "2s"})
    for data in [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xef" + os.urandom(10), b"CONNECT a:443 HTTP/1.1\r\n\r\n",
                 b"\x16\x03\x01\x00\x05\x99abcd", _random(64)]:
        a = answer(px.host, px.port, data, window=1.5)
        assert a.first_byte is not None and a.first_byte < 0.3, "%r was not fronted at once: %s" % (data[:16], a)
        assert a.data == data, "the mask host (echo) did not get the bytes unchanged"
    partial = b"\x5a\x91\x07\xc3\x44\x18\xfe\x02" + os.urandom(12)
    a = answer(px.host, px.port, partial, window=4.0)
    assert a.first_byte is not None and 1.8 <= a.first_byte <= 3.5, "partial init answered after %s" % a.first_byte
    assert a.data == partial


# --------------------------------------------------------------------------- nDPI

def ndpi_risks(pcap: Path) -> dict[int, set[str]]:
    """Risks nDPI (ndpiReader from libndpi-bin) reports per flow, by the flow's server port."""
    out = subprocess.run(["ndpiReader", "-i", str(pcap), "-v", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    flows = {}
    for line in out.stdout.splitlines():
        m = re.search(r"TCP \S+:(\d+) <-> \S+:(\d+) ", line)
        if not m:
            continue
        risks = set()
        r = re.search(r"\[Risk: ([^\]]*)\]", line)
        if r:
            risks = {x.strip() for x in r.group(1).split("**") if x.strip()}
        proto = re.search(r"\[proto: [^\]]*\]", line)
        flows.setdefault(int(m.group(2)), (set(), []))[0].update(risks)
        flows[int(m.group(2))][1].append(proto.group(0) if proto else "?")
    return {p: v[0] for p, v in flows.items()}, {p: v[1] for p, v in flows.items()}, out.stdout


def test_ndpi_gives_ee_no_risk_the_cover_does_not_get(covers, proxy_factory, tmp_path):
    cover = covers["nginx"]
    bob = User("bob", "ee", domain=DOMAIN)
    px = proxy_factory([bob], mask=cover.addr)
    learned(px)
    pcap = tmp_path / "capture.pcap"
    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-w", str(pcap), "-f", "tcp port %d or tcp port %d" % (px.port, cover.port)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert wait_until(lambda: pcap.exists() and pcap.stat().st_size > 0, 15), "dumpcap did not start"
        time.sleep(0.5)
        for _ in range(3):
            emulated_flight(px, bob, apple=False)
            read_flight(cover.host, cover.port, tdlib_like_hello(DOMAIN))
        time.sleep(0.5)
    finally:
        os.killpg(cap.pid, signal.SIGINT)
        cap.wait(15)
    risks, protos, text = ndpi_risks(pcap)
    assert px.port in risks and cover.port in risks, "flows not found in nDPI output:\n%s" % text[-3000:]
    assert all("TLS" in p for p in protos[px.port]), "the ee flow is not classified as TLS: %s" % protos[px.port]
    print("\nNDPI ee %s %s | cover %s %s" % (protos[px.port][0], sorted(risks[px.port]), protos[cover.port][0], sorted(risks[cover.port])))
    extra = risks[px.port] - risks[cover.port]
    assert not extra, "nDPI flags the ee session with %s that the cover does not get (cover: %s)" % (extra, risks[cover.port])
