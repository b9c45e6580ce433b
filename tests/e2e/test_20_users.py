"""Ten users at once: each reachable with its own secret and kind, and with no other combination."""

from concurrent.futures import ThreadPoolExecutor

import mtp
from helpers import User, fake_tls_attempt, obfs2_attempt, tdlib_many, telethon_many


def test_ten_users(proxy_factory, fakedc, tls_cover):
    users = ([User("classic%d" % i, "classic") for i in range(4)]
             + [User("dd%d" % i, "dd") for i in range(4)]
             + [User("ee%d" % i, "ee", domain="cover.test") for i in range(2)])
    px = proxy_factory(users, mask=tls_cover.addr)

    def case(u, codec, secret=None):
        return dict(host=px.host, port=px.port, secret=secret or u.client_secret, codec=codec)

    good, bad = [], []
    for u in users:
        if u.kind == "classic":
            good += [(u, case(u, "abridged")), (u, case(u, "intermediate"))]
            bad += [(u, case(u, "randomized", "dd" + u.secret))]      # dd transport, classic user
        elif u.kind == "dd":
            good += [(u, case(u, "randomized"))]
            bad += [(u, case(u, "intermediate", u.secret)), (u, case(u, "abridged", u.secret))]
        else:
            bad += [(u, case(u, "randomized", "dd" + u.secret)), (u, case(u, "intermediate", u.secret))]

    # Telethon, all concurrently: the good ones first so the DC count below is theirs alone.
    res = telethon_many([c for _u, c in good])
    for (u, c), r in zip(good, res):
        assert r.ok and r.nonce_matches, (u.name, c["codec"], r.error)
    inits = fakedc.wait_for(lambda ev: sum(e["ev"] == "init" for e in ev) >= len(good), 5)
    assert sum(e["ev"] == "init" for e in inits) == len(good)

    res = telethon_many([c for _u, c in bad])
    for (u, c), r in zip(bad, res):
        assert not r.ok, ("user %s reachable through %s" % (u.name, c["codec"]))
        assert r.client_port and px.wait_failure(r.client_port), (u.name, c["codec"], px.failures())

    # Fake-TLS with a classic or dd user's secret must not authenticate.
    non_ee = [u for u in users if u.kind != "ee"]
    with ThreadPoolExecutor(4) as ex:
        tls_res = list(ex.map(lambda u: fake_tls_attempt(px.host, px.port, u.key, "cover.test"), non_ee))
    for u, (ok, cport, err) in zip(non_ee, tls_res):
        assert not ok, "user %s (%s) reachable through fake-TLS" % (u.name, u.kind)
        assert cport and px.wait_failure(cport), (u.name, px.failures())

    # None of the refused attempts reached the DC.
    assert sum(e["ev"] == "init" for e in fakedc.snapshot()) == len(good)

    # ee users through TDLib (fake-TLS + padded intermediate).
    ee = [u for u in users if u.kind == "ee"]
    td = tdlib_many([dict(host=px.host, port=px.port, secret=u.client_secret, action="ping") for u in ee])
    for u, r in zip(ee, td):
        assert r["ok"] and r["result"]["@type"] == "seconds", (u.name, r)
    # The right key with an unconfigured domain in the SNI is a probe, not a client.
    ok, cport, _ = fake_tls_attempt(px.host, px.port, ee[0].key, "other.test")
    assert not ok
    px.assert_no_secrets()


def test_every_user_own_secret_only(proxy_factory, fakedc, tls_cover):
    """Secret of user A with user B's (different) transport is refused; with its own it works."""
    a, b = User("a", "classic"), User("b", "dd")
    px = proxy_factory([a, b], mask=tls_cover.addr)
    assert obfs2_attempt(px.host, px.port, a.key, mtp.TAG_INTERMEDIATE) == (True, None)
    assert obfs2_attempt(px.host, px.port, b.key, mtp.TAG_PADDED) == (True, None)
    for who, key, tag in (("a", a.key, mtp.TAG_PADDED), ("b", b.key, mtp.TAG_INTERMEDIATE),
                          ("b", b.key, mtp.TAG_ABRIDGED)):
        ok, err = obfs2_attempt(px.host, px.port, key, tag, timeout=5)
        assert not ok, "secret of %s reachable with tag %s" % (who, tag.hex())
    assert sum(e["ev"] == "init" for e in fakedc.snapshot()) == 2
