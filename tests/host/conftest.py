"""Fixtures for the host-security suite: network namespaces joined by veth pairs (created and
removed by the tests), processes started inside them, the fake DC and the proxy in the server
namespace, and TDLib or raw clients in client namespaces.

Every address lives inside namespaces these fixtures create (10.231.x.y); nothing is routed
anywhere else. Needs root, iproute2, and the Debian packages fail2ban, ufw, iptables, haproxy,
openssl (see docs/host-security.md, "Tests").

Environment: VLESS_MTPROXY_BIN (default target/debug/vless-mtproxy), HOST_KEEP_LOGS=1 prints
every proxy log at teardown.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(E2E))

from helpers import User, wait_until  # noqa: E402,F401

BIN = Path(os.environ.get("VLESS_MTPROXY_BIN", ROOT / "target" / "debug" / "vless-mtproxy"))
PY = sys.executable
FAIL_RE = re.compile(r"handshake failed client=(\S+) reason=([a-z_]+)")




def run(cmd, timeout=60, check=True, **kw):
    cmd = [str(c) for c in cmd]
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(map(str, cmd)), cp.returncode, cp.stdout, cp.stderr))
    return cp


def pytest_configure(config):
    missing = [t for t in ("ip", "iptables", "fail2ban-server", "fail2ban-client", "fail2ban-regex", "ufw",
                           "haproxy", "openssl", "nginx") if shutil.which(t) is None]
    if os.geteuid() != 0:
        raise pytest.UsageError("tests/host needs root (network namespaces, iptables)")
    if missing:
        raise pytest.UsageError("tests/host needs %s: apt-get install -y --no-install-recommends "
                                "fail2ban ufw iptables nftables haproxy nginx socat openssl iproute2" % ", ".join(missing))
    if not BIN.exists():
        raise pytest.UsageError("proxy binary %s not found: cargo build first" % BIN)


class Netns:
    """Namespaces and veth pairs for one test; everything is removed at teardown."""

    def __init__(self, tag: str):
        self.tag = tag
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.logs = []

    def add(self, short: str) -> str:
        name = "%s-%s" % (self.tag, short)
        run(["ip", "netns", "add", name])
        self.names.append(name)
        run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        return name

    def link(self, a: str, addr_a: str, b: str, addr_b: str):
        """A veth pair between namespaces a and b with /24 addresses."""
        self.nlinks = getattr(self, "nlinks", 0) + 1
        ia, ib = "%s-%da" % (self.tag, self.nlinks), "%s-%db" % (self.tag, self.nlinks)
        run(["ip", "link", "add", ia, "netns", a, "type", "veth", "peer", "name", ib, "netns", b])
        for ns, ifc, addr in ((a, ia, addr_a), (b, ib, addr_b)):
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", ifc])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", ifc, "up"])
        time.sleep(0.05)

    def hosts(self, ns: str, text: str):
        """/etc/hosts as seen by programs run with `ip netns exec ns` (iproute2 bind-mounts
        /etc/netns/NS/hosts over it), so a test can give names to addresses in its namespace."""
        d = Path("/etc/netns") / ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text(text)
        self.etc_dirs = getattr(self, "etc_dirs", []) + [d]

    def exec(self, ns: str, cmd, timeout=60, check=True, **kw):
        return run(["ip", "netns", "exec", ns] + [str(c) for c in cmd], timeout=timeout, check=check, **kw)

    def popen(self, ns: str, cmd, log: Path, **kw) -> subprocess.Popen:
        f = open(log, "wb")
        self.logs.append(f)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + [str(c) for c in cmd], stdin=subprocess.DEVNULL,
                             stdout=f, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def client(self, ns: str, *args, timeout=60) -> dict:
        cp = self.exec(ns, [PY, HERE / "netclient.py", *args], timeout=timeout)
        return json.loads(cp.stdout.strip().splitlines()[-1])

    def tdlib_ping(self, ns: str, host: str, port: int, secret: str, timeout: float = 30.0) -> dict:
        cp = self.exec(ns, [PY, E2E / "tdclient.py", "--server", host, "--port", port, "--secret", secret,
                            "--action", "ping", "--timeout", timeout], timeout=timeout + 40, check=False)
        lines = [l for l in cp.stdout.splitlines() if l.startswith("{")]
        if not lines:
            return {"ok": False, "result": {"@type": "no-output"}, "stderr": cp.stderr[-3000:]}
        return json.loads(lines[-1])

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for f in self.logs:
            f.close()
        for ns in self.names:
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)
        for d in getattr(self, "etc_dirs", []):
            shutil.rmtree(d, ignore_errors=True)


def self_signed(tmp_path, cn):
    cert, key = tmp_path / ("%s.crt" % cn), tmp_path / ("%s.key" % cn)
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=%s" % cn, "-keyout", key, "-out", cert])
    return cert, key


@pytest.fixture
def netns(request):
    n = Netns("vh%d%s" % (os.getpid() % 10000, request.node.name[5:8]))
    yield n
    n.close()


def listening_in(net: Netns, ns: str, port: int) -> bool:
    out = net.exec(ns, ["ss", "-Htln"], check=False).stdout
    return any(l.split()[3].rsplit(":", 1)[-1] == str(port) for l in out.splitlines() if len(l.split()) > 3)


class ProxyProc:
    """The proxy inside namespace `ns`, logging (stderr) to a file that fail2ban can read."""

    def __init__(self, net: Netns, ns: str, workdir: Path, users: list, dc_port: int, port: int = 8443,
                 extra_server: str = "", log_level: str = "info"):
        self.port = port
        self.users = users
        self.config = workdir / "proxy.toml"
        self.logfile = workdir / "proxy.log"
        body = ["[server]", 'listen = ["0.0.0.0:%d"]' % port, 'public_host = "10.231.0.1"', extra_server, "",
                "[timeouts]", 'handshake = "5s"', "", "[stats]", 'listen = "off"', "", "[fronting]", "enabled = false", ""]
        self.config.write_text("\n".join(body) + "\n" + "\n".join(u if isinstance(u, str) else u.toml() for u in users))
        os.chmod(self.config, 0o600)
        self.proc = net.popen(ns, [BIN, "serve", "--config", self.config, "--dc-override", "*=127.0.0.1:%d" % dc_port,
                                   "--log", log_level], self.logfile, env=dict(os.environ, NO_COLOR="1"))
        if not wait_until(lambda: self.proc.poll() is not None or listening_in(net, ns, port), 20) or self.proc.poll() is not None:
            raise AssertionError("proxy did not start:\n" + self.log())

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def failures(self):
        return FAIL_RE.findall(self.log())


def start_fakedc(net: Netns, ns: str, workdir: Path, port: int = 4443) -> Path:
    events = workdir / "dc-events.jsonl"
    p = net.popen(ns, [PY, E2E / "fakedc.py", "--host", "127.0.0.1", "--port", port, "--events", events,
                       "--duration", "900"], workdir / "fakedc.log")
    if not wait_until(lambda: p.poll() is not None or listening_in(net, ns, port), 15) or p.poll() is not None:
        raise AssertionError("fake DC did not start: " + (workdir / "fakedc.log").read_text())
    return events


def dc_constructors(events: Path) -> list[str]:
    if not events.exists():
        return []
    out = []
    for line in events.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("ev") == "message":
            out.append(ev.get("name"))
    return out
