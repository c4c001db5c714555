/**
 * Building and encoding a plan: numbers the tasks reachable from the submitted ones (inputs
 * before their consumers, identity-based) and writes the framed `ClientRequest{PLAN}` straight into
 * one buffer, in the same walk: each task is encoded the moment it is numbered. This is the
 * client's hot path (issue #26): no per-task message objects and no list of the tasks; a test
 * checks the output byte-for-byte against the protobufjs code generated from `proto/`.
 */
import { builtTask, cpu1, sharedExtras, Task, type TaskInput } from "./task.js";
import { Future } from "./future.js";
import { LoomError } from "./errors.js";

/**
 * Submissions so far. A task numbered in submission `e` has `_epoch` `2e` (`2e + 1` when it is
 * one of that submission's results), so one comparison tells whether it belongs to this one.
 */
let epochCounter = 0;

/** `_planId` of a result of this submission not reached yet. */
const PENDING_RESULT = -2;
/** `_planId` of a task on the walk's stack (reaching it again is a cycle). */
const ON_STACK = -1;

/** The tasks of one submission, numbered (tests and tools; `encodePlan` does not build it). */
export interface NumberedPlan {
  /** Tasks in id order: `tasks[i]` has id `idBase + i`. */
  tasks: Task<unknown>[];
  /** Id of `tasks[0]`. */
  idBase: number;
}

/** What {@link walk} calls with each task, in id order, once its inputs have their ids. */
interface PlanVisitor {
  visit(t: Task<unknown>, result: boolean): void;
}

/**
 * Numbers every task reachable from `roots` (depth-first, inputs first, each task once) and
 * calls `visitor.visit` with each, in id order, once its inputs have their ids. Futures are
 * referenced by id and must be active and, when `owner` is given, made by that client. Throws on
 * a cycle or a bad input. Returns the number of tasks.
 */
function walk(roots: readonly Task<unknown>[], idBase: number, owner: object | undefined, visitor: PlanVisitor): number {
  const mark = 2 * ++epochCounter;
  // Results first: a result reached as the input of another is then known as one when visited.
  for (const root of roots) {
    if (!(root instanceof Task)) {
      throw new LoomError(`${String(root)} is not a task`);
    }
    if (root._epoch === mark + 1) continue;
    root.validate();
    root._epoch = mark + 1;
    root._planId = PENDING_RESULT;
  }
  let next = idBase;
  // Explicit stack: a chain of a million tasks must not overflow the JS stack.
  const stackTask: Task<unknown>[] = [];
  const stackPos: number[] = [];
  for (const root of roots) {
    if (root._planId !== PENDING_RESULT) continue;
    root._planId = ON_STACK;
    stackTask.push(root);
    stackPos.push(0);
    next = drain(stackTask, stackPos, mark, next, owner, visitor);
  }
  return next - idBase;
}

/**
 * The hot loop of {@link walk}: numbers (from `next`) and visits the tasks under those on the
 * stack; returns the next id. A function of its own that does nothing before its loop: V8 gives
 * a function its type feedback only once its first call has run a while, so what a function does
 * before its loop has none after that call, and its optimized code (made during that call) was
 * thrown away at the start of the next plan (issue #26: "the plan walk's deopt on its second run",
 * a recompile of the walk and the encoder inlined in it).
 */
function drain(stackTask: Task<unknown>[], stackPos: number[], mark: number, next: number, owner: object | undefined, visitor: PlanVisitor): number {
  while (stackTask.length > 0) {
    const top = stackTask.length - 1;
    const t = stackTask[top]!;
    const pos = stackPos[top]!;
    const inputs = t._inputs;
    if (pos < inputs.length) {
      stackPos[top] = pos + 1;
      const input = inputs[pos];
      if (input instanceof Task) {
        if (input._epoch >= mark) {
          if (input._planId === ON_STACK) {
            throw new LoomError(`Cycle in plan: ${input} is its own input (through ${t})`);
          }
          if (input._planId !== PENDING_RESULT) continue;
        } else {
          input.validate();
          input._epoch = mark;
        }
        input._planId = ON_STACK;
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
          throw new LoomError(`Inactive future used in plan: ${input} (status ${input.status}) is an input of ${t}`);
        }
      } else {
        throw new LoomError(`Invalid object ${String(input)} in plan (an input of ${t})`);
      }
    } else {
      t._planId = next++;
      visitor.visit(t, t._epoch !== mark);
      stackTask.pop();
      stackPos.pop();
    }
  }
  return next;
}

