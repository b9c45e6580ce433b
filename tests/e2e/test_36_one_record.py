"""Why the fake-TLS flight has exactly one ApplicationData record, even when the cover site sends
its encrypted handshake as several (OpenSSL and nginx send four): proved with TDLib.

A relay between TDLib and the proxy re-cuts the proxy's flight before TDLib reads it. Passed on
unchanged, TDLib connects. Cut into the cover's record layout (23 / 813 / rest bytes), TDLib
refuses it: signed the way TDLib checks (over ServerHello, ChangeCipherSpec and the first
ApplicationData record) it says "Proxy has sent too many data" (bytes beyond the three records
before it has sent anything); signed over the whole flight, "Response hash mismatch" (protocol
docs/protocol.md §4.7; td/mtproto/TlsInit.cpp)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import threading

import pytest

from helpers import TcpServer, User, tdlib


def recv_exact(s: socket.socket, n: int) -> bytes:
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise ConnectionError("closed")
        b += d
    return b


def recv_record(s: socket.socket) -> bytes:
    h = recv_exact(s, 5)
    return h + recv_exact(s, struct.unpack(">H", h[3:5])[0])


def sign(flight: bytearray, signed_len: int, client_random: bytes, key: bytes) -> bytes:
    flight[11:43] = b"\0" * 32
    flight[11:43] = hmac.new(key, client_random + bytes(flight[:signed_len]), hashlib.sha256).digest()
    return bytes(flight)


class Recutter(TcpServer):
    """TDLib -> here -> proxy; the proxy's three-record flight is passed on as `mode` says."""

    def __init__(self, upstream: tuple[str, int], key: bytes, mode: str):
        self.upstream, self.key, self.mode = upstream, key, mode
        super().__init__(name="recutter")

    def accepted(self, c):
        threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            u = socket.create_connection(self.upstream, 10)
            c.settimeout(20)
            u.settimeout(20)
            hello = recv_record(c)
            u.sendall(hello)
            sh, ccs, app = recv_record(u), recv_record(u), recv_record(u)
            payload = app[5:]
            if self.mode == "unchanged":
                out = sh + ccs + app
            else:
                parts = [payload[:23], payload[23:836], payload[836:]]
                cut = b"".join(b"\x17\x03\x03" + struct.pack(">H", len(p)) + p for p in parts)
                flight = bytearray(sh + ccs + cut)
                signed = len(sh) + len(ccs) + 5 + len(parts[0]) if self.mode == "split-sign-first" else len(flight)
                out = sign(flight, signed, hello[11:43], self.key)
            c.sendall(out)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        except OSError:
            c.close()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.parametrize(("mode", "connects"), [("unchanged", True), ("split-sign-first", False), ("split-sign-all", False)])
def test_tdlib_accepts_only_a_one_record_flight(mode, connects, proxy_factory, fakedc):
    bob = User("bob", "ee")
    px = proxy_factory([bob], fronting=False)
    relay = Recutter((px.host, px.port), bob.key, mode)
    try:
        host, port = relay.addr.rsplit(":", 1)
        r = tdlib(host, int(port), bob.client_secret, timeout=30 if connects else 10)
    finally:
        relay.stop()
    assert r["ok"] is connects, "TDLib with a %s flight: %s" % (mode, r)
    # TDLib's own words for each refusal (TDLib 1.8.69).
    why = {"split-sign-first": "Proxy has sent too many data", "split-sign-all": "Response hash mismatch"}.get(mode)
    if why:
        assert r["result"].get("message") == why, r
    reached = [e for e in fakedc.snapshot() if e["ev"] == "message"]
    if connects:
        assert reached, "TDLib's request did not reach the fake DC"
    else:
        assert not reached, "no request may reach the DC through a flight TDLib refused: %s" % reached
