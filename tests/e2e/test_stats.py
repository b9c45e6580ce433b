"""Statistics end to end: real clients (Telethon, TDLib) for several users through the proxy binary,
the per-user counters against the bytes a counting tap saw on the DC leg, /metrics parsed by
prometheus_client and compared with /stats.json, `stats --live` driven in a pseudo-terminal,
`status --json`, `doctor` with no outside network, and bad requests to the listener.

Counting convention (docs/stats.md): a user's bytes are the obfuscated2 stream after the 64-byte
init, without fake-TLS record headers or the TLS handshake. The proxy forwards that stream
byte for byte (re-encrypted), so from_client = what the DC received minus its 64-byte init, and
to_client = what the DC sent. For Telethon's abridged req_pq_multi the stream is known exactly:
1 length byte + 40-byte message = 41 bytes per connection.

Extra Python package: prometheus_client (PyPI).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import mtp
from conftest import BIN
from helpers import (TcpServer, User, free_port, in_private_netns, listening, stop_group, tdlib_many,
                     telethon_many, wait_until)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --------------------------------------------------------------------------- peers

class Tap(TcpServer):
    """TCP relay between the proxy and a DC that counts bytes per direction and connections."""

    def __init__(self, target_port: int | None):
        self.target_port = target_port
        self.lock = threading.Lock()
        self.up = 0       # proxy -> DC
        self.down = 0     # DC -> proxy
        self.connections = 0
        self.open = 0
        super().__init__(backlog=128, name="tap")

    def counts(self):
        with self.lock:
            return self.up, self.down, self.connections, self.open

    def accepted(self, c):
        with self.lock:
            self.connections += 1
            self.open += 1
        threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _pipe(self, a, b, attr):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                with self.lock:
                    setattr(self, attr, getattr(self, attr) + len(d))
                if b is not None:
                    b.sendall(d)
        except OSError:
            pass
        finally:
            if b is not None:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _serve(self, c):
        c.settimeout(60)
        d = None
        try:
            if self.target_port is not None:
                d = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                d.settimeout(60)
                t = threading.Thread(target=self._pipe, args=(d, c, "down"), daemon=True)
                t.start()
            self._pipe(c, d, "up")
            if d is not None:
                t.join(60)
        finally:
            c.close()
            if d is not None:
                d.close()
            with self.lock:
                self.open -= 1


class Proxy:
    """The proxy binary with its statistics listener on a port of its own."""

    def __init__(self, workdir: Path, users: list[User], dc_port: int, extra: str = "", mask: str | None = None):
        self.port = free_port()
        self.stats_port = free_port()
        self.config = workdir / "config.toml"
        self.logfile = workdir / "proxy.log"
        text = ("[server]\nlisten = [\"127.0.0.1:%d\"]\npublic_host = \"127.0.0.1\"\n"
                "[stats]\nlisten = \"127.0.0.1:%d\"\n" % (self.port, self.stats_port))
        if mask:
            text += "[fronting]\nmask_host = \"%s\"\n" % mask
        text += extra + "\n" + "\n".join(u.toml() for u in users)
        self.config.write_text(text)
        os.chmod(self.config, 0o600)
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen([str(BIN), "serve", "--config", str(self.config),
                                      "--dc-override", "*=127.0.0.1:%d" % dc_port],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, NO_COLOR="1"), start_new_session=True)
        ok = wait_until(lambda: self.proc.poll() is not None
                        or (listening(self.port) and listening(self.stats_port)), 20)
        if not ok or self.proc.poll() is not None:
            self.stop()
            pytest.fail("proxy did not start: %s" % self.logfile.read_text(errors="replace"))

    def get(self, path: str, headers: dict | None = None, timeout: float = 5):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.stats_port, path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def report(self) -> dict:
        st, body = self.get("/stats.json")
        assert st == 200, body
        return json.loads(body)

    def user(self, name: str) -> dict:
        return next(u for u in self.report()["users"] if u["name"] == name)

    def cli(self, *args, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), *args, "--config", str(self.config)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self):
        stop_group(self.proc, grace=10)
        self._log.close()


@pytest.fixture
def stats_proxy(tmp_path, request):
    started = []

    def start(*a, **kw):
        d = tmp_path / ("p%d" % len(started))
        d.mkdir()
        p = Proxy(d, *a, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
        if getattr(request.node, "rep_call_failed", False):
            print("----- proxy log -----\n" + p.logfile.read_text(errors="replace")[-10000:])


def quiesce(px: Proxy, tap: Tap, timeout: float = 15):
    """Wait until no client connection is open at the proxy, the tap has accepted every DC
    connection the proxy made (none still in its listen backlog), and the tap's legs are closed."""
    def settled():
        rep = px.report()
        made = sum(d["connects_ok"] for d in rep["upstream"]["dcs"])
        _, _, accepted, open_legs = tap.counts()
        return rep["connections"]["active"] == 0 and accepted == made and open_legs == 0
    assert wait_until(settled, timeout, 0.1), (px.report(), tap.counts())


