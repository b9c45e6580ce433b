"""fail2ban (Debian package, run as fail2ban-server with its own config dir inside the server
namespace) reads the proxy's log file and bans a prober through iptables, while a client with a
valid secret, and a user whose secret was rotated out, keep working.

Topology (all namespaces created here):
    c1 10.231.1.2 --veth-- 10.231.1.1 [srv: proxy :8443, fake DC 127.0.0.1:4443, fail2ban] 10.231.2.1 --veth-- 10.231.2.2 c2
"""

from __future__ import annotations

import secrets
import shutil
import time

from conftest import BIN, ProxyProc, User, dc_constructors, run, start_fakedc, wait_until

PORT = 8443


def f2b_confdir(tmp_path, logfile, port):
    """A private fail2ban configuration: the Debian files, our generated filter and jail, and the
    settings docs/testing.md lists for a namespace without systemd."""
    conf = tmp_path / "f2b"
    shutil.copytree("/etc/fail2ban", conf)
    for f in (conf / "jail.d").iterdir():
        f.unlink()
    run_dir = tmp_path / "f2b-run"
    run_dir.mkdir()
    (conf / "fail2ban.local").write_text(
        "[Definition]\nloglevel = INFO\nlogtarget = %s\nsocket = %s\npidfile = %s\ndbfile = :memory:\n"
        % (run_dir / "fail2ban.log", run_dir / "f2b.sock", run_dir / "f2b.pid"))
    (conf / "jail.local").write_text(
        "[DEFAULT]\nbanaction = iptables-multiport\nbanaction_allports = iptables-allports\n"
        "backend = polling\nignoreself = false\nignoreip =\n")
    out = run([BIN, "fail2ban-config", "--write", conf, "--log", logfile, "--port", port, "--check"]).stdout
    assert "matched, as expected" in out, out
    # The generated jail says backend = auto (inotify or polling, whatever the host has);
    # polling is what works reliably inside a namespace without systemd.
    (conf / "jail.d" / "zz-test.local").write_text("[vless-mtproxy]\nbackend = polling\n")
    return conf, run_dir


def banned(net, srv, conf, run_dir):
    cp = net.exec(srv, ["fail2ban-client", "-c", conf, "-s", run_dir / "f2b.sock", "status", "vless-mtproxy"], check=False)
    for line in cp.stdout.splitlines():
        if "Banned IP list:" in line:
            return line.split("Banned IP list:", 1)[1].split()
    return None


def test_prober_banned_valid_and_rotated_users_keep_working(netns, tmp_path):
    srv, c1, c2 = netns.add("srv"), netns.add("c1"), netns.add("c2")
    netns.link(srv, "10.231.1.1", c1, "10.231.1.2")
    netns.link(srv, "10.231.2.1", c2, "10.231.2.2")
    events = start_fakedc(netns, srv, tmp_path)

    alice = User("alice", "dd")
    bob = User("bob", "dd")  # rotated: `old` expired a minute ago, bob.secret is current
    old = secrets.token_hex(16)
    bob_toml = bob.toml() + 'previous_secret = "%s"\nprevious_secret_expires = %d\n' % (old, int(time.time()) - 60)
    proxy = ProxyProc(netns, srv, tmp_path, [alice.toml(), bob_toml], dc_port=4443, port=PORT)

    conf, run_dir = f2b_confdir(tmp_path, proxy.logfile, PORT)
    netns.exec(srv, ["fail2ban-server", "-b", "-x", "-c", conf, "-s", run_dir / "f2b.sock", "-p", run_dir / "f2b.pid"])
    try:
        assert wait_until(lambda: banned(netns, srv, conf, run_dir) is not None, 20), \
            "jail vless-mtproxy did not start:\n" + (run_dir / "fail2ban.log").read_text()

        # Bob's phone still has the rotated-out secret and retries well past maxretry.
        r = netns.client(c2, "obfs2", "--host", "10.231.2.1", "--port", PORT, "--key", old, "--count", 8)
        assert all(not ok for ok, _ in r["results"]), r
        assert wait_until(lambda: sum(1 for c, why in proxy.failures()
                                      if c.startswith("10.231.2.2:") and why == "rotated_secret") >= 8, 10), proxy.log()

        # A prober from c1: five connections with random bytes (no valid secret).
        r = netns.client(c1, "garbage", "--host", "10.231.1.1", "--port", PORT, "--count", 5)
        assert all(connected for connected, _, _ in r["results"]), r
        assert wait_until(lambda: sum(1 for c, why in proxy.failures() if c.startswith("10.231.1.2:")) >= 5, 10)

        ban = wait_until(lambda: "10.231.1.2" in (banned(netns, srv, conf, run_dir) or []), 30)
        assert ban, "prober not banned; fail2ban log:\n%s\nproxy log:\n%s" % (
            (run_dir / "fail2ban.log").read_text()[-4000:], proxy.log()[-4000:])
        rules = netns.exec(srv, ["iptables", "-S"]).stdout
        assert "10.231.1.2" in rules and "f2b-vless-mtproxy" in rules, rules

        # The banned address cannot open a TCP connection any more ...
        r = netns.client(c1, "connect", "--host", "10.231.1.1", "--port", PORT, "--timeout", 3)
        assert not r["connected"], r
        # ... while the rotated user, now on the new secret, is neither banned nor refused.
        assert "10.231.2.2" not in banned(netns, srv, conf, run_dir)
        assert "10.231.2.2" not in rules
        res = netns.tdlib_ping(c2, "10.231.2.1", PORT, bob.client_secret)
        assert res["ok"], res
        res = netns.tdlib_ping(c2, "10.231.2.1", PORT, alice.client_secret)
        assert res["ok"], res
        assert "req_pq_multi" in dc_constructors(events)

        # The real proxy log, checked with fail2ban-regex: exactly the prober's lines count.
        cp = run(["fail2ban-regex", proxy.logfile, conf / "filter.d" / "vless-mtproxy.conf"])
        counted = sum(1 for _, why in proxy.failures() if why in ("bad_secret", "replay", "malformed", "untrusted_proxy"))
        assert counted >= 5
        assert "%d matched" % counted in cp.stdout, cp.stdout
    finally:
        netns.exec(srv, ["fail2ban-client", "-c", conf, "-s", run_dir / "f2b.sock", "stop"], check=False, timeout=30)


def test_generated_files_check_and_remove(tmp_path):
    """Both modes pass their own fail2ban-regex check; --remove deletes exactly our files."""
    d = tmp_path / "etc-fail2ban"
    (d / "jail.d").mkdir(parents=True)
    (d / "jail.d" / "sshd.local").write_text("[sshd]\nenabled = true\n")
    for mode, n in (("all", 2), ("replay-and-flood", 3)):
        out = run([BIN, "fail2ban-config", "--mode", mode, "--write", d, "--port", "443", "--check"]).stdout
        assert out.count("wrote ") == n and "matched, as expected" in out, out
    jail = (d / "jail.d" / "vless-mtproxy.local").read_text()
    assert "[vless-mtproxy-flood]" in jail and "port     = 443" in jail
    out = run([BIN, "fail2ban-config", "--remove", d]).stdout
    assert out.count("removed ") == 3, out
    assert sorted(p.name for p in d.rglob("*") if p.is_file()) == ["sshd.local"]
