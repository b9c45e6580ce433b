"""Wire helpers for the end-to-end tests (a small, independent implementation of
docs/protocol.md written for testing; it never talks to a network by itself).

* obfuscated2 init build / accept (section 2)
* transport framings: abridged, intermediate, padded intermediate (section 3)
* unencrypted MTProto: req_pq_multi / resPQ (docs/testing.md)
* fake-TLS ClientHello build, ServerHello flight verify, record (de)framing (section 4)
* small blocking socket clients that speak all of the above, used by the tests
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

TAG_ABRIDGED = b"\xef\xef\xef\xef"
TAG_INTERMEDIATE = b"\xee\xee\xee\xee"
TAG_PADDED = b"\xdd\xdd\xdd\xdd"
TAGS = {TAG_ABRIDGED: "abridged", TAG_INTERMEDIATE: "intermediate", TAG_PADDED: "padded"}
TAG_BY_NAME = {v: k for k, v in TAGS.items()}

REQ_PQ_MULTI = 0xBE7E8EF1
REQ_PQ = 0x60469778
RES_PQ = 0x05162463
REQ_DH_PARAMS = 0xD712E4BE
SET_CLIENT_DH_PARAMS = 0xF5045F1F
TL_VECTOR = 0x1CB5C415

CONSTRUCTOR_NAMES = {
    REQ_PQ_MULTI: "req_pq_multi",
    REQ_PQ: "req_pq",
    RES_PQ: "resPQ",
    REQ_DH_PARAMS: "req_DH_params",
    SET_CLIENT_DH_PARAMS: "set_client_DH_params",
}

# pq = 1229739323 * 1402015859, the classic example value
PQ = 0x17ED48941A08F981
FINGERPRINT_TDLIB = 0xD09D1D85DE64FD85
FINGERPRINT_TELETHON = 0x0BC35F3509F7B7A5

# Forbidden first words of a plain-TCP obfuscated2 init (section 2.1), as u32 LE.
FORBIDDEN_FIRST_WORDS = {0x44414548, 0x54534F50, 0x20544547, 0x4954504F,
                         0xDDDDDDDD, 0xEEEEEEEE, 0x02010316}


# --------------------------------------------------------------------------- crypto

class Ctr:
    """AES-256-CTR with a 128-bit big-endian counter; one continuous keystream."""

    def __init__(self, key: bytes, iv: bytes):
        assert len(key) == 32 and len(iv) == 16
        self._c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()

    def __call__(self, data: bytes) -> bytes:
        return self._c.update(bytes(data))


def derive_keys(init: bytes, secret: bytes | None):
    """Return (key_cs, iv_cs, key_sc, iv_sc) for a 64-byte init (section 2.2)."""
    init = bytes(init)
    rev = init[8:56][::-1]
    k_cs, iv_cs = init[8:40], init[40:56]
    k_sc, iv_sc = rev[0:32], rev[32:48]
    if secret is not None:
        k_cs = hashlib.sha256(k_cs + secret).digest()
        k_sc = hashlib.sha256(k_sc + secret).digest()
    return k_cs, iv_cs, k_sc, iv_sc


def init_violations(init: bytes) -> list[str]:
    """Rule violations of a plain-TCP init's plaintext head (section 2.1)."""
    out = []
    if init[0] == 0xEF:
        out.append("first byte 0xef")
    if struct.unpack("<I", init[0:4])[0] in FORBIDDEN_FIRST_WORDS:
        out.append("forbidden first word %s" % init[0:4].hex())
    if init[4:8] == b"\0\0\0\0":
        out.append("bytes 4..8 are zero")
    return out


def make_init(tag: bytes, dc: int, secret: bytes | None = None, rng=os.urandom):
    """Client side of section 2.3: returns (wire64, encryptor, decryptor)."""
    while True:
        p = bytearray(rng(64))
        if not init_violations(p):
            break
    p[56:60] = tag
    p[60:62] = struct.pack("<h", dc)
    k_cs, iv_cs, k_sc, iv_sc = derive_keys(p, secret)
    enc = Ctr(k_cs, iv_cs)
    c = enc(bytes(p))
    wire = bytes(p[:56]) + c[56:64]
    return wire, enc, Ctr(k_sc, iv_sc)