# --------------------------------------------------------------------------- tests

def test_two_users_counters_match_real_client_traffic(stats_proxy, fakedc, tls_cover):
    """Telethon (abridged: exact bytes known; padded intermediate) and TDLib (fake-TLS) users."""
    carol = User("carol", "classic")
    alice = User("alice", "dd")
    bob = User("bob", "ee")
    tap = Tap(fakedc.port)
    px = stats_proxy([carol, alice, bob], tap.port, mask=tls_cover.addr)
    try:
        per_user = {}
        phases = [
            ("carol", lambda: telethon_many([dict(host="127.0.0.1", port=px.port, secret=carol.client_secret,
                                                  codec="abridged")] * 3)),
            ("alice", lambda: telethon_many([dict(host="127.0.0.1", port=px.port, secret=alice.client_secret,
                                                  codec="randomized")] * 4)),
        ]
        if in_private_netns() or os.environ.get("E2E_ALLOW_HOST_NETNS"):
            phases.append(("bob", lambda: tdlib_many([dict(host="127.0.0.1", port=px.port,
                                                           secret=bob.client_secret, action="ping")] * 2)))
        for name, run in phases:
            before = tap.counts()
            results = run()
            for r in results:
                ok = r.ok if hasattr(r, "ok") else (r["ok"] and r["result"]["@type"] == "seconds")
                assert ok, (name, r)
            quiesce(px, tap)
            after = tap.counts()
            conns = after[2] - before[2]
            per_user[name] = (after[0] - before[0] - 64 * conns, after[1] - before[1], conns)

        rep = px.report()
        users = {u["name"]: u for u in rep["users"]}
        for name, (up, down, conns) in per_user.items():
            u = users[name]
            assert conns > 0
            assert u["connections_total"] == conns, (name, u, conns)
            assert u["bytes_from_client"] == up, (name, u["bytes_from_client"], up)
            assert u["bytes_to_client"] == down, (name, u["bytes_to_client"], down)
            assert u["connections_active"] == 0 and u["unique_ips_seen"] == 1 and u["last_seen"]
        # Telethon abridged req_pq_multi: 41 stream bytes per connection; the answer is the
        # fake DC's resPQ in abridged framing.
        res_pq = len(mtp.encode_frame(mtp.TAG_ABRIDGED, mtp.res_pq(b"\0" * 16, b"\0" * 16)))
        assert users["carol"]["bytes_from_client"] == 3 * 41
        assert users["carol"]["bytes_to_client"] == 3 * res_pq
        # padded intermediate: 4-byte length + 40-byte message + 0..15 bytes of padding.
        assert 4 * 44 <= users["alice"]["bytes_from_client"] <= 4 * 59
        total_up = sum(v[0] for v in per_user.values())
        total_down = sum(v[1] for v in per_user.values())
        assert rep["bytes"]["from_clients"] == total_up and rep["bytes"]["to_clients"] == total_down
        # Every accepted connection is in one bucket. TDLib sometimes drops a spare connection
        # in the middle of its handshake (a failed handshake, by reason) or before sending a byte
        # (closed_early); neither is attributed to a user.
        failed = sum(rep["handshakes"]["failed"].values())
        conn = rep["connections"]
        assert rep["handshakes"]["ok"] == sum(v[2] for v in per_user.values()), rep
        assert conn["total"] == (rep["handshakes"]["ok"] + failed + conn["closed_early"]
                                 + sum(conn["refused_user_limits"].values())), rep

        # /stats carries the same numbers in key<TAB>value lines.
        st, text = px.get("/stats")
        assert st == 200
        kv = dict(line.split("\t", 1) for line in text.splitlines())
        assert kv["user:carol:bytes_from_client"] == "123"
        assert kv["total_connections"] == str(rep["connections"]["total"])

        # The CLI table shows the users.
        out = px.cli("stats")
        assert out.returncode == 0, out.stderr
        rows = {l.split()[0]: l for l in out.stdout.splitlines() if l and l.split()[0] in users}
        assert set(rows) == set(users)
        assert "123 B" in rows["carol"]
    finally:
        tap.stop()


