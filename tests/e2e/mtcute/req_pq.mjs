// req_pq.mjs: drive mtcute (the TypeScript MTProto library) through an MTProto proxy, once, and
// print one JSON line.
//
// Why: TDLib and Telethon are the suite's other real clients; mtcute is a third, independent
// implementation of the client side of MTProxy (obfuscated2, `dd` padded intermediate and `ee`
// fake-TLS), so a proxy bug that happens to match one client's quirks still shows up here. All
// the proxy-facing code that runs is mtcute's own: its MtProxyTcpTransport (secret parsing, the
// fake-TLS ClientHello and the check of the server's HMAC), its obfuscated2 / intermediate /
// padded codecs and its TL serialization. This script only wires them together.
//
// Modes:
//   --mode reqpq (default)  transport + codec by hand, exactly as mtcute's PersistentConnection
//                           does it, then one unencrypted req_pq_multi; ok when a resPQ with our
//                           nonce comes back. Also reports whether mtcute knows one of the key
//                           fingerprints offered and can factorize pq (what it needs to go on).
//   --mode auth             mtcute's high-level BaseTelegramClient (in-memory storage) with the
//                           MtProxy transport and a DC list pointing at 127.0.0.1; connect() runs
//                           mtcute's own auth key exchange. Against the fake DC it never completes,
//                           so ok means mtcute accepted the resPQ and sent req_DH_params (seen in
//                           its debug log; the test also checks the fake DC received it).
//
//   node req_pq.mjs --host 127.0.0.1 --port 4443 --secret HEX [--dc 2] [--mode reqpq|auth]
//                   [--timeout 15] [--verbose]
//
// Output (stdout, one line): {"ok": bool, "mode": ..., "nonce_matches": bool, "elapsed_ms": n,
// "error": string|null, ...}. Exit code 0 when ok, 1 when not, 2 on bad arguments.
// Only the proxy address given is ever contacted.

import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

import { FramedReader, FramedWriter } from "@fuman/io";
import { BaseTelegramClient, MemoryStorage, MtProxyTcpTransport, NodePlatform } from "@mtcute/node";
import {
  LogManager,
  NodeCryptoProvider,
  TlBinaryReader,
  TlBinaryWriter,
  TlSerializationCounter,
  __tlReaderMap,
  __tlWriterMap,
  findKeyByFingerprints,
} from "@mtcute/node/utils.js";
import Long from "long";

const { values: a } = parseArgs({
  options: {
    host: { type: "string" },
    port: { type: "string" },
    secret: { type: "string" },
    dc: { type: "string", default: "2" },
    mode: { type: "string", default: "reqpq" },
    timeout: { type: "string", default: "15" },
    verbose: { type: "boolean", default: false },
  },
});
if (!a.host || !a.port || !a.secret || !["reqpq", "auth"].includes(a.mode)) {
  process.stderr.write("usage: req_pq.mjs --host H --port P --secret HEX [--dc N] [--mode reqpq|auth] [--timeout S]\n");
  process.exit(2);
}
const port = Number(a.port);
const dcId = Number(a.dc);
const timeoutMs = Number(a.timeout) * 1000;
const start = performance.now();
const out = { ok: false, mode: a.mode, dc: dcId, nonce_matches: false, elapsed_ms: null, error: null, log: [] };

function finish(code) {
  out.elapsed_ms = Math.round(performance.now() - start);
  if (out.ok && !a.verbose) delete out.log; // mtcute's debug lines matter only on failure
  process.stdout.write(JSON.stringify(out) + "\n");
  // Sockets and mtcute's reconnect timers must not keep the process alive.
  process.exit(code);
}

// Hard bound: whatever happens, one JSON line and an exit.
setTimeout(() => {
  out.error = out.error ?? `timeout after ${a.timeout}s`;
  finish(1);
}, timeoutMs).unref();

// mtcute logs go to a ring kept in the result (and to stderr with --verbose), not to stdout.
function logSink(lines) {
  return (_color, level, tag, fmt, args) => {
    let i = 0;
    const text = fmt.replace(/%[a-z]/g, () => {
      const v = args[i++];
      if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
      try {
        return typeof v === "string" ? v : JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));
      } catch {
        return String(v);
      }
    });
    const line = `${level} ${tag} ${text}`;
    lines.push(line);
    if (lines.length > 60) lines.shift();
    if (a.verbose) process.stderr.write(line + "\n");
  };
}

function makeLog() {
  const log = new LogManager("mtcute", new NodePlatform());
  log.level = LogManager.DEBUG;
  log.handler = logSink(out.log);
  return log;
}

