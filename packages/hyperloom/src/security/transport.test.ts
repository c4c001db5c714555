import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createHmac } from "node:crypto";
import { connect as netConnect, type Server, type Socket } from "node:net";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { Secret } from "./access-file.js";
import { REFUSED } from "./handshake.js";
import { selfSignedIdentity, type TlsIdentity } from "./tls.js";
import { connectSecure, listenSecure } from "./transport.js";
import { logLevel, setLogLevel } from "../log.js";

/**
 * Collects what `log` prints (on stderr) at info level and above while `f` runs (whatever level
 * other test files of this process set).
 */
async function logged<T>(f: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const level = logLevel();
  setLogLevel("info");
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    lines.push(...String(chunk).split("\n").filter((l) => l !== ""));
    return true;
  }) as typeof process.stderr.write;
  try {
    return { value: await f(), lines };
  } finally {
    process.stderr.write = write;
    setLogLevel(level);
  }
}

/** An echo port behind `listenSecure`; counts the peers that got through. */
async function echo(security: Parameters<typeof listenSecure>[3]): Promise<{ server: Server; port: number; accepted: () => number }> {
  let n = 0;
  const { server, port } = await listenSecure("test port", "127.0.0.1", 0, security, (s) => {
    n++;
    s.on("data", (d: Buffer) => s.write(d));
    s.on("error", () => undefined);
  });
  return { server, port, accepted: () => n };
}

function roundTrip(s: Socket, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => {
      got.push(d);
      if (Buffer.concat(got).length >= bytes.length) resolve(Buffer.concat(got));
    });
    s.resume();
    s.write(bytes);
  });
}

/** A raw connection: sends `bytes`, resolves with everything received until the peer closes (or 3 s). */
function raw(port: number, bytes: Buffer | ((s: Socket, got: () => Buffer) => void)): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = netConnect({ host: "127.0.0.1", port }, () => (typeof bytes === "function" ? bytes(s, () => Buffer.concat(got)) : s.write(bytes)));
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
  });
}

const t = suite<{ identity: TlsIdentity }>("transport security");
t.before(async (ctx) => {
  ctx.identity = await selfSignedIdentity("test");
});

t("the right secret gets through; bytes flow both ways after the handshake", async () => {
  const secret = Secret.generate();
  const e = await echo({ secret });
  const s = await connectSecure("test server", "127.0.0.1", e.port, { secret });
  assert.equal((await roundTrip(s, Buffer.from("hello"))).toString(), "hello");
  s.destroy();
  assert.is(e.accepted(), 1);
  e.server.close();
});

