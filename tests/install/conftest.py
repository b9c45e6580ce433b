"""Fixtures for the installation suite (issue 5): setup, the container, the unit, uninstall.

The whole pytest process moves into a network namespace it creates (`ip netns add`, then
setns(2) before any thread starts), so every container (host networking = this namespace),
every proxy and every client runs there, and the DCs are overridden to the e2e suite's Python
fake DC on loopback: nothing can reach Telegram or any other host.

Podman gets its own configuration and its own storage in a temporary folder
(CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), so the suite neither sees nor touches other
containers or images on the machine, and the name `vless_mtproxy` is ours alone.

Environment:
  VLESS_MTPROXY_STATIC_BIN  the static binary setup installs (default:
                            target/x86_64-unknown-linux-gnu/release/vless-mtproxy)
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
E2E = ROOT / "tests" / "e2e"
sys.path.insert(0, str(E2E))
from helpers import wait_until  # noqa: E402,F401  (one implementation, in tests/e2e)

STATIC_BIN = Path(os.environ.get("VLESS_MTPROXY_STATIC_BIN",
                                 ROOT / "target" / "x86_64-unknown-linux-gnu" / "release" / "vless-mtproxy"))
NETNS = "vmtp-install-%d" % os.getpid()
CLONE_NEWNET = 0x40000000
_netns_created = False


def _enter_netns():
    """Create a namespace with only `lo` up and move this (still single-threaded) process in."""
    global _netns_created
    subprocess.run(["ip", "netns", "add", NETNS], check=True, timeout=30)
    _netns_created = True
    subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
    fd = os.open("/var/run/netns/%s" % NETNS, os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns into %s failed" % NETNS)
    os.close(fd)


def pytest_configure(config):
    if os.geteuid() != 0:
        return  # the root fixture skips every test with its reason
    _enter_netns()


def pytest_unconfigure(config):
    if _netns_created:
        pids = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True, timeout=30).stdout.split()
        me = str(os.getpid())
        for p in pids:
            if p != me:
                try:
                    os.kill(int(p), 9)
                except (ProcessLookupError, ValueError):
                    pass
        subprocess.run(["ip", "netns", "del", NETNS], timeout=30)


@pytest.fixture(scope="session", autouse=True)
def root():
    if os.geteuid() != 0:
        pytest.skip("the installation suite needs root (setup installs files, network namespaces, podman)")


@pytest.fixture(scope="session")
def static_bin():
    if not STATIC_BIN.is_file():
        pytest.fail("static binary %s is missing; build it with: RUSTFLAGS=\"-C target-feature=+crt-static\" "
                    "cargo build --release --target x86_64-unknown-linux-gnu" % STATIC_BIN)
    return STATIC_BIN


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory):
    """Environment for podman: runc, cgroupfs, no default ulimits, private vfs storage."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.fail("podman and runc are required (apt-get install podman runc)")
    d = tmp_path_factory.mktemp("podman")
    conf = d / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\n'
                    'runtime = "runc"\nevents_logger = "file"\n')
    storage = d / "storage.conf"
    storage.write_text('[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' % (d / "graph", d / "run"))
    env = dict(os.environ, CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage), NO_COLOR="1")
    for k in ("MTPROXY_AUTO_MODE", "MTPROXY_PORT", "MTPROXY_WORKERS", "MTPROXY_PADDING", "VLESS_MTPROXY_CONFIG"):
        env.pop(k, None)
    yield env
    # Leave nothing behind even when a test failed half way.
    subprocess.run(["podman", "rm", "-f", "-a"], env=env, capture_output=True, timeout=120)
    subprocess.run(["podman", "rmi", "-f", "-a"], env=env, capture_output=True, timeout=120)
    subprocess.run(["podman", "system", "reset", "-f"], env=env, capture_output=True, timeout=120)


def podman(env, *args, check=True, timeout=120):
    r = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("podman %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


class Layout:
    """One install's folders, all inside the test's temporary folder."""

    def __init__(self, base: Path, binary: Path):
        self.base = base
        self.binary = binary
        self.install_dir = base / "bin"
        self.config_dir = base / "config"
        self.log_dir = base / "logs"
        self.data_dir = base / "data"
        self.unit_dir = base / "systemd"
        self.logrotate_dir = base / "logrotate.d"
        self.logrotate_dir.mkdir(parents=True)
        self.vless_compose = base / "vless" / "docker-compose.yml"

    @property
    def config(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def installed(self) -> Path:
        return self.install_dir / "vless-mtproxy"

    def path_args(self):
        return ["--install-dir", str(self.install_dir), "--config-dir", str(self.config_dir),
                "--log-dir", str(self.log_dir), "--data-dir", str(self.data_dir),
                "--unit-dir", str(self.unit_dir), "--logrotate-dir", str(self.logrotate_dir),
                "--vless-compose", str(self.vless_compose)]

    def users(self) -> dict:
        return tomllib.loads(self.config.read_text()).get("users", {})

    def client_secret(self, name: str) -> str:
        u = self.users()[name]
        kind = u.get("kind", "dd")
        if kind == "classic":
            return u["secret"]
        if kind == "dd":
            return "dd" + u["secret"]
        return "ee" + u["secret"] + u["domain"].encode().hex()

    def port(self) -> int:
        listen = tomllib.loads(self.config.read_text())["server"]["listen"]
        return int(listen[0].rsplit(":", 1)[1])

    def snapshot(self, exclude_logs=True) -> dict:
        """path -> (sha256, mode, uid, mtime_ns) of every file setup owns (logs left out:
        the running proxy writes them)."""
        out = {}
        roots = [self.install_dir, self.config_dir, self.data_dir, self.unit_dir, self.logrotate_dir,
                 self.vless_compose.parent]
        if not exclude_logs:
            roots.append(self.log_dir)
        for r in roots:
            if not r.exists():
                continue
            for p in sorted(r.rglob("*")):
                st = os.lstat(p)
                if p.is_symlink():
                    out[str(p)] = ("link", os.readlink(p))
                elif p.is_file():
                    out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), oct(st.st_mode), st.st_uid, st.st_mtime_ns)
                else:
                    out[str(p)] = ("dir", oct(st.st_mode), st.st_uid)
        return out


@pytest.fixture
def layout(static_bin):
    """Under a world-traversable folder, as /opt is: the container user (65534) and logrotate's
    `su 65534` must reach the log and data folders (pytest's own temporary root is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="vmtp-install-"))
    base.chmod(0o755)
    yield Layout(base / "host", static_bin)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fakedc():
    from fakedc import FakeDC
    dc = FakeDC().start()
    yield dc
    dc.stop()


def td_ping(server: str, port: int, secret: str, timeout: float = 30.0) -> dict:
    """TDLib pingProxy through the proxy (tests/e2e/tdclient.py in its own process)."""
    import json
    r = subprocess.run([sys.executable, str(E2E / "tdclient.py"), "--server", server, "--port", str(port),
                        "--secret", secret, "--action", "ping", "--timeout", str(timeout)],
                       capture_output=True, text=True, timeout=timeout + 40)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines, "tdclient printed nothing (exit %s): %s" % (r.returncode, r.stderr[-2000:])
    return json.loads(lines[-1])


