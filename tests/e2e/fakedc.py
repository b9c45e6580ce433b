"""A fake Telegram DC for the end-to-end tests (docs/testing.md, "A fake Telegram DC").

It accepts the obfuscated2 init a proxy sends towards a DC (no secret, docs/protocol.md §2.2), reads abridged,
intermediate and padded-intermediate frames, answers req_pq_multi / req_pq with a resPQ (listing
the TDLib and the Telethon key fingerprints) in the framing the client used, and records every
event (connection, init, constructor received, close) with the connection id and the DC id.
Silent connections are tolerated. It never answers req_DH_params, so real clients stop there.

In tests it runs in a thread with its own asyncio loop (FakeDC.start()); events are kept in
memory and, optionally, appended to a JSON-lines file. Standalone:

    python tests/e2e/fakedc.py --port 0 --events events.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtp  # noqa: E402


class FakeDC:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, events_path: str | None = None,
                 silent_timeout: float = 120.0):
        self.host = host
        self.port = port
        self.events_path = events_path
        self.silent_timeout = silent_timeout
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._tasks: set = set()

    # ------------------------------------------------------------------ events

    def _emit(self, **ev):
        ev["t"] = time.time()
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()
        if self.events_path:
            with open(self.events_path, "a") as f:
                f.write(json.dumps(ev) + "\n")

    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.events)

    def wait_for(self, pred, timeout: float) -> list[dict]:
        """Wait until pred(events) is truthy; return the events (pred may still be false on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.events)

    def received(self, name: str) -> list[dict]:
        return [e for e in self.snapshot() if e["ev"] == "message" and e["name"] == name]

    # ------------------------------------------------------------------ server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        cid = next(self._ids)
        peer = writer.get_extra_info("peername")
        self._emit(ev="connect", conn=cid, peer="%s:%s" % peer[:2])
        reason = "eof"
        try:
            try:
                init = await asyncio.wait_for(reader.readexactly(64), self.silent_timeout)
            except asyncio.IncompleteReadError as e:
                self._emit(ev="short_init", conn=cid, got=len(e.partial))
                return
            except asyncio.TimeoutError:
                self._emit(ev="silent", conn=cid)
                return
            res = mtp.accept_init(init, None)
            if res is None:
                self._emit(ev="bad_init", conn=cid, init=init.hex())
                return
            tag, dc, dec, enc = res
            self._emit(ev="init", conn=cid, dc=dc, tag=mtp.TAGS[tag],
                       violations=mtp.init_violations(init))
            fr = mtp.FrameReader(tag, server_side=True)
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), self.silent_timeout)
                except asyncio.TimeoutError:
                    reason = "idle"
                    return
                if not data:
                    return
                for _kind, pkt in fr.feed(dec(data)):
                    m = mtp.parse_message(pkt)
                    self._emit(ev="message", conn=cid, dc=dc, tag=mtp.TAGS[tag], name=m.name,
                               constructor=None if m.constructor is None else "0x%08x" % m.constructor,
                               size=len(pkt))
                    if m.constructor in (mtp.REQ_PQ_MULTI, mtp.REQ_PQ) and len(m.body) >= 20:
                        answer = mtp.res_pq(m.body[4:20], os.urandom(16))
                        writer.write(enc(mtp.encode_frame(tag, answer)))
                        await writer.drain()
        except (ConnectionError, OSError) as e:
            reason = type(e).__name__
        finally:
            self._emit(ev="close", conn=cid, reason=reason)
            writer.close()

    def _spawn(self, reader, writer):
        t = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def serve(self):
        self._server = await asyncio.start_server(self._spawn, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    # ------------------------------------------------------------------ thread helpers

    def start(self) -> "FakeDC":
        ready = threading.Event()
        err: list = []

        def run():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.serve())
            except BaseException as e:  # noqa: BLE001
                err.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.wait(tasks, timeout=5))
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fakedc", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake DC did not start")
        if err:
            raise err[0]
        return self

    def stop(self):
        if not self._loop:
            return

        def shut():
            self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(shut)
        self._thread.join(10)
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--events", help="append events as JSON lines to this file")
    ap.add_argument("--duration", type=float, default=600.0, help="stop after this many seconds")
    a = ap.parse_args()
    dc = FakeDC(a.host, a.port, a.events)

    async def run():
        await dc.serve()
        print("listening %s:%d" % (a.host, dc.port), flush=True)
        await asyncio.sleep(a.duration)

    asyncio.run(run())


if __name__ == "__main__":
    main()
