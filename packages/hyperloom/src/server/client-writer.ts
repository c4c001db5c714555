/**
 * Ordered writes to a client socket. A fetched object is relayed to its client frame by frame as
 * it arrives (bounded server memory), but the client needs the `DATA` response and its frames
 * contiguous: while a relay is active, other writes to that client (the core's notifications, other
 * relays) wait, and go out in order when it ends. The writes of one event-loop turn leave in one
 * corked batch (one `writev`), so relaying many small objects — a gather of 100,000 futures — costs
 * one system call per turn rather than one per object and frame.
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

/** The writer of one client connection. */
export class ClientWriter {
  private active: Channel | undefined;
  private readonly waiting: Channel[] = [];
  private held: Buffer[] = [];
  /** Whether the socket is corked until the end of this turn. */
  private corked = false;

  constructor(private readonly socket: Socket) {}

  /** Writes to the socket, corked until the current turn's work is done. */
  private emit(buf: Buffer): void {
    if (!this.corked && typeof this.socket.cork === "function") {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(buf);
  }

  /** Writes the core's output (held while a relay is active). */
  write(buf: Buffer): void {
    if (this.active) this.held.push(buf);
    else this.emit(buf);
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
