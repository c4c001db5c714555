/**
 * Bounded memory per peer on the server's main port: every frame a client or worker announces is
 * checked against a limit before the core buffers it, and a frame that was announced but does
 * not arrive in time (slowloris) closes the connection. Frames are only counted here — their
 * bytes go to the core untouched, so this costs a few operations per frame.
 */

/** Limits of one connection's frames. */
export interface FrameLimits {
  /** Largest control frame (bytes). Default {@link DEFAULT_MAX_FRAME}; `--max-frame`. */
  maxFrame: number;
  /** Largest plan frame (`ClientRequest{PLAN}`, bytes). Default {@link DEFAULT_MAX_PLAN}; `--max-plan`. */
  maxPlan: number;
  /** How long a frame may take from its first to its last byte (ms). Default 120 s; `--frame-timeout`. */
  frameTimeoutMs: number;
}

/** 64 MiB: far above any control message, far below the 4 GiB a length prefix could claim. */
export const DEFAULT_MAX_FRAME = 64 * 2 ** 20;
/** 2 GiB: a plan of tens of millions of tasks. */
export const DEFAULT_MAX_PLAN = 2 * 2 ** 30;
/** 120 s. */
export const DEFAULT_FRAME_TIMEOUT_MS = 120_000;

/** The defaults, for a server given no limit options. */
export const defaultFrameLimits: FrameLimits = { maxFrame: DEFAULT_MAX_FRAME, maxPlan: DEFAULT_MAX_PLAN, frameTimeoutMs: DEFAULT_FRAME_TIMEOUT_MS };

/** A frame broke a limit; the message names the limit and the option that raises it. */
export class FrameLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameLimitError";
  }
}

/** `ClientRequest` starts with field 1 (type), a varint: `08 01` is PLAN. */
const PLAN_TAG = 0x08;
const PLAN_TYPE = 0x01;

/** Follows the frames of one connection. */
export class FrameLimiter {
  /** Payload bytes of the current frame still to come (0: between frames). */
  private remaining = 0;
  /** Length prefix bytes seen of the next frame. */
  private readonly prefix = Buffer.alloc(8);
  private prefixBytes = 0;
  /** A frame above `maxFrame` whose first payload bytes must show it is a plan. */
  private peek: { length: number; bytes: number[] } | undefined;
  /** When the frame now incomplete started (ms since epoch); undefined between frames. */
  partialSince: number | undefined;

  constructor(private readonly limits: FrameLimits) {}

  /** Counts `chunk`'s frames; throws {@link FrameLimitError} when one breaks a limit. */
  check(chunk: Buffer, now: number): void {
    let pos = 0;
    const len = chunk.length;
    const startedPartial = this.remaining > 0 || this.prefixBytes > 0 || this.peek !== undefined;
    let completed = false;
    while (pos < len) {
      if (this.remaining > 0) {
        if (this.peek !== undefined) {
          this.peek.bytes.push(chunk[pos]!);
          pos++;
          this.remaining--;
          if (this.peek.bytes.length === 2 || this.remaining === 0) this.checkPlan();
          if (this.remaining === 0) completed = true;
          continue;
        }
        const n = Math.min(this.remaining, len - pos);
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) completed = true;
        continue;
      }
      if (this.prefixBytes === 0 && len - pos >= 8) {
        this.announce(chunk.readUInt32LE(pos) + chunk.readUInt32LE(pos + 4) * 2 ** 32);
        pos += 8;
      } else {
        const n = Math.min(8 - this.prefixBytes, len - pos);
        chunk.copy(this.prefix, this.prefixBytes, pos, pos + n);
        this.prefixBytes += n;
        pos += n;
        if (this.prefixBytes === 8) {
          this.prefixBytes = 0;
          this.announce(this.prefix.readUInt32LE(0) + this.prefix.readUInt32LE(4) * 2 ** 32);
        }
      }
      if (this.remaining === 0 && this.prefixBytes === 0) completed = true;
    }
    const partial = this.remaining > 0 || this.prefixBytes > 0;
    if (!partial) this.partialSince = undefined;
    else if (!startedPartial || completed) this.partialSince = now;
  }

  /** Whether an incomplete frame has taken longer than the limit; the error to close with. */
  overdue(now: number): FrameLimitError | undefined {
    if (this.partialSince === undefined || now - this.partialSince <= this.limits.frameTimeoutMs) return undefined;
    return new FrameLimitError(
      `a frame did not arrive within ${this.limits.frameTimeoutMs / 1000} s of its first byte (${this.remaining} bytes still missing; the limit is --frame-timeout)`,
    );
  }

  private announce(length: number): void {
    const { maxFrame, maxPlan } = this.limits;
    if (length > maxFrame && length > maxPlan) {
      throw new FrameLimitError(
        `a frame of ${length} bytes exceeds every limit (${maxFrame} bytes for control frames, --max-frame; ${maxPlan} bytes for plans, --max-plan)`,
      );
    }
    // Above either limit, the first payload bytes tell which one applies.
    if (length > maxFrame || length > maxPlan) this.peek = { length, bytes: [] };
    this.remaining = length;
  }

  private checkPlan(): void {
    const p = this.peek!;
    this.peek = undefined;
    const isPlan = p.bytes[0] === PLAN_TAG && p.bytes[1] === PLAN_TYPE;
    if (isPlan && p.length > this.limits.maxPlan) {
      throw new FrameLimitError(`a plan of ${p.length} bytes exceeds the plan limit of ${this.limits.maxPlan} bytes (raise it with --max-plan)`);
    }
    if (!isPlan && p.length > this.limits.maxFrame) {
      throw new FrameLimitError(
        `a control frame of ${p.length} bytes exceeds the limit of ${this.limits.maxFrame} bytes (raise it with --max-frame; plans have their own limit, --max-plan)`,
      );
    }
  }
}
