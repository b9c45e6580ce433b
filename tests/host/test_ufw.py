"""UFW across a veth pair between two namespaces created here (ufw's default rules accept
everything on `lo`, so loopback would prove nothing). ufw runs on a private copy of its files
(--rootdir/--datadir), so the host's firewall is never touched.

    cli 10.231.3.2 --veth-- 10.231.3.1 srv (ufw enabled, default deny incoming; listener :8443)
"""

from __future__ import annotations

from conftest import BIN, PY, listening_in, wait_until
from helpers import ufw_root

PORT = 8443
OTHER = 9000

LISTENER = """
import socket, sys
socks = []
for p in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p)); s.listen(16); s.settimeout(0.2); socks.append(s)
import time
end = time.time() + 240
while time.time() < end:
    for s in socks:
        try:
            c, _ = s.accept(); c.close()
        except OSError:
            pass
"""


def test_rule_opens_port_and_remove_closes_it(netns, tmp_path):
    srv, cli = netns.add("srv"), netns.add("cli")
    netns.link(srv, "10.231.3.1", cli, "10.231.3.2")
    root = ufw_root(tmp_path)
    ufw = ["ufw", "--rootdir=%s" % root, "--datadir=%s" % root]
    ours = [BIN, "ufw", "--ufw-rootdir", root, "--ufw-datadir", root]

    def connects(port):
        return netns.client(cli, "connect", "--host", "10.231.3.1", "--port", port, "--timeout", 2)["connected"]

    def added():
        out = netns.exec(srv, ufw + ["show", "added"]).stdout
        return [l for l in out.splitlines() if l.startswith("ufw ")]

    # Inactive UFW: said, and the rule is still recorded for when it is enabled.
    out = netns.exec(srv, ours + ["allow", "--port", PORT]).stdout
    assert "inactive" in out, out
    out = netns.exec(srv, ours + ["remove", "--port", PORT]).stdout
    assert "removed 1" in out and added() == [], out

    netns.exec(srv, ufw + ["--force", "enable"], timeout=60)
    netns.popen(srv, [PY, "-c", LISTENER, PORT, OTHER], tmp_path / "listener.log")
    assert wait_until(lambda: listening_in(netns, srv, PORT) and listening_in(netns, srv, OTHER), 10)
    assert not connects(PORT), "UFW's default policy should refuse the port before our rule"

    out = netns.exec(srv, ours + ["allow", "--port", PORT]).stdout
    assert out.strip() == "UFW rule added", out
    assert added() == ["ufw allow %d/tcp comment 'vless-mtproxy'" % PORT]
    assert connects(PORT)
    out = netns.exec(srv, ours + ["allow", "--port", PORT]).stdout
    assert "already present" in out and len(added()) == 1, out

    # limit replaces our allow (exactly one rule of ours), with the warning.
    cp = netns.exec(srv, ours + ["limit", "--port", PORT])
    assert "6 connections per 30 s" in cp.stderr, cp.stderr
    assert added() == ["ufw limit %d/tcp comment 'vless-mtproxy'" % PORT]
    assert connects(PORT)

    # An operator's own rule for another port is never touched; ours refuses to duplicate it.
    netns.exec(srv, ufw + ["allow", "%d/tcp" % OTHER])
    out = netns.exec(srv, ours + ["allow", "--port", OTHER]).stdout
    assert "already in another UFW rule" in out, out
    out = netns.exec(srv, ours + ["remove", "--port", OTHER]).stdout
    assert "nothing removed" in out, out
    assert connects(OTHER)

    out = netns.exec(srv, ours + ["remove", "--port", PORT]).stdout
    assert "removed 1" in out, out
    assert added() == ["ufw allow %d/tcp" % OTHER]
    assert not connects(PORT), "after remove the port must be closed again"
    assert connects(OTHER)
