"""Promoted channel: the middle-proxy (ME) path end to end with TDLib.

The proxy runs with an ad tag and a middle-proxy configuration (proxy secret + proxy-multi.conf
as local files) pointing at the test tree's fake middle-end (`fake-me`, built with the
workspace from crates/testkit). The fake middle-end completes the RPC handshake, unwraps every
RPC_PROXY_REQ, records the ad tag, flags and addresses, and answers req_pq_multi with a resPQ
that TDLib accepts (its key fingerprint listed), so testProxy goes on to req_DH_params.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import BIN
from helpers import User, tdlib, tdlib_many, wait_until

def _fake_me_bin() -> Path:
    """FAKE_ME_BIN, else next to the proxy binary, else the workspace's debug build."""
    if os.environ.get("FAKE_ME_BIN"):
        return Path(os.environ["FAKE_ME_BIN"])
    beside = BIN.parent / "fake-me"
    return beside if beside.exists() else Path(__file__).resolve().parents[2] / "target" / "debug" / "fake-me"


FAKE_ME = _fake_me_bin()
KINDS = ["classic", "dd", "ee"]

REQ_PQ_MULTI = 0xBE7E8EF1
REQ_DH_PARAMS = 0xD712E4BE
F_NOT_ENCRYPTED = 0x2
F_HAS_AD_TAG = 0x8
F_MAGIC = 0x1000
F_EXTMODE2 = 0x20000
F_INTERMEDIATE = 0x20000000
F_ABRIDGED = 0x40000000


class FakeMe:
    """The `fake-me` process; collects its JSON event lines."""

    def __init__(self, workdir: Path, proxy_secret: bytes):
        if not FAKE_ME.exists():
            pytest.fail("%s not built (`cargo build --workspace` builds it from crates/testkit)" % FAKE_ME)
        self.secret_file = workdir / "me-secret.bin"
        self.secret_file.write_bytes(proxy_secret)
        os.chmod(self.secret_file, 0o600)
        self.proc = subprocess.Popen([str(FAKE_ME), "--secret-file", str(self.secret_file)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        first = self.proc.stdout.readline().decode().strip()
        if not first.startswith("LISTENING "):
            self.stop()
            pytest.fail("fake-me did not start: %r" % first)
        self.addr = first.split()[1]
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True, name="fake-me")
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)

    def snapshot(self, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.events if kind is None or e["event"] == kind]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Promoted:
    """The [promoted_channel] section, handed to the harness's Proxy as one more config block
    (Proxy writes `toml()` of every entry). `secret`/`client_secret` make the harness's
    no-secrets-in-logs check cover the proxy secret too."""

    name = "__promoted_channel__"
    kind = "promoted"

    def __init__(self, workdir: Path, ad_tag: str, me_addr: str, proxy_secret: bytes):
        self.ad_tag = ad_tag
        self.secret = self.client_secret = proxy_secret.hex()
        self.secret_file = workdir / "proxy-secret.bin"
        self.secret_file.write_bytes(proxy_secret)
        os.chmod(self.secret_file, 0o600)
        self.conf_file = workdir / "proxy-multi.conf"
        self.conf_file.write_text("# fake middle-end on loopback\ndefault 2;\nproxy_for 2 %s;\n" % me_addr)
        self.cache_dir = workdir / "middle-cache"

    def toml(self) -> str:
        return "\n".join([
            "[promoted_channel]",
            'ad_tag = "%s"' % self.ad_tag,
            'proxy_secret_url = "%s"' % self.secret_file,
            'proxy_config_url = "%s"' % self.conf_file,
            'proxy_config_v6_url = "off"',
            'cache_dir = "%s"' % self.cache_dir,
        ]) + "\n"


@pytest.fixture
def middle(tmp_path):
    """(fake middle-end, make_promoted(ad_tag)) sharing one random proxy secret."""
    proxy_secret = bytes.fromhex("c4f9faca") + os.urandom(124)
    me = FakeMe(tmp_path, proxy_secret)

    def promoted(ad_tag: str) -> Promoted:
        d = tmp_path / ("promoted-" + ad_tag)
        d.mkdir()
        return Promoted(d, ad_tag, me.addr, proxy_secret)

    yield me, promoted
    me.stop()


