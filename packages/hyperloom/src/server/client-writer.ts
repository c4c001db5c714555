/**
 * Ordered writes to a client socket. A fetched object is relayed to its client frame by frame as
 * it arrives (bounded server memory), but the client needs the `DATA` response and its frames
 * contiguous: while a relay is active, other writes to that client (the core's notifications, other
 * relays) wait, and go out in order when it ends. The writes of one event-loop turn leave together:
 * runs of small buffers are joined into one (a gather of 100,000 futures relays 200,000 small
 * pieces: one `write` each cost the server more than the relay itself), large ones are queued as
 * they are, all in one corked `writev`.
 */
import type { Socket } from "node:net";

/** One relay's stream of writes to the client. */
export interface RelayChannel {
  /** Writes bytes of this relay (buffered while another relay is active). */
  write(buf: Buffer): void;
  /** The relay is complete. */
  end(): void;
  /** The relay broke midway: the client cannot be given a partial object, so its connection closes. */
  abort(): void;
}

interface Channel extends RelayChannel {
  held: Buffer[];
  ended: boolean;
}

/** Buffers smaller than this are joined with their neighbours into one before a write. */
const JOIN_BELOW = 64 << 10;

/** The writer of one client connection. */
export class ClientWriter {
  private active: Channel | undefined;
  private readonly waiting: Channel[] = [];
  private held: Buffer[] = [];
  /** What this turn writes, in order (sent at the end of the turn). */
  private turn: Buffer[] = [];
  private turnBytes = 0;

  constructor(private readonly socket: Socket) {}

  /** Bytes accepted and not yet handed to the kernel (this turn's and the socket's queue). */
  get backlog(): number {
    return this.turnBytes + (this.socket.writableLength ?? 0);
  }

  /**
   * Calls `f` once this turn's bytes were handed to the socket and its queue has drained (or it
   * closed): a relay that got ahead of its client waits for it.
   */
  onDrain(f: () => void): void {
    setImmediate(() => {
      if (this.socket.destroyed || (this.socket.writableLength ?? 0) === 0) return f();
      // A client that goes away never drains: its close lets the relay go on (dropping its bytes).
      const done = (): void => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        f();
      };
      this.socket.once("drain", done);
      this.socket.once("close", done);
    });
  }

  /** Queues bytes for the end of this turn. */
  private emit(buf: Buffer): void {
    if (this.turn.length === 0) process.nextTick(() => this.flush());
    this.turn.push(buf);
    this.turnBytes += buf.length;
  }

  /**
   * Writes this turn's bytes now: small ones joined, large ones as they are, in one corked batch.
   * Called at the end of the turn, and before the server closes the connection (its last answer,
   * such as the ERROR refusing a session, must go out before the end).
   */
  flush(): void {
    const turn = this.turn;
    this.turn = [];
    this.turnBytes = 0;
    if (this.socket.destroyed) return;
    const corks = turn.length > 1 && typeof this.socket.cork === "function";
    if (corks) this.socket.cork();
    let run: Buffer[] = [];
    let runBytes = 0;
    const endRun = (): void => {
      if (run.length > 0) this.socket.write(run.length === 1 ? run[0]! : Buffer.concat(run, runBytes));
      run = [];
      runBytes = 0;
    };
    for (const b of turn) {
      if (b.length >= JOIN_BELOW) {
        endRun();
        this.socket.write(b);
      } else {
        run.push(b);
        runBytes += b.length;
        if (runBytes >= JOIN_BELOW) endRun();
      }
    }
    endRun();
    if (corks) this.socket.uncork();
  }

  /** Writes the core's output (held while a relay is active). */
  write(buf: Buffer): void {
    if (this.active) this.held.push(buf);
    else this.emit(buf);
  }

  /**
   * Writes a whole relayed object (its DATA response, then its frames) in one piece: as a relay
   * that ends at once, without opening one (it waits behind an active relay, in order).
   */
  writeWhole(response: Buffer, frames: readonly Buffer[]): void {
    if (this.active) {
      if (response.length > 0) this.held.push(response);
      for (const f of frames) this.held.push(f);
      return;
    }
    if (response.length > 0) this.emit(response);
    for (const f of frames) this.emit(f);
  }

  /** Starts a relay; its writes go out contiguously. */
  open(): RelayChannel {
    const channel: Channel = {
      held: [],
      ended: false,
      write: (buf) => {
        if (this.active === channel) this.emit(buf);
        else channel.held.push(buf);
      },
      end: () => {
        channel.ended = true;
        if (this.active === channel) this.next();
      },
      abort: () => {
        this.socket.destroy();
      },
    };
    if (this.active === undefined) this.active = channel;
    else this.waiting.push(channel);
    return channel;
  }

  private next(): void {
    this.active = undefined;
    const held = this.held;
    this.held = [];
    for (const b of held) this.emit(b);
    while (this.active === undefined && this.waiting.length > 0) {
      const c = this.waiting.shift()!;
      this.active = c;
      for (const b of c.held.splice(0)) this.emit(b);
      if (c.ended) {
        this.active = undefined;
        const more = this.held;
        this.held = [];
        for (const b of more) this.emit(b);
      }
    }
  }
}
