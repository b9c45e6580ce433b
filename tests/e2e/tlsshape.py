"""What a prober records of a TLS server, written independently of the proxy's Rust code:
a ClientHello shaped like TDLib's (the template of td/mtproto/TlsInit.cpp: GREASE, Chrome-like
suites, X25519MLKEM768 + x25519 key shares, ECH GREASE, shuffled extensions), the records of a
server's first flight, its JA3S, and whether an x25519 share is a point on the curve.

Used by test_35_cover.py to put the proxy and its cover site side by side."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field

P25519 = 2**255 - 19


def _ext(t: int, data: bytes) -> bytes:
    return struct.pack(">HH", t, len(data)) + data


def _len16(b: bytes) -> bytes:
    return struct.pack(">H", len(b)) + b


def _grease() -> list[bytes]:
    g = [(os.urandom(1)[0] & 0xF0) | 0x0A for _ in range(7)]
    for i in range(1, 7):
        if g[i] == g[i - 1]:
            g[i] ^= 0x10
    return [bytes([v, v]) for v in g]


def x25519_share() -> bytes:
    """A real x25519 public key (from the `cryptography` package)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def tdlib_like_hello(domain: str | None, secret: bytes | None = None, ts: int | None = None,
                     apple: bool = False) -> bytes:
    """A TDLib-shaped ClientHello record for `domain` (None: no SNI, as Telegram for iOS).
    With `secret`, the random is the fake-TLS authenticator of docs/protocol.md §4.2; without,
    it is random (a prober's hello). `apple`: TDLib's Apple cipher order and ALPN."""
    g = _grease()
    suites = g[0] + (bytes.fromhex("130213011303") if apple else bytes.fromhex("130113021303")) + bytes.fromhex(
        "c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    mlkem = bytearray()
    for _ in range(384):
        a, b = random.randrange(3329), random.randrange(3329)
        mlkem += bytes([a & 255, (a >> 8) | ((b & 15) << 4), b >> 4])
    mlkem += os.urandom(32)
    x = x25519_share()
    shares = g[4] + b"\x00\x01\x00" + b"\x11\xec" + _len16(bytes(mlkem) + x) + b"\x00\x1d" + _len16(x)
    alpn = b"\x08http/1.1" if apple else b"\x02h2\x08http/1.1"
    parts = []
    if domain is not None:
        d = domain.encode()
        parts.append(_ext(0x0000, _len16(b"\x00" + _len16(d))))
    parts += [
        _ext(0x0005, b"\x01\x00\x00\x00\x00"),
        _ext(0x000A, _len16(g[4] + bytes.fromhex("11ec001d00170018"))),
        _ext(0x000B, b"\x01\x00"),
        _ext(0x000D, _len16(bytes.fromhex("04030804040105030805050108060601"))),
        _ext(0x0010, _len16(alpn)),
        _ext(0x0012, b""), _ext(0x0017, b""), _ext(0x001B, b"\x02\x00\x02"), _ext(0x0023, b""),
        _ext(0x002B, b"\x06" + g[6] + b"\x03\x04\x03\x03"),
        _ext(0x002D, b"\x01\x01"),
        _ext(0x0033, _len16(shares)),
        _ext(0x44CD, b"\x00\x03\x02h2"),
        _ext(0xFE0D, b"\x00\x00\x01\x00\x01" + os.urandom(1) + _len16(os.urandom(32))
             + _len16(os.urandom(144 + 32 * random.randrange(4)))),
        _ext(0xFF01, b"\x00"),
    ]
    random.shuffle(parts)
    exts = _ext(int.from_bytes(g[2], "big"), b"") + b"".join(parts) + _ext(int.from_bytes(g[3], "big"), b"\x00")
    body = b"\x03\x03" + b"\0" * 32 + b"\x20" + os.urandom(32) + _len16(suites) + b"\x01\x00" + _len16(exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    rec = bytearray(b"\x16\x03\x01" + _len16(hs))
    if secret is None:
        rec[11:43] = os.urandom(32)
    else:
        digest = hmac.new(secret, bytes(rec), hashlib.sha256).digest()
        t = int(time.time()) if ts is None else ts
        rec[11:43] = digest[:28] + bytes(a ^ b for a, b in zip(digest[28:], struct.pack("<I", t & 0xFFFFFFFF)))
    return bytes(rec)


@dataclass
class Flight:
    raw: bytes
    records: list[tuple[int, int]] = field(default_factory=list)   # (content type, payload length)

    @property
    def types(self) -> list[int]:
        return [t for t, _ in self.records]

    @property
    def server_hello(self) -> bytes:
        n = self.records[0][1]
        return self.raw[5:5 + n]

    @property
    def encrypted_total(self) -> int:
        """Bytes on the wire after ServerHello and ChangeCipherSpec (headers included)."""
        return sum(5 + n for t, n in self.records if t == 0x17)

    def ja3s(self) -> str:
        return ja3s(self.server_hello)

    def key_share(self) -> tuple[int, bytes]:
        for t, data in sh_extensions(self.server_hello):
            if t == 0x0033:
                group, n = struct.unpack(">HH", data[:4])
                return group, data[4:4 + n]
        raise AssertionError("no key_share in the ServerHello")


def records(data: bytes) -> list[tuple[int, int]]:
    out, i = [], 0
    while i + 5 <= len(data):
        t, n = data[i], struct.unpack(">H", data[i + 3:i + 5])[0]
        if i + 5 + n > len(data):
            break
        out.append((t, n))
        i += 5 + n
    return out


def sh_extensions(sh: bytes) -> list[tuple[int, bytes]]:
    """(type, data) of each extension of a ServerHello handshake message."""
    assert sh[0] == 0x02, "not a ServerHello"
    p = 4 + 2 + 32
    p += 1 + sh[p]
    p += 3
    end = p + 2 + struct.unpack(">H", sh[p:p + 2])[0]
    p += 2
    out = []
    while p < end:
        t, n = struct.unpack(">HH", sh[p:p + 4])
        out.append((t, sh[p + 4:p + 4 + n]))
        p += 4 + n
    return out


def ja3s(sh: bytes) -> str:
    """JA3S string: SSLVersion,Cipher,Extensions (decimal, extensions joined by '-')."""
    version = struct.unpack(">H", sh[4:6])[0]
    p = 4 + 2 + 32
    p += 1 + sh[p]
    cipher = struct.unpack(">H", sh[p:p + 2])[0]
    return "%d,%d,%s" % (version, cipher, "-".join(str(t) for t, _ in sh_extensions(sh)))


def on_curve25519(u_le: bytes) -> bool:
    """Whether u is the x-coordinate of a point on Curve25519 (not on its twist): u^3 + A u^2 + u
    is a square mod p. A random string passes half the time."""
    u = int.from_bytes(u_le, "little") & ((1 << 255) - 1)
    y2 = (pow(u, 3, P25519) + 486662 * u * u + u) % P25519
    return y2 == 0 or pow(y2, (P25519 - 1) // 2, P25519) == 1


def read_flight(host: str, port: int, hello: bytes, timeout: float = 5.0, quiet: float = 0.5) -> Flight:
    """Send `hello` on a new connection and record what the server sends until it goes quiet."""
    s = socket.create_connection((host, port), timeout)
    try:
        s.sendall(hello)
        buf = b""
        deadline = time.monotonic() + timeout
        s.settimeout(timeout)
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            buf += d
            s.settimeout(quiet)
    finally:
        s.close()
    return Flight(buf, records(buf))


@dataclass
class Answer:
    data: bytes
    first_byte: float | None     # seconds from the probe's last byte to the first byte back
    closed: float | None         # seconds to EOF/RST, None when still open at the end


def answer(host: str, port: int, data: bytes, window: float = 3.0) -> Answer:
    """What a prober sees: send `data`, record the answer, when it began and whether (and when)
    the server closed, within `window` seconds."""
    s = socket.create_connection((host, port), 5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got, first, closed = b"", None, None
    try:
        s.sendall(data)
        t0 = time.monotonic()
        while True:
            left = window - (time.monotonic() - t0)
            if left <= 0:
                break
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = time.monotonic() - t0
                break
            if not d:
                closed = time.monotonic() - t0
                break
            if first is None:
                first = time.monotonic() - t0
            got += d
    finally:
        s.close()
    return Answer(got, first, closed)
