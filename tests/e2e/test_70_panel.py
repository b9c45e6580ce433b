"""The web panel (issue 14, docs/panel.md) end to end, in Debian's Chromium.

Chromium runs headless through WebDriver (Debian's chromium-driver + PyPI selenium), with the
flags that keep it off the network and a new empty profile. The proxy is the real binary with a
fake DC (conftest's proxy_factory); TDLib is the real client (helpers.tdlib).

What is proved:
* the panel is off (404) until `set-panel-password` (password on stdin) writes a hash, and on
  after the live reload, on the statistics listener, beside the /stats endpoints;
* in the browser: a wrong password is refused; log in; add a user; show its QR code, take a
  screenshot, decode it with zxing-cpp and connect TDLib with the decoded link through the proxy
  to the fake DC; the traffic graph shows non-zero bytes after that traffic; disable the user
  and TDLib is refused;
* in the browser as well: a same-origin write with the cookie but without the CSRF token is
  refused, scripts cannot read the cookie, and an expired session sends the page to the login;
* over plain HTTP: the session cookie is HttpOnly + SameSite=Strict, writes without the CSRF
  token, with a wrong one or from another origin are refused, a foreign Host (DNS rebinding) is
  refused, repeated wrong passwords get 429, an expired session is refused, and no secret
  appears in the proxy's log;
* the history survives a restart; the Grafana dashboard queries only metrics /metrics serves.
* over TLS on a non-loopback address (a veth pair inside the namespace, a test CA): plain HTTP
  gets no answer, HTTPS serves /health and /metrics, the CLI's `stats` and `health` speak TLS,
  a Host outside `allowed_hosts` gets 403, Chromium logs in and the cookie is `Secure`; the same
  configuration without TLS is refused;
* removing a user in Chromium takes the name typed again; then the config no longer has the
  user and TDLib with their link is refused.

Screenshots of every page go to the test's temp folder; with PANEL_SCREENSHOTS=DIR they are also
copied there (docs/ keeps the ones the README shows).

Extra packages: Debian chromium chromium-driver; PyPI selenium, zxing-cpp, pillow.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN
from helpers import User, free_port, tdlib, wait_until

PASSWORD = "correct horse battery staple"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# --------------------------------------------------------------------------- helpers

class PanelHttp:
    """A plain HTTP client of the panel with its own cookie jar."""

    def __init__(self, port: int):
        self.base = "http://127.0.0.1:%d" % port
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = None

    def call(self, method: str, path: str, body: dict | None = None, csrf: str | None = None,
             headers: dict | None = None):
        data = None if method == "GET" else json.dumps(body or {}).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if csrf:
            req.add_header("X-CSRF-Token", csrf)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def login(self, password: str = PASSWORD):
        st, hdrs, body = self.call("POST", "/panel/api/login", {"password": password})
        if st == 200:
            self.csrf = json.loads(body)["csrf"]
        return st, hdrs, body


def start_panel_proxy(proxy_factory, users, ttl: str | None = None):
    stats_port = free_port()
    extra = '[stats]\nlisten = "127.0.0.1:%d"\n' % stats_port
    if ttl:
        extra += '\n[panel]\nsession_ttl = "%s"\n' % ttl
    px = proxy_factory(users, extra_toml=extra)
    http = PanelHttp(stats_port)
    # The statistics listener binds a moment after the client listener: refused until then.
    assert wait_until(lambda: _try(lambda: http.call("GET", "/health")[0]) == 200, 10)
    return px, http


def set_password(px, http: PanelHttp):
    """`set-panel-password` with the password on stdin, then wait for the live reload."""
    assert http.call("GET", "/panel/")[0] == 404, "the panel must be off without a password"
    before = px.config.read_text()
    cp = subprocess.run([str(BIN), "--config", str(px.config), "set-panel-password"], input=b"short\n",
                        capture_output=True, timeout=60)
    assert cp.returncode != 0 and b"at least 10" in cp.stderr and px.config.read_text() == before
    cp = subprocess.run([str(BIN), "--config", str(px.config), "set-panel-password"], input=PASSWORD.encode(),
                        capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    text = px.config.read_text()
    assert "password_hash = \"$argon2id$" in text and PASSWORD not in text
    assert wait_until(lambda: http.call("GET", "/panel/")[0] == 200, 10), "panel not on after the reload"


def proxy_user(http: "PanelHttp", name: str) -> dict | None:
    """The running proxy's view of a user (/stats.json): what the live reload applied."""
    st, _, body = http.call("GET", "/stats.json")
    return next((u for u in json.loads(body)["users"] if u["name"] == name and u["configured"]), None) if st == 200 else None