def accept_init(wire: bytes, secret: bytes | None = None):
    """Server side of section 2.4: returns (tag, dc, decryptor, encryptor) or None."""
    k_cs, iv_cs, k_sc, iv_sc = derive_keys(wire, secret)
    dec = Ctr(k_cs, iv_cs)
    t = dec(wire[:64])
    tag = t[56:60]
    if tag not in TAGS:
        return None
    dc = struct.unpack("<h", t[60:62])[0]
    return tag, dc, dec, Ctr(k_sc, iv_sc)


# --------------------------------------------------------------------------- framing

def encode_frame(tag: bytes, payload: bytes, pad: bytes | None = None) -> bytes:
    assert len(payload) % 4 == 0
    if tag == TAG_ABRIDGED:
        n = len(payload) // 4
        head = bytes([n]) if n < 0x7F else b"\x7f" + n.to_bytes(3, "little")
        return head + payload
    if tag == TAG_INTERMEDIATE:
        return struct.pack("<I", len(payload)) + payload
    if tag == TAG_PADDED:
        if pad is None:
            pad = os.urandom(secrets.randbelow(16))
        return struct.pack("<I", len(payload) + len(pad)) + payload + pad
    raise ValueError("unknown tag %r" % tag)


class FrameReader:
    """Incremental decoder of one direction of a framed stream.

    feed() returns a list of (kind, bytes): kind "packet" (payload, padding removed)
    or "quickack" (raw 4-byte token, only possible server -> client)."""

    def __init__(self, tag: bytes, server_side: bool):
        self.tag = tag
        self.server_side = server_side  # True: we parse what a client sends
        self.buf = bytearray()

    def feed(self, data: bytes):
        self.buf += data
        out = []
        while True:
            item = self._one()
            if item is None:
                return out
            out.append(item)

    def _one(self):
        b = self.buf
        if self.tag == TAG_ABRIDGED:
            if not b:
                return None
            h = b[0]
            if not self.server_side and h & 0x80:
                if len(b) < 4:
                    return None
                tok = bytes(b[:4])
                del b[:4]
                return ("quickack", tok)
            if h & 0x7F == 0x7F:
                if len(b) < 4:
                    return None
                n = int.from_bytes(b[1:4], "little") * 4
                hl = 4
            else:
                n = (h & 0x7F) * 4
                hl = 1
            if len(b) < hl + n:
                return None
            pkt = bytes(b[hl:hl + n])
            del b[:hl + n]
            return ("packet", pkt)
        if len(b) < 4:
            return None
        v = struct.unpack("<I", b[:4])[0]
        if not self.server_side and v & 0x80000000:
            tok = bytes(b[:4])
            del b[:4]
            return ("quickack", tok)
        n = v & 0x7FFFFFFF
        if len(b) < 4 + n:
            return None
        body = bytes(b[4:4 + n])
        del b[:4 + n]
        if self.tag == TAG_PADDED:
            body = body[: n & ~3]
        return ("packet", body)


# --------------------------------------------------------------------------- MTProto (unencrypted)

def new_msg_id(server: bool = False) -> int:
    now = time.time()
    mid = (int(now) << 32) | ((int((now % 1) * 2**32)) & 0xFFFFFFFC)
    return mid | 1 if server else mid


def req_pq_multi(nonce: bytes) -> bytes:
    body = struct.pack("<I", REQ_PQ_MULTI) + nonce
    return struct.pack("<qqi", 0, new_msg_id(), len(body)) + body


def tl_bytes(b: bytes) -> bytes:
    assert len(b) < 254
    raw = bytes([len(b)]) + b
    return raw + b"\0" * (-len(raw) % 4)


