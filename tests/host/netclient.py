"""Client actions run inside a client network namespace (`ip netns exec cN python netclient.py ...`),
printing one JSON line. Uses the e2e harness's protocol helpers (tests/e2e/mtp.py).

    connect  --host H --port P                       TCP connect only: {"connected": bool}
    garbage  --host H --port P --count N             N connections sending 64 random bytes
    obfs2    --host H --port P --key HEX --count N   N padded-intermediate req_pq_multi attempts
    tls      --host H --port P --key HEX --domain D  one fake-TLS req_pq_multi attempt
    proxyhdr --host H --port P --version 1|2 --src IP:PORT   a PROXY header, then 64 random bytes
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import mtp  # noqa: E402


def connect(host, port, timeout):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def send_and_drain(host, port, data, timeout):
    """Connect, send, read until EOF or timeout. Returns (connected, client_port, error)."""
    try:
        s = connect(host, port, timeout)
    except OSError as e:
        return False, None, repr(e)
    try:
        cport = s.getsockname()[1]
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        mtp.recv_until_eof_or(s, 1 << 20, timeout)
        return True, cport, None
    except OSError as e:
        return True, None, repr(e)
    finally:
        s.close()


def v2_header(src, dst):
    sip, sport = src.rsplit(":", 1)
    dip, dport = dst
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", 12)
            + socket.inet_aton(sip) + socket.inet_aton(dip) + struct.pack(">HH", int(sport), dport))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["connect", "garbage", "obfs2", "tls", "proxyhdr"])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--key")
    ap.add_argument("--domain")
    ap.add_argument("--version", type=int, default=2)
    ap.add_argument("--src", default="198.51.100.77:4242")
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    out: dict = {"action": a.action}
    if a.action == "connect":
        try:
            connect(a.host, a.port, a.timeout).close()
            out["connected"] = True
        except OSError as e:
            out["connected"] = False
            out["error"] = repr(e)
    elif a.action == "garbage":
        out["results"] = [send_and_drain(a.host, a.port, os.urandom(64), a.timeout) for _ in range(a.count)]
    elif a.action == "obfs2":
        res = []
        for _ in range(a.count):
            try:
                r = mtp.obfs2_req_pq(a.host, a.port, bytes.fromhex(a.key), mtp.TAG_PADDED, timeout=a.timeout)
                res.append([r.res_nonce == r.nonce, None])
            except Exception as e:  # noqa: BLE001
                res.append([False, "%s: %s" % (type(e).__name__, e)])
        out["results"] = res
    elif a.action == "tls":
        try:
            r, _, _ = mtp.fake_tls_req_pq(a.host, a.port, bytes.fromhex(a.key), a.domain, timeout=a.timeout)
            out["ok"] = r.res_nonce == r.nonce
        except Exception as e:  # noqa: BLE001
            out["ok"] = False
            out["error"] = "%s: %s" % (type(e).__name__, e)
    elif a.action == "proxyhdr":
        if a.version == 2:
            hdr = v2_header(a.src, ("10.0.0.1", a.port))
        else:
            sip, sport = a.src.rsplit(":", 1)
            hdr = ("PROXY TCP4 %s 10.0.0.1 %s %d\r\n" % (sip, sport, a.port)).encode()
        out["result"] = send_and_drain(a.host, a.port, hdr + os.urandom(64), a.timeout)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