/** Collects the tasks of {@link numberPlan}. */
class TaskList implements PlanVisitor {
  readonly tasks: Task<unknown>[] = [];

  visit(t: Task<unknown>): void {
    this.tasks.push(t);
  }
}

/**
 * Numbers every task reachable from `roots` (depth-first, inputs first), marking the roots as
 * results. Futures are referenced by id and must be active and, when `owner` is given, made by
 * that client. Throws on a cycle or a bad input.
 */
export function numberPlan(roots: readonly Task<unknown>[], idBase: number, owner?: object): NumberedPlan {
  const list = new TaskList();
  walk(roots, idBase, owner, list);
  return { tasks: list.tasks, idBase };
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

/** A submission encoded by {@link encodePlan}. */
export interface EncodedPlan {
  /** The framed `ClientRequest{type=PLAN}`, ready to write on the socket. */
  buf: Buffer;
  /** Number of tasks (ids `idBase` to `idBase + count - 1`). */
  count: number;
}

/** Bytes kept free before the tasks for the frame head and the resource requests (more are moved in). */
const HEAD = 96;

/** Writes `v` (0 <= v < 2^53, or a negative int32 as 10 bytes, two's complement) at `pos`; returns the end. */
function writeVarint(b: Buffer, pos: number, v: number): number {
  if (v >= 0 && v < 0x80) {
    b[pos] = v;
    return pos + 1;
  }
  if (v < 0) {
    // int32 negative values: sign-extended to 64 bits.
    let lo = v >>> 0;
    for (let i = 0; i < 4; i++) {
      b[pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    b[pos++] = (lo & 0x0f) | 0x70 | 0x80;
    for (let i = 0; i < 4; i++) b[pos++] = 0xff;
    b[pos++] = 0x01;
    return pos;
  }
  while (v >= 0x80) {
    b[pos++] = (v & 0x7f) | 0x80;
    v = v >= 2 ** 31 ? Math.floor(v / 128) : v >>> 7;
  }
  b[pos++] = v;
  return pos;
}

/** Bytes of `v` as a varint (v >= 0, or a negative int32). */
function varintLen(v: number): number {
  if (v < 0) return 10;
  let n = 1;
  while (v >= 0x80) {
    n++;
    v = Math.floor(v / 128);
  }
  return n;
}

/**
 * Writes string field `tag` holding `s` at `pos`; returns the end. Short ASCII strings (the
 * common case) are copied in JS, assuming a one-byte length (a native call costs more).
 */
function writeStringField(b: Buffer, pos: number, tag: number, s: string): number {
  b[pos++] = tag;
  const n = s.length;
  if (n < 0x80) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[pos + 1 + i] = c;
    }
    if (i === n) {
      b[pos] = n;
      return pos + 1 + n;
    }
  }
  const len = Buffer.byteLength(s);
  pos = writeVarint(b, pos, len);
  return pos + b.write(s, pos, "utf8");
}

/** Growable output buffer. */
class Out {
  buf: Buffer;
  pos: number;

  constructor(initial: number, start: number) {
    this.buf = Buffer.allocUnsafe(initial);
    this.pos = start;
  }

  /**
   * Room for `n` more bytes at `pos`. Grows fourfold: a plan of millions of tasks is copied a
   * third of its size in all, not once more (issue #26; pages not written to cost nothing).
   */
  ensure(n: number): Buffer {
    if (this.pos + n > this.buf.length) {
      let size = this.buf.length * 4;
      while (size < this.pos + n) size *= 4;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, 0, this.pos);
      this.buf = next;
    }
    return this.buf;
  }
}

/** Upper bound of the encoded size of a string field's content. */
const strMax = (s: string | undefined): number => (s === undefined ? 0 : 3 * s.length + 16);

/**
 * The encoder of one submission: {@link walk} calls `visit` with each task as it is numbered. An
 * object with a method rather than a closure per plan, so that the walk's optimized code calls
 * one function for every plan: a closure made per plan was inlined with its plan's objects as
 * constants, and that code was thrown away once they were collected (issue #26).
 */
class PlanEncoder implements PlanVisitor {
  readonly out: Out;
  /** Distinct resource requests by value, numbered in order of first use. */
  readonly requests = new Map<number, number>();
  /**
   * Task type ids: the first few types met are compared by identity, in order (a plan cycles
   * through a few types, e.g. W1's const, const, merge: a map lookup on 2 tasks of 3 cost ~7% of
   * the encoding, issue #26), the others looked up. Arrays of a fixed length, filled in place
   * (an empty literal grown by `push` changed its elements' kind under the JIT: a deopt).
   */
  readonly recentTypes: string[] = ["", "", "", ""];
  readonly recentIds: number[] = [0, 0, 0, 0];
  nRecent = 0;
  readonly typeIds = new Map<string, number>();
  readonly labels: boolean;

