#!/usr/bin/env python3
"""Write the small seed corpora under fuzz/seeds/<target>/ (committed; rerun to regenerate).

Seeds are valid inputs for each target, so the fuzzer starts from inside the accepting paths
instead of having to discover a signed hello or an accepted init by chance (it cannot: those
are guarded by an HMAC and by AES). Values come from docs/protocol.md §8.
Only the Python standard library is used.
"""
import hashlib
import hmac
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")


def h(text):
    return bytes.fromhex("".join(text.split()))


# Section 8.3: the 517-byte ClientHello with the random zeroed (its last extension is padding).
VECTOR_C = h("""
1603010200010001fc0303000000000000000000000000000000000000000000000000000000000000000020a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3
b4b5b6b7b8b9babbbcbdbebf00220a0a130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035000a010001912a2a000000000010000e0000
0b6578616d706c652e636f6d00170000ff01000100000a000a00084a4a001d00170018000b00020100002300000010000e000c02683208687474702f312e3100
0500050100000000000d00140012040308040401050308050501080606010201001200000033002b00294a4a000100001d0020d1113d0b4f3e212592c15e04c5
faa219054065b05658b8a7e9c22499252003e0002d00020101002b000b0a6a6a0304030303020301001b00030200023a3a000100001500cd
""").ljust(517, b"\0")


def grow(hello, total):
    """Grow the trailing padding extension so the hello is `total` bytes (lengths fixed up)."""
    extra = total - len(hello)
    b = bytearray(hello + b"\0" * extra)
    def add16(off, n):
        b[off:off + 2] = (int.from_bytes(b[off:off + 2], "big") + n).to_bytes(2, "big")
    add16(3, extra)                                  # record length
    b[6:9] = (int.from_bytes(b[6:9], "big") + extra).to_bytes(3, "big")  # handshake length
    pad = hello.rindex(b"\x00\x15\x00\xcd")           # padding extension header
    add16(pad + 2, extra)
    # extensions length: after session id, cipher suites and compression methods
    pos = 5 + 4 + 2 + 32
    pos += 1 + b[pos]
    pos += 2 + int.from_bytes(b[pos:pos + 2], "big")
    pos += 1 + b[pos]
    add16(pos, extra)
    return bytes(b)


def sign(hello, secret, ts):
    zeroed = hello[:11] + b"\0" * 32 + hello[43:]
    digest = bytearray(hmac.new(secret, zeroed, hashlib.sha256).digest())
    for i, t in enumerate(ts.to_bytes(4, "little")):
        digest[28 + i] ^= t
    return hello[:11] + bytes(digest) + hello[43:]


def fragment(hello, sizes):
    msg, out, pos = hello[5:], b"", 0
    for i, n in enumerate(sizes + [len(hello)]):
        part = msg[pos:pos + n]
        if not part:
            break
        out += bytes([0x16, 0x03, 0x01 if i == 0 else 0x03]) + len(part).to_bytes(2, "big") + part
        pos += len(part)
    return out


CCS = h("140303000101")
# Section 8.3: the client's first flight after the ServerHello (CCS + AppData with vector A).
CLIENT_FLIGHT = h("""
140303000101170303006f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f4041424344
4546476301d3a574f041e5297b88835b4f58473d212b94ef49716dc40e8153338f72b1f6b86076c5483bbc64b637487583924dcf0c7363680eff
""")
# Section 8.1 (client -> proxy, secret above) and 8.2 (proxy -> DC, no secret): init + first frame.
VECTOR_A = h("""
101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243444546476301d3a574f041e5
297b88835b4f58473d212b94ef49716dc40e8153338f72b1f6b86076c5483bbc64b637487583924dcf0c7363680eff
""")
VECTOR_B = h("""
808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7d6b446450fd75d00
f30f5da6dd8c0d0a7a6b355c38a47d9a8244fc648f8571d38f7b12aa4b2c8c6eda175cd53f2e4cd3bfc2d93d616ac7
""")


def app(payload):
    return bytes([0x17, 0x03, 0x03]) + len(payload).to_bytes(2, "big") + payload


def framing_seeds():
    p40, p1000 = bytes(range(40)), bytes(i % 256 for i in range(1000))
    return {
        # first byte picks the framing: 0 abridged, 1 intermediate, 2 padded intermediate
        "abridged": b"\0" + b"\x0a" + p40 + b"\x8a" + p40 + b"\x7f\xfa\0\0" + p1000 + b"\xff\xfa\0\0" + p1000,
        "intermediate": b"\1" + b"\x28\0\0\0" + p40 + b"\x28\0\0\x80" + p40,
        "padded": b"\2" + b"\x2b\0\0\0" + p40 + b"\xaa\xbb\xcc" + b"\x0b\0\0\0\xff\xff\xff\xff\xcd\xbc\xab\x8a\1\2\3"
        + b"\x04\0\0\0\0\0\0\0",
    }


CONFIG_EXAMPLE = os.path.join(HERE, "..", "..", "config.example.toml")
CONFIGS = {
    "minimal.toml": '[users.alice]\nsecret = "00112233445566778899aabbccddeeff"\n',
    "ee_user.toml": '[server]\nlisten = ["0.0.0.0:443", "[::]:443"]\npublic_host = "proxy.example.org"\n\n'
    '[timeouts]\nhandshake = "10s"\nidle = "5m"\n\n'
    '[users.bob]\nsecret = "8f1e2d3c4b5a69788796a5b4c3d2e1f0"\nkind = "ee"\ndomain = "www.example.com"\n'
    'previous_secret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"\nprevious_secret_expires = 1800000000\n',
    # a secret line in the wrong table, a common slip (no user name after [users])
    "secret_without_user.toml": '[users]\nsecret = "6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a88"\n',
    "bad_secret.toml": '[users.carol]\nsecret = "6c1b0e2f9a8d7c6b5a4f3e2d1c0b9a8"\nkind = "dd"\n',
    "dc_overrides.toml": '[dc_overrides]\n"2" = "127.0.0.1:4443"\n"-2" = ["127.0.0.1:4444", "[::1]:4444"]\n'
    '[fronting]\nmask_host = "www.example.com:443"\nmax_bytes = 1048576\n',
}


def main():
    hello517 = sign(VECTOR_C, SECRET, 1700000000)
    hello1800 = sign(grow(VECTOR_C, 1800), SECRET, 1700000123)
    seeds = {
        "client_hello": {
            "vector_c_517": hello517,
            "vector_c_517_then_flight": hello517 + CLIENT_FLIGHT,
            "vector_c_517_three_records": fragment(hello517, [100, 300]) + CCS,
            "hello_1800": hello1800,
            "hello_1800_four_records": fragment(hello1800, [1, 700, 600]),
        },
        "obfs2_init": {"vector_a": VECTOR_A, "vector_b": VECTOR_B},
        "framing": framing_seeds(),
        "tls_records": {
            "client_flight": b"\x07" + CLIENT_FLIGHT,
            "mixed_records": b"\x2a" + app(bytes(range(200))) + CCS + app(b"") + app(b"\xee" * 1000) + app(b"x")[:4],
        },
        "config": {name: text.encode() for name, text in CONFIGS.items()},
    }
    with open(CONFIG_EXAMPLE, "rb") as f:
        seeds["config"]["config.example.toml"] = f.read()
    for target, files in seeds.items():
        d = os.path.join(HERE, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
