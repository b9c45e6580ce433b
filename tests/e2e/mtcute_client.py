"""mtcute (TypeScript MTProto library, npm `@mtcute/node` / `@mtcute/core`) as a client of the
proxy: runs node on tests/e2e/mtcute/req_pq.mjs, one subprocess per case, and returns its JSON.

Why: a third client, independent of TDLib (C++) and Telethon (Python), with its own MTProxy code
for classic, `dd` and `ee` (fake-TLS) secrets. scripts/test installs node/npm (apt) and the pinned
modules (`npm ci --ignore-scripts` from package-lock.json); when either is missing the case FAILS
with a message saying so: it never skips, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

MTCUTE_DIR = Path(__file__).resolve().parent / "mtcute"
SCRIPT = MTCUTE_DIR / "req_pq.mjs"


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.fail("node is not installed: run `scripts/test setup` (apt package nodejs)", pytrace=False)
    for mod in ("@mtcute/node", "@mtcute/core", "@fuman/io", "long"):
        if not (MTCUTE_DIR / "node_modules" / mod / "package.json").is_file():
            pytest.fail("npm module %s is missing in %s/node_modules: run `scripts/test setup` "
                        "(npm ci --ignore-scripts)" % (mod, MTCUTE_DIR), pytrace=False)
    return node


def mtcute_req_pq(host: str, port: int, client_secret: str, dc: int = 2, timeout: float = 15,
                  mode: str = "reqpq") -> dict:
    """One mtcute connection through the proxy at host:port with the link secret client_secret.

    mode "reqpq": mtcute's MtProxy transport and codecs, one req_pq_multi; the result has ok,
    nonce_matches, fingerprints, known_key, pq_factors, client_port. mode "auth": mtcute's
    high-level client starts its own auth key exchange; ok when it accepted the resPQ and sent
    req_DH_params. Both: elapsed_ms, error, log (mtcute's last debug lines), rc, stderr."""
    cmd = [_node(), str(SCRIPT), "--host", host, "--port", str(port), "--secret", client_secret,
           "--dc", str(dc), "--mode", mode, "--timeout", str(timeout)]
    try:
        cp = subprocess.run(cmd, capture_output=True, timeout=timeout + 15, stdin=subprocess.DEVNULL,
                            cwd=MTCUTE_DIR)
    except subprocess.TimeoutExpired as e:
        return {"ok": False, "error": "subprocess-timeout", "stderr": str(e.stderr)[-2000:]}
    lines = [l for l in cp.stdout.decode(errors="replace").splitlines() if l.startswith("{")]
    stderr = cp.stderr.decode(errors="replace")[-3000:]
    if not lines:
        return {"ok": False, "error": "no JSON output (rc %s)" % cp.returncode, "rc": cp.returncode,
                "stderr": stderr}
    out = json.loads(lines[-1])
    out["rc"] = cp.returncode
    out["stderr"] = stderr
    return out


def mtcute_many(cases: list[dict]) -> list[dict]:
    """Run several mtcute_req_pq(**case) in parallel (each in its own node process)."""
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(cases)))) as ex:
        return list(ex.map(lambda c: mtcute_req_pq(**c), cases))
