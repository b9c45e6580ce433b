"""The wizard driven through a pseudo-terminal, answering each prompt (a taken port refused, then
fake-TLS with a cover domain), ends with a running proxy in a Podman container that TDLib
`pingProxy` reaches through the fake DC. The host has a VLESS compose file: the service is added
to it with a backup and taken out again by uninstall, leaving the original bytes."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time

from conftest import podman, td_ping

VLESS_COMPOSE = """# VLESS-Reality stack (the admin's file)
services:
  xray:
    image: teddysun/xray:1.8.4   # the VPN itself
    network_mode: host
    volumes:
      - ./xray:/etc/xray

  haproxy:
    image: haproxy:2.8
    network_mode: host
"""


class Pty:
    """A child on a pseudo-terminal; `expect` reads until a pattern shows up (bounded)."""

    def __init__(self, cmd, env):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.buf = ""

    def _read(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return None
        if not data:
            return None
        self.buf += data.decode(errors="replace")
        return True

    def expect(self, pattern, timeout=30.0):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = end - time.monotonic()
            if left <= 0 or self._read(min(left, 1.0)) is None:
                raise AssertionError("did not see %r; output so far:\n%s" % (pattern, self.buf[-4000:]))

    def send(self, text):
        os.write(self.master, text.encode())

    def finish(self, timeout=240.0):
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read(0.5)
        while self._read(0.1):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("the wizard did not finish; output:\n%s" % self.buf[-4000:])
        os.close(self.master)
        return self.proc.returncode


def test_wizard_through_a_pty_ends_with_a_running_proxy(layout, podman_env, fakedc):
    env = podman_env
    layout.vless_compose.parent.mkdir(parents=True)
    layout.vless_compose.write_text(VLESS_COMPOSE)
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]

    cmd = [str(layout.binary), "setup", *layout.path_args(), "--runtime", "podman", "--public-host", "127.0.0.1",
           "--dc-override", "*=127.0.0.1:%d" % fakedc.port, "--ufw", "off", "--fail2ban-mode", "off"]
    # Called by its seed name through a link, as an admin would.
    link = layout.base / "vless-mtproxy-setup"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(layout.binary, link)
    cmd[0] = str(link)
    cmd.remove("setup")
    t = Pty(cmd, env)
    try:
        t.expect(r"Install the Telegram proxy on this host\? \(y/n\) \[y\]: ")
        t.send("\r")
        t.expect(r"Port clients connect to \(1-65535\) \[8443\]: ")
        t.send("%d\r" % taken)
        t.expect(r"port %d is already in use" % taken)
        t.expect(r"Port clients connect to \(1-65535\) \[8443\]: ")
        t.send("18444\r")
        t.expect(r"Worker threads \(1-256\) \[1\]: ")
        t.send("\r")
        t.expect(r"Secret kind \(classic/dd/ee\) \[dd\]: ")
        t.send("ee\r")
        t.expect(r"Cover domain \[www\.cloudflare\.com\]: ")
        t.send("localhost\r")
        t.expect(r"not a usable cover domain")
        t.expect(r"Cover domain \[www\.cloudflare\.com\]: ")
        t.send("www.example.com\r")
        t.expect(r"Promoted channel tag .*: ")
        t.send("\r")
        t.expect(r"Summary:")
        t.expect(r"cover domain\s+www\.example\.com")
        t.expect(r"Proceed\? \(y/n\) \[y\]: ")
        t.send("y\r")
        for n in range(1, 9):
            t.expect(r"\[%d/8\] " % n, timeout=180)
        rc = t.finish()
        out = t.buf
    finally:
        busy.close()
        if t.proc.poll() is None:
            t.proc.kill()
    assert rc == 0, "the wizard failed (%d):\n%s" % (rc, out)
    secret = layout.client_secret("default")
    assert secret.startswith("ee") and secret.endswith("www.example.com".encode().hex())
    assert "tg://proxy?server=127.0.0.1&port=18444&secret=%s" % secret in out

    res = td_ping("127.0.0.1", 18444, secret)
    assert res["ok"], "TDLib pingProxy (ee) through the wizard's proxy failed: %s" % res

    # The VLESS compose file got our service, after a backup; every other byte is the admin's.
    text = layout.vless_compose.read_text()
    assert text.startswith(VLESS_COMPOSE.rstrip("\n")), text
    assert "\n  vless_mtproxy:\n    image: vless_mtproxy:latest\n" in text
    backups = list((layout.data_dir / "setup" / "backup").glob("docker-compose.yml.*.bak"))
    assert [b.read_text() for b in backups] == [VLESS_COMPOSE]

    r = subprocess.run([str(layout.installed), "uninstall", "--yes", "--purge", "--data-dir", str(layout.data_dir)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "uninstall failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert layout.vless_compose.read_text() == VLESS_COMPOSE, "uninstall must restore the admin's compose file"
    assert podman(env, "ps", "-a", "-q").stdout.strip() == ""
    assert podman(env, "images", "-q").stdout.strip() == ""
    for d in (layout.config_dir, layout.log_dir, layout.data_dir):
        assert not d.exists(), "--purge left %s" % d
