/**
 * The allocation control protocol (our extension, proto/alloc.proto): the server side of a
 * connection that registered with type REGISTER_ALLOC_CONTROL, and the client side used by
 * `hyperloom alloc`. Each AllocRequest is answered by one AllocResponse, in order.
 */
import type { Socket } from "node:net";
import { connectSecure, type ConnectSecurity } from "../security/transport.js";
import { FrameReader, frame } from "../protocol/frame.js";
import { alloc, PROTOCOL_VERSION } from "../protocol/messages.js";
import { log } from "../log.js";
import { AllocRequestError, type Allocator, type QueueRequest } from "./allocator.js";

/** The Register type of a control connection. */
export const REGISTER_ALLOC_CONTROL = alloc.AllocRegister.Type.REGISTER_ALLOC_CONTROL;

/** Largest control frame (a queue spec is a few hundred bytes). */
const MAX_FRAME = 1 << 20;

/**
 * Serves a control connection whose Register frame has been read; `rest` is what followed it.
 * A malformed request closes the connection; a request that cannot be honoured gets `error`.
 */
export function serveControl(socket: Socket, rest: Buffer, allocator: Allocator, conn: number): void {
  const reader = new FrameReader(MAX_FRAME);
  let chain = Promise.resolve();
  const onChunk = (chunk: Buffer): void => {
    let frames: Buffer[];
    try {
      frames = reader.push(chunk);
    } catch (e) {
      log("warn", `control connection ${conn}: ${(e as Error).message}; closing it`);
      socket.destroy();
      return;
    }
    for (const f of frames) {
      chain = chain.then(async () => {
        let answer: { error?: string; json?: string };
        try {
          answer = { json: JSON.stringify(await handle(alloc.AllocRequest.decode(f), allocator)) };
        } catch (e) {
          if (!(e instanceof AllocRequestError) && !(e instanceof Error && /^(squeue|scancel|qstat|qdel): /.test(e.message))) {
            log("warn", `control connection ${conn}: bad request: ${(e as Error).message}; closing it`);
            socket.destroy();
            return;
          }
          answer = { error: e.message };
        }
        if (!socket.destroyed) socket.write(frame(alloc.AllocResponse.encode(answer).finish()));
      });
    }
  };
  socket.on("data", onChunk);
  if (rest.length > 0) onChunk(rest);
}

async function handle(req: ReturnType<typeof alloc.AllocRequest.decode>, allocator: Allocator): Promise<unknown> {
  const T = alloc.AllocRequest.Type;
  switch (req.type) {
    case T.ADD: {
      const q = req.queue;
      if (!q) throw new AllocRequestError("ADD without a queue");
      const spec: QueueRequest = {
        manager: q.manager as QueueRequest["manager"],
        workersPerAlloc: q.workersPerAlloc,
        cpus: q.cpus,
        timeLimitSecs: q.timeLimitSecs,
        maxAllocs: q.maxAllocs,
        idleTimeoutSecs: q.idleTimeoutSecs,
        extraArgs: q.extraArgs ?? [],
        ...(q.name ? { name: q.name } : {}),
        ...(q.serverHost ? { serverHost: q.serverHost } : {}),
        ...(q.dir ? { dir: q.dir } : {}),
      };
      return allocator.add(spec);
    }
    case T.LIST:
      return { queues: allocator.list() };
    case T.INFO:
      return allocator.info(req.name ?? "");
    case T.REMOVE:
      return allocator.remove(req.name ?? "", !!req.force);
    default:
      throw new Error(`unknown request type ${String(req.type)}`);
  }
}

/** The request a `hyperloom alloc` command sends. */
export type ControlRequest =
  | { type: "add"; queue: QueueRequest }
  | { type: "list" }
  | { type: "info"; name: string }
  | { type: "remove"; name: string; force: boolean };

/** The server refused a control request; `message` is its reason. */
export class AllocError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AllocError";
  }
}

/**
 * Sends one control request to the server at `host:port` (authenticated and encrypted as
 * `security` says, from the server's access file) and resolves with its JSON answer.
 */
export function controlRequest(host: string, port: number, request: ControlRequest, timeoutMs = 120_000, security: ConnectSecurity = {}): Promise<unknown> {
  const T = alloc.AllocRequest.Type;
  const msg =
    request.type === "add"
      ? { type: T.ADD, queue: request.queue }
      : request.type === "list"
        ? { type: T.LIST }
        : request.type === "info"
          ? { type: T.INFO, name: request.name }
          : { type: T.REMOVE, name: request.name, force: request.force };
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    const reader = new FrameReader(64 << 20);
    const timer = setTimeout(() => {
      socket?.destroy();
      reject(new AllocError(`no answer from the server at ${host}:${port} in ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const done = (f: () => void): void => {
      clearTimeout(timer);
      socket?.destroy();
      f();
    };
    const opened = (s: Socket): void => {
      socket = s;
      s.write(frame(alloc.AllocRegister.encode({ protocolVersion: PROTOCOL_VERSION, type: REGISTER_ALLOC_CONTROL }).finish()));
      s.write(frame(alloc.AllocRequest.encode(msg).finish()));
      s.on("data", (chunk: Buffer) => {
        const frames = reader.push(chunk);
        if (frames.length === 0) return;
        const r = alloc.AllocResponse.decode(frames[0]!);
        if (r.error) done(() => reject(new AllocError(r.error!)));
        else done(() => resolve(JSON.parse(r.json ?? "null")));
      });
      s.on("error", (e) => done(() => reject(new AllocError(`cannot reach the server at ${host}:${port}: ${e.message}`))));
      s.on("close", () => done(() => reject(new AllocError(`the server at ${host}:${port} closed the connection (does it support allocation queues?)`))));
      s.resume();
    };
    connectSecure(`${host}:${port}`, host, port, { ...security, timeoutMs: Math.min(timeoutMs, 10_000) }).then(opened, (e: Error & { code?: string }) =>
      done(() => reject(new AllocError(e.code !== undefined ? `cannot reach the server at ${host}:${port}: ${e.message.replace(/^cannot connect to [^:]+:\d+: /, "")}` : e.message))),
    );
  });
}