def res_pq(nonce: bytes, server_nonce: bytes,
           fingerprints=(FINGERPRINT_TDLIB, FINGERPRINT_TELETHON)) -> bytes:
    body = (struct.pack("<I", RES_PQ) + nonce + server_nonce
            + tl_bytes(PQ.to_bytes(8, "big"))
            + struct.pack("<II", TL_VECTOR, len(fingerprints))
            + b"".join(struct.pack("<Q", f) for f in fingerprints))
    return struct.pack("<qqi", 0, new_msg_id(server=True), len(body)) + body


@dataclass
class PlainMessage:
    auth_key_id: int
    msg_id: int | None = None
    constructor: int | None = None
    body: bytes = b""

    @property
    def name(self) -> str:
        if self.auth_key_id != 0:
            return "encrypted"
        if self.constructor is None:
            return "short"
        return CONSTRUCTOR_NAMES.get(self.constructor, "0x%08x" % self.constructor)


def parse_message(pkt: bytes) -> PlainMessage:
    if len(pkt) < 8:
        return PlainMessage(auth_key_id=-1, body=pkt)
    akid = struct.unpack("<q", pkt[:8])[0]
    if akid != 0 or len(pkt) < 24:
        return PlainMessage(auth_key_id=akid, body=pkt)
    msg_id, length = struct.unpack("<qi", pkt[8:20])
    body = pkt[20:20 + length]
    return PlainMessage(0, msg_id, struct.unpack("<I", body[:4])[0], body)


def parse_res_pq(pkt: bytes):
    """Return (nonce, server_nonce, pq_int, fingerprints) from a framed-off resPQ message."""
    m = parse_message(pkt)
    if m.constructor != RES_PQ:
        raise ValueError("not a resPQ: %s (%s)" % (m.name, pkt[:32].hex()))
    b = m.body
    nonce, snonce = b[4:20], b[20:36]
    ln = b[36]
    pq = int.from_bytes(b[37:37 + ln], "big")
    off = 36 + ((1 + ln + 3) & ~3)
    vec, cnt = struct.unpack("<II", b[off:off + 8])
    assert vec == TL_VECTOR
    fps = list(struct.unpack("<%dQ" % cnt, b[off + 8:off + 8 + 8 * cnt]))
    return nonce, snonce, pq, fps


# --------------------------------------------------------------------------- fake TLS

def _ext(t: int, data: bytes) -> bytes:
    return struct.pack(">HH", t, len(data)) + data


def client_hello_template(domain: str | None, session_id: bytes, grease: bytes,
                          x25519: bytes, total_len: int = 517) -> bytearray:
    """A TLS 1.3 ClientHello laid out like the 517-byte hello of docs/protocol.md §8.3
    (random zeroed). grease: 7 GREASE bytes (0x?a each); domain None = no SNI extension."""
    g = lambda i: bytes([grease[i], grease[i]])  # noqa: E731
    suites = g(0) + bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a")
    exts = _ext(int.from_bytes(g(2), "big"), b"")
    if domain is not None:
        d = domain.encode()
        exts += _ext(0x0000, struct.pack(">HBH", len(d) + 3, 0, len(d)) + d)
    exts += _ext(0x0017, b"")
    exts += _ext(0xFF01, b"\x00")
    exts += _ext(0x000A, bytes.fromhex("0008") + g(4) + bytes.fromhex("001d00170018"))
    exts += _ext(0x000B, b"\x01\x00")
    exts += _ext(0x0023, b"")
    exts += _ext(0x0010, bytes.fromhex("000c02683208687474702f312e31"))
    exts += _ext(0x0005, bytes.fromhex("0100000000"))
    exts += _ext(0x000D, bytes.fromhex("0012040308040401050308050501080606010201"))
    exts += _ext(0x0012, b"")
    exts += _ext(0x0033, bytes.fromhex("0029") + g(4) + bytes.fromhex("000100001d0020") + x25519)
    exts += _ext(0x002D, b"\x01\x01")
    exts += _ext(0x002B, b"\x0a" + g(6) + bytes.fromhex("0304030303020301"))
    exts += _ext(0x001B, bytes.fromhex("020002"))
    exts += _ext(int.from_bytes(g(3), "big"), b"\x00")
    body = (b"\x03\x03" + b"\0" * 32 + bytes([len(session_id)]) + session_id
            + struct.pack(">H", len(suites)) + suites + b"\x01\x00")
    # padding extension fills the record up to total_len
    fixed = 5 + 4 + len(body) + 2 + len(exts) + 4
    pad = total_len - fixed
    if pad < 0:
        raise ValueError("hello does not fit into %d bytes" % total_len)
    exts += _ext(0x0015, b"\0" * pad)
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return bytearray(b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs)


