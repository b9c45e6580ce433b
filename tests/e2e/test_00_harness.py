"""Checks of the test harness itself (no proxy involved): the wire helpers reproduce the protocol
document's test vectors, and the fake DC answers real clients (Telethon connecting straight to it
with its obfuscated2 transports, and our own client for every framing)."""

import asyncio
import hashlib
import os
import socket

import pytest

import mtp
from fakedc import FakeDC
from helpers import _Loggers

SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")


def test_vector_a_obfuscated2_dd():
    p = bytes(range(0x10, 0x50))
    wire, enc, _dec = mtp.make_init(mtp.TAG_PADDED, 2, SECRET, rng=lambda n: p)
    assert wire.hex() == ("101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
                          "303132333435363738393a3b3c3d3e3f40414243444546476301d3a574f041e5")
    frame = bytes.fromhex("2b00000000000000000000004a967027c47ae55114000000f18e7ebe3e0549828cca27e9"
                          "66b301a48fece2fcaabbcc")
    assert enc(frame).hex() == ("297b88835b4f58473d212b94ef49716dc40e8153338f72b1f6b86076c5483bbc"
                                "64b637487583924dcf0c7363680eff")
    tag, dc, _d, e = mtp.accept_init(wire, SECRET)
    assert (tag, dc) == (mtp.TAG_PADDED, 2)
    pt = bytes.fromhex("28000000") + bytes(range(0x40, 0x68))
    assert e(pt).hex() == ("349b9bcde17ad54dddec790402cdbb009ff47568b3979bdb68fae026cf0414f4"
                           "f50b157f358aa6ef5b48d82d")
    assert mtp.accept_init(wire, bytes(16)) is None


def test_vector_b_towards_dc():
    p = bytes(range(0x80, 0xC0))
    wire, enc, _ = mtp.make_init(mtp.TAG_PADDED, 2, None, rng=lambda n: p)
    assert wire[56:].hex() == "d6b446450fd75d00"
    frame = bytes.fromhex("2b00000000000000000000004a967027c47ae55114000000f18e7ebe3e0549828cca27e9"
                          "66b301a48fece2fcaabbcc")
    assert enc(frame).hex() == ("f30f5da6dd8c0d0a7a6b355c38a47d9a8244fc648f8571d38f7b12aa4b2c8c6e"
                                "da175cd53f2e4cd3bfc2d93d616ac7")


def test_vector_c_fake_tls():
    t = mtp.client_hello_template("example.com", bytes(range(0xA0, 0xC0)),
                                  bytes([0x0A, 0x1A, 0x2A, 0x3A, 0x4A, 0x5A, 0x6A]),
                                  hashlib.sha256(b"client x25519").digest())
    assert len(t) == 517
    assert hashlib.sha256(bytes(t)).hexdigest() == hashlib.sha256(bytes.fromhex(
        "1603010200010001fc0303" + "00" * 32 + "20" + bytes(range(0xA0, 0xC0)).hex()
        + "00220a0a130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a010001912a2a0000"
        "00000010000e00000b6578616d706c652e636f6d00170000ff01000100000a000a00084a4a001d00170018000b"
        "00020100002300000010000e000c02683208687474702f312e310005000501000000000"
        "00d00140012040308040401050308050501080606010201001200000033002b00294a4a000100001d0020"
        "d1113d0b4f3e212592c15e04c5faa219054065b05658b8a7e9c22499252003e0002d00020101002b000b0a6a6a"
        "0304030303020301001b00030200023a3a000100001500cd" + "00" * 0xCD)).hexdigest()
    h = mtp.sign_client_hello(t, SECRET, 1700000000)
    assert h[11:43].hex() == "a934d5ec78bc3fddbf0e2e14d27e06607f748580cbc551965399331ebb661bab"
    flight = bytes.fromhex(
        "160303007a020000760303394d7d037cbf3ff4cacec5c6f6048b82c97044bd37c181158d63641dfbbc863120"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf130100002e00330024001d0020"
        "41906d290d146223410a694aea54c58babf388ef889965833476cd352dd83a2a002b00020304140303000101"
        "17030300409fc62a6aeaccfc4ebbe039fc7865c74c8e8b30c7bdcfb25e9d658413ce5cd529feb9ebf757dd3c"
        "bb334640398cd502c449f013b25379913c742d76e4b960b085")
    assert mtp.verify_server_flight(flight, h[11:43], SECRET)
    assert not mtp.verify_server_flight(flight, h[11:43], bytes(16))


