"""The systemd unit passes `systemd-analyze verify`; setup's exit codes for a non-root user (2), a
missing host component (3, named) and bad input (1, with the file untouched)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def setup_cmd(layout, *extra):
    return [str(layout.binary), "setup", *layout.path_args(), *extra]


def run(cmd, env=None, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.parametrize("port", [8443, 443])
def test_systemd_unit_passes_systemd_analyze_verify(layout, tmp_path, port):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is required (apt-get install systemd)")
    layout.install_dir.mkdir(parents=True)
    shutil.copy(layout.binary, layout.installed)
    out = tmp_path / "render"
    r = run(setup_cmd(layout, "--render", str(out), "--port", str(port), "--dc-override", "*=127.0.0.1:4443"))
    assert r.returncode == 0, r.stderr
    unit = out / "vless-mtproxy.service"
    text = unit.read_text()
    for want in ("NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=always", "ExecReload=/bin/kill -HUP $MAINPID",
                 "ExecStart=%s --config %s serve --log-file %s --dc-override *=127.0.0.1:4443"
                 % (layout.installed, layout.config, layout.log_dir / "proxy.log")):
        assert want in text, "%s missing in the unit:\n%s" % (want, text)
    caps = [l for l in text.splitlines() if l.startswith("CapabilityBoundingSet=")]
    assert caps == ["CapabilityBoundingSet=" + ("CAP_NET_BIND_SERVICE" if port < 1024 else "")]
    v = run(["systemd-analyze", "verify", "--man=no", str(unit)])
    problems = [l for l in (v.stdout + v.stderr).splitlines() if "vless-mtproxy" in l]
    assert v.returncode == 0 and not problems, "systemd-analyze verify:\n%s%s" % (v.stdout, v.stderr)
    # The other rendered files are what setup installs.
    assert "FROM scratch" in (out / "Containerfile").read_text()
    assert "USER 65534:65534" in (out / "Containerfile").read_text()
    assert "copytruncate" in (out / "logrotate").read_text()


def test_not_root_exits_2(layout, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is required")
    tmp_path.chmod(0o755)
    b = tmp_path / "vless-mtproxy"
    shutil.copy(layout.binary, b)
    b.chmod(0o755)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = run(drop + [str(b), "setup", "--non-interactive"])
    assert r.returncode == 2 and "must run as root" in r.stderr, (r.returncode, r.stderr)
    r = run(drop + [str(b), "uninstall", "--yes"])
    assert r.returncode == 2 and "must run as root" in r.stderr, (r.returncode, r.stderr)


def test_missing_host_component_exits_3(layout):
    r = run(["docker", "info"]) if shutil.which("docker") else None
    if r is not None and r.returncode == 0:
        pytest.skip("a Docker engine runs on this machine: the missing-engine case cannot be shown here")
    r = run(setup_cmd(layout, "--non-interactive", "--runtime", "docker"))
    assert r.returncode == 3 and "docker" in r.stderr, (r.returncode, r.stderr)
    if not os.path.isdir("/run/systemd/system"):
        r = run(setup_cmd(layout, "--non-interactive", "--runtime", "systemd"))
        assert r.returncode == 3 and "systemd" in r.stderr, (r.returncode, r.stderr)
    env = dict(os.environ, PATH="/nonexistent")
    r = run(setup_cmd(layout, "--non-interactive", "--runtime", "podman"), env=env)
    assert r.returncode == 3 and "podman" in r.stderr, (r.returncode, r.stderr)
    assert not layout.config_dir.exists(), "a refused setup must not create anything"


def test_bad_input_exits_1_and_changes_nothing(layout):
    for args, words in ((["--port", "70000"], "1 to 65535"), (["--workers", "0"], "1 to 256"),
                        (["--kind", "tls"], "classic, dd"), (["--kind", "ee", "--domain", "localhost"], "cover domain"),
                        (["--ad-tag", "xyz"], "32 hex"), (["--kind", "ee"], "--domain"),
                        (["--upstream-xray", "--xray-config", str(layout.config_dir.parent / "none.json")],
                         "no `socks` inbound on a loopback address")):
        r = run(setup_cmd(layout, "--non-interactive", "--runtime", "podman", *args))
        assert r.returncode == 1 and words in r.stderr, (args, r.returncode, r.stderr)
    env = dict(os.environ, MTPROXY_AUTO_MODE="yes", MTPROXY_PORT="0")
    r = run(setup_cmd(layout, "--runtime", "podman"), env=env)
    assert r.returncode == 1 and "MTPROXY_PORT" in r.stderr, r.stderr
    assert not layout.config_dir.exists()
