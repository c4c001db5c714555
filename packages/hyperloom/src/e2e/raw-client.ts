/**
 * A raw client connection for end-to-end tests that check the server on the wire, bypassing
 * what our `Client` checks itself: it authenticates with the cluster's access file (as every
 * default server requires), registers, sends requests as given and collects the decoded
 * responses in order.
 */
import type { Socket } from "node:net";
import type { LocalCluster } from "../cluster/local-cluster.js";
import { frame, FrameReader } from "../protocol/frame.js";
import { comm, PROTOCOL_VERSION, type ClientResponse } from "../protocol/messages.js";
import { readAccessFile } from "../security/access-file.js";
import { connectSecure } from "../security/transport.js";

/** A registered raw connection to `cluster`'s server: `next()` resolves with the next response (10 s at most). */
export async function rawClient(cluster: LocalCluster): Promise<{ s: Socket; next: () => Promise<ClientResponse> }> {
  const access = cluster.accessFile !== undefined ? readAccessFile(cluster.accessFile) : undefined;
  const s = await connectSecure("server", "127.0.0.1", cluster.port, {
    ...(access !== undefined ? { secret: access.secret } : {}),
    ...(access?.tlsFingerprint !== undefined ? { tls: { fingerprint: access.tlsFingerprint } } : {}),
  });
  const reader = new FrameReader();
  const queue: ClientResponse[] = [];
  const waiters: ((r: ClientResponse) => void)[] = [];
  s.on("data", (chunk: Buffer) => {
    for (const f of reader.push(chunk)) {
      const r = comm.ClientResponse.decode(f);
      const w = waiters.shift();
      if (w) w(r);
      else queue.push(r);
    }
  });
  s.resume();
  const register = comm.Register.encode({ protocolVersion: PROTOCOL_VERSION, type: comm.Register.Type.REGISTER_CLIENT }).finish();
  s.write(frame(register));
  const next = () =>
    new Promise<ClientResponse>((resolve, reject) => {
      const r = queue.shift();
      if (r) return resolve(r);
      const timer = setTimeout(() => reject(new Error("no response within 10 s")), 10_000);
      waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  return { s, next };
}

/** Sends `ClientRequest{type, id}`. */
export function request(s: Socket, type: number, id: number): void {
  s.write(frame(comm.ClientRequest.encode({ type, id }).finish()));
}
