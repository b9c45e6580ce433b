"""doctor's own-domain chain checks report the right failure (issue 11). In a namespace whose
/etc/hosts says where `cover.test` points, the cover (mask host 127.0.0.1:10443) is in turn
real nginx with a good certificate from a test CA, openssl s_server with an expired certificate,
and openssl s_server with a certificate for another name; the configuration is an own-domain one
(`public_host = "cover.test"`, ee user for it, `[fronting] mask_host`). No proxy is needed: the
chain checks look at DNS and at the cover itself.

    ns "od": lo 127.0.0.1, cover :10443; /etc/hosts: cover.test -> 127.0.0.1, then 192.0.2.10
"""

from __future__ import annotations

import json
import os

from certs import TestCA
from conftest import BIN, listening_in, wait_until

DOMAIN = "cover.test"
PORT = 10443


def doctor(netns, ns, config) -> dict:
    cp = netns.exec(ns, [BIN, "--config", config, "doctor", "--json", "--timeout", "2s"], timeout=90, check=False)
    return {c["name"]: c for c in json.loads(cp.stdout)["checks"]}


def check(checks, what):
    return checks["cover %s: %s" % (DOMAIN, what)]


def test_doctor_names_the_broken_link_of_an_own_domain(netns, tmp_path):
    ns = netns.add("od")
    netns.hosts(ns, "127.0.0.1 localhost %s\n" % DOMAIN)
    ca = TestCA(tmp_path / "ca")
    good, good_key = ca.issue("good", [DOMAIN])
    expired, expired_key = ca.issue("expired", [DOMAIN], days_from=-30, days_to=-2)
    soon, soon_key = ca.issue("soon", [DOMAIN], days_from=-60, days_to=5)
    other, other_key = ca.issue("other", ["other.test"])
    config = tmp_path / "config.toml"
    config.write_text('[server]\nlisten = ["127.0.0.1:18443"]\npublic_host = "%s"\n[stats]\nlisten = "off"\n'
                      '[fronting]\nmask_host = "127.0.0.1:%d"\n[fake_tls]\nemulate_cover = false\n'
                      '[users.a]\nsecret = "0123456789abcdef0123456789abcdef"\nkind = "ee"\ndomain = "%s"\n'
                      % (DOMAIN, PORT, DOMAIN))
    os.chmod(config, 0o600)

    def serve(cmd, log):
        p = netns.popen(ns, cmd, tmp_path / log)
        assert wait_until(lambda: p.poll() is not None or listening_in(netns, ns, PORT), 10) and p.poll() is None, \
            (tmp_path / log).read_text(errors="replace")
        return p

    def stop(p):
        p.terminate()
        p.wait(5)
        assert wait_until(lambda: not listening_in(netns, ns, PORT), 10)

    # Real nginx, the way setup writes the site (nginx takes the protocol versions from the port's
    # default server, so they are set there too): every chain check is ok.
    conf = tmp_path / "nginx.conf"
    conf.write_text("worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/nginx.err;\ndaemon off;\n"
                    "events { worker_connections 32; }\nhttp {\n    access_log off;\n"
                    "    server { listen 127.0.0.1:%d ssl default_server; server_name _; ssl_reject_handshake on;\n"
                    "             ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1; }\n"
                    "    server { listen 127.0.0.1:%d ssl; server_name %s; ssl_certificate %s; ssl_certificate_key %s;\n"
                    "             ssl_protocols TLSv1.2 TLSv1.3; ssl_ecdh_curve X25519:prime256v1; return 200 ok; }\n}\n"
                    % (tmp_path, tmp_path, PORT, PORT, DOMAIN, good, good_key))
    p = serve(["nginx", "-c", conf], "nginx.log")
    c = doctor(netns, ns, config)
    for what in ("DNS", "points here", "TLS 1.3", "certificate"):
        assert check(c, what)["status"] == "ok", check(c, what)
    assert "X25519" in check(c, "TLS 1.3")["detail"]
    assert check(c, "learned flight")["status"] == "skipped"

    # The domain resolves elsewhere: an own domain must point here, and doctor says where it points.
    netns.hosts(ns, "127.0.0.1 localhost\n192.0.2.10 %s\n" % DOMAIN)
    c = doctor(netns, ns, config)
    here = check(c, "points here")
    assert here["status"] == "fail" and "192.0.2.10" in here["detail"] and "none of them this host" in here["detail"], here
    assert "A/AAAA" in here["advice"], here
    netns.hosts(ns, "127.0.0.1 localhost %s\n" % DOMAIN)
    stop(p)

    s_server = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % PORT, "-www", "-naccept", "20", "-tls1_3"]

    p = serve(s_server + ["-cert", expired, "-key", expired_key], "expired.log")
    cert = check(doctor(netns, ns, config), "certificate")
    assert cert["status"] == "fail" and "expired on" in cert["detail"], cert
    stop(p)

    p = serve(s_server + ["-cert", soon, "-key", soon_key], "soon.log")
    cert = check(doctor(netns, ns, config), "certificate")
    assert cert["status"] == "warn" and "expires on" in cert["detail"], cert
    stop(p)

    p = serve(s_server + ["-cert", other, "-key", other_key], "other.log")
    c = doctor(netns, ns, config)
    cert = check(c, "certificate")
    assert cert["status"] == "fail" and "for other.test, not %s" % DOMAIN in cert["detail"], cert
    stop(p)
