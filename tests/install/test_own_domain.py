"""Own-domain mode end to end (issue 11): setup, non-interactively, with a certificate for
`cover.test` from a test CA, writes a real nginx site (Debian's nginx, a private main
configuration) on 127.0.0.1:10443 and runs the proxy on 443 in a Podman container in front of it.
Then, inside the suite's network namespace (its /etc/hosts names 127.0.0.1 cover.test):

- `openssl s_client -servername cover.test` to the proxy's 443 gets the real certificate and
  verifies it against the test CA; an HTTP request through it gets the site's page;
- an unknown SNI gets, byte for byte, the answer nginx gives it directly (ssl_reject_handshake);
- TDLib with the ee link reaches the fake DC through the same port 443;
- doctor's chain checks (points here, TLS 1.3 with X25519, certificate, learned flight) are ok;
- an operator's own nginx file at the site's path is refused without --replace-nginx-site;
- uninstall removes the site, the folder setup created, and stops the nginx setup started.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

from certs import TestCA
from conftest import NETNS, podman, td_ping, wait_until

DOMAIN = "cover.test"
COVER_PORT = 10443


def nginx_main_conf(base: Path) -> tuple[Path, Path]:
    """A private nginx main configuration that includes one site folder (as conf.d is)."""
    sites = base / "nginx" / "conf.d"
    sites.mkdir(parents=True)
    conf = base / "nginx" / "nginx.conf"
    conf.write_text("user www-data;\nworker_processes 1;\npid %s;\nerror_log %s warn;\nevents { worker_connections 64; }\n"
                    "http {\n    access_log off;\n    include /etc/nginx/mime.types;\n    include %s/*.conf;\n}\n"
                    % (base / "nginx" / "nginx.pid", base / "nginx" / "error.log", sites))
    return conf, sites


def client_hello(sni: str) -> bytes:
    """The ClientHello Python's TLS stack sends for `sni` (read from a memory BIO, not sent)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def answer_to(port: int, data: bytes) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


def in_netns(cmd, **kw):
    """Run in the suite's namespace through `ip netns exec`, so /etc/netns/NS/hosts applies."""
    return subprocess.run(["ip", "netns", "exec", NETNS, *map(str, cmd)], capture_output=True, text=True, **kw)


