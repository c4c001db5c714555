/**
 * Building and encoding a plan: numbers the tasks reachable from the submitted ones (inputs
 * before their consumers, identity-based) and writes the framed `ClientRequest{PLAN}` straight into
 * one buffer. This is the client's hot path: no per-task message objects; a test checks the output
 * byte-for-byte against the protobufjs code generated from `proto/`.
 */
import { Task, type TaskConfig } from "./task.js";
import { Future } from "./future.js";
import { LoomError } from "./errors.js";

let epochCounter = 0;

/** The tasks of one submission, numbered. */
export interface NumberedPlan {
  /** Tasks in id order: `tasks[i]` has id `idBase + i`. */
  tasks: Task<unknown>[];
  /** Id of `tasks[0]`. */
  idBase: number;
  /** Submission epoch stamped on the tasks. */
  epoch: number;
}

/**
 * Numbers every task reachable from `roots` (depth-first, inputs first), marking the roots as
 * results. Futures are referenced by id and must be active and, when `owner` is given, made by
 * that client. Throws on a cycle or a bad input.
 */
export function numberPlan(roots: readonly Task<unknown>[], idBase: number, owner?: object): NumberedPlan {
  const epoch = ++epochCounter;
  const tasks: Task<unknown>[] = [];
  // Explicit stack: a chain of a million tasks must not overflow the JS stack.
  const stackTask: Task<unknown>[] = [];
  const stackPos: number[] = [];
  for (const root of roots) {
    if (!(root instanceof Task)) {
      throw new LoomError(`${String(root)} is not a task`);
    }
    root.validate();
    root._resultEpoch = epoch;
    if (root._epoch === epoch) continue;
    root._epoch = epoch;
    root._planId = -1;
    stackTask.push(root);
    stackPos.push(0);
    while (stackTask.length > 0) {
      const top = stackTask.length - 1;
      const t = stackTask[top]!;
      const pos = stackPos[top]!;
      if (pos < t.inputs.length) {
        stackPos[top] = pos + 1;
        const input = t.inputs[pos];
        if (input instanceof Task) {
          if (input._epoch === epoch) {
            if (input._planId === -1) {
              throw new LoomError(`Cycle in plan: ${input} is its own input (through ${t})`);
            }
            continue;
          }
          input.validate();
          input._epoch = epoch;
          input._planId = -1;
          stackTask.push(input);
          stackPos.push(0);
        } else if (input instanceof Future) {
          // A future's id means something only to the connection that made it: another
          // client's future sent by id would name one of ours (wrong data), so it is refused.
          if (owner !== undefined && input.client !== owner) {
            throw new LoomError(
              `${input} belongs to another client (a future can only be used by the client that submitted it); it is an input of ${t}`,
            );
          }
          if (!input.active()) {
            throw new LoomError(
              `Inactive future used in plan: ${input} (status ${input.status}) is an input of ${t}`,
            );
          }
        } else {
          throw new LoomError(`Invalid object ${String(input)} in plan (an input of ${t})`);
        }
      } else {
        t._planId = idBase + tasks.length;
        tasks.push(t);
        stackTask.pop();
        stackPos.pop();
      }
    }
  }
  return { tasks, idBase, epoch };
}

/** Growable output buffer with protobuf primitives. */
class Writer {
  buf: Buffer;
  pos: number;