// A DC option that names only an id: the MtProxy transport connects to the proxy whatever the
// address, and the proxy picks the DC from the id in the obfuscated2 init.
const dcOption = (media = false) => ({ id: dcId, ipAddress: "127.0.0.1", port: 443, mediaOnly: media });
const transport = () => new MtProxyTcpTransport({ host: a.host, port, secret: a.secret });

async function reqPq() {
  const crypto = new NodeCryptoProvider();
  await crypto.initialize();
  const log = makeLog();
  const t = transport();
  const dc = dcOption();
  // The same order as mtcute's PersistentConnection: setup, codec, connect, tag, frames.
  t.setup(crypto, log);
  const codec = t.packetCodec(dc);
  codec.setup?.(crypto, log);
  const conn = await t.connect(dc);
  try {
    out.client_port = conn.localAddress?.port ?? null;
    const tag = await codec.tag();
    if (tag) await conn.write(tag);
    const writer = new FramedWriter(conn, codec);
    const reader = new FramedReader(conn, codec);

    const nonce = crypto.randomBytes(16);
    const msg = { _: "mt_req_pq_multi", nonce };
    const len = TlSerializationCounter.countNeededBytes(__tlWriterMap, msg);
    const w = TlBinaryWriter.alloc(__tlWriterMap, len + 20);
    const now = Date.now();
    // msg_id: unix time * 2^32, divisible by 4 (client message)
    const msgId = new Long(((now % 1000) * 4294967) & ~3, Math.floor(now / 1000));
    w.long(Long.ZERO);
    w.long(msgId);
    w.uint(len);
    w.object(msg);
    await writer.write(w.result());

    const packet = await reader.read();
    if (!packet) throw new Error("connection closed before any answer");
    if (packet.length === 4) {
      throw new Error(`transport error ${new DataView(packet.buffer, packet.byteOffset).getInt32(0, true)}`);
    }
    const r = TlBinaryReader.manual(packet);
    const authKeyId = r.long();
    if (!authKeyId.isZero()) throw new Error("answer is not an unencrypted message");
    r.long(); // msg_id
    r.uint(); // length
    const res = TlBinaryReader.deserializeObject(__tlReaderMap, packet, 20);
    out.answer = res._;
    if (res._ !== "mt_resPQ") throw new Error(`unexpected answer ${res._}`);
    out.nonce_matches = Buffer.from(res.nonce).equals(Buffer.from(nonce));
    const fps = res.serverPublicKeyFingerprints.map((x) => x.toUnsigned().toString(16).padStart(16, "0"));
    out.fingerprints = fps;
    out.known_key = findKeyByFingerprints(fps.map((f) => f.replace(/^0+/, "")))?.fingerprint ?? null;
    const [p, q] = await crypto.factorizePQ(res.pq);
    out.pq_factors = [Buffer.from(p).toString("hex"), Buffer.from(q).toString("hex")];
    out.ok = out.nonce_matches;
    if (!out.ok) out.error = "resPQ nonce does not match ours";
  } finally {
    conn.close();
  }
}

async function auth() {
  const seen = { resPQ: false, reqDH: false };
  const log = makeLog();
  const sink = log.handler;
  let resolveDH;
  const dhSent = new Promise((r) => (resolveDH = r));
  log.handler = (color, level, tag, fmt, args) => {
    sink(color, level, tag, fmt, args);
    if (fmt.includes("received PQ, keys")) seen.resPQ = true;
    if (fmt.includes("requesting DH params")) {
      seen.reqDH = true;
      resolveDH();
    }
  };
  const client = new BaseTelegramClient({
    apiId: 1,
    apiHash: "00000000000000000000000000000000",
    storage: new MemoryStorage(),
    transport: transport(),
    defaultDcs: { main: dcOption(), media: dcOption(true) },
    logger: log,
    updates: false,
  });
  client.onError.add((e) => out.log.push(`onError ${e}`));
  client.connect().catch((e) => {
    out.error = out.error ?? `connect: ${e?.message ?? e}`;
  });
  await dhSent;
  out.received_res_pq = seen.resPQ;
  out.sent_req_dh_params = seen.reqDH;
  // mtcute checks the nonce before it logs "received PQ"; a mismatch throws.
  out.nonce_matches = seen.resPQ;
  // Give the req_DH_params frame time to leave the socket before the process ends.
  await new Promise((r) => setTimeout(r, 500));
  out.ok = seen.resPQ && seen.reqDH;
  await Promise.race([client.destroy().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
}

try {
  await (a.mode === "auth" ? auth() : reqPq());
  finish(out.ok ? 0 : 1);
} catch (e) {
  out.error = `${e?.name ?? "Error"}: ${e?.message ?? e}`;
  finish(1);
}
