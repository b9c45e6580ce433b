"""Client-side helpers for the end-to-end tests: ports, users, TDLib (subprocess per case),
Telethon MTProxy connections, openssl s_client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
COVER_DOMAIN = "cover.test"


# --------------------------------------------------------------------------- basics

def in_private_netns() -> bool:
    """True when this process sees no network interface but loopback (as in the namespace that
    scripts/test creates): then nothing can leave the machine, whatever a client tries."""
    try:
        with open("/proc/net/dev") as f:
            names = {line.split(":", 1)[0].strip() for line in f.readlines()[2:]}
    except OSError:
        return False
    return names == {"lo"}


def free_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """True when some socket is in LISTEN state on `port` (read from /proc, no connection made)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


class TcpServer:
    """A loopback listener whose accept loop runs on its own thread and hands each connection to
    `accepted(conn)` on that thread (start a thread there for long work). Subclasses set their
    own fields before calling `super().__init__()`, which starts the loop."""

    def __init__(self, backlog: int = 64, name: str = "tcp-server"):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name=name)
        self.thread.start()

    @property
    def addr(self) -> str:
        return "127.0.0.1:%d" % self.port

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted(c)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def ufw_root(tmp_path: Path) -> Path:
    """A private copy of ufw's files under tmp_path, for `ufw --rootdir/--datadir`: tests never
    touch the machine's own firewall."""
    r = tmp_path / "ufwroot"
    for src, dst in (("/etc/ufw", "etc/ufw"), ("/lib/ufw", "lib/ufw"), ("/usr/share/ufw", "usr/share/ufw")):
        shutil.copytree(src, r / dst, symlinks=True)
    (r / "etc" / "default").mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/default/ufw", r / "etc" / "default" / "ufw")
    r.chmod(0o755)
    tmp_path.chmod(0o755)
    return r


