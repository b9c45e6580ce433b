"""Upstream chaining (`[upstream]`): the DC leg through a real SOCKS5 server (dante, Debian's
`dante-server`, with and without RFC 1929 username authentication) and a real HTTP CONNECT
proxy (Debian's `tinyproxy`, with basic authentication), for TDLib and Telethon clients of
every secret kind; refusals and wrong credentials; failover between two upstreams.

Each upstream binds its outgoing side to an address of its own on loopback (127.0.0.2,
127.0.0.3: dante's `external:`, tinyproxy's `Bind`), so the fake DC can tell from the peer
address of each connection which way it came. dante's `username` method checks the system's
users: the fixture creates one with `useradd` (no home, no shell) and removes it after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from helpers import User, free_port, listening, stop_group, tdlib_many, telethon_many, wait_until
from mtcute_client import mtcute_many
from test_middle_proxy import middle  # noqa: F401  (the fake middle-end fixture)

DANTED = shutil.which("danted") or "/usr/sbin/danted"
TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
SOCKS_USER = "vmtp-e2e-socks"
SOCKS_PASSWORD = "Socks-pw-7f3a9c"

pytestmark = pytest.mark.skipif(not (os.path.exists(DANTED) and os.path.exists(TINYPROXY)),
                                reason="dante-server and tinyproxy are needed (scripts/test setup installs them)")


class Daemon:
    """A server process started in the foreground from a config file this test wrote."""

    def __init__(self, name: str, cmd: list[str], port: int, workdir):
        self.name, self.cmd, self.port, self.workdir = name, cmd, port, workdir
        self.logfile = workdir / ("%s.out" % name)
        self.proc = None
        self.start()

    def start(self):
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        if not wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 15) or self.proc.poll() is not None:
            pytest.fail("%s did not start: %s" % (self.name, self.log()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stop_group(self.proc)
        # Bounded: the port is free once the process is gone.
        wait_until(lambda: not listening(self.port), 10)

    def log(self) -> str:
        texts = []
        for f in sorted(self.workdir.glob("%s*" % self.name)):
            try:
                texts.append(f.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(texts)


def start_dante(workdir, external: str, auth: bool = False, name: str = "danted") -> Daemon:
    port = free_port()
    conf = workdir / ("%s.conf" % name)
    method = "username" if auth else "none"
    conf.write_text(f"""logoutput: {workdir / (name + '.log')}
internal: 127.0.0.1 port = {port}
external: {external}
socksmethod: {method}
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}
""")
    return Daemon(name, [DANTED, "-f", str(conf), "-p", str(workdir / (name + ".pid"))], port, workdir)


def start_tinyproxy(workdir, external: str, dc_port: int, auth: tuple[str, str] | None) -> Daemon:
    port = free_port()
    conf = workdir / "tinyproxy.conf"
    lines = ["Port %d" % port, "Listen 127.0.0.1", "Bind %s" % external, "Timeout 60", "MaxClients 100",
             "Allow 127.0.0.1", "ConnectPort %d" % dc_port, "LogLevel Info"]
    if auth:
        lines.append("BasicAuth %s %s" % auth)
    conf.write_text("\n".join(lines) + "\n")
    return Daemon("tinyproxy", [TINYPROXY, "-d", "-c", str(conf)], port, workdir)


@pytest.fixture
def socks_user():
    """A system user for dante's `username` method, removed after the test."""
    subprocess.run(["userdel", SOCKS_USER], capture_output=True, timeout=30)
    hashed = subprocess.run(["openssl", "passwd", "-6", SOCKS_PASSWORD], check=True, capture_output=True,
                            text=True, timeout=30).stdout.strip()
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", "-p", hashed, SOCKS_USER], check=True,
                   capture_output=True, timeout=30)
    yield SOCKS_USER, SOCKS_PASSWORD
    subprocess.run(["userdel", SOCKS_USER], capture_output=True, timeout=30)


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def server_toml(name: str, kind: str, port: int | None = None, auth: tuple[str, str] | None = None,
                weight: int = 1, dcs: str = '["*"]') -> str:
    lines = ["[[upstream.servers]]", 'name = "%s"' % name, 'type = "%s"' % kind]
    if port:
        lines.append('address = "127.0.0.1:%d"' % port)
    if auth:
        lines += ['username = "%s"' % auth[0], 'password = "%s"' % auth[1]]
    lines += ["weight = %d" % weight, "dcs = %s" % dcs]
    return "\n".join(lines) + "\n"


