"""Real HAProxy (Debian package) in front of the proxy on a shared port, configured with the
lines `vless-mtproxy haproxy-snippet` prints: the fake-TLS cover domain's SNI goes to the proxy
with a PROXY v2 header, every other SNI to the other backend (standing in for the VPN).

    c1 10.231.4.2 --veth-- 10.231.4.1 srv: haproxy :443 -> proxy 127.0.0.1:8443 (send-proxy-v2)
                                                      -> "vpn" openssl s_server 127.0.0.1:9443
                                           proxy also listens on 10.231.4.1:8443 (direct)
"""

from __future__ import annotations

import re
import subprocess

from conftest import BIN, ProxyProc, User, dc_constructors, listening_in, run, self_signed, start_fakedc, wait_until

COVER = "cover.test"
OTHER = "vpn.test"


def test_sni_route_with_proxy_v2_and_untrusted_header(netns, tmp_path):
    srv, c1 = netns.add("srv"), netns.add("c1")
    netns.link(srv, "10.231.4.1", c1, "10.231.4.2")
    events = start_fakedc(netns, srv, tmp_path)

    eve = User("eve", "ee", domain=COVER)
    proxy = ProxyProc(netns, srv, tmp_path, [eve], dc_port=4443, port=8443, log_level="debug",
                      extra_server='proxy_protocol = true\ntrusted_proxies = ["127.0.0.1/32"]')

    # The other route: a TLS server for another name, standing in for the VPN's backend.
    cert, key = self_signed(tmp_path, OTHER)
    vpn = netns.popen(srv, ["openssl", "s_server", "-accept", "127.0.0.1:9443", "-cert", cert, "-key", key,
                            "-www", "-naccept", "1000"], tmp_path / "vpn.log")
    assert wait_until(lambda: vpn.poll() is not None or listening_in(netns, srv, 9443), 10) and vpn.poll() is None

    snippet = run([BIN, "haproxy-snippet", "--domain", COVER, "--backend", "127.0.0.1:8443",
                   "--bind", "10.231.4.1:443", "--default-backend", "vpn", "--reality-dest", OTHER]).stdout
    assert "send-proxy-v2" in snippet and "req_ssl_sni -i %s" % COVER in snippet
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                   "    timeout client 30s\n    timeout server 30s\n\n" + snippet
                   + "\nbackend vpn\n    mode tcp\n    server vpn 127.0.0.1:9443\n")
    run(["haproxy", "-c", "-f", cfg])
    hap = netns.popen(srv, ["haproxy", "-db", "-f", cfg], tmp_path / "haproxy.log")
    assert wait_until(lambda: hap.poll() is not None or listening_in(netns, srv, 443), 10) and hap.poll() is None, \
        (tmp_path / "haproxy.log").read_text()

    # TDLib with the ee link reaches the proxy through HAProxy's SNI route.
    res = netns.tdlib_ping(c1, "10.231.4.1", 443, eve.client_secret)
    assert res["ok"], res
    assert "req_pq_multi" in dc_constructors(events)
    log = proxy.log()
    relayed = re.findall(r"relaying client=(\S+)", log)
    assert relayed and all(c.startswith("10.231.4.2:") for c in relayed), log[-3000:]
    assert "client=127.0.0.1" not in log, "the proxy logged HAProxy's address instead of the client's"

    # A failed handshake through HAProxy is logged with the client's real address (fail2ban).
    r = netns.client(c1, "tls", "--host", "10.231.4.1", "--port", 443, "--key", "00" * 16, "--domain", COVER)
    assert not r["ok"], r
    assert wait_until(lambda: [c for c, why in proxy.failures() if why == "bad_secret"], 10), proxy.log()[-2000:]
    assert all(c.startswith("10.231.4.2:") for c, why in proxy.failures()), proxy.failures()

    # A PROXY header straight from the client (not a trusted source) is a failed handshake,
    # logged with the socket's address, never with the address the header claims.
    for version in ("1", "2"):
        netns.client(c1, "proxyhdr", "--host", "10.231.4.1", "--port", 8443, "--version", version,
                     "--src", "198.51.100.77:4242")
    untrusted = wait_until(lambda: [c for c, why in proxy.failures() if why == "untrusted_proxy"], 10)
    assert len(untrusted) == 2 and all(c.startswith("10.231.4.2:") for c in untrusted), proxy.failures()
    assert "198.51.100.77" not in proxy.log()

    # Another SNI on the shared port goes to the other backend.
    cp = netns.exec(c1, ["openssl", "s_client", "-connect", "10.231.4.1:443", "-servername", OTHER],
                    timeout=20, check=False, input="")
    assert re.search(r"subject=\s*CN\s*=\s*%s" % re.escape(OTHER), cp.stdout), cp.stdout[-2000:]
    assert hap.poll() is None


def test_snippet_refuses_shared_reality_name():
    cp = subprocess.run([str(BIN), "haproxy-snippet", "--domain", COVER, "--backend", "127.0.0.1:8443",
                         "--reality-dest", COVER + ":443"], capture_output=True, text=True, timeout=20)
    assert cp.returncode != 0 and "Reality destination" in cp.stderr, cp.stderr