def link_parts(link: str) -> tuple[str, int, str]:
    q = urllib.parse.parse_qs(urllib.parse.urlparse(link).query)
    return q["server"][0], int(q["port"][0]), q["secret"][0]


# --------------------------------------------------------------------------- browser

def start_chromium(tmp_path: Path, extra: list[str] = (), insecure_certs: bool = False, tag: str = ""):
    """Headless Chromium over WebDriver, new empty profile, kept off the network; `extra` flags;
    `insecure_certs`: accept a certificate the browser does not trust (the test CA's)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian chromium and chromium-driver are not installed (scripts/test setup)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"
    opts = Options()
    opts.binary_location = CHROMIUM
    profile = tmp_path / ("chromium-profile" + tag)
    profile.mkdir()
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--user-data-dir=%s" % profile, "--window-size=1280,1500",
              "--lang=en-GB", *extra]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if insecure_certs:
        opts.set_capability("acceptInsecureCerts", True)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / ("chromedriver%s.log" % tag)))
    drv = webdriver.Chrome(service=service, options=opts)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    return drv


@pytest.fixture
def browser(tmp_path):
    drv = start_chromium(tmp_path)
    yield drv
    drv.quit()


class Page:
    def __init__(self, drv, base: str, shots: Path):
        self.drv, self.base, self.shots = drv, base, shots
        shots.mkdir(exist_ok=True)

    def wait(self, css: str, timeout: float = 15, pred=None):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def find():
            # The page re-renders after each action: an element may go stale while we look.
            try:
                els = self.drv.find_elements(By.CSS_SELECTOR, css)
                els = [e for e in els if e.is_displayed() and (pred is None or pred(e))]
            except StaleElementReferenceException:
                return None
            return els[0] if els else None
        el = wait_until(find, timeout, 0.1)
        assert el is not None, "no %s on the page; it shows:\n%s" % (css, self.drv.find_element(By.TAG_NAME, "body").text[:2000])
        return el

    def shot(self, name: str) -> Path:
        p = self.shots / name
        self.drv.save_screenshot(str(p))
        out = os.environ.get("PANEL_SCREENSHOTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, Path(out) / name)
        return p

    def gen(self) -> int:
        return int(self.drv.execute_script("return document.getElementById('main').dataset.gen || 0"))

    def rerendered(self, before: int):
        assert wait_until(lambda: self.gen() > before, 15, 0.1), "the page did not render again"

    def go(self, frag: str):
        self.drv.get(self.base + "/panel/" + frag)


def decode_qr(png: Path) -> list[str]:
    import zxingcpp
    from PIL import Image
    return [r.text for r in zxingcpp.read_barcodes(Image.open(png).convert("L"))]


def test_panel_in_chromium(proxy_factory, fakedc, browser, tmp_path):
    alice = User("alice", "dd")
    px, http = start_panel_proxy(proxy_factory, [alice])
    set_password(px, http)
    page = Page(browser, http.base, tmp_path / "shots")

    # Log in: a wrong password first.
    page.go("")
    pw = page.wait("#password")
    pw.send_keys("not the password")
    page.wait("#login-btn").click()
    page.wait("#login-error", pred=lambda e: "Wrong password" in e.text)
    page.shot("panel-login.png")
    pw = page.wait("#password")
    pw.clear()
    pw.send_keys(PASSWORD)
    page.wait("#login-btn").click()
    page.wait("#ov-uptime")

    # Add a user.
    page.wait("#nav-add").click()
    page.wait("#add-name").send_keys("carol")
    page.wait("#add-quota").send_keys("5GiB")
    page.shot("panel-add-user.png")
    page.wait("#add-submit").click()
    page.wait("h1", pred=lambda e: e.text.startswith("carol"))
    assert "[users.carol]" in px.config.read_text()

    # Its QR code, from a screenshot of the screen, decoded and used by TDLib.
    page.wait("#show-secret").click()
    page.wait("#qr svg")
    link_tme = page.wait("#link-tme").text
    browser.execute_script("document.getElementById('qr').scrollIntoView()")
    shot = page.shot("panel-user-qr.png")
    decoded = decode_qr(shot)
    assert decoded == [link_tme], decoded
    host, port, secret = link_parts(decoded[0])
    assert (host, port) == ("127.0.0.1", px.port) and secret.startswith("dd")
    # The file watch applies the new user within a second.
    assert wait_until(lambda: proxy_user(http, "carol"), 10)
    r = tdlib(host, port, secret, action="ping")
    assert r["ok"] and r["result"]["@type"] == "seconds", r

    # The traffic graph of that user shows the bytes (the history samples every 5 s).
    def graph_total():
        page.go("#/users")
        page.wait("#users-table tr[data-user=carol]")
        page.go("#/user/carol")
        page.wait("h1", pred=lambda e: e.text.startswith("carol"))
        return int(browser.execute_script("return document.getElementById('chart-24h').dataset.total")) or None
    total = wait_until(graph_total, 20, 1)
    assert total and total > 0, "the traffic graph stayed at zero"
    page.wait("#chart-24h")
    page.shot("panel-user.png")

    # Limits through the form (the CLI's validation answers a bad value).
    field = page.wait("#lim-max_ips")
    field.clear()
    field.send_keys("0")
    page.wait("#lim-save").click()
    page.wait("#msg", pred=lambda e: "--max-ips" in e.text)
    field = page.wait("#lim-max_ips")
    field.clear()
    field.send_keys("3")
    before = page.gen()
    page.wait("#lim-save").click()
    page.rerendered(before)
    assert "max_ips = 3" in px.config.read_text().split("[users.carol]")[1]

    # A new secret with a grace period: the old link keeps working, the new one works too.
    page.wait("#regen-grace").send_keys("1h")
    before = page.gen()
    page.wait("#regen-btn").click()
    browser.switch_to.alert.accept()
    page.rerendered(before)
    page.wait("#old-until")
    assert "previous_secret" in px.config.read_text().split("[users.carol]")[1]
    page.wait("#show-secret").click()
    _, _, new_secret = link_parts(page.wait("#link-tme").text)
    assert new_secret != secret
    # The new secret works once the proxy has reloaded (within about a second).
    assert wait_until(lambda: tdlib(host, port, new_secret, action="ping", timeout=5)["ok"], 20, 0.5)
    r = tdlib(host, port, secret, action="ping")
    assert r["ok"] and r["result"]["@type"] == "seconds", r

    # Disable from the panel: TDLib is refused.
    before = page.gen()
    page.wait("#toggle-enabled").click()
    browser.switch_to.alert.accept()
    page.rerendered(before)
    page.wait("#user-state", pred=lambda e: e.text == "disabled")
    assert "enabled = false" in px.config.read_text().split("[users.carol]")[1]
    assert wait_until(lambda: (proxy_user(http, "carol") or {}).get("enabled") is False, 10)
    r = tdlib(host, port, secret, action="ping", timeout=8)
    assert not r["ok"], r

    # The list and the overview, for the docs.
    page.go("#/users")
    page.wait("#users-table tr[data-user=carol]")
    page.shot("panel-users.png")
    page.go("#/")
    page.wait("#ov-uptime")
    assert int(browser.execute_script("return document.getElementById('chart-24h').dataset.total")) > 0
    page.shot("panel-overview.png")
    # Russian.
    page.wait("#lang").click()
    page.wait("#nav-users", pred=lambda e: e.text == "Пользователи")
    page.shot("panel-overview-ru.png")

    # The page ran without script errors and without anything the CSP had to block.
    console = [e["message"] for e in browser.get_log("browser")]
    bad = [m for m in console if "Content Security Policy" in m or "Uncaught" in m]
    assert not bad, bad

    # No secret in the log: neither alice's nor carol's (old and new).
    log = px.log().lower()
    assert secret[2:].lower() not in log and new_secret[2:].lower() not in log
    px.assert_no_secrets()


def test_panel_refuses(proxy_factory, fakedc):
    px, http = start_panel_proxy(proxy_factory, [User("dave", "dd")], ttl="3s")
    set_password(px, http)
    # The statistics endpoints are still there.
    assert http.call("GET", "/stats")[0] == 200

    assert http.call("GET", "/panel/api/users")[0] == 401
    # Another host name for 127.0.0.1 (DNS rebinding) gets nothing.
    assert http.call("GET", "/panel/", headers={"Host": "evil.test:%s" % http.base.rsplit(":", 1)[1]})[0] == 403
    st, hdrs, _ = http.login()
    assert st == 200
    cookie = hdrs["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/panel" in cookie

    # Writes: no CSRF token, a wrong one, another origin.
    form = {"name": "eve", "kind": "dd"}
    assert http.call("POST", "/panel/api/users", form)[0] == 403
    assert http.call("POST", "/panel/api/users", form, csrf="0" * 64)[0] == 403
    assert http.call("POST", "/panel/api/users", form, csrf=http.csrf, headers={"Origin": "http://evil.test"})[0] == 403
    assert "eve" not in px.config.read_text()
    # The same write with the token goes through the CLI's validation.
    st, _, body = http.call("POST", "/panel/api/users", {"name": "bad name"}, csrf=http.csrf)
    assert st == 422 and b"not allowed" in body
    # The secret comes only from a POST with the token.
    assert http.call("POST", "/panel/api/users/dave/secret", {})[0] == 403
    st, _, body = http.call("POST", "/panel/api/users/dave/secret", {}, csrf=http.csrf)
    assert st == 200 and json.loads(body)["secret"] == px.user("dave").client_secret
    st, _, body = http.call("GET", "/panel/api/users/dave")
    assert st == 200 and px.user("dave").secret.encode() not in body

    # The session expires (session_ttl = 3s).
    time.sleep(3.5)
    assert http.call("GET", "/panel/api/session")[0] == 401
    assert http.call("POST", "/panel/api/users/dave/disable", {}, csrf=http.csrf)[0] == 401
    assert "enabled = true" in px.config.read_text().split('[users."dave"]')[1]

    # Wrong passwords: refused, then rate-limited (5 a minute per address).
    other = PanelHttp(int(http.base.rsplit(":", 1)[1]))
    codes = [other.login("wrong password %d" % i)[0] for i in range(6)]
    assert codes == [401] * 5 + [429], codes
    assert other.login()[0] == 429, "the right password waits too"
    assert px.log().count("panel: login failed") == 5
    assert PASSWORD not in px.log()
    px.assert_no_secrets()


def test_panel_history_survives_a_restart(proxy_factory, fakedc):
    """Traffic counted before a restart is still in the graphs after it (the history file)."""
    frank = User("frank", "dd")
    px, http = start_panel_proxy(proxy_factory, [frank])
    set_password(px, http)
    assert http.login()[0] == 200
    r = tdlib(px.host, px.port, frank.client_secret, action="ping")
    assert r["ok"], r

    def user_bytes():
        st, _, body = http.call("GET", "/panel/api/users/frank")
        h = json.loads(body)["history"]
        return sum(b[1] + b[2] for b in h["minutes"]) if st == 200 else 0
    before = wait_until(user_bytes, 15, 0.5)
    assert before, "no traffic in the history"
    px.stop()  # SIGTERM: the history is written at shutdown
    history = Path(str(px.config) + ".usage.history")
    saved = json.loads(history.read_text())
    assert sum(b[1] + b[2] for b in saved["series"]["frank"]["minutes"]) >= before
    assert oct(history.stat().st_mode & 0o777) == "0o600"

    # The same folder, a new process (the counters start again from zero).
    from conftest import Proxy
    px2 = Proxy(px.config.parent, [frank], fakedc, extra_toml='[stats]\nlisten = "127.0.0.1:%d"\n' % int(http.base.rsplit(":", 1)[1]))
    try:
        set_password(px2, http)
        assert http.login()[0] == 200
        assert user_bytes() >= before
        st, _, body = http.call("GET", "/panel/api/overview")
        assert st == 200 and json.loads(body)["last_24h"] >= before
    finally:
        px2.stop()


def test_grafana_dashboard_uses_metrics_the_proxy_exposes(proxy_factory, fakedc):
    """deploy/grafana-dashboard.json: every metric it queries is one /metrics serves (the
    middle-end ones, served only in middle-proxy mode, are checked against docs/stats.md)."""
    import re
    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"vless_mtproxy_\w+", e)}
    px, http = start_panel_proxy(proxy_factory, [User("gina", "dd")])
    st, _, body = http.call("GET", "/metrics")
    assert st == 200
    served = set(re.findall(r"^# TYPE (vless_mtproxy_\w+)", body.decode(), re.M))
    documented = {"vless_mtproxy_" + m for m in re.findall(r"^\| `(\w+)` \|", (root / "docs" / "stats.md").read_text(), re.M)}
    missing = {m for m in used if m not in served and not (m.startswith("vless_mtproxy_middle_") and m in documented)}
    assert not missing, missing


def test_panel_refuses_in_chromium(proxy_factory, fakedc, browser, tmp_path):
    """In the browser too: a write without the CSRF token (the cookie alone) is refused, and an
    expired session sends the page back to the login form."""
    hank = User("hank", "dd")
    px, http = start_panel_proxy(proxy_factory, [hank], ttl="4s")
    set_password(px, http)
    page = Page(browser, http.base, tmp_path / "shots")
    page.go("")
    page.wait("#password").send_keys(PASSWORD)
    page.wait("#login-btn").click()
    page.wait("#ov-uptime")
    # The page's own origin, with the session cookie, but no X-CSRF-Token.
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/panel/api/users/hank/disable', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json'}, body: '{}'}).then(r => done(r.status));""")
    assert status == 403
    assert "enabled = true" in px.config.read_text().split('[users."hank"]')[1]
    # The cookie is not readable by scripts (HttpOnly).
    assert "vmp_session" not in browser.execute_script("return document.cookie")
    time.sleep(4.5)
    page.wait("#nav-users").click()
    page.wait("#login-error", pred=lambda e: "Session ended" in e.text)
    assert not page.wait("#password").get_attribute("value")