def test_fakedc_answers_every_framing(fakedc):
    for name, tag in mtp.TAG_BY_NAME.items():
        r = mtp.obfs2_req_pq("127.0.0.1", fakedc.port, None, tag, dc=-3, timeout=5)
        assert r.res_nonce == r.nonce
        assert r.pq == mtp.PQ
        assert r.fingerprints == [mtp.FINGERPRINT_TDLIB, mtp.FINGERPRINT_TELETHON]
    inits = [e for e in fakedc.snapshot() if e["ev"] == "init"]
    assert [(e["tag"], e["dc"]) for e in inits] == [("abridged", -3), ("intermediate", -3), ("padded", -3)]
    assert len(fakedc.received("req_pq_multi")) == 3


def test_fakedc_tolerates_silent_and_garbage():
    with FakeDC() as fakedc:
        _silent_and_garbage(fakedc)


def _silent_and_garbage(fakedc):
    silent = socket.create_connection(("127.0.0.1", fakedc.port), 5)
    garbage = socket.create_connection(("127.0.0.1", fakedc.port), 5)
    garbage.sendall(os.urandom(64))
    assert mtp.recv_until_eof_or(garbage, 1, 5) == b""  # closed, nothing answered
    r = mtp.obfs2_req_pq("127.0.0.1", fakedc.port, None, mtp.TAG_INTERMEDIATE, timeout=5)
    assert r.res_nonce == r.nonce
    silent.close()
    garbage.close()
    evs = fakedc.wait_for(lambda ev: sum(e["ev"] == "close" for e in ev) >= 3, 5)
    assert any(e["ev"] == "bad_init" for e in evs)


def test_telethon_straight_to_fakedc(fakedc):
    """Telethon's own obfuscated2 transports (no proxy) get a ResPQ from the fake DC."""
    from telethon.network.connection import ConnectionTcpObfuscated
    from telethon.network.connection.tcpintermediate import (IntermediatePacketCodec,
                                                              RandomizedIntermediatePacketCodec)
    from telethon.network.mtprotoplainsender import MTProtoPlainSender
    from telethon.tl.functions import ReqPqMultiRequest
    from telethon.tl.types import ResPQ

    class Intermediate(ConnectionTcpObfuscated):
        packet_codec = IntermediatePacketCodec

    class Randomized(ConnectionTcpObfuscated):
        packet_codec = RandomizedIntermediatePacketCodec

    async def one(cls):
        conn = cls("127.0.0.1", fakedc.port, 2, loggers=_Loggers())
        await asyncio.wait_for(conn.connect(timeout=5), 10)
        try:
            nonce = int.from_bytes(os.urandom(16), "big", signed=True)
            r = await asyncio.wait_for(MTProtoPlainSender(conn, loggers=_Loggers()).send(
                ReqPqMultiRequest(nonce)), 10)
            return isinstance(r, ResPQ) and r.nonce == nonce and r.pq == mtp.PQ.to_bytes(8, "big")
        finally:
            await conn.disconnect()

    async def all_():
        return await asyncio.gather(*(one(c) for c in (ConnectionTcpObfuscated, Intermediate, Randomized)))

    assert asyncio.run(asyncio.wait_for(all_(), 30)) == [True, True, True]
    tags = sorted(e["tag"] for e in fakedc.snapshot() if e["ev"] == "init")
    assert tags == ["abridged", "intermediate", "padded"]


def test_fake_tls_hello_is_real_tls(tls_cover):
    """Our ClientHello is a real TLS 1.3 hello: openssl s_server answers it with a ServerHello."""
    hello = mtp.build_client_hello(SECRET, "cover.test")
    s = socket.create_connection(("127.0.0.1", tls_cover.port), 5)
    try:
        s.sendall(hello)
        head = mtp.recv_exact(s, 11, __import__("time").monotonic() + 5)
    finally:
        s.close()
    assert head[:3] == b"\x16\x03\x03" and head[5] == 0x02  # ServerHello


def test_tls_cover_serves_generated_certificate(tls_cover):
    from helpers import s_client_cert_fingerprint
    assert s_client_cert_fingerprint("127.0.0.1", tls_cover.port, "cover.test") == tls_cover.fingerprint


@pytest.mark.parametrize("secret", ["00" * 16])
def test_tdlib_loads(secret, port):
    """TDLib loads and reports a refused connection (nothing listens on `port`)."""
    from helpers import tdlib
    r = tdlib("127.0.0.1", port, secret, "ping", timeout=20)
    assert r["result"]["@type"] == "error", r
    assert r["closed"], r