  constructor(
    initial: number,
    readonly opts: EncodeOptions,
  ) {
    this.out = new Out(initial, HEAD);
    this.labels = opts.labels;
  }

  /** The id of task type `type` not among the recent ones (looked up, or asked of `opts.symbol`). */
  typeId(type: string): number {
    const known = this.typeIds.get(type);
    const typeId = known ?? this.opts.symbol(type);
    if (known === undefined) this.typeIds.set(type, typeId);
    if (this.nRecent < 4) {
      this.recentTypes[this.nRecent] = type;
      this.recentIds[this.nRecent++] = typeId;
    }
    return typeId;
  }

  visit(t: Task<unknown>, result: boolean): void {
    const cfg = t.config;
    const inputs = t._inputs;
    const extras = t._extras;
    const label = this.labels ? extras?.label : undefined;
    const checkpoint = extras?.checkpointPath;
    const b = this.out.ensure(40 + (typeof cfg === "string" ? strMax(cfg) : cfg.length + 10) + 11 * inputs.length + strMax(label) + strMax(checkpoint));
    let pos = this.out.pos;
    const type = t.taskType;
    let typeId = -1;
    const recentTypes = this.recentTypes;
    for (let i = 0; i < this.nRecent; i++) {
      if (recentTypes[i] === type) {
        typeId = this.recentIds[i]!;
        break;
      }
    }
    if (typeId < 0) typeId = this.typeId(type);
    // Plan.tasks (field 2): the length is written after the body, one byte assumed.
    b[pos] = 0x12;
    const lenAt = pos + 1;
    pos += 2;
    b[pos++] = 0x08;
    pos = writeVarint(b, pos, typeId);
    if (typeof cfg === "string") {
      pos = writeStringField(b, pos, 0x12, cfg);
    } else {
      b[pos++] = 0x12;
      const n = cfg.length;
      pos = writeVarint(b, pos, n);
      if (n <= 16) for (let i = 0; i < n; i++) b[pos + i] = cfg[i]!;
      else b.set(cfg, pos);
      pos += n;
    }
    for (let i = 0; i < inputs.length; i++) {
      b[pos++] = 0x18;
      const input = inputs[i] as TaskInput;
      pos = writeVarint(b, pos, input instanceof Task ? input._planId : input.taskId);
    }
    const rr = extras?.resourceRequest;
    if (rr !== undefined) {
      const requests = this.requests;
      let index = requests.get(rr.cpus);
      if (index === undefined) requests.set(rr.cpus, (index = requests.size));
      b[pos++] = 0x28;
      pos = writeVarint(b, pos, index);
    }
    b[pos++] = 0x30;
    b[pos++] = result ? 1 : 0;
    if (checkpoint) pos = writeStringField(b, pos, 0x3a, checkpoint);
    if (label !== undefined) pos = writeStringField(b, pos, 0x62, label);
    const len = pos - lenAt - 1;
    if (len < 0x80) {
      b[lenAt] = len;
    } else {
      // A task of 128 bytes or more (a long config or label): its body moves to make room.
      const extra = varintLen(len) - 1;
      b.copyWithin(lenAt + 1 + extra, lenAt + 1, pos);
      writeVarint(b, lenAt, len);
      pos += extra;
    }
    this.out.pos = pos;
  }
}

/**
 * An encoder kept for the life of the process, never used: it keeps the shapes of an encoder and
 * of its output buffer alive between plans. V8 reaches an object's shape from its class's first
 * shape through weak links, one per field set: once the last plan's encoder was collected, the
 * next plan's got new shapes, and the walk and encoder compiled for the old ones were thrown
 * away and compiled again, for every plan (issue #26).
 */
export const keptEncoderShape: object = new PlanEncoder(0, { symbol: () => 0, cpusSymbol: 0, labels: false, loadCheckpoints: false });

/**
 * Numbers the tasks reachable from `roots` (ids from `idBase`; see {@link numberPlan}) and
 * encodes them as one framed `ClientRequest{type=PLAN}`, each task as it is numbered. Throws
 * `LoomError` on a cycle, a bad input or an unknown task type (`opts.symbol`).
 */