def stats_json(stats_port: int) -> dict:
    with urllib.request.urlopen("http://127.0.0.1:%d/stats.json" % stats_port, timeout=5) as r:
        return json.loads(r.read())


def get(stats_port: int, path: str) -> str:
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (stats_port, path), timeout=5) as r:
        return r.read().decode()


def server_report(stats_port: int, name: str) -> dict:
    return next(s for s in stats_json(stats_port)["upstream"]["servers"] if s["name"] == name)


def dc_peers(dc) -> list[str]:
    """Source addresses (IP only) of the connections the fake DC accepted, in order."""
    return [e["peer"].rsplit(":", 1)[0] for e in dc.snapshot() if e["ev"] == "connect"]


def peer_of_next(fakedc, case: dict) -> str:
    """Connect one Telethon client and return the address the fake DC saw it come from."""
    before = len(dc_peers(fakedc))
    r = telethon_many([case])[0]
    assert r.ok and r.nonce_matches, r.error
    assert wait_until(lambda: len(dc_peers(fakedc)) > before, 5)
    return dc_peers(fakedc)[-1]


def all_kinds_through(px, users, dc_peer_ip: str, fakedc):
    """TDLib and mtcute (classic, dd, ee) and Telethon (classic abridged, dd randomized) get their answers,
    and every connection the fake DC saw came from the upstream's own address."""
    classic, dd, ee = users
    tl = telethon_many([dict(host=px.host, port=px.port, secret=classic.client_secret, codec="abridged"),
                        dict(host=px.host, port=px.port, secret=dd.client_secret, codec="randomized")])
    for r in tl:
        assert r.ok and r.nonce_matches, r.error
    td = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping") for u in users])
    for u, t in zip(users, td):
        assert t["ok"] and t["result"]["@type"] == "seconds", (u.kind, t)
    mc = mtcute_many([dict(host=px.host, port=px.port, client_secret=u.client_secret) for u in users])
    for u, m in zip(users, mc):
        assert m["ok"] and m["nonce_matches"], (u.kind, m)
    peers = dc_peers(fakedc)
    assert len(peers) >= 2 + 3 + 3, peers
    assert set(peers) == {dc_peer_ip}, "the fake DC saw connections from %s" % sorted(set(peers))
    return len(peers)


def three_users():
    return [User("carol", "classic"), User("dave", "dd"), User("erin", "ee")]


def every_kind_through(proxy_factory, tls_cover, fakedc, upstream_toml: str):
    """A proxy with the three kinds of user and one upstream server; every client kind connects
    through it (the upstream's outgoing address is 127.0.0.2). Returns the proxy, the number of
    connections made and its statistics port."""
    stats_port = free_port()
    users = three_users()
    px = proxy_factory(users, mask=tls_cover.addr, extra_toml="[stats]\nlisten = \"127.0.0.1:%d\"\n%s" % (stats_port, upstream_toml))
    return px, all_kinds_through(px, users, "127.0.0.2", fakedc), stats_port


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "username"])
def test_socks5_dante_carries_every_client_kind(proxy_factory, fakedc, tls_cover, daemons, tmp_path, request, auth):
    creds = request.getfixturevalue("socks_user") if auth else None
    dante = start_dante(tmp_path, "127.0.0.2", auth=auth)
    daemons.append(dante)
    px, n, stats_port = every_kind_through(proxy_factory, tls_cover, fakedc, server_toml("dante", "socks5", dante.port, creds))
    rep = server_report(stats_port, "dante")
    assert rep["target"] == "socks5 127.0.0.1:%d" % dante.port and rep["up"] and rep["configured"], rep
    assert rep["connects_ok"] >= n and rep["connect_failures"] == 0, rep
    text = get(stats_port, "/stats")
    assert "upstream:dante:connects_ok\t%d" % rep["connects_ok"] in text
    metrics = get(stats_port, "/metrics")
    assert 'vless_mtproxy_upstream_server_up{upstream="dante",target="socks5 127.0.0.1:%d"} 1' % dante.port in metrics
    assert SOCKS_PASSWORD not in px.log()
    px.assert_no_secrets()


