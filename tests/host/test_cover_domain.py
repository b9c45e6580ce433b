"""The network check of a cover domain (`add-fake-tls-domain`, `add-user --fake-tls`) against
real servers: a namespace whose /etc/hosts names 127.0.0.1 `cover.test`, and on its port 443 in
turn openssl s_server with TLS 1.3, openssl s_server limited to TLS 1.2, a TCP listener that
never answers, and nothing. The check only warns: the domain is saved every time.

    ns "dom": lo 127.0.0.1 (cover.test) :443
"""

from __future__ import annotations

import json
import os
import time

from conftest import BIN, PY, listening_in, self_signed, wait_until

DOMAIN = "cover.test"
SILENT = """
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 443)); s.listen(16)
conns = []
end = time.time() + 120
s.settimeout(0.2)
while time.time() < end:
    try:
        conns.append(s.accept()[0])   # accept, read nothing, answer nothing
    except OSError:
        pass
"""


def test_cover_domain_check_reads_the_tls_version(netns, tmp_path):
    ns = netns.add("dom")
    netns.hosts(ns, "127.0.0.1 localhost %s\n" % DOMAIN)
    cert, key = self_signed(tmp_path, DOMAIN)
    config = tmp_path / "config.toml"
    config.write_text('[server]\npublic_host = "proxy.test"\n[users.a]\nsecret = "0123456789abcdef0123456789abcdef"\n')
    os.chmod(config, 0o600)

    def check(name: str):
        """Add DOMAIN as user `name`'s cover domain; (stderr, seconds); the user is saved."""
        t0 = time.monotonic()
        cp = netns.exec(ns, [BIN, "add-user", name, "--fake-tls", DOMAIN, "--no-qr", "--config", config])
        took = time.monotonic() - t0
        assert "[users.%s]" % name in config.read_text()
        return cp.stderr, took

    def serve(cmd, log):
        p = netns.popen(ns, cmd, tmp_path / log)
        assert wait_until(lambda: p.poll() is not None or listening_in(netns, ns, 443), 10) and p.poll() is None, \
            (tmp_path / log).read_text(errors="replace")
        return p

    def stop(p):
        p.terminate()
        p.wait(5)
        assert wait_until(lambda: not listening_in(netns, ns, 443), 10)

    s_server = ["openssl", "s_server", "-accept", "127.0.0.1:443", "-cert", cert, "-key", key, "-www", "-naccept", "20"]

    p = serve(s_server + ["-tls1_3"], "tls13.log")
    err, _ = check("u13")
    assert "checked: %s resolves (127.0.0.1) and answers TLS 1.3 on port 443" % DOMAIN in err, err
    assert "warning" not in err, err
    # ... and its TLS flight is learned into the cover cache next to the config.
    assert "learned: the TLS flight of %s from %s:443" % (DOMAIN, DOMAIN) in err, err
    cache = json.loads((tmp_path / "config.toml.covers").read_text())
    entry = cache["covers"][DOMAIN]
    assert entry["target"] == "%s:443" % DOMAIN and abs(entry["learned_at"] - time.time()) < 60
    assert set(entry["variants"]) == {"default", "apple"}
    for v in entry["variants"].values():
        assert v["change_cipher_spec"] and len(v["samples"]) == 3 and all(len(s) >= 3 for s in v["samples"]), v
    stop(p)

    p = serve(s_server + ["-no_tls1_3"], "tls12.log")
    err, _ = check("u12")
    assert "warning: %s (127.0.0.1:443) chose TLS 1.2, not 1.3" % DOMAIN in err, err
    assert "cannot learn the TLS flight of %s" % DOMAIN in err and "not TLS 1.3" in err, err
    stop(p)

    p = serve([PY, "-c", SILENT], "silent.log")
    err, took = check("usilent")
    assert "sent no TLS answer within 2s" in err, err
    assert took < 10, "each step is bounded (%.1f s)" % took
    stop(p)

    err, _ = check("unone")
    assert "is unreachable" in err and "Connection refused" in err, err