export function encodePlan(roots: readonly Task<unknown>[], idBase: number, opts: EncodeOptions, owner?: object): EncodedPlan {
  if (!warmedUp) warmUp();
  return encode(roots, idBase, opts, owner);
}

/** Whether {@link warmUp} ran. */
let warmedUp = false;

/**
 * Encodes, once per process before the first plan, a small plan of the builders' task shapes
 * that takes every common path of the walk and encoder: configs of both kinds, shared extras with
 * a label and a request, input ids of one byte and of two, a last task unlike the others. V8
 * records what code does only after a function's first part ran (its type feedback), and a
 * function compiled during the first plan deoptimized at the first path that plan had not shown
 * it yet: its last task (W5: the `arrayMake` of the calls), so the next plan ran unoptimized
 * until compiled again (issue #26). ~300 tasks, well under a millisecond, no effect on ids.
 */
function warmUp(): void {
  warmedUp = true;
  const extras = sharedExtras(cpu1, "warm-up");
  const value = builtTask<unknown>("warm-up/value", Buffer.alloc(4));
  // Filled by index, as plans are usually gathered (V8's HOLEY kind; the calls' are PACKED).
  const inputs: TaskInput[] = new Array(300);
  for (let i = 0; i < 150; i++) {
    const call = builtTask<unknown>("warm-up/call", Buffer.alloc(6, i), [value]);
    call._extras = extras;
    inputs[2 * i] = call;
    inputs[2 * i + 1] = builtTask<unknown>("warm-up/const", "warm-up");
  }
  const opts: EncodeOptions = { symbol: (name) => name.length, cpusSymbol: 1, labels: true, loadCheckpoints: false };
  encode([builtTask<unknown>("warm-up/array", "", inputs)], 0, opts, undefined);
}

function encode(roots: readonly Task<unknown>[], idBase: number, opts: EncodeOptions, owner?: object): EncodedPlan {
  // A first guess of the size: ~48 bytes per input of the roots (W1's one root of a million
  // merges takes ~38 MB); grown as needed.
  let guess = 0;
  for (const r of roots) guess += r instanceof Task ? r._inputs.length : 0;
  const encoder = new PlanEncoder(Math.min(Math.max(64 * 1024, 48 * guess), 256 * 1024 * 1024), opts);
  const count = walk(roots, idBase, owner, encoder);
  const out = encoder.out;
  const requests = encoder.requests;
  // Plan.id_base (field 4), then ClientRequest.load_checkpoints (field 4, after the plan).
  let b = out.ensure(16);
  b[out.pos++] = 0x20;
  out.pos = writeVarint(b, out.pos, idBase);
  let tasksEnd = out.pos;
  b[out.pos++] = 0x20;
  b[out.pos++] = opts.loadCheckpoints ? 1 : 0;
  // Plan.resource_requests (field 1), before the tasks as protobuf writers order them.
  const head: number[] = [];
  for (const [cpus] of requests) {
    const res = [0x08, ...varintBytes(opts.cpusSymbol), 0x10, ...varintBytes(cpus)];
    const rr = [0x0a, ...varintBytes(res.length), ...res];
    head.push(0x0a, ...varintBytes(rr.length), ...rr);
  }
  // Move the tasks on if the requests and the frame head do not fit before them (many distinct requests).
  let tasksStart = HEAD;
  const need = head.length + 8 + 3 + 10;
  if (need > tasksStart) {
    const shift = need - tasksStart;
    b = out.ensure(shift);
    b.copyWithin(tasksStart + shift, tasksStart, out.pos);
    out.pos += shift;
    tasksStart += shift;
    tasksEnd += shift;
  }
  const end = out.pos;
  const planLen = tasksEnd - tasksStart + head.length;
  // Head written right-aligned before the tasks: frame length, type=PLAN, plan tag and length, requests.
  const start = tasksStart - head.length - (2 + 1 + varintLen(planLen)) - 8;
  let pos = start + 8;
  b[pos++] = 0x08;
  b[pos++] = 0x01;
  b[pos++] = 0x12;
  pos = writeVarint(b, pos, planLen);
  for (const x of head) b[pos++] = x;
  const payload = end - start - 8;
  b.writeUInt32LE(payload >>> 0, start);
  b.writeUInt32LE(Math.floor(payload / 2 ** 32), start + 4);
  return { buf: b.subarray(start, end), count };
}

function varintBytes(v: number): number[] {
  const b = Buffer.alloc(10);
  return [...b.subarray(0, writeVarint(b, 0, v))];
}