def sign_client_hello(hello_zeroed: bytes, secret: bytes, ts: int) -> bytes:
    """Fill the client random per section 4.2."""
    h = bytearray(hello_zeroed)
    assert h[11:43] == b"\0" * 32
    digest = hmac.new(secret, bytes(h), hashlib.sha256).digest()
    rnd = digest[:28] + bytes(a ^ b for a, b in zip(digest[28:32], struct.pack("<I", ts & 0xFFFFFFFF)))
    h[11:43] = rnd
    return bytes(h)


def build_client_hello(secret: bytes, domain: str | None, ts: int | None = None,
                       total_len: int = 517) -> bytes:
    grease = bytes((secrets.randbelow(16) << 4) | 0x0A for _ in range(7))
    t = client_hello_template(domain, os.urandom(32), grease, os.urandom(32), total_len)
    return sign_client_hello(t, secret, int(time.time()) if ts is None else ts)


def verify_server_flight(flight: bytes, client_random: bytes, secret: bytes) -> bool:
    """Section 4.7: server_random = HMAC(S, client_random || flight with bytes 11..43 zero)."""
    z = bytearray(flight)
    z[11:43] = b"\0" * 32
    want = hmac.new(secret, client_random + bytes(z), hashlib.sha256).digest()
    return hmac.compare_digest(want, flight[11:43])


def tls_records(data: bytes, max_payload: int = 2878) -> bytes:
    out = bytearray()
    for i in range(0, len(data), max_payload):
        chunk = data[i:i + max_payload]
        out += b"\x17\x03\x03" + struct.pack(">H", len(chunk)) + chunk
    return bytes(out)


class TlsRecordReader:
    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes):
        """Return list of (type, payload)."""
        self.buf += data
        out = []
        while len(self.buf) >= 5:
            n = struct.unpack(">H", self.buf[3:5])[0]
            if len(self.buf) < 5 + n:
                break
            out.append((self.buf[0], bytes(self.buf[5:5 + n])))
            del self.buf[:5 + n]
        return out


# --------------------------------------------------------------------------- blocking clients

def parse_secret(secret_hex: str):
    """Client link secret -> (16-byte key, mode, domain)."""
    b = bytes.fromhex(secret_hex)
    if len(b) == 16:
        return b, "classic", None
    if len(b) == 17 and b[0] == 0xDD:
        return b[1:], "dd", None
    if len(b) >= 18 and b[0] == 0xEE:
        return b[1:17], "ee", b[17:].decode()
    raise ValueError("bad secret form")


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    out = bytearray()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out after %d of %d bytes" % (len(out), n))
        sock.settimeout(left)
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("EOF after %d of %d bytes" % (len(out), n))
        out += chunk
    return bytes(out)


