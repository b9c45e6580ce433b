"""Setup orchestrates the host-security commands (issue 6): it adds the UFW rule for the port and
writes the fail2ban filter and jail for the proxy's log file; a second run changes neither; the
uninstall removes exactly the rule and the files it added. UFW runs on a private copy of its
files (--rootdir/--datadir), fail2ban's folder is a temporary one: the machine's own firewall
and fail2ban are never touched."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import podman
from helpers import ufw_root


def test_firewall_rule_and_fail2ban_jail_added_and_removed(layout, podman_env, tmp_path, fakedc):
    if shutil.which("ufw") is None:
        pytest.fail("ufw is required (apt-get install ufw)")
    env = podman_env
    root = ufw_root(tmp_path)
    ufw = ["ufw", "--rootdir=%s" % root, "--datadir=%s" % root]
    f2b = tmp_path / "fail2ban"
    (f2b / "filter.d").mkdir(parents=True)
    (f2b / "jail.d").mkdir()
    args = [str(layout.binary), "setup", *layout.path_args(), "--non-interactive", "--runtime", "podman",
            "--port", "18445", "--public-host", "127.0.0.1", "--dc-override", "*=127.0.0.1:%d" % fakedc.port,
            "--fail2ban-dir", str(f2b), "--ufw-arg=--ufw-rootdir", "--ufw-arg=%s" % root,
            "--ufw-arg=--ufw-datadir", "--ufw-arg=%s" % root]

    def added():
        out = subprocess.run(ufw + ["show", "added"], capture_output=True, text=True, timeout=60).stdout
        return [l for l in out.splitlines() if l.startswith("ufw ")]

    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "setup failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert added() == ["ufw allow 18445/tcp comment 'vless-mtproxy'"], r.stdout
    jail = (f2b / "jail.d" / "vless-mtproxy.local").read_text()
    assert "logpath  = %s" % (layout.log_dir / "proxy.log") in jail and "port     = 18445" in jail, jail
    assert (f2b / "filter.d" / "vless-mtproxy.conf").is_file()
    if shutil.which("fail2ban-regex"):
        assert "sample lines matched, as expected" in r.stdout, r.stdout

    files = {p: p.read_bytes() for p in f2b.rglob("*") if p.is_file()}
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert added() == ["ufw allow 18445/tcp comment 'vless-mtproxy'"], "the second run must not add a second rule"
    assert {p: p.read_bytes() for p in f2b.rglob("*") if p.is_file()} == files

    # An operator's own rule stays through uninstall.
    subprocess.run(ufw + ["allow", "22/tcp"], check=True, capture_output=True, timeout=60)
    r = subprocess.run([str(layout.installed), "uninstall", "--yes", "--data-dir", str(layout.data_dir)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "uninstall failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert added() == ["ufw allow 22/tcp"], "uninstall must remove exactly our rule"
    assert not any(p.is_file() for p in f2b.rglob("*")), "fail2ban files left: %s" % list(f2b.rglob("*"))
    assert podman(env, "ps", "-a", "-q").stdout.strip() == ""