def test_metrics_parse_and_equal_stats_json(stats_proxy, fakedc):
    from prometheus_client.parser import text_string_to_metric_families

    a, b = User("alice", "dd"), User("bob", "classic")
    off = User("off", "dd", enabled=False)
    px = stats_proxy([a, b, off], fakedc.port, extra='[timeouts]\nhandshake = "6s"\n')
    res = telethon_many([dict(host="127.0.0.1", port=px.port, secret=a.client_secret, codec="randomized"),
                         dict(host="127.0.0.1", port=px.port, secret=b.client_secret, codec="intermediate"),
                         dict(host="127.0.0.1", port=px.port, secret=b.client_secret, codec="abridged"),
                         dict(host="127.0.0.1", port=px.port, secret="dd" + "00" * 16, codec="randomized",
                              timeout=4)])
    assert [r.ok for r in res] == [True, True, True, False], [r.error for r in res]
    assert wait_until(lambda: px.report()["connections"]["active"] == 0, 15, 0.1)
    time.sleep(0.3)

    st, prom = px.get("/metrics")
    rep = px.report()
    assert st == 200
    fams = {f.name: f for f in text_string_to_metric_families(prom)}  # raises on any syntax error
    def norm(labels):
        # `le` compares as a number ("1" == "1.0"; "+Inf" is infinity).
        return tuple(sorted((k, float(x) if k == "le" else x) for k, x in labels.items()))

    samples = {}
    for f in fams.values():
        for s in f.samples:
            samples[(s.name, norm(s.labels))] = s.value

    def v(name, **labels):
        return samples[("vless_mtproxy_" + name, norm(labels))]

    assert fams["vless_mtproxy_connections"].type == "counter"
    assert fams["vless_mtproxy_upstream_connect_seconds"].type == "histogram"
    assert v("connections_active") == rep["connections"]["active"]
    assert v("connections_total") == rep["connections"]["total"] == 4
    assert v("bytes_total", direction="from_client") == rep["bytes"]["from_clients"]
    assert v("bytes_total", direction="to_client") == rep["bytes"]["to_clients"]
    assert v("handshakes_ok_total") == rep["handshakes"]["ok"] == 3
    for reason, n in rep["handshakes"]["failed"].items():
        assert v("handshakes_failed_total", reason=reason) == n
    assert rep["handshakes"]["failed"]["bad_secret"] + rep["handshakes"]["failed"]["bad_transport"] >= 1
    assert v("fronting_sessions_total") == rep["fronting"]["total"]
    assert v("fronting_sessions_active") == rep["fronting"]["active"]
    assert abs(v("uptime_seconds") - rep["uptime_seconds"]) <= 2
    assert v("config_reloads_total", result="ok") == rep["reloads"]["ok"]
    assert v("config_reloads_total", result="failed") == rep["reloads"]["failed"]
    assert v("users", state="enabled") == rep["config"]["users_enabled"] == 2
    assert v("users", state="disabled") == rep["config"]["users_disabled"] == 1
    for d in rep["upstream"]["dcs"]:
        assert v("upstream_connect_failures_total", dc=d["dc"]) == d["connect_failures"]
        assert v("upstream_connect_seconds_count", dc=d["dc"]) == d["latency"]["count"] == d["connects_ok"]
        assert abs(v("upstream_connect_seconds_sum", dc=d["dc"]) - d["latency"]["sum_seconds"]) < 1e-9
        for bkt in d["latency"]["buckets"]:
            assert v("upstream_connect_seconds_bucket", dc=d["dc"], le=bkt["le"]) == bkt["count"]
        assert v("upstream_connect_seconds_bucket", dc=d["dc"], le="+Inf") == d["latency"]["count"]
    assert [d["dc"] for d in rep["upstream"]["dcs"]] == ["2"]
    for u in rep["users"]:
        n = u["name"]
        assert v("user_connections_active", user=n) == u["connections_active"]
        assert v("user_connections_total", user=n) == u["connections_total"]
        assert v("user_bytes_total", user=n, direction="from_client") == u["bytes_from_client"]
        assert v("user_bytes_total", user=n, direction="to_client") == u["bytes_to_client"]
        assert v("user_unique_ips", user=n) == u["unique_ips_active"]
        assert v("user_unique_ips_seen", user=n) == u["unique_ips_seen"]
        assert v("user_quota_used_bytes", user=n) == u["quota_used_bytes"]
        assert v("user_last_seen_timestamp_seconds", user=n) == (u["last_seen"] or 0)
    assert rep["users"][[u["name"] for u in rep["users"]].index("bob")]["connections_total"] == 2