def test_http_connect_tinyproxy_with_basic_auth(proxy_factory, fakedc, tls_cover, daemons, tmp_path):
    creds = ("tpuser", "Tp-pass-51c2")
    tp = start_tinyproxy(tmp_path, "127.0.0.2", fakedc.port, creds)
    daemons.append(tp)
    px, n, stats_port = every_kind_through(proxy_factory, tls_cover, fakedc, server_toml("tiny", "http", tp.port, creds))
    rep = server_report(stats_port, "tiny")
    assert rep["connects_ok"] >= n and rep["connect_failures"] == 0, rep
    assert creds[1] not in px.log()


def test_refusals_are_logged_counted_and_the_next_upstream_is_tried(proxy_factory, fakedc, daemons, tmp_path, socks_user):
    """Wrong SOCKS5 password (dante says no), an HTTP 403 (tinyproxy refuses a port it does not
    allow) and a closed port: each is a warning naming the upstream, never the password, and a
    counted failure; with only those upstreams the client's connection is closed; with a direct
    entry after them the client gets its answer."""
    dante = start_dante(tmp_path, "127.0.0.2", auth=True)
    # ConnectPort 1: tinyproxy refuses CONNECT to any other port (the DC's) with a 403.
    tp = start_tinyproxy(tmp_path, "127.0.0.3", 1, None)
    daemons += [dante, tp]
    dead = free_port()
    wrong = (socks_user[0], "not-the-Password-93")
    bad = (server_toml("badpw", "socks5", dante.port, wrong) + server_toml("forbidden", "http", tp.port)
           + server_toml("dead", "socks5", dead))
    stats_port = free_port()
    u = User("carol", "classic")
    px = proxy_factory([u], extra_toml='[stats]\nlisten = "127.0.0.1:%d"\n[upstream]\nretry_after = "60s"\n%s'
                       % (stats_port, bad))
    r = telethon_many([dict(host=px.host, port=px.port, secret=u.client_secret, codec="abridged")])[0]
    assert not r.ok, "connected although every upstream refuses"
    assert wait_until(lambda: "upstream connect failed" in px.log(), 10), px.log()
    log = px.log()
    for name, why in [("badpw", "refused the username/password"), ("forbidden", "answered 403"),
                      ("dead", "cannot reach the upstream server")]:
        line = next((l for l in log.splitlines() if "upstream=%s " % name in l and "skipping it" in l), None)
        assert line and why in line, (name, log[-3000:])
        rep = server_report(stats_port, name)
        assert rep["connect_failures"] == 1 and rep["marked_down"] == 1 and not rep["up"], rep
        assert rep["retry_in_seconds"] > 30, rep
    assert wrong[1] not in log and "panick" not in log
    assert px.proc.poll() is None
    px.stop()

    # The same three, then a direct entry: the client is served, directly.
    stats2 = free_port()
    px2 = proxy_factory([u], extra_toml='[stats]\nlisten = "127.0.0.1:%d"\n%s%s'
                        % (stats2, bad, server_toml("fallback", "direct")))
    # Weights are equal, so the direct entry may come first: ask until all three were tried.
    for _ in range(12):
        r = telethon_many([dict(host=px2.host, port=px2.port, secret=u.client_secret, codec="abridged")])[0]
        assert r.ok and r.nonce_matches, r.error
        if all(server_report(stats2, n)["connect_failures"] >= 1 for n in ("badpw", "forbidden", "dead")):
            break
    else:
        pytest.fail("the refusing upstreams were never tried: %s" % stats_json(stats2)["upstream"])
    assert server_report(stats2, "fallback")["connects_ok"] >= 1
    assert set(dc_peers(fakedc)) == {"127.0.0.1"}