# --------------------------------------------------------------------------- TLS, public address

PUBLIC_IP = "10.201.0.1"
PANEL_NAME = "panel.test"
STATS_TOKEN = "e2e-stats-token-0123456789"


@pytest.fixture
def public_addr():
    """A non-loopback address inside the test's own namespace: a veth pair (this kernel has no
    `dummy` type), removed afterwards (helpers.in_private_netns wants only `lo` for TDLib)."""
    from helpers import in_private_netns
    if not in_private_netns():
        pytest.skip("needs the private network namespace of scripts/test")
    run = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True, timeout=10)
    run("link", "add", "vmtp-pa", "type", "veth", "peer", "name", "vmtp-pb")
    try:
        run("addr", "add", PUBLIC_IP + "/32", "dev", "vmtp-pa")
        run("link", "set", "vmtp-pa", "up")
        run("link", "set", "vmtp-pb", "up")
        yield PUBLIC_IP
    finally:
        subprocess.run(["ip", "link", "del", "vmtp-pa"], capture_output=True, timeout=10)


def https_raw(port: int, path: str, cafile: Path, host: str = PANEL_NAME, headers: dict | None = None):
    """GET over TLS to the public address, the certificate checked against the test CA for
    PANEL_NAME; (status, headers, body)."""
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((PUBLIC_IP, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=PANEL_NAME) as s:
            lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Connection: close"]
            lines += ["%s: %s" % kv for kv in (headers or {}).items()]
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            buf = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLEOFError:
                    break
                if not chunk:
                    break
                buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    hl = head.decode().split("\r\n")
    return int(hl[0].split()[1]), {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in hl[1:])}, body


