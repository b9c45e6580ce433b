"""Drive TDLib (PyPI package `tdjson`) against an MTProto proxy, once, and print one JSON line.

Run in a subprocess per case, so that a TDLib abort cannot take pytest down. Order as in
docs/testing.md: addProxy (enabled) -> setTdlibParameters (use_test_dc false, database in a
temporary directory) -> pingProxy | testProxy -> close, waiting for authorizationStateClosed.

    python tdclient.py --server 127.0.0.1 --port 1234 --secret HEX --action ping [--timeout 30]
    python tdclient.py ... --action test --dc 2 --test-timeout 3

Output (stdout, last line): {"ok": bool, "action": ..., "result": <TDLib object or {"@type": "timeout"}>,
"elapsed": seconds, "closed": bool}. Exit code 0 when the JSON line was printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True, help="client link secret in hex (classic, dd.., ee..)")
    ap.add_argument("--action", choices=["ping", "test"], required=True)
    ap.add_argument("--dc", type=int, default=2)
    ap.add_argument("--test-timeout", type=float, default=3.0, help="timeout passed to testProxy")
    ap.add_argument("--timeout", type=float, default=30.0, help="overall bound for this script")
    ap.add_argument("--verbosity", type=int, default=int(os.environ.get("E2E_TD_VERBOSITY", "1")))
    a = ap.parse_args()

    # Hard watchdog: whatever TDLib does, this process ends.
    def watchdog():
        time.sleep(a.timeout + 15)
        print(json.dumps({"ok": False, "action": a.action, "result": {"@type": "watchdog"},
                          "elapsed": None, "closed": False}), flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    import tdjson  # imported late: the watchdog is already running

    J = lambda o: json.dumps(o).encode()  # noqa: E731
    tdjson.td_execute(J({"@type": "setLogVerbosityLevel", "new_verbosity_level": a.verbosity}))
    client = tdjson.td_create_client_id()
    start = time.monotonic()
    deadline = start + a.timeout
    pending: list[dict] = []

    def send(obj):
        tdjson.td_send(client, J(obj))

    def wait(pred, until):
        while True:
            for i, ev in enumerate(pending):
                if pred(ev):
                    return pending.pop(i)
            left = until - time.monotonic()
            if left <= 0:
                return None
            raw = tdjson.td_receive(min(left, 1.0))
            if raw:
                ev = json.loads(raw)
                if ev.get("@client_id", client) == client:
                    pending.append(ev)
                    if ev.get("@type") == "updateAuthorizationState":
                        pending.append({"@type": "_state", "state": ev["authorization_state"]["@type"]})

    def by_extra(x):
        return lambda ev: ev.get("@extra") == x

    proxy = {"@type": "proxy", "server": a.server, "port": a.port,
             "type": {"@type": "proxyTypeMtproto", "secret": a.secret}}
    dbdir = tempfile.mkdtemp(prefix="tdlib-e2e-")
    steps = {}

    # addProxy is queued by TDLib and answered only after setTdlibParameters.
    send({"@type": "addProxy", "proxy": proxy, "enable": True, "@extra": "addProxy"})
    send({"@type": "setTdlibParameters", "use_test_dc": False,
          "database_directory": dbdir, "files_directory": os.path.join(dbdir, "files"),
          "database_encryption_key": "", "use_file_database": False,
          "use_chat_info_database": False, "use_message_database": False, "use_secret_chats": False,
          "api_id": 12345, "api_hash": "0123456789abcdef0123456789abcdef",
          "system_language_code": "en", "device_model": "e2e", "system_version": "linux",
          "application_version": "1.0", "@extra": "params"})
    steps["setTdlibParameters"] = wait(by_extra("params"), deadline)
    steps["addProxy"] = wait(by_extra("addProxy"), deadline)

    if a.action == "ping":
        send({"@type": "pingProxy", "proxy": proxy, "@extra": "act"})
    else:
        send({"@type": "testProxy", "proxy": proxy, "dc_id": a.dc, "timeout": a.test_timeout,
              "@extra": "act"})
    res = wait(by_extra("act"), deadline)
    elapsed = time.monotonic() - start
    if res is None:
        res = {"@type": "timeout"}
    if a.action == "ping":
        ok = res.get("@type") == "seconds"
    else:
        ok = res.get("@type") == "ok"

    send({"@type": "close"})
    closed = wait(lambda ev: ev.get("@type") == "_state" and ev["state"] == "authorizationStateClosed",
                  time.monotonic() + 15) is not None
    print(json.dumps({"ok": ok, "action": a.action, "result": res, "elapsed": round(elapsed, 3),
                      "closed": closed, "steps": steps}), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown racing TDLib threads


if __name__ == "__main__":
    sys.exit(main())