def test_failover_to_the_second_upstream_and_back(proxy_factory, fakedc, daemons, tmp_path):
    """Two dante servers (outgoing 127.0.0.2 and 127.0.0.3), the first preferred 100:1. The first
    is killed: the next connection still succeeds (through the second, within the one connect);
    after it is back and `retry_after` (5 s) has passed, new connections use it again."""
    first = start_dante(tmp_path, "127.0.0.2", name="danted-first")
    second = start_dante(tmp_path, "127.0.0.3", name="danted-second")
    daemons += [first, second]
    stats_port = free_port()
    u = User("carol", "classic")
    px = proxy_factory([u], extra_toml='[stats]\nlisten = "127.0.0.1:%d"\n[upstream]\nretry_after = "5s"\n%s%s'
                       % (stats_port, server_toml("first", "socks5", first.port, weight=100),
                          server_toml("second", "socks5", second.port, weight=1)))
    case = dict(host=px.host, port=px.port, secret=u.client_secret, codec="abridged")

    # Healthy: 100:1 makes the first one carry (almost) every connection.
    assert "127.0.0.2" in [peer_of_next(fakedc, case) for _ in range(3)]
    first.stop()
    t0 = time.monotonic()
    assert peer_of_next(fakedc, case) == "127.0.0.3", "the connection after the kill did not go through the second upstream"
    rep = server_report(stats_port, "first")
    assert rep["marked_down"] >= 1, rep
    if time.monotonic() - t0 < 5:
        assert not rep["up"] and rep["retry_in_seconds"] >= 1, rep
    # While it is down, the second carries everything without a new attempt at the first.
    fails = rep["connect_failures"]
    assert peer_of_next(fakedc, case) == "127.0.0.3"
    if time.monotonic() - t0 < 5:
        assert server_report(stats_port, "first")["connect_failures"] == fails
    first.start()
    # Back after retry_after: the weight brings it to first place again (bounded tries).
    seen = []
    for _ in range(12):
        time.sleep(0.5)
        seen.append(peer_of_next(fakedc, case))
        if seen[-1] == "127.0.0.2":
            break
    assert "127.0.0.2" in seen, seen
    assert server_report(stats_port, "first")["up"]


def test_reload_switches_new_connections_to_the_new_upstream_set(proxy_factory, fakedc, daemons, tmp_path):
    """Live reload: a proxy started direct gets a SOCKS5 upstream added to its file and then
    removed again; after each SIGHUP new connections take the new way."""
    dante = start_dante(tmp_path, "127.0.0.2")
    daemons.append(dante)
    u = User("carol", "classic")
    px = proxy_factory([u])
    case = dict(host=px.host, port=px.port, secret=u.client_secret, codec="intermediate")

    def reload(text: str, n: int):
        px.config.write_text(text)
        os.kill(px.proc.pid, 1)  # SIGHUP
        assert wait_until(lambda: px.log().count("configuration reloaded") >= n, 10), px.log()[-2000:]

    assert peer_of_next(fakedc, case) == "127.0.0.1"
    original = px.config.read_text()
    reload(server_toml("dante", "socks5", dante.port) + original, 1)
    assert peer_of_next(fakedc, case) == "127.0.0.2"
    reload(original, 2)
    assert peer_of_next(fakedc, case) == "127.0.0.1"


def test_middle_end_connections_go_through_socks5(proxy_factory, fakedc, tls_cover, daemons, tmp_path, middle):
    """Middle-proxy mode: the RPC connection to the (fake) middle-end goes through dante; the
    handshake keys use the address dante reports it bound (what the middle-end sees), so the
    fake middle-end accepts the handshake and TDLib gets its answer."""
    import secrets as _secrets
    from test_middle_proxy import REQ_PQ_MULTI, requests_with
    me, promoted = middle
    dante = start_dante(tmp_path, "127.0.0.2")
    daemons.append(dante)
    users = [User("u_classic", "classic"), User("u_dd", "dd")]
    px = proxy_factory(users + [promoted(_secrets.token_hex(16))], mask=tls_cover.addr,
                       extra_toml=server_toml("dante", "socks5", dante.port))
    res = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping") for u in users])
    for u, r in zip(users, res):
        assert r["ok"] and r["result"]["@type"] == "seconds", (u.kind, r)
    hs = me.snapshot("handshake")
    assert hs and all(e["peer"].startswith("127.0.0.2:") for e in hs), hs
    assert requests_with(me, REQ_PQ_MULTI)
    assert not [e for e in fakedc.snapshot() if e["ev"] == "init"]
    assert "via=dante" in px.log()