  constructor(initial: number, start: number) {
    this.buf = Buffer.allocUnsafe(initial);
    this.pos = start;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Writes a non-negative integer below 2^53, or a negative int32 as 10 bytes (two's complement). */
  varint(v: number): void {
    const b = this.buf;
    if (v < 0) {
      // int32 negative values: sign-extended to 64 bits.
      let lo = v >>> 0;
      for (let i = 0; i < 4; i++) {
        b[this.pos++] = (lo & 0x7f) | 0x80;
        lo >>>= 7;
      }
      b[this.pos++] = (lo & 0x0f) | 0x70 | 0x80;
      for (let i = 0; i < 4; i++) b[this.pos++] = 0xff;
      b[this.pos++] = 0x01;
      return;
    }
    while (v >= 0x80) {
      b[this.pos++] = (v & 0x7f) | 0x80;
      v = v >= 2 ** 31 ? Math.floor(v / 128) : v >>> 7;
    }
    b[this.pos++] = v;
  }
}

/** Bytes of `v` as a varint (v >= 0, or a negative int32). */
function varintLen(v: number): number {
  if (v < 0) return 10;
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 5;
  v = Math.floor(v / 2 ** 35);
  while (v > 0) {
    n++;
    v = Math.floor(v / 128);
  }
  return n;
}

/** UTF-8 length of a config; short ASCII strings (the common case) are measured in JS. */
function configLength(c: TaskConfig): number {
  if (typeof c !== "string") return c.length;
  const n = c.length;
  if (n > 64) return Buffer.byteLength(c);
  for (let i = 0; i < n; i++) if (c.charCodeAt(i) >= 0x80) return Buffer.byteLength(c);
  return n;
}

/** Writes `s` whose UTF-8 length is `len` at `pos`; ASCII is copied in JS (a native call costs more). */
function writeString(b: Buffer, pos: number, s: string, len: number): void {
  if (len === s.length && len <= 64) {
    for (let i = 0; i < len; i++) b[pos + i] = s.charCodeAt(i);
  } else {
    b.write(s, pos, "utf8");
  }
}

/** Options of {@link encodePlan}. */
export interface EncodeOptions {
  /** Maps a symbol name to its id in the server's dictionary; throws for an unknown one. */
  symbol: (name: string) => number;
  /** Id of `loom/resource/cpus`. */
  cpusSymbol: number;
  /** Send labels (always when set on the task: they name tasks in errors). */
  labels: boolean;
  /** The `load` argument of submit: load existing checkpoints. */
  loadCheckpoints: boolean;
}

/**
 * Encodes a numbered plan as one framed `ClientRequest{type=PLAN}` ready to write on the socket.
 */
export function encodePlan(plan: NumberedPlan, opts: EncodeOptions): Buffer {
  const { tasks, epoch } = plan;
  // Distinct resource requests, by value.
  const requestIndex = new Map<number, number>();
  for (const t of tasks) {
    const r = t.resourceRequest;
    if (r !== undefined && !requestIndex.has(r.cpus)) requestIndex.set(r.cpus, requestIndex.size);
  }
  // Room for the frame prefix (8) and the ClientRequest head (type + plan tag + length <= 1+1+1+5).
  const head = 16;
  const w = new Writer(Math.max(1024, head + tasks.length * 24), head);
  // Plan.resource_requests (field 1)
  for (const [cpus] of requestIndex) {
    const resLen = 1 + varintLen(opts.cpusSymbol) + 1 + varintLen(cpus);
    const rrLen = 1 + varintLen(resLen) + resLen;
    w.ensure(1 + varintLen(rrLen) + rrLen);
    w.buf[w.pos++] = 0x0a;
    w.varint(rrLen);
    w.buf[w.pos++] = 0x0a;
    w.varint(resLen);
    w.buf[w.pos++] = 0x08;
    w.varint(opts.cpusSymbol);
    w.buf[w.pos++] = 0x10;
    w.varint(cpus);
  }
  const typeIds = new Map<string, number>();
  for (const t of tasks) {
    let typeId = typeIds.get(t.taskType);
    if (typeId === undefined) {
      typeId = opts.symbol(t.taskType);
      typeIds.set(t.taskType, typeId);
    }
    const cfg = t.config;
    const cfgLen = configLength(cfg);
    let len = 1 + varintLen(typeId) + 1 + varintLen(cfgLen) + cfgLen + 2;
    const inputs = t.inputs;
    for (let i = 0; i < inputs.length; i++) {
      len += 1 + varintLen(inputIdOf(inputs[i]!, epoch));
    }
    const rr = t.resourceRequest === undefined ? -1 : requestIndex.get(t.resourceRequest.cpus)!;
    if (rr >= 0) len += 1 + varintLen(rr);
    let cpLen = 0;
    if (t.checkpointPath) {
      cpLen = Buffer.byteLength(t.checkpointPath);
      len += 1 + varintLen(cpLen) + cpLen;
    }
    let labelLen = 0;
    if (opts.labels && t.label !== undefined) {
      labelLen = configLength(t.label);
      len += 1 + varintLen(labelLen) + labelLen;
    }
    w.ensure(1 + 5 + len);
    const b = w.buf;
    b[w.pos++] = 0x12;
    w.varint(len);
    b[w.pos++] = 0x08;
    w.varint(typeId);
    b[w.pos++] = 0x12;
    w.varint(cfgLen);
    if (typeof cfg === "string") {
      writeString(b, w.pos, cfg, cfgLen);
      w.pos += cfgLen;
    } else {
      b.set(cfg, w.pos);
      w.pos += cfgLen;
    }
    for (let i = 0; i < inputs.length; i++) {
      b[w.pos++] = 0x18;
      w.varint(inputIdOf(inputs[i]!, epoch));
    }
    if (rr >= 0) {
      b[w.pos++] = 0x28;
      w.varint(rr);
    }
    b[w.pos++] = 0x30;
    b[w.pos++] = t._resultEpoch === epoch ? 1 : 0;
    if (cpLen > 0) {
      b[w.pos++] = 0x3a;
      w.varint(cpLen);
      w.pos += b.write(t.checkpointPath!, w.pos, "utf8");
    }
    if (opts.labels && t.label !== undefined) {
      b[w.pos++] = 0x62;
      w.varint(labelLen);
      writeString(b, w.pos, t.label, labelLen);
      w.pos += labelLen;
    }
  }
  // Plan.id_base (field 4)
  w.ensure(16);
  w.buf[w.pos++] = 0x20;
  w.varint(plan.idBase);
  const planLen = w.pos - head;
  // ClientRequest.load_checkpoints (field 4)
  w.buf[w.pos++] = 0x20;
  w.buf[w.pos++] = opts.loadCheckpoints ? 1 : 0;
  const end = w.pos;
  // Head written right-aligned before the plan body: frame length, type=PLAN, plan tag and length.
  const planLenBytes = varintLen(planLen);
  const start = head - (2 + 1 + planLenBytes) - 8;
  w.pos = start + 8;
  w.buf[w.pos++] = 0x08;
  w.buf[w.pos++] = 0x01;
  w.buf[w.pos++] = 0x12;
  w.varint(planLen);
  const payload = end - start - 8;
  w.buf.writeUInt32LE(payload >>> 0, start);
  w.buf.writeUInt32LE(Math.floor(payload / 2 ** 32), start + 4);
  return w.buf.subarray(start, end);
}

function inputIdOf(input: Task<unknown> | Future<unknown>, epoch: number): number {
  if (input instanceof Task) {
    if (input._epoch !== epoch) throw new LoomError(`${input} was not numbered in this plan`);
    return input._planId;
  }
  return input.taskId;
}
