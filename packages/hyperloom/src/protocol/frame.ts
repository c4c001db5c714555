/**
 * Framing shared by every connection of every role on the TypeScript side: a u64 little-endian
 * length, then that many payload bytes (spec section 1.2).
 */

/** Largest frame a control connection accepts; anything longer is garbage or an attack. */
export const MAX_CONTROL_FRAME = 2 ** 32;

/** A frame length prefix announced more bytes than the reader allows. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/**
 * Splits a byte stream into frames. Frames that lie inside one chunk are returned as views
 * (no copy); only a frame split across chunks is assembled.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes needed before the buffered frame is complete (0: unknown yet). */
  private needed = 0;
  /** A large frame being filled in place (prefix included), and how much of it is filled. */
  private big: Buffer | undefined;
  private bigFilled = 0;

  constructor(private readonly limit: number = MAX_CONTROL_FRAME) {}

  /** Bytes held back (an incomplete frame). */
  get pendingBytes(): number {
    return this.big !== undefined ? this.bigFilled : this.buffered;
  }

  /**
   * Bytes still to come before the held frame is complete (0: nothing held). While its length
   * prefix is incomplete, the bytes that complete the prefix. Lets a reader that handles whole
   * frames in place feed this one only the rest of a frame split across chunks.
   */
  get missing(): number {
    if (this.big !== undefined) return this.big.length - this.bigFilled;
    return this.buffered === 0 ? 0 : this.needed - this.buffered;
  }

  /** Feeds a chunk; returns every complete frame payload in order. Throws {@link FrameError}. */
  push(chunk: Buffer): Buffer[] {
    let done: Buffer | undefined;
    if (this.big !== undefined) {
      // Filling a large frame: one copy per chunk, straight into its final buffer.
      const n = Math.min(chunk.length, this.big.length - this.bigFilled);
      chunk.copy(this.big, this.bigFilled, 0, n);
      this.bigFilled += n;
      if (this.bigFilled < this.big.length) return [];
      done = this.big.subarray(8);
      this.big = undefined;
      this.chunks = [];
      this.buffered = 0;
      this.needed = 0;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return [done];
    }
    const frames = done === undefined ? [] : [done];
    let data: Buffer;
    if (this.buffered === 0) {
      data = chunk;
    } else if (this.buffered + chunk.length < this.needed) {
      // Still inside a large frame: keep the chunk, copy nothing (no quadratic re-concatenation).
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      return [];
    } else {
      this.chunks.push(chunk);
      data = Buffer.concat(this.chunks, this.buffered + chunk.length);
      this.chunks = [];
      this.buffered = 0;
    }
    let pos = 0;
    while (data.length - pos >= 8) {
      const len = readLength(data, pos);
      if (len > this.limit) {
        throw new FrameError(`frame of ${len} bytes exceeds the limit of ${this.limit} bytes`);
      }
      if (data.length - pos - 8 < len) break;
      frames.push(data.subarray(pos + 8, pos + 8 + len));
      pos += 8 + len;
    }
    if (pos < data.length) {
      const rest = data.subarray(pos);
      this.chunks.push(rest);
      this.buffered = rest.length;
      this.needed = rest.length >= 8 ? 8 + readLength(rest, 0) : 8;
      if (this.needed - 8 > this.limit) {
        throw new FrameError(`frame of ${this.needed - 8} bytes exceeds the limit of ${this.limit} bytes`);
      }
      if (this.needed >= BIG_FRAME) {
        this.big = Buffer.allocUnsafe(this.needed);
        rest.copy(this.big, 0);
        this.bigFilled = rest.length;
        this.chunks = [];
      }
    } else {
      this.needed = 0;
    }
    return frames;
  }
}

/** Frames from this size on are assembled in place rather than from a list of chunks. */
const BIG_FRAME = 1 << 20;

function readLength(b: Buffer, pos: number): number {
  const lo = b.readUInt32LE(pos);
  const hi = b.readUInt32LE(pos + 4);
  return hi * 2 ** 32 + lo;
}

/** One framed message: prefix and payload in one buffer. */
export function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(8 + payload.length);
  out.writeUInt32LE(payload.length >>> 0, 0);
  out.writeUInt32LE(Math.floor(payload.length / 2 ** 32), 4);
  out.set(payload, 8);
  return out;
}