def test_doctor_reaches_every_dc_through_each_upstream(fakedc, daemons, tmp_path):
    """`doctor --dc-override` (the fake DC for every id) tries DCs 1-5 through each configured
    server: dante works (the fake DC sees 127.0.0.2) and says how long it took; a dead server
    fails with its address named; direct DC checks are only warnings for routed DCs."""
    from conftest import BIN
    dante = start_dante(tmp_path, "127.0.0.2")
    daemons.append(dante)
    dead = free_port()
    cfg = tmp_path / "doctor.toml"
    cfg.write_text('[stats]\nlisten = "127.0.0.1:%d"\n' % free_port()
                   + server_toml("dante", "socks5", dante.port, dcs='["*"]')
                   + server_toml("dead", "socks5", dead, dcs="[4]")
                   + '[users.carol]\nsecret = "%s"\n' % User("carol", "classic").secret)
    os.chmod(cfg, 0o600)
    r = subprocess.run([str(BIN), "doctor", "--json", "--config", str(cfg), "--timeout", "2s",
                        "--dc-override", "*=127.0.0.1:%d" % fakedc.port],
                       capture_output=True, text=True, timeout=60)
    out = json.loads(r.stdout)
    checks = {c["name"]: c for c in out["checks"]}
    for dc in (1, 2, 3, 5):
        c = checks["upstream dante dc %d" % dc]
        assert c["status"] == "ok", c
        assert "via socks5 127.0.0.1:%d connected in" % dante.port in c["detail"] and "used for this DC" in c["detail"], c
    c4 = checks["upstream dante dc 4"]
    assert c4["status"] == "ok" and "not used for this DC" in c4["detail"], c4
    d4 = checks["upstream dead dc 4"]
    assert d4["status"] == "fail" and "127.0.0.1:%d" % dead in d4["detail"] and "cannot reach" in d4["detail"], d4
    assert checks["upstream dead dc 2"]["status"] == "warn", checks["upstream dead dc 2"]
    assert r.returncode == 1, r.stdout
    peers = dc_peers(fakedc)
    assert peers.count("127.0.0.2") >= 5, peers


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_middle_config_fetch_goes_through_the_upstream(proxy_factory, fakedc, daemons, tmp_path, middle, kind):
    """The middle-proxy configuration (here proxy_config_url on a loopback HTTP server) is
    fetched through the [upstream] server (dante, or tinyproxy with basic auth): the HTTP
    server sees the upstream's own address."""
    import http.server
    import secrets as _secrets
    import threading
    me, promoted = middle
    p = promoted(_secrets.token_hex(16))
    body = p.conf_file.read_bytes()
    peers: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            peers.append(self.client_address[0])
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        if kind == "socks5":
            up = start_dante(tmp_path, "127.0.0.2")
            entry = server_toml("up", "socks5", up.port)
        else:
            creds = ("tpuser", "Tp-fetch-9d1")
            up = start_tinyproxy(tmp_path, "127.0.0.2", srv.server_address[1], creds)
            entry = server_toml("up", "http", up.port, creds)
        daemons.append(up)
        text = p.toml().replace('proxy_config_url = "%s"' % p.conf_file,
                                'proxy_config_url = "http://127.0.0.1:%d/getProxyConfig"' % srv.server_address[1])
        assert "http://127.0.0.1" in text
        p.toml = lambda: text
        px = proxy_factory([User("carol", "dd"), p], extra_toml=entry)
        assert wait_until(lambda: peers, 15), px.log()[-3000:]
        assert set(peers) == {"127.0.0.2"}, peers
        assert "refresh failed" not in px.log(), px.log()[-3000:]
    finally:
        srv.shutdown()
        srv.server_close()