def _pty_run(argv):
    """Start argv on a new pseudo-terminal (as its controlling terminal); returns (pid, master fd)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    return pid, fd


def _read_pty(fd, seconds):
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                d = os.read(fd, 65536)
            except OSError:
                break
            if not d:
                break
            out += d
    return out


RATE = re.compile(r"(\d+(?:\.\d+)?) (B|KiB|MiB|GiB)/s")
UNIT = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}


def test_stats_live_in_a_terminal_shows_changing_rates_and_exits_on_ctrl_c(stats_proxy):
    sink = Tap(None)  # a DC that swallows everything
    u = User("alice", "classic")
    px = stats_proxy([u], sink.port)
    stop = threading.Event()

    def traffic():
        s = mtp.connect("127.0.0.1", px.port)
        wire, enc, _dec = mtp.make_init(mtp.TAG_INTERMEDIATE, 2, u.key)
        s.sendall(wire)
        chunk = mtp.encode_frame(mtp.TAG_INTERMEDIATE, b"\0" * 4096)
        t0 = time.monotonic()
        while not stop.is_set() and time.monotonic() - t0 < 30:
            # ~40 KiB/s for the first 3 s, then ~400 KiB/s.
            n = 1 if time.monotonic() - t0 < 3 else 10
            for _ in range(n):
                s.sendall(enc(chunk))
            time.sleep(0.1)
        s.close()

    th = threading.Thread(target=traffic, daemon=True)
    th.start()
    pid, fd = _pty_run([str(BIN), "stats", "--live", "--interval", "1s", "--config", str(px.config)])
    try:
        raw = _read_pty(fd, 9)
        stop.set()
        text = ANSI.sub("", raw.decode(errors="replace"))
        assert "\x1b[?1049h" in raw.decode(errors="replace"), "live mode uses the alternate screen"
        rates = []
        for line in text.replace("\r", "").splitlines():
            if line.startswith("alice"):
                found = RATE.findall(line)
                if found:
                    val, unit = found[0]  # IN/s
                    rates.append(float(val) * UNIT[unit])
        nonzero = [r for r in rates if r > 0]
        assert len(rates) >= 6, text[-3000:]
        assert len(set(nonzero)) >= 3, rates
        assert max(nonzero) > 4 * min(nonzero), rates  # the rate followed the traffic change
        os.write(fd, b"\x03")  # Ctrl-C
        tail = _read_pty(fd, 3)
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("stats --live did not exit on Ctrl-C")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert b"\x1b[?1049l" in tail and b"\x1b[?25h" in tail, "the terminal is restored"
    finally:
        stop.set()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        th.join(5)
        sink.stop()


def test_status_json(stats_proxy, fakedc):
    px = stats_proxy([User("a", "dd"), User("b", "dd", enabled=False)], fakedc.port)
    out = px.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["service"]["running"] is True
    assert st["service"]["pid"] == px.proc.pid
    assert st["service"]["manager"] in ("process", "systemd", "container")
    assert st["config_valid"] is True and st["stats_reachable"] is True
    assert st["listen"] == ["127.0.0.1:%d" % px.port] and st["port"] == px.port
    assert (st["users_enabled"], st["users_disabled"]) == (1, 1)
    assert st["mode"] == "direct" and st["active_connections"] == 0
    assert st["uptime_seconds"] >= 0 and st["last_reload"] is None
    # A refused edit shows up as the last reload result.
    text = px.config.read_text()
    px.config.write_text(text + "\n[server2]\n")
    assert wait_until(lambda: px.report()["reloads"]["failed"] == 1, 10, 0.2)
    st = json.loads(px.cli("status", "--json").stdout)
    assert st["last_reload"]["ok"] is False and "server2" in st["last_reload"]["error"]
    px.config.write_text(text)
    assert wait_until(lambda: px.report()["reloads"]["ok"] == 1, 10, 0.2)
    px.stop()
    out = px.cli("status", "--json")
    st = json.loads(out.stdout)
    assert out.returncode == 3 and st["stats_reachable"] is False


class DateServer:
    """Plain HTTP server on loopback whose Date header is `skew` seconds off."""

    def __init__(self, skew: int):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.skew = skew
        self.stopping = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        from email.utils import formatdate
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                c.settimeout(3)
                c.recv(4096)
                date = formatdate(time.time() + self.skew, usegmt=True)
                c.sendall(("HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                           % date).encode())
            except OSError:
                pass
            finally:
                c.close()

    def stop(self):
        self.stopping = True
        self.sock.close()


@pytest.mark.skipif(not in_private_netns(), reason="doctor's DC checks may only run without outside network")
def test_doctor_without_network(stats_proxy, fakedc, tls_cover, tmp_path):
    ds = DateServer(skew=-120)
    try:
        px = stats_proxy([User("a", "ee")], fakedc.port, mask=tls_cover.addr)
        t0 = time.monotonic()
        out = px.cli("doctor", "--json", "--timeout", "2s", "--time-server", "127.0.0.1:%d" % ds.port,
                     "--dc-override", "4=127.0.0.1:%d" % fakedc.port, timeout=60)
        took = time.monotonic() - t0
        assert took < 25, took
        rep = json.loads(out.stdout)
        checks = {c["name"]: c for c in rep["checks"]}
        for name in ("config", "users", "statistics", "listen 127.0.0.1:%d" % px.port):
            assert checks[name]["status"] == "ok", checks[name]
        for dc in (1, 2, 3, 5):
            assert checks["dc %d" % dc]["status"] in ("skipped", "fail"), checks["dc %d" % dc]
        assert checks["dc 4"]["status"] == "ok", checks["dc 4"]  # the override is honoured
        assert checks["network"]["status"] == "skipped"
        assert checks["cover cover.test: TLS 1.3"]["status"] == "ok", checks["cover cover.test: TLS 1.3"]
        assert checks["cover cover.test: DNS"]["status"] in ("skipped", "fail")
        clock = checks["clock"]
        m = re.search(r"local clock is ([+-][0-9.]+) s", clock["detail"])
        assert clock["status"] == "warn" and m and 118 <= float(m.group(1)) <= 122, clock
        for c in rep["checks"]:
            assert c["status"] in ("ok", "warn", "fail", "skipped")
            if c["status"] != "ok":
                assert c["advice"] or c["status"] == "skipped", c
        assert out.returncode == (1 if rep["summary"]["fail"] else 0)

        # A cover that speaks only TLS 1.2 fails the TLS 1.3 check.
        cert, key = tls_cover.cert, tls_cover.cert.parent / "key.pem"
        p12 = free_port()
        s12 = subprocess.Popen(["openssl", "s_server", "-tls1_2", "-www", "-accept", "127.0.0.1:%d" % p12,
                                "-cert", str(cert), "-key", str(key)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: listening(p12), 10)
            px2 = stats_proxy([User("b", "ee")], fakedc.port, mask="127.0.0.1:%d" % p12)
            out = px2.cli("doctor", "--json", "--timeout", "2s", timeout=60)
            checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
            tls = checks["cover cover.test: TLS 1.3"]
            assert tls["status"] == "fail" and "chose TLS 1.2, not 1.3" in tls["detail"], tls
            assert out.returncode == 1
        finally:
            s12.terminate()
            s12.wait(5)
    finally:
        ds.stop()


def _raw(port: int, data: bytes, timeout: float = 10) -> tuple[bytes, float]:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        buf = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            buf += d
        return buf, time.monotonic() - t0
    finally:
        s.close()


def test_bad_requests_get_errors_not_hangs(stats_proxy, fakedc):
    px = stats_proxy([User("a", "dd")], fakedc.port)
    assert px.get("/nope")[0] == 404
    assert px.get("/health")[0] == 200
    got, took = _raw(px.stats_port, b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 431"), got[:100]
    assert took < 5
    # Slowloris: the header never completes; the listener closes it after its 5 s header timeout.
    s = socket.create_connection(("127.0.0.1", px.stats_port), timeout=15)
    s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 12:
        time.sleep(0.5)
        try:
            s.sendall(b"X-a: b\r\n")
        except OSError:
            closed = True
            break
        r, _, _ = select.select([s], [], [], 0)
        if r:
            try:
                if not s.recv(4096):
                    closed = True
                    break
            except OSError:
                closed = True
                break
    took = time.monotonic() - t0
    s.close()
    assert closed and 4 <= took <= 8, took
    assert px.get("/stats")[0] == 200, "the listener still serves"
