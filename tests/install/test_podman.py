"""Non-interactive setup with Podman, end to end: the image builds offline, the container starts
and is healthy, TDLib reaches the proxy inside it through the fake DC, a user added with the CLI
on the host works without a restart, `reload` on the host signals the proxy through podman
(its pid file is inside the container), stop/start keeps the users, a second run changes nothing,
and uninstall leaves no container, image or compose entry behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import podman, td_ping, wait_until


def run_setup(layout, env, *extra, timeout=300):
    cmd = [str(layout.binary), "setup", *layout.path_args(), *extra]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def cli(layout, env, *args):
    return subprocess.run([str(layout.installed), "--config", str(layout.config), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def stats_json():
    """/stats.json of the proxy in the container (host network: the default 127.0.0.1:8888)."""
    with urllib.request.urlopen("http://127.0.0.1:8888/stats.json", timeout=5) as r:
        return json.loads(r.read())


def container_id(env):
    r = podman(env, "container", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", "vless_mtproxy", check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def test_podman_install_lifecycle(layout, podman_env, fakedc):
    env = podman_env
    dc = "*=127.0.0.1:%d" % fakedc.port

    # --- first run, timed, from a clean host (the binary is built)
    r, took = run_setup(layout, env, "--non-interactive", "--runtime", "podman", "--port", "18443",
                        "--public-host", "127.0.0.1", "--dc-override", dc, "--ufw", "off", "--fail2ban-mode", "off")
    assert r.returncode == 0, "setup failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    assert took < 180, "non-interactive setup took %.1f s (limit 180 s)" % took
    print("non-interactive setup took %.1f s" % took)
    out = r.stdout
    for n in range(1, 9):
        assert "[%d/8]" % n in out, "progress step %d missing:\n%s" % (n, out)
    secret = layout.client_secret("default")
    assert secret.startswith("dd")
    assert "tg://proxy?server=127.0.0.1&port=18443&secret=%s" % secret in out
    assert "https://t.me/proxy?server=127.0.0.1&port=18443&secret=%s" % secret in out
    assert "\u2580" in out or "\u2584" in out or "\u2588" in out, "no QR code in the output"
    assert "add-user NAME" in out and str(layout.config) in out

    # files: config 0600 owned by the container user, folders, state, own compose, logrotate
    st = os.stat(layout.config)
    assert oct(st.st_mode & 0o777) == "0o600" and st.st_uid == 65534
    assert (layout.install_dir / "vless-mtproxy-setup").is_symlink()
    assert (layout.data_dir / "setup" / "install-state.toml").is_file()
    compose = (layout.data_dir / "setup" / "docker-compose.yml").read_text()
    assert "network_mode: host" in compose and dc in compose
    assert "\n    copytruncate\n" in (layout.logrotate_dir / "vless-mtproxy").read_text()

    # the container: running, non-root, restart policy, config mounted read-only, healthy
    insp = podman(env, "container", "inspect", "--format",
                  "{{.State.Running}} {{.Config.User}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.NetworkMode}}",
                  "vless_mtproxy").stdout.split()
    assert insp == ["true", "65534:65534", "unless-stopped", "host"], insp
    mounts = podman(env, "container", "inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}",
                    "vless_mtproxy").stdout
    assert "/etc/vless-mtproxy=false" in mounts, mounts
    assert podman(env, "healthcheck", "run", "vless_mtproxy", check=False).returncode == 0
    assert podman(env, "image", "exists", "vless_mtproxy:latest", check=False).returncode == 0

    # TDLib reaches the proxy in the container, through the fake DC
    res = td_ping("127.0.0.1", 18443, secret)
    assert res["ok"], "TDLib pingProxy failed: %s" % res
    assert any(e.get("ev") == "constructor" for e in fakedc.snapshot()) or fakedc.snapshot(), "the fake DC saw nothing"
    log = layout.log_dir / "proxy.log"
    assert wait_until(lambda: log.is_file() and "listening" in log.read_text(), 10), "no log file in %s" % layout.log_dir
    assert secret[2:] not in log.read_text()
    assert "pid file" not in log.read_text() and "cannot save" not in log.read_text(), log.read_text()

    # --- logrotate with the installed snippet: copytruncate, and the proxy goes on writing
    assert shutil.which("logrotate"), "logrotate is required (apt-get install logrotate)"
    rotated = subprocess.run(["logrotate", "-f", "-s", str(layout.base / "logrotate.state"),
                              str(layout.logrotate_dir / "vless-mtproxy")], capture_output=True, text=True, timeout=60)
    assert rotated.returncode == 0, rotated.stderr
    assert (layout.log_dir / "proxy.log.1").is_file() and "listening" in (layout.log_dir / "proxy.log.1").read_text()
    assert log.stat().st_size == 0 or "listening" not in log.read_text()
    with socket.create_connection(("127.0.0.1", 18443), timeout=5) as c:  # a failed handshake gets logged
        c.sendall(b"\0" * 64)
        c.settimeout(5)
        try:
            c.recv(1)
        except OSError:
            pass
    assert wait_until(lambda: "handshake failed" in log.read_text(), 15), "no new line after the rotation"
    assert log.read_text().startswith("20"), "the line must land at the start of the truncated file"

    # --- a second run with the seed's environment form and the same answers changes nothing
    # The proxy saves usage every 10 s when its numbers changed (serve.rs USAGE_SAVE_EVERY): let
    # the save of the traffic above land first, so only what setup does is compared.
    time.sleep(11)
    before = layout.snapshot()
    cid = container_id(env)
    env2 = dict(env, MTPROXY_AUTO_MODE="yes", MTPROXY_PORT="18443", MTPROXY_WORKERS="1", MTPROXY_PADDING="yes")
    r, _ = run_setup(layout, env2, "--ufw", "off", "--fail2ban-mode", "off")
    assert r.returncode == 0, "second setup failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert "already running with this configuration" in r.stdout
    after = layout.snapshot()
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert not changed, "the second run changed: %s" % sorted(changed)
    assert container_id(env) == cid, "the second run recreated or restarted the container"

    # --- a user added with the CLI on the host works without a restart
    r = cli(layout, env, "add-user", "alice")
    assert r.returncode == 0, "add-user failed: %s %s" % (r.stdout, r.stderr)
    alice = layout.client_secret("alice")
    assert wait_until(lambda: "reloaded" in log.read_text(), 10), "the proxy did not reload:\n%s" % log.read_text()[-3000:]
    res = td_ping("127.0.0.1", 18443, alice)
    assert res["ok"], "the new user did not connect without a restart: %s\n%s" % (res, log.read_text()[-3000:])
    assert container_id(env) == cid, "the container was restarted"

    # --- `reload` on the host: the proxy's pid file is inside the container, so the signal goes
    # through podman. The file is unchanged since alice was applied, and the proxy re-reads an
    # unchanged file only on SIGHUP: one more "configuration reloaded" line (and reload in
    # /stats.json) proves the signal arrived.
    def reloaded_lines():
        return log.read_text().count("configuration reloaded")
    lines, ok_before = reloaded_lines(), stats_json()["reloads"]["ok"]
    r = cli(layout, env, "reload")
    assert r.returncode == 0, "reload failed: %s %s" % (r.stdout, r.stderr)
    assert "Sent SIGHUP to the proxy in the podman container vless_mtproxy" in r.stdout, r.stdout
    assert "within a second" in r.stdout, "reload says what applies: %s" % r.stdout
    assert wait_until(lambda: reloaded_lines() == lines + 1, 10), log.read_text()[-3000:]
    last = [l for l in log.read_text().splitlines() if "configuration reloaded" in l][-1]
    assert "users=2" in last, last
    assert wait_until(lambda: stats_json()["reloads"]["ok"] == ok_before + 1, 10), stats_json()["reloads"]
    assert container_id(env) == cid, "reload restarted the container"
    # A user added and reloaded: in force (listed by the proxy) and connecting.
    r = cli(layout, env, "add-user", "bob")
    assert r.returncode == 0, r.stderr
    r = cli(layout, env, "reload")
    assert r.returncode == 0 and "podman container" in r.stdout, "%s %s" % (r.stdout, r.stderr)
    assert wait_until(lambda: any(u["name"] == "bob" and u["configured"] for u in stats_json()["users"]), 10), stats_json()["users"]
    res = td_ping("127.0.0.1", 18443, layout.client_secret("bob"))
    assert res["ok"], "bob after reload: %s" % res
    # Another configuration than the one the container mounts: refused, nothing signalled.
    other = layout.base / "other-config"
    other.mkdir()
    shutil.copy(layout.config, other / "config.toml")
    lines = reloaded_lines()
    r = subprocess.run([str(layout.installed), "--config", str(other / "config.toml"), "reload"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not the folder of" in r.stderr, "%s %s" % (r.stdout, r.stderr)
    assert reloaded_lines() == lines

    # --- stop/start keeps the users
    podman(env, "stop", "-t", "10", "vless_mtproxy")
    podman(env, "start", "vless_mtproxy")
    assert wait_until(lambda: podman(env, "healthcheck", "run", "vless_mtproxy", check=False).returncode == 0, 20)
    assert set(layout.users()) == {"default", "alice", "bob"}
    for s in (secret, alice):
        res = td_ping("127.0.0.1", 18443, s)
        assert res["ok"], "after stop/start: %s" % res

    # --- a run with a new port changes only the port (through `set-port`): users and secrets stay
    r, _ = run_setup(layout, env, "--non-interactive", "--port", "18446", "--ufw", "off", "--fail2ban-mode", "off")
    assert r.returncode == 0, "setup with a new port failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert "applied: vless-mtproxy set-port 18446" in r.stdout, r.stdout
    assert layout.port() == 18446 and layout.client_secret("default") == secret and layout.client_secret("alice") == alice
    for s in (secret, alice):
        res = td_ping("127.0.0.1", 18446, s)
        assert res["ok"], "on the new port: %s" % res

    # --- uninstall: nothing left but the configuration and its backup
    r = subprocess.run([str(layout.installed), "uninstall", "--data-dir", str(layout.data_dir)], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "--yes" in r.stderr, "uninstall without a terminal must ask for --yes"
    assert container_id(env), "a refused uninstall removed something"
    r = subprocess.run([str(layout.install_dir / "vless-mtproxy-uninstall"), "--yes", "--data-dir", str(layout.data_dir)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "uninstall failed:\n%s\n%s" % (r.stdout, r.stderr)
    assert container_id(env) is None
    assert podman(env, "image", "exists", "vless_mtproxy:latest", check=False).returncode != 0
    assert podman(env, "ps", "-a", "-q").stdout.strip() == ""
    assert not (layout.data_dir / "setup" / "docker-compose.yml").exists()
    assert not (layout.logrotate_dir / "vless-mtproxy").exists()
    assert not layout.installed.exists() and not (layout.install_dir / "vless-mtproxy-setup").exists()
    assert set(layout.users()) == {"default", "alice", "bob"}, "the configuration must be kept"
    backups = list((layout.data_dir / "setup" / "backup").glob("config.toml.*.bak"))
    assert backups and backups[0].read_text() == layout.config.read_text()
    assert not (layout.data_dir / "setup" / "install-state.toml").exists()
    # No proxy anywhere now: reload says so, naming both places it looked.
    r = subprocess.run([str(layout.binary), "--config", str(layout.config), "reload"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no container vless_mtproxy is running under podman or docker" in r.stderr, r.stderr


@pytest.mark.parametrize("port,network", [(443, "host"), (18447, "publish")])
def test_low_port_and_published_port(layout, podman_env, port, network):
    """A port below 1024 works for the non-root container (only NET_BIND_SERVICE added); with
    --network publish the port is published (-p) and the container has its own network, so the
    fake DC is reached through the bridge's gateway address."""
    from fakedc import FakeDC
    env = podman_env
    dc = FakeDC(host="0.0.0.0").start()
    try:
        dc_host = "127.0.0.1"
        if network == "publish":
            podman(env, "network", "exists", "podman")
            dc_host = podman(env, "network", "inspect", "podman", "--format",
                             "{{range .Subnets}}{{.Gateway}}{{end}}").stdout.strip()
            assert dc_host, "the podman network has no gateway address"
        r, _ = run_setup(layout, env, "--non-interactive", "--runtime", "podman", "--port", str(port), "--network", network,
                         "--public-host", "127.0.0.1", "--dc-override", "*=%s:%d" % (dc_host, dc.port),
                         "--ufw", "off", "--fail2ban-mode", "off")
        assert r.returncode == 0, "setup failed:\n%s\n%s" % (r.stdout, r.stderr)
        pid, mode = podman(env, "container", "inspect", "--format", "{{.State.Pid}} {{.HostConfig.NetworkMode}}",
                           "vless_mtproxy").stdout.split()
        status = open("/proc/%s/status" % pid).read()
        caps = {k: int(v, 16) for k, v in (l.split(":\t") for l in status.splitlines() if l.startswith(("CapEff", "CapBnd")))}
        bind = 1 << 10  # CAP_NET_BIND_SERVICE
        assert caps == ({"CapEff": bind, "CapBnd": bind} if port < 1024 else {"CapEff": 0, "CapBnd": 0}), (status, caps)
        assert "Uid:\t65534" in status
        assert (mode == "host") == (network == "host"), mode
        res = td_ping("127.0.0.1", port, layout.client_secret("default"))
        assert res["ok"], "TDLib through the %s-network container on port %d: %s" % (network, port, res)
        r = subprocess.run([str(layout.installed), "uninstall", "--yes", "--purge", "--data-dir", str(layout.data_dir)],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert podman(env, "ps", "-a", "-q").stdout.strip() == ""
    finally:
        dc.stop()