def requests_with(me: FakeMe, constructor: int) -> list[dict]:
    return [e for e in me.snapshot("proxy_req") if e["constructor"] == constructor]


def test_tdlib_ping_through_middle_end(proxy_factory, fakedc, tls_cover, middle):
    me, promoted = middle
    ad_tag = secrets.token_hex(16)
    users = [User("u_" + k, k) for k in KINDS]
    px = proxy_factory(users + [promoted(ad_tag)], mask=tls_cover.addr)
    res = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping") for u in users])
    for u, r in zip(users, res):
        assert r["ok"] and r["result"]["@type"] == "seconds", (u.kind, r)
        assert r["closed"], (u.kind, "TDLib did not reach authorizationStateClosed")
    reqs = requests_with(me, REQ_PQ_MULTI)
    # pingProxy sends req_pq_multi twice per client, each over its own client connection.
    assert len({e["conn_id"] for e in reqs}) >= 3, reqs
    for e in reqs:
        assert e["ad_tag"] == ad_tag, e
        # TDLib never uses abridged through a proxy: intermediate (classic) or padded (dd, ee).
        assert e["flags"] == F_INTERMEDIATE | F_EXTMODE2 | F_MAGIC | F_HAS_AD_TAG | F_NOT_ENCRYPTED, hex(e["flags"])
        assert e["client"].startswith("127.0.0.1:"), e
        assert e["proxy"] == "127.0.0.1:%d" % px.port, e
    assert me.snapshot("handshake"), "the proxy completed the RPC handshake"
    # Nothing went direct.
    assert not [e for e in fakedc.snapshot() if e["ev"] == "init"]
    assert "middle-proxy" in px.log()
    px.assert_no_secrets()


@pytest.mark.parametrize("kind", KINDS)
def test_tdlib_test_proxy_through_middle_end_reaches_req_dh_params(kind, proxy_factory, fakedc, tls_cover, middle):
    """testProxy runs the real auth handshake: req_DH_params arriving at the fake middle-end's
    DC logic means TDLib accepted the resPQ relayed through RPC_PROXY_ANS and the re-framing."""
    me, promoted = middle
    ad_tag = secrets.token_hex(16)
    u = User("u_" + kind, kind)
    px = proxy_factory([u, promoted(ad_tag)], mask=tls_cover.addr)
    r = tdlib(px.host, px.port, u.client_secret, "test", dc=2, test_timeout=3, timeout=30)
    assert wait_until(lambda: requests_with(me, REQ_DH_PARAMS), 10), (me.snapshot(), r)
    seen = [e["constructor"] for e in me.snapshot("proxy_req") if e["constructor"] is not None]
    first_pq = seen.index(REQ_PQ_MULTI)
    assert REQ_DH_PARAMS in seen[first_pq:], seen
    for e in me.snapshot("proxy_req"):
        assert e["ad_tag"] == ad_tag, e
        assert e["flags"] & (F_HAS_AD_TAG | F_INTERMEDIATE | F_MAGIC | F_EXTMODE2) == F_HAS_AD_TAG | F_INTERMEDIATE | F_MAGIC | F_EXTMODE2
        assert not e["flags"] & F_ABRIDGED
    assert r["result"]["@type"] != "ok", "testProxy cannot succeed against a fake DC: %s" % r
    assert not [e for e in fakedc.snapshot() if e["ev"] == "init"]
    px.assert_no_secrets()


class StatsListener:
    """A [stats] block on a port of its own, handed to the harness's Proxy like Promoted. Its
    `secret` is random so the harness's no-secrets check stays meaningful."""

    name = "__stats__"
    kind = "stats"

    def __init__(self):
        from helpers import free_port
        self.port = free_port()
        self.secret = self.client_secret = secrets.token_hex(16)

    def toml(self) -> str:
        return '[stats]\nlisten = "127.0.0.1:%d"\n' % self.port

    def get(self, path: str) -> str:
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
            assert r.status == 200
            return r.read().decode()


