"""Kubernetes for the fleet (issue 13, docs/fleet.md): the manifests in deploy/kubernetes
validate offline against the Kubernetes schemas (`kubernetes-validate`, whose schemas ship in
the package; this suite runs in a network namespace with loopback only), and the proxy follows
a ConfigMap update, which the kubelet makes by swapping the `..data` symlink."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

import mtp
from conftest import ROOT
from helpers import User, obfs2_attempt, users_loaded, wait_until

K8S = ROOT / "deploy" / "kubernetes"
CORE = ["namespace.yaml", "configmap.yaml", "secret.example.yaml", "daemonset.yaml",
        "deployment-loadbalancer.yaml", "service-metrics.yaml"]


def test_fleet_manifests_validate_offline_against_the_kubernetes_schemas():
    exe = Path(sys.executable).parent / "kubernetes-validate"
    cp = subprocess.run([str(exe), "--strict", *[str(K8S / f) for f in CORE]], capture_output=True, timeout=120)
    out = cp.stdout.decode() + cp.stderr.decode()
    assert cp.returncode == 0, out
    assert out.count("passed for resource") == 8, out
    # Every manifest in the folder is either validated above or is the ServiceMonitor (a CRD).
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted(CORE + ["servicemonitor.yaml"])
    docs = {f: list(yaml.safe_load_all((K8S / f).read_text())) for f in CORE + ["servicemonitor.yaml"]}
    for f in ("daemonset.yaml", "deployment-loadbalancer.yaml"):
        pod = docs[f][0]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/health"
        # A subPath mount never sees ConfigMap updates: the config must be a directory mount.
        mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
        assert "subPath" not in mount and mount["mountPath"] == "/etc/vless-mtproxy"
        env = {e["name"]: e for e in c["env"]}
        assert env["VLESS_MTPROXY_STORE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "vless-mtproxy-store"
    assert docs["daemonset.yaml"][0]["spec"]["template"]["spec"]["hostNetwork"] is True
    assert docs["deployment-loadbalancer.yaml"][1]["spec"]["type"] == "LoadBalancer"
    sm = docs["servicemonitor.yaml"][0]
    assert sm["kind"] == "ServiceMonitor" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    cfg = docs["configmap.yaml"][0]["data"]["config.toml"]
    assert "url_env" in cfg and "postgres://" not in cfg, "the password belongs in the Secret"


def _swap(cm: Path, users: list[User], n: int):
    """Publish a new ConfigMap version the way the kubelet does: a new timestamped folder, a
    temporary ..data_tmp symlink to it renamed over ..data, then the old folder removed."""
    new = cm / ("..2026_12_06_00_00_%02d.%d" % (n, os.getpid()))
    new.mkdir()
    (new / "config.toml").write_text(cm.joinpath("base.toml").read_text() + "\n" + "\n".join(u.toml() for u in users))
    old = os.readlink(cm / "..data") if (cm / "..data").is_symlink() else None
    os.symlink(new.name, cm / "..data_tmp")
    os.rename(cm / "..data_tmp", cm / "..data")
    if old:
        shutil.rmtree(cm / old)



def test_fleet_a_configmap_symlink_swap_is_picked_up_live(proxy_factory):
    a, b, c = User("a", "dd"), User("b", "dd"), User("c", "dd")
    p = proxy_factory([a])
    # Turn the proxy's folder into a ConfigMap mount: config.toml -> ..data/config.toml.
    cm = p.config.parent
    text = p.config.read_text()
    cm.joinpath("base.toml").write_text(text.split('[users."a"]')[0])
    _swap(cm, [a], 1)
    os.symlink("..data/config.toml", cm / "config.tmp")
    os.rename(cm / "config.tmp", p.config)
    assert p.config.is_symlink()
    # The update: b and c added, a removed.
    _swap(cm, [b, c], 2)
    assert wait_until(lambda: users_loaded(p) == 2 and "configuration not reloaded" not in p.log(), 5)
    ok_b, err = obfs2_attempt(p.host, p.port, b.key, mtp.TAG_PADDED)
    assert ok_b, err
    ok_a, _ = obfs2_attempt(p.host, p.port, a.key, mtp.TAG_PADDED, timeout=4)
    assert not ok_a, "the user removed by the swap still connects"
