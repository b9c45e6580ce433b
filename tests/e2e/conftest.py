"""Fixtures for the end-to-end suite: free ports, the fake DC, a TLS stand-in for the fronting
domain, a plain echo stand-in, the proxy under test, and the TDLib / Telethon client helpers.

Everything listens on loopback only. scripts/test runs this suite inside a fresh network namespace;
TDLib cases refuse to run outside one unless E2E_ALLOW_HOST_NETNS=1.

Environment:
  VLESS_MTPROXY_BIN   proxy binary (default: target/debug/vless-mtproxy)
  E2E_KEEP_LOGS=1     print the proxy log of every test at teardown
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from fakedc import FakeDC  # noqa: E402
from helpers import COVER_DOMAIN, TcpServer, User, free_port, listening, stop_group, wait_until  # noqa: E402,F401

BIN = Path(os.environ.get("VLESS_MTPROXY_BIN", ROOT / "target" / "debug" / "vless-mtproxy"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FAIL_RE = re.compile(r"handshake failed client=(\S+) reason=([a-z_]+)")
REASONS = {"bad_secret", "replay", "clock_skew", "bad_sni", "bad_transport", "timeout",
           "malformed", "user_disabled", "rotated_secret", "untrusted_proxy"}


@pytest.fixture
def port():
    return free_port()


# --------------------------------------------------------------------------- stand-ins

@pytest.fixture(scope="session")
def cover_cert(tmp_path_factory):
    """Self-signed certificate for the cover domain: (cert_path, key_path, sha256 of the DER)."""
    d = tmp_path_factory.mktemp("cover")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=%s" % COVER_DOMAIN,
                    "-addext", "subjectAltName=DNS:%s" % COVER_DOMAIN,
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         check=True, capture_output=True, timeout=30).stdout
    return cert, key, hashlib.sha256(der).hexdigest()


@dataclass
class TlsCover:
    port: int
    fingerprint: str
    proc: subprocess.Popen
    cert: Path

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


@pytest.fixture(scope="session")
def tls_cover(cover_cert, tmp_path_factory):
    """`openssl s_server -tls1_3 -www` standing in for the fronting domain on loopback."""
    cert, key, fp = cover_cert
    log = open(tmp_path_factory.mktemp("s_server") / "s_server.log", "wb")
    for _ in range(5):
        p = free_port()
        proc = subprocess.Popen(["openssl", "s_server", "-tls1_3", "-www", "-accept", "127.0.0.1:%d" % p,
                                 "-cert", str(cert), "-key", str(key), "-naccept", "100000"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if wait_until(lambda: listening(p) or proc.poll() is not None, 10) and proc.poll() is None:
            break
        proc.kill()
        proc.wait(5)
    else:
        pytest.fail("openssl s_server did not start")
    yield TlsCover(p, fp, proc, cert)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.close()


class EchoServer(TcpServer):
    """Plain TCP stand-in mask host: echoes every byte and records what each connection sent."""

    def __init__(self):
        self.received: list[bytearray] = []
        self.lock = threading.Lock()
        super().__init__(name="echo")

    def accepted(self, c):
        buf = bytearray()
        with self.lock:
            self.received.append(buf)
        threading.Thread(target=self._serve, args=(c, buf), daemon=True).start()

    def _serve(self, c, buf):
        c.settimeout(30)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.lock:
                    buf += d
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def saw(self, data: bytes) -> bool:
        with self.lock:
            return any(bytes(b) == data for b in self.received)

    def connections(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture(scope="session")
def echo_mask():
    e = EchoServer()
    yield e
    e.stop()


def check_dc_inits(dc: FakeDC):
    """Every init a proxy sent to this fake DC decoded without a secret (a valid tag) and obeyed
    the plain-TCP generator rules of docs/protocol.md §2.1."""
    evs = dc.snapshot()
    bad = [e for e in evs if e["ev"] == "bad_init"]
    assert not bad, "the proxy sent an init the fake DC could not decode: %s" % bad
    viol = [e for e in evs if e["ev"] == "init" and e["violations"]]
    assert not viol, "the proxy's init towards the DC breaks section 2.1: %s" % viol


@pytest.fixture
def fakedc():
    dc = FakeDC().start()
    yield dc
    dc.stop()
    check_dc_inits(dc)


@pytest.fixture
def fakedc_factory():
    dcs = []

    def start():
        dc = FakeDC().start()
        dcs.append(dc)
        return dc

    yield start
    for dc in dcs:
        dc.stop()
    for dc in dcs:
        check_dc_inits(dc)


# --------------------------------------------------------------------------- the proxy

class Proxy:
    """The proxy under test, started from a config file this class writes (format: the
    contract in config.example.toml), stdout+stderr captured to proxy.log."""

    def __init__(self, workdir: Path, users: list[User], dc: FakeDC, mask: str | None = None,
                 fronting: bool = True, allow_any_transport: bool = False, timeouts: dict | None = None,
                 max_clock_skew: str = "20m", listen: list[str] | None = None,
                 extra_args: list[str] = (), dc_in_config: bool = False, config_via_env: bool = False,
                 fake_tls: dict | None = None, extra_toml: str = ""):
        self.users = users
        self.dc = dc
        self.host = "127.0.0.1"
        self.port = free_port()
        self.listen = listen or ["127.0.0.1:%d" % self.port]
        self.config = workdir / "config.toml"
        self.logfile = workdir / "proxy.log"
        t = {"handshake": "10s", "connect": "10s", "idle": "5m"}
        t.update(timeouts or {})
        lines = ["[server]",
                 "listen = [%s]" % ", ".join('"%s"' % l for l in self.listen),
                 'public_host = "127.0.0.1"', "workers = 1",
                 "allow_any_transport = %s" % str(allow_any_transport).lower(), "",
                 "[timeouts]"] + ['%s = "%s"' % kv for kv in t.items()] + [
                 "", "[fake_tls]", 'max_clock_skew = "%s"' % max_clock_skew] + [
                 "%s = %s" % kv for kv in (fake_tls or {}).items()] + ["",
                 "[fronting]", "enabled = %s" % str(fronting).lower()]
        if mask:
            lines.append('mask_host = "%s"' % mask)
        if dc_in_config:
            lines += ["", "[dc_overrides]", '"*" = "127.0.0.1:%d"' % dc.port]
        lines.append("")
        if extra_toml:
            lines += [extra_toml, ""]
        self.config.write_text("\n".join(lines) + "\n" + "\n".join(u.toml() for u in users))
        os.chmod(self.config, 0o600)
        env = dict(os.environ, NO_COLOR="1")
        env.pop("VLESS_MTPROXY_CONFIG", None)
        self.cmd = [str(BIN), "serve"]
        if config_via_env:
            env["VLESS_MTPROXY_CONFIG"] = str(self.config)
        else:
            self.cmd += ["--config", str(self.config)]
        if not dc_in_config:
            self.cmd += ["--dc-override", "*=127.0.0.1:%d" % dc.port]
        self.cmd += list(extra_args)
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        ports = [int(l.rsplit(":", 1)[1]) for l in self.listen]
        ok = wait_until(lambda: self.proc.poll() is not None or all(listening(p) for p in ports), 20)
        if self.proc.poll() is not None or not ok:
            code = self.proc.poll()
            self.stop()
            pytest.fail("proxy did not start listening (exit code %s); command %s; log:\n%s"
                        % (code, self.cmd, self.log()))

    def user(self, name: str) -> User:
        return next(u for u in self.users if u.name == name)

    # logs -------------------------------------------------------------
    def log(self) -> str:
        try:
            return ANSI.sub("", self.logfile.read_text(errors="replace"))
        except OSError:
            return ""

    def failures(self) -> list[tuple[str, str]]:
        found = FAIL_RE.findall(self.log())
        unknown = [f for f in found if f[1] not in REASONS]
        assert not unknown, "failure reasons outside the contract's list: %s" % unknown
        return found

    def wait_failure(self, client_port: int | None = None, reason: str | None = None,
                     timeout: float = 8.0) -> list[tuple[str, str]]:
        """Failure lines for this client port (and reason), waiting up to timeout for one."""
        def match():
            return [(c, r) for c, r in self.failures()
                    if (client_port is None or c.rsplit(":", 1)[1] == str(client_port))
                    and (reason is None or r == reason)]
        return wait_until(match, timeout) or []

    def failures_for(self, client_port: int) -> list[tuple[str, str]]:
        return [(c, r) for c, r in self.failures() if c.rsplit(":", 1)[1] == str(client_port)]

    def assert_no_secrets(self):
        text = self.log().lower()
        for u in self.users:
            for s in {u.secret, u.client_secret}:
                assert s.lower() not in text, "secret of user %s appears in the proxy output" % u.name
            # also the base64 forms of the raw key would be a leak; the hex form is what matters most

    def stop(self):
        stop_group(self.proc)
        self._log.close()


@pytest.fixture
def proxy_factory(tmp_path, fakedc, request):
    """start(users, mask=..., ...) -> Proxy; every proxy gets its own config dir and the test's fake DC."""
    started: list[Proxy] = []

    def start(users, dc=None, **kw):
        d = tmp_path / ("proxy%d" % len(started))
        d.mkdir()
        p = Proxy(d, list(users), dc or fakedc, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
        if os.environ.get("E2E_KEEP_LOGS") or getattr(request.node, "rep_call_failed", False):
            sys.stderr.write("\n----- proxy log (%s) -----\n%s\n" % (p.config, p.log()[-20000:]))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed
    elif not hasattr(item, "rep_call_failed"):
        item.rep_call_failed = rep.failed