def stop_group(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM the process group a test started (start_new_session=True); SIGKILL after grace."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def users_loaded(proxy) -> int | None:
    """The user count of the proxy's last successful reload (None before the first)."""
    import re
    found = re.findall(r"configuration reloaded users=(\d+)", proxy.log())
    return int(found[-1]) if found else None


def wait_until(pred, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------- users

def new_secret() -> str:
    """16 random bytes as hex, never beginning with `dd` or `ee`, as the proxy's own generator
    (config::generate_secret): Telethon cuts such a prefix off a plain classic secret
    (test_10_clients.py::test_telethon_cuts_a_leading_dd_off_a_classic_secret)."""
    while True:
        s = secrets.token_hex(16)
        if s[:2] not in ("dd", "ee"):
            return s


@dataclass
class User:
    name: str
    kind: str  # classic | dd | ee
    secret: str = field(default_factory=lambda: new_secret())
    domain: str | None = None
    enabled: bool = True

    def __post_init__(self):
        if self.kind == "ee" and self.domain is None:
            self.domain = COVER_DOMAIN

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.secret)

    @property
    def client_secret(self) -> str:
        """The secret as a client gets it in a link (docs/protocol.md §1.2)."""
        if self.kind == "classic":
            return self.secret
        if self.kind == "dd":
            return "dd" + self.secret
        return "ee" + self.secret + self.domain.encode().hex()

    def toml(self) -> str:
        out = ['[users."%s"]' % self.name, 'secret = "%s"' % self.secret, 'kind = "%s"' % self.kind,
               "enabled = %s" % ("true" if self.enabled else "false")]
        if self.domain is not None:
            out.append('domain = "%s"' % self.domain)
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- TDLib

TDCLIENT = HERE / "tdclient.py"


def tdlib(host: str, port: int, secret: str, action: str = "ping", timeout: float = 30.0,
          dc: int = 2, test_timeout: float = 3.0) -> dict:
    """Run one TDLib case in a subprocess; returns the parsed JSON result."""
    if not in_private_netns() and not os.environ.get("E2E_ALLOW_HOST_NETNS"):
        pytest.skip("TDLib cases run only inside a private network namespace (use scripts/test)")
    cmd = [sys.executable, str(TDCLIENT), "--server", host, "--port", str(port), "--secret", secret,
           "--action", action, "--timeout", str(timeout), "--dc", str(dc),
           "--test-timeout", str(test_timeout)]
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout + 40, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return {"ok": False, "result": {"@type": "subprocess-timeout"}, "stderr": str(e.stderr)[-2000:]}
    lines = [l for l in cp.stdout.decode(errors="replace").splitlines() if l.startswith("{")]
    if not lines:
        return {"ok": False, "result": {"@type": "no-output", "rc": cp.returncode},
                "stderr": cp.stderr.decode(errors="replace")[-3000:]}
    out = json.loads(lines[-1])
    out["rc"] = cp.returncode
    out["stderr"] = cp.stderr.decode(errors="replace")[-3000:]
    return out


def tdlib_many(cases: list[dict]) -> list[dict]:
    """Run several tdlib(**case) in parallel (each in its own process)."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(cases)))) as ex:
        return list(ex.map(lambda c: tdlib(**c), cases))


# --------------------------------------------------------------------------- Telethon

class _Loggers(dict):
    def __missing__(self, key):
        return logging.getLogger(key)


@dataclass
class TelethonResult:
    ok: bool
    nonce_matches: bool = False
    error: str | None = None
    client_port: int | None = None
    res: object = None


async def telethon_req_pq(host: str, port: int, secret: str, codec: str, dc: int = 2,
                          timeout: float = 12.0) -> TelethonResult:
    """Telethon MTProxy connection (codec: abridged | intermediate | randomized), then
    MTProtoPlainSender.send(ReqPqMultiRequest(nonce)); ok when a ResPQ with our nonce comes back."""
    from telethon.network import connection as tc
    from telethon.network.mtprotoplainsender import MTProtoPlainSender
    from telethon.tl.functions import ReqPqMultiRequest
    from telethon.tl.types import ResPQ

    cls = {"abridged": tc.ConnectionTcpMTProxyAbridged,
           "intermediate": tc.ConnectionTcpMTProxyIntermediate,
           "randomized": tc.ConnectionTcpMTProxyRandomizedIntermediate}[codec]
    loggers = _Loggers()
    conn = cls("127.0.0.1", 443, dc, loggers=loggers, proxy=(host, port, secret))
    res = TelethonResult(ok=False)
    try:
        await asyncio.wait_for(conn.connect(timeout=5), timeout)
        try:
            res.client_port = conn._writer.get_extra_info("sockname")[1]
        except Exception:  # noqa: BLE001
            pass
        nonce = int.from_bytes(os.urandom(16), "big", signed=True)
        r = await asyncio.wait_for(MTProtoPlainSender(conn, loggers=loggers).send(ReqPqMultiRequest(nonce)),
                                   timeout)
        res.res = r
        res.ok = isinstance(r, ResPQ)
        res.nonce_matches = res.ok and r.nonce == nonce
        if not res.ok:
            res.error = "unexpected answer %r" % (r,)
    except BaseException as e:  # noqa: BLE001 (a timeout is also a result)
        if isinstance(e, KeyboardInterrupt):
            raise
        res.error = "%s: %s" % (type(e).__name__, e)
        if res.client_port is None:
            try:
                res.client_port = conn._writer.get_extra_info("sockname")[1]
            except Exception:  # noqa: BLE001
                pass
    finally:
        try:
            await asyncio.wait_for(conn.disconnect(), 5)
        except BaseException:  # noqa: BLE001
            pass
    return res


def telethon_many(cases: list[dict]) -> list[TelethonResult]:
    """Run telethon_req_pq(**case) for all cases concurrently, bounded in time."""
    async def run():
        return await asyncio.wait_for(asyncio.gather(*(telethon_req_pq(**c) for c in cases)), 60)
    return asyncio.run(run())


def telethon_one(**case) -> TelethonResult:
    return telethon_many([case])[0]


# --------------------------------------------------------------------------- openssl s_client

def s_client_cert_fingerprint(host: str, port: int, servername: str | None, timeout: float = 20) -> str | None:
    """SHA-256 of the DER of the first certificate `openssl s_client` receives, or None."""
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-showcerts"]
    if servername:
        cmd += ["-servername", servername]
    try:
        cp = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    out = cp.stdout.decode(errors="replace")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    if not m:
        return None
    der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=m.group(0).encode(),
                         capture_output=True, timeout=timeout, check=True).stdout
    return hashlib.sha256(der).hexdigest()


# --------------------------------------------------------------------------- raw probes

def probe(host: str, port: int, data: bytes, want: int | None = None, timeout: float = 8.0):
    """Send `data` on a fresh connection, read until `want` bytes (default len(data)), EOF or
    timeout. Returns (bytes received, client port)."""
    import mtp
    s = mtp.connect(host, port)
    try:
        cport = s.getsockname()[1]
        s.sendall(data)
        got = mtp.recv_until_eof_or(s, len(data) if want is None else want, timeout)
    finally:
        s.close()
    return got, cport


def fake_tls_attempt(host: str, port: int, key: bytes, domain: str | None, timeout: float = 8.0):
    """Try a full fake-TLS session; returns (ok, client_port, error)."""
    import mtp
    try:
        c = mtp.FakeTlsClient(host, port, key, domain, timeout)
    except OSError as e:
        return False, None, repr(e)
    try:
        hello = mtp.build_client_hello(key, domain)
        flight = c.handshake(hello)
        if not mtp.verify_server_flight(flight, hello[11:43], key):
            return False, c.client_port, "server flight does not verify"
        r = c.req_pq()
        return r.res_nonce == r.nonce, c.client_port, None
    except Exception as e:  # noqa: BLE001
        return False, c.client_port, "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def obfs2_attempt(host: str, port: int, key: bytes, tag: bytes, timeout: float = 8.0):
    """Try a plain obfuscated2 req_pq_multi; returns (ok, error)."""
    import mtp
    try:
        r = mtp.obfs2_req_pq(host, port, key, tag, timeout=timeout)
        return r.res_nonce == r.nonce, None
    except Exception as e:  # noqa: BLE001
        return False, "%s: %s" % (type(e).__name__, e)