F_QUICKACK = 0x80000000
REQ_PQ = 0x60469778


def test_middle_counters_match_what_the_middle_end_saw(proxy_factory, fakedc, tls_cover, middle):
    """After TDLib pings through the fake middle-end, the `middle` counters of /stats.json,
    /metrics (parsed by prometheus_client) and `status --json` equal what fake-me recorded."""
    from prometheus_client.parser import text_string_to_metric_families

    me, promoted = middle
    users = [User("u_" + k, k) for k in KINDS]
    stats = StatsListener()
    px = proxy_factory(users + [promoted(secrets.token_hex(16)), stats], mask=tls_cover.addr)
    res = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping") for u in users])
    assert all(r["ok"] for r in res), res

    def expected():
        reqs = me.snapshot("proxy_req")
        hs = len(me.snapshot("handshake"))
        # A session's end sends RPC_CLOSE_CONN; an answer that arrives after it makes the proxy
        # send another for the same id (forget a client we no longer have, docs/protocol.md §5.7).
        close_ids = [e["conn_id"] for e in me.snapshot("close_conn")]
        closes, sessions_closed = len(close_ids), len(set(close_ids))
        answers = sum(1 for e in reqs
                      if (e["constructor"] in (REQ_PQ, REQ_PQ_MULTI) and e["len"] >= 40)
                      or not e["flags"] & F_NOT_ENCRYPTED)
        acks = sum(1 for e in reqs if e["flags"] & F_QUICKACK)
        return dict(sessions_active=0, sessions_total=sessions_closed, connections_opened=hs,
                    frames_to_middle_end=len(reqs) + closes + hs,
                    frames_from_middle_end=hs + answers + acks)

    def settled():
        m = json.loads(stats.get("/stats.json"))["middle"]
        want = expected()
        return m if m and want["sessions_total"] > 0 and {k: m[k] for k in want} == want else None

    m = wait_until(settled, 15, 0.1)
    if not m:
        got, want = json.loads(stats.get("/stats.json"))["middle"], expected()
        raise AssertionError("middle counters differ: %s" % {k: (got[k], want[k]) for k in want if got[k] != want[k]})
    assert m["sessions_total"] >= len({e["conn_id"] for e in me.snapshot("proxy_req")}) >= 3
    assert (m["connect_failures"], m["connection_open_failures"], m["packets_dropped"]) == (0, 0, 0)
    assert m["connections_active"] == m["connections_opened"] >= 1
    assert m["refreshes_ok"] >= 1 and m["last_refresh_ok_at"], "the refresh at start (local files)"
    assert [c["cluster"] for c in m["clusters"]] == ["2"]

    fams = {f.name: f for f in text_string_to_metric_families(stats.get("/metrics"))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    p = "vless_mtproxy_middle_"
    assert fams[p + "sessions"].type == "counter" and fams[p + "sessions_active"].type == "gauge"
    assert fams[p + "frames"].type == "counter" and fams[p + "connections_active"].type == "gauge"
    assert fams[p + "connections_opened"].type == "counter"
    assert samples[(p + "sessions_total", ())] == m["sessions_total"]
    assert samples[(p + "connections_opened_total", (("cluster", "2"),))] == m["connections_opened"]
    for direction in ("from_middle_end", "to_middle_end"):
        key = (p + "frames_total", (("cluster", "2"), ("direction", direction)))
        assert samples[key] == m["frames_" + direction], direction

    out = subprocess.run([str(BIN), "status", "--json", "--config", str(px.config)], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    st = json.loads(out.stdout)
    assert st["mode"] == "middle-proxy" and st["middle"]["sessions_total"] == m["sessions_total"], st
    text = subprocess.run([str(BIN), "status", "--config", str(px.config)], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL).stdout
    assert "middle-end   0 sessions now (%d total)" % m["sessions_total"] in text, text
    px.assert_no_secrets()