def test_own_domain_setup_nginx_cover_and_doctor(layout, podman_env, fakedc, tmp_path):
    env = podman_env
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue("live/" + DOMAIN, [DOMAIN])
    nginx_conf, sites = nginx_main_conf(layout.base.parent)
    site_root = layout.base.parent / "www" / "cover"
    hosts_dir = Path("/etc/netns") / NETNS
    hosts_dir.mkdir(parents=True, exist_ok=True)
    (hosts_dir / "hosts").write_text("127.0.0.1 localhost %s\n" % DOMAIN)
    nginx_started = False
    try:
        args = [str(layout.binary), "setup", *layout.path_args(), "--non-interactive", "--runtime", "podman",
                "--own-domain", DOMAIN, "--cert", cert, "--key", key, "--site", site_root,
                "--nginx-conf", nginx_conf, "--nginx-site-dir", sites,
                "--dc-override", "*=127.0.0.1:%d" % fakedc.port, "--ufw", "off", "--fail2ban-mode", "off"]
        args = list(map(str, args))

        # An operator's own file where the site would go is not replaced without being asked.
        theirs = "server { listen 127.0.0.1:10999; return 204; }\n"
        (sites / "vless-mtproxy-cover.conf").write_text(theirs)
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "--replace-nginx-site" in r.stderr, (r.returncode, r.stdout, r.stderr)
        assert (sites / "vless-mtproxy-cover.conf").read_text() == theirs
        assert not layout.config_dir.exists(), "a refused setup must not create anything"
        (sites / "vless-mtproxy-cover.conf").unlink()

        # A key that is not the certificate's is refused, naming the fix.
        _, other_key = ca.issue("other", ["other.test"])
        bad = [a if a != str(key) else str(other_key) for a in args]
        r = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "is not the key of the certificate" in r.stderr, r.stderr

        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        nginx_started = "nginx started" in r.stdout
        assert r.returncode == 0, "setup failed:\n%s\n%s" % (r.stdout, r.stderr)
        assert "[9/9] " in r.stdout, r.stdout
        assert "presents the certificate; an unknown name is refused" in r.stdout, r.stdout
        site = (sites / "vless-mtproxy-cover.conf").read_text()
        assert "ssl_reject_handshake on;" in site and "server_name %s;" % DOMAIN in site, site
        assert (site_root / "index.html").is_file()
        cfg = layout.config.read_text()
        assert 'mask_host = "127.0.0.1:%d"' % COVER_PORT in cfg and 'public_host = "%s"' % DOMAIN in cfg, cfg
        assert layout.port() == 443
        secret = layout.client_secret("default")
        assert secret.startswith("ee") and secret.endswith(DOMAIN.encode().hex())
        assert "tg://proxy?server=%s&port=443&secret=%s" % (DOMAIN, secret) in r.stdout

        # The domain's SNI on the proxy's port: the real certificate, verified by the test CA.
        sc = in_netns(["openssl", "s_client", "-connect", "127.0.0.1:443", "-servername", DOMAIN,
                       "-CAfile", ca.pem, "-verify_hostname", DOMAIN, "-tls1_3"], input="", timeout=30)
        assert "Verify return code: 0 (ok)" in sc.stdout, sc.stdout[-3000:] + sc.stderr[-2000:]
        assert "CN = %s" % DOMAIN in sc.stdout or "CN=%s" % DOMAIN in sc.stdout, sc.stdout[-3000:]
        leaf = cert.read_text().split("-----END CERTIFICATE-----")[0]
        shown = in_netns(["openssl", "s_client", "-connect", "127.0.0.1:443", "-servername", DOMAIN, "-showcerts"],
                         input="", timeout=30).stdout
        assert leaf.strip() in shown, "the proxy's 443 must present the domain's own certificate"
        page = in_netns(["openssl", "s_client", "-connect", "127.0.0.1:443", "-servername", DOMAIN, "-quiet"],
                        input="GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % DOMAIN, timeout=30).stdout
        assert "HTTP/1.1 200 OK" in page and "under construction" in page, page[-2000:]

        # An unknown SNI is refused exactly as nginx refuses it.
        hello = client_hello("unknown.example")
        direct = answer_to(COVER_PORT, hello)
        via_proxy = answer_to(443, hello)
        assert direct[:1] == b"\x15" and direct[-1:] == b"\x70", "nginx answers unrecognized_name: %r" % direct
        assert via_proxy == direct, "via the proxy %r, nginx itself %r" % (via_proxy, direct)

        # Telegram clients still get through on the same port.
        res = td_ping("127.0.0.1", 443, secret)
        assert res["ok"], "TDLib pingProxy (own-domain ee) failed: %s" % res

        # doctor: the whole chain is ok (the flight is learned shortly after start).
        def doctor():
            d = in_netns([layout.installed, "--config", layout.config, "doctor", "--json", "--timeout", "2s",
                          "--data-dir", layout.data_dir], timeout=90)
            return {c["name"]: c for c in json.loads(d.stdout)["checks"]}

        names = ["cover %s: %s" % (DOMAIN, n) for n in ("DNS", "points here", "TLS 1.3", "certificate", "learned flight")]
        last = {}

        def chain_ok():
            last.clear()
            last.update(doctor())
            return all(last.get(n, {}).get("status") == "ok" for n in names)

        assert wait_until(chain_ok, 60), json.dumps({n: last.get(n) for n in names}, indent=1)
        assert "X25519" in last[names[2]]["detail"], last[names[2]]
        assert "valid until" in last[names[3]]["detail"] and "test CA" in last[names[3]]["detail"], last[names[3]]

        r = subprocess.run([str(layout.installed), "uninstall", "--yes", "--data-dir", str(layout.data_dir)],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "uninstall failed:\n%s\n%s" % (r.stdout, r.stderr)
        assert not (sites / "vless-mtproxy-cover.conf").exists() and not site_root.exists(), r.stdout
        assert "stopped nginx" in r.stdout, r.stdout
        nginx_started = False
        assert wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", COVER_PORT)) != 0, 10)
        assert podman(env, "ps", "-a", "-q").stdout.strip() == ""
    finally:
        if nginx_started:
            subprocess.run(["nginx", "-c", str(nginx_conf), "-s", "quit"], capture_output=True, timeout=30)
        (hosts_dir / "hosts").unlink(missing_ok=True)
        try:
            hosts_dir.rmdir()
        except OSError:
            pass