def tls_panel_toml(port: int, chain: Path, key: Path) -> str:
    return ('[stats]\nlisten = "%s:%d"\nallow_remote = true\ntoken = "%s"\ntls_cert = "%s"\ntls_key = "%s"\n'
            '\n[panel]\nallowed_hosts = ["%s"]\n' % (PUBLIC_IP, port, STATS_TOKEN, chain, key, PANEL_NAME))


def test_panel_over_tls_on_a_public_address(proxy_factory, fakedc, public_addr, tmp_path):
    import socket
    from certs import TestCA
    ca = TestCA(tmp_path / "ca")
    chain, key = ca.issue("panel", [PANEL_NAME])
    port = free_port()
    px = proxy_factory([User("ivan", "dd")], extra_toml=tls_panel_toml(port, chain, key))
    assert wait_until(lambda: _try(lambda: https_raw(port, "/health", ca.pem)[0]) == 200, 10)

    # Plain HTTP gets no HTTP answer.
    with socket.create_connection((PUBLIC_IP, port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: panel.test\r\n\r\n")
        s.settimeout(5)
        try:
            answer = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer
    # HTTPS, checked against the CA: /health, and /metrics with the bearer token.
    assert https_raw(port, "/metrics", ca.pem)[0] == 401
    st, _, body = https_raw(port, "/metrics", ca.pem, headers={"Authorization": "Bearer " + STATS_TOKEN})
    assert st == 200 and b"vless_mtproxy_" in body

    # The CLI's stats and health speak TLS to it, trusting the configured certificate.
    cp = subprocess.run([str(BIN), "--config", str(px.config), "stats"], capture_output=True, timeout=30)
    assert cp.returncode == 0 and b"ivan" in cp.stdout, cp.stderr.decode() + cp.stdout.decode()
    cp = subprocess.run([str(BIN), "--config", str(px.config), "health"], capture_output=True, timeout=30)
    assert cp.returncode == 0 and b"answered 200" in cp.stdout, cp.stderr.decode()

    # The panel, with a password.
    cp = subprocess.run([str(BIN), "--config", str(px.config), "set-panel-password"], input=PASSWORD.encode(),
                        capture_output=True, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    assert wait_until(lambda: _try(lambda: https_raw(port, "/panel/", ca.pem)[0]) == 200, 10)
    # A Host that is neither loopback nor in allowed_hosts (DNS rebinding): 403.
    assert https_raw(port, "/panel/", ca.pem, host="evil.test:%d" % port)[0] == 403
    assert https_raw(port, "/panel/", ca.pem, host="%s:%d" % (PUBLIC_IP, port))[0] == 403

    # Chromium: panel.test resolved to the address, the test CA's certificate accepted.
    drv = start_chromium(tmp_path, ["--host-resolver-rules=MAP %s %s" % (PANEL_NAME, PUBLIC_IP)], insecure_certs=True, tag="-tls")
    try:
        page = Page(drv, "https://%s:%d" % (PANEL_NAME, port), tmp_path / "shots")
        page.go("")
        page.wait("#password").send_keys(PASSWORD)
        page.wait("#login-btn").click()
        page.wait("#ov-uptime")
        cookie = next(c for c in drv.get_cookies() if c["name"] == "vmp_session")
        assert cookie["secure"] and cookie["httpOnly"], cookie
        page.go("#/users")
        page.wait("#users-table tr[data-user=ivan]")
    finally:
        drv.quit()
    assert PASSWORD not in px.log()
    assert b"PRIVATE KEY" not in px.log().encode()
    px.assert_no_secrets()


def _try(f):
    try:
        return f()
    except OSError:
        return None


def test_panel_on_a_public_address_without_tls_is_refused(proxy_factory, fakedc, tmp_path):
    """The configuration check refuses it with the message (a public address is not needed:
    the check runs on the text)."""
    cfg = tmp_path / "config.toml"
    h = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
    cfg.write_text('[stats]\nlisten = "%s:8888"\nallow_remote = true\ntoken = "%s"\n\n[panel]\npassword_hash = "%s"\n'
                   % (PUBLIC_IP, STATS_TOKEN, h))
    cp = subprocess.run([str(BIN), "serve", "--config", str(cfg)], capture_output=True, timeout=30)
    err = cp.stderr.decode() + cp.stdout.decode()
    assert cp.returncode != 0
    assert "the listener has no TLS" in err and "tls_cert and tls_key" in err, err


def test_remove_user_in_chromium(proxy_factory, fakedc, browser, tmp_path):
    """Remove a user from the panel (the name typed to confirm): the configuration no longer has
    them, and TDLib with their link is refused."""
    judy = User("judy", "dd")
    px, http = start_panel_proxy(proxy_factory, [judy, User("kate", "dd")])
    set_password(px, http)
    r = tdlib(px.host, px.port, judy.client_secret, action="ping")
    assert r["ok"], r
    page = Page(browser, http.base, tmp_path / "shots")
    page.go("")
    page.wait("#password").send_keys(PASSWORD)
    page.wait("#login-btn").click()
    page.wait("#ov-uptime")
    page.go("#/user/judy")
    page.wait("h1", pred=lambda e: e.text.startswith("judy"))
    page.wait("#remove-btn").click()
    confirm = page.wait("#remove-confirm")
    assert not confirm.is_enabled(), "removal must wait for the name"
    page.wait("#remove-name").send_keys("jud")
    assert not page.wait("#remove-confirm").is_enabled()
    page.wait("#remove-name").send_keys("y")
    page.shot("panel-remove-user.png")
    page.wait("#remove-confirm", pred=lambda e: e.is_enabled()).click()
    page.wait("#users-table tr[data-user=kate]")
    assert wait_until(lambda: "judy" not in px.config.read_text(), 10), px.config.read_text()
    assert "kate" in px.config.read_text()
    assert wait_until(lambda: proxy_user(http, "judy") is None, 10)
    r = tdlib(px.host, px.port, judy.client_secret, action="ping", timeout=8)
    assert not r["ok"], r
    # Over HTTP: a removal whose typed name does not match is refused.
    assert http.login()[0] == 200
    st, _, body = http.call("POST", "/panel/api/users/kate/remove", {"name": "judy"}, csrf=http.csrf)
    assert st == 400 and "kate" in px.config.read_text()
    assert http.call("POST", "/panel/api/users/kate/remove", {"name": "kate"})[0] == 403
    console = [e["message"] for e in browser.get_log("browser")]
    assert not [m for m in console if "Content Security Policy" in m or "Uncaught" in m], console