t("no secret: refused with one line on each side, nothing reaches the role", async () => {
  const secret = Secret.generate();
  const e = await echo({ secret });
  const frame = Buffer.from([5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
  const { value: got, lines } = await logged(() => raw(e.port, frame));
  assert.ok(got.equals(REFUSED), `got ${got.toString("hex")}`);
  assert.is(lines.length, 1);
  assert.match(lines[0]!, /test port: refused a connection from 127\.0\.0\.1:\d+: it did not authenticate/);
  assert.is(e.accepted(), 0);
  e.server.close();
});

t("a wrong secret: refused, both sides say so in one line", async () => {
  const e = await echo({ secret: Secret.generate() });
  const { value: err, lines } = await logged(() =>
    connectSecure("test server", "127.0.0.1", e.port, { secret: Secret.generate() }).then(
      () => undefined,
      // The acceptor logs once the connector's refusal arrives.
      async (x: Error) => (await new Promise((r) => setTimeout(r, 200)), x),
    ),
  );
  assert.instance(err, Error);
  assert.match(err!.message, "test server did not prove it holds our secret");
  assert.ok(lines.some((l) => l.includes("refused a connection") && l.includes("it holds a different secret")), lines.join("\n"));
  assert.is(e.accepted(), 0);
  e.server.close();
});

t("a recorded handshake replayed is refused (the acceptor's nonce is new)", async () => {
  const secret = Secret.generate();
  const e = await echo({ secret });
  const mac = (side: string, nc: Buffer, na: Buffer): Buffer => createHmac("sha256", secret.key()).update(side).update(nc).update(na).digest();
  const hello = Buffer.concat([Buffer.from("HLAUTH1\n"), Buffer.alloc(32, 7)]);
  // A genuine run, recording what the connector sends.
  let proof: Buffer = Buffer.alloc(0);
  const first = await raw(e.port, (s, got) => {
    s.write(hello);
    s.on("data", () => {
      const g = got();
      if (g.length === 72 && proof.length === 0) {
        proof = mac("C", hello.subarray(8), g.subarray(8, 40));
        s.write(proof);
      } else if (g.length === 80) {
        s.write("ping");
      } else if (g.length === 84) s.end();
    });
  });
  assert.is(first.subarray(72, 80).toString(), "HLAUTHOK");
  assert.is(first.subarray(80).toString(), "ping");
  // The same bytes again.
  const { value: second, lines } = await logged(() =>
    raw(e.port, (s, got) => {
      s.write(hello);
      s.on("data", () => {
        if (got().length === 72) s.write(proof);
      });
    }),
  );
  assert.is(second.subarray(72).toString(), "HLAUTHNO");
  assert.is(lines.length, 1);
  assert.match(lines[0]!, "a replayed handshake");
  assert.is(e.accepted(), 1);
  e.server.close();
});

t("an unauthenticated peer cannot make the acceptor buffer anything beyond the handshake", async () => {
  const e = await echo({ secret: Secret.generate() });
  const { value: got, lines } = await logged(() => raw(e.port, Buffer.concat([Buffer.from("HLAUTH1\n"), Buffer.alloc(1 << 20)])));
  assert.is(got.toString(), "HLAUTHNO");
  assert.match(lines.join("\n"), "it sent data before authenticating");
  e.server.close();
});

t("a peer that never completes the handshake is closed at the deadline", async () => {
  const e = await echo({ secret: Secret.generate(), handshakeTimeoutMs: 300 });
  const t0 = Date.now();
  const { lines } = await logged(() => raw(e.port, Buffer.from("HLAU")));
  const took = Date.now() - t0;
  assert.ok(took >= 250 && took < 2500, `closed after ${took} ms`);
  assert.match(lines.join("\n"), "authentication did not complete within 0.3 s");
  e.server.close();
});

t("TLS: the pinned certificate and the secret get through; another certificate is refused", async ({ identity }) => {
  const secret = Secret.generate();
  const e = await echo({ secret, tls: identity });
  const s = await connectSecure("tls server", "127.0.0.1", e.port, { secret, tls: { fingerprint: identity.fingerprint } });
  assert.ok((s as unknown as { encrypted?: boolean }).encrypted);
  assert.equal((await roundTrip(s, Buffer.alloc(3 << 20, 9))).length, 3 << 20);
  s.destroy();
  const other = await selfSignedIdentity("other");
  const err = await connectSecure("tls server", "127.0.0.1", e.port, { secret, tls: { fingerprint: other.fingerprint } }).then(
    () => undefined,
    (x: Error) => x,
  );
  assert.match(err!.message, "its TLS certificate is not the one pinned in the access file");
  // Plain TCP to a TLS port: the role never sees it.
  await logged(() => raw(e.port, Buffer.from([5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])));
  assert.is(e.accepted(), 1);
  e.server.close();
});

t("TLS without a pin (worker to worker): a man in the middle relaying the handshake is caught by the channel binding", async ({ identity }) => {
  const secret = Secret.generate();
  const e = await echo({ secret, tls: identity });
  const mitmId = await selfSignedIdentity("mitm");
  const mitm = createTlsServer({ cert: mitmId.cert, key: mitmId.key() }, (victim) => {
    const upstream = tlsConnect({ host: "127.0.0.1", port: e.port, rejectUnauthorized: false });
    victim.pipe(upstream).pipe(victim);
    victim.on("error", () => upstream.destroy());
    upstream.on("error", () => victim.destroy());
  });
  await new Promise<void>((r) => mitm.listen(0, "127.0.0.1", r));
  const port = (mitm.address() as { port: number }).port;
  const { value: err } = await logged(() =>
    connectSecure("worker 127.0.0.1", "127.0.0.1", port, { secret, tls: {} }).then(
      () => undefined,
      (x: Error) => x,
    ),
  );
  assert.instance(err, Error);
  assert.match(err!.message, "a man in the middle");
  assert.is(e.accepted(), 0);
  mitm.close();
  e.server.close();
});

t.run();