def recv_until_eof_or(sock: socket.socket, n: int, timeout: float) -> bytes:
    """Read until n bytes, EOF or timeout; returns what arrived (never raises on timeout/EOF)."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def connect(host: str, port: int, timeout: float = 5.0) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


@dataclass
class ReqPqResult:
    nonce: bytes
    res_nonce: bytes
    pq: int
    fingerprints: list
    client_port: int


def obfs2_req_pq(host, port, key: bytes, tag: bytes, dc: int = 2, timeout: float = 10.0) -> ReqPqResult:
    """Plain obfuscated2 client: init + req_pq_multi, returns the resPQ."""
    deadline = time.monotonic() + timeout
    s = connect(host, port, timeout)
    try:
        cport = s.getsockname()[1]
        wire, enc, dec = make_init(tag, dc, key)
        nonce = os.urandom(16)
        s.sendall(wire + enc(encode_frame(tag, req_pq_multi(nonce))))
        fr = FrameReader(tag, server_side=False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no resPQ in time")
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                raise ConnectionError("EOF before resPQ")
            for kind, pkt in fr.feed(dec(data)):
                if kind == "packet":
                    n, _sn, pq, fps = parse_res_pq(pkt)
                    return ReqPqResult(nonce, n, pq, fps, cport)
    finally:
        s.close()


class FakeTlsClient:
    """Blocking fake-TLS client (section 4) carrying obfuscated2 with the padded framing."""

    def __init__(self, host, port, key: bytes, domain: str | None, timeout: float = 10.0):
        self.host, self.port, self.key, self.domain = host, port, key, domain
        self.deadline = time.monotonic() + timeout
        self.sock = connect(host, port, timeout)
        self.client_port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def handshake(self, hello: bytes) -> bytes:
        """Send hello, read the three-record flight; return the flight bytes."""
        self.sock.sendall(hello)
        return self.read_flight()

    def read_flight(self) -> bytes:
        h1 = recv_exact(self.sock, 5, self.deadline)
        if h1[:3] != b"\x16\x03\x03":
            raise ValueError("first record is not a TLS 1.2 handshake record: %s" % h1.hex())
        r1 = recv_exact(self.sock, struct.unpack(">H", h1[3:5])[0], self.deadline)
        ccs = recv_exact(self.sock, 6, self.deadline)
        if ccs != b"\x14\x03\x03\x00\x01\x01":
            raise ValueError("no ChangeCipherSpec after ServerHello: %s" % ccs.hex())
        h3 = recv_exact(self.sock, 5, self.deadline)
        if h3[:3] != b"\x17\x03\x03":
            raise ValueError("third record is not ApplicationData: %s" % h3.hex())
        r3 = recv_exact(self.sock, struct.unpack(">H", h3[3:5])[0], self.deadline)
        return h1 + r1 + ccs + h3 + r3

    def req_pq(self, dc: int = 2, tag: bytes = TAG_PADDED) -> ReqPqResult:
        wire, enc, dec = make_init(tag, dc, self.key)
        nonce = os.urandom(16)
        payload = wire + enc(encode_frame(tag, req_pq_multi(nonce)))
        self.sock.sendall(b"\x14\x03\x03\x00\x01\x01" + tls_records(payload))
        rr = TlsRecordReader()
        fr = FrameReader(tag, server_side=False)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no resPQ in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("EOF before resPQ")
            for rtype, body in rr.feed(data):
                if rtype != 0x17:
                    raise ValueError("unexpected TLS record type 0x%02x in data phase" % rtype)
                for kind, pkt in fr.feed(dec(body)):
                    if kind == "packet":
                        n, _sn, pq, fps = parse_res_pq(pkt)
                        return ReqPqResult(nonce, n, pq, fps, self.client_port)


def fake_tls_req_pq(host, port, key: bytes, domain: str | None, timeout: float = 10.0,
                    dc: int = 2, hello: bytes | None = None):
    """Full fake-TLS session. Returns (ReqPqResult, hello, flight)."""
    c = FakeTlsClient(host, port, key, domain, timeout)
    try:
        hello = hello or build_client_hello(key, domain)
        flight = c.handshake(hello)
        if not verify_server_flight(flight, hello[11:43], key):
            raise ValueError("server random does not verify (section 4.7)")
        return c.req_pq(dc), hello, flight
    finally:
        c.close()
