/**
 * The protocol channel: a bounded line reader, a line writer, and
 * {@link openChannel}, which takes the channel away from user code.
 *
 * The reader never holds more than `maxLineBytes + 1` bytes of one line:
 * past that it drops what it has, skips to the end of the line and reports
 * `line_too_long`. The writer writes whole lines in order through one
 * write function (an `FdWriter`, see `fd_writer.ts`).
 */

import { fstatSync } from "node:fs";
import { ProtocolError, encodeLine } from "./protocol.js";

/** A line without its `\n`, or the report of an over-long line that was skipped. */
export type LineItem = Buffer | ProtocolError;

/**
 * Splits a byte stream into `\n`-terminated lines with a bounded buffer.
 * `push` takes one chunk and returns the items it completed; `end` says
 * whether the stream stopped in the middle of a line.
 */
export class LineReader {
  private parts: Buffer[] = [];
  private size = 0;
  private discarding = false;

  constructor(readonly maxLineBytes: number) {}

  push(chunk: Buffer): LineItem[] {
    const items: LineItem[] = [];
    let start = 0;
    for (;;) {
      const end = chunk.indexOf(0x0a, start);
      if (end < 0) break;
      if (this.discarding) {
        this.discarding = false;
        items.push(this.tooLong());
      } else if (this.size + (end - start) > this.maxLineBytes) {
        items.push(this.tooLong());
      } else if (this.size === 0) {
        items.push(chunk.subarray(start, end));
      } else {
        this.parts.push(chunk.subarray(start, end));
        items.push(Buffer.concat(this.parts, this.size + (end - start)));
      }
      this.parts = [];
      this.size = 0;
      start = end + 1;
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.length - start;
      if (this.size + rest > this.maxLineBytes) {
        this.parts = [];
        this.size = 0;
        this.discarding = true;
      } else {
        // Copy: the caller's chunk may be reused, and a small piece must not pin a large buffer.
        this.parts.push(Buffer.from(chunk.subarray(start)));
        this.size += rest;
      }
    }
    return items;
  }

  /** At end-of-file: whether a line was left unfinished (its bytes are dropped). */
  end(): boolean {
    const torn = this.discarding || this.size > 0;
    this.parts = [];
    this.size = 0;
    this.discarding = false;
    return torn;
  }

  private tooLong(): ProtocolError {
    return new ProtocolError(
      "line_too_long",
      `a line was longer than the limit of ${this.maxLineBytes} bytes (FLW_MAX_LINE_BYTES) and was skipped`,
    );
  }
}

/**
 * Writes protocol messages as whole lines, in order, through one write
 * function. Lines given to {@link LineWriter.queueLine} (the terminal
 * replies) are gathered and written together in one microtask, so a batch
 * of calls that end together costs one write; every other line is written
 * at once, after the lines queued before it.
 */
export class LineWriter {
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;

  constructor(
    private readonly write: (data: Uint8Array) => void,
    readonly maxLineBytes: number,
  ) {}

  /** The line for `message`; `ProtocolError("line_too_long")` when it is over the limit. */
  encode(message: Record<string, unknown>): Buffer {
    const data = encodeLine(message);
    const size = data.length - 1;
    if (size > this.maxLineBytes) {
      throw new ProtocolError(
        "line_too_long",
        `the ${String(message["type"])} message is ${size} bytes, over the line limit ` +
          `of ${this.maxLineBytes} bytes (FLW_MAX_LINE_BYTES)`,
      );
    }
    return data;
  }

  /** Encode `message` and write it as one line, now. */
  send(message: Record<string, unknown>): void {
    this.writeLine(this.encode(message));
  }

  /** Write a line already encoded and checked, now. */
  writeLine(data: Buffer): void {
    this.flush();
    this.write(data);
  }

  /** Write a line already encoded and checked with the others queued in this turn of the event loop. */
  queueLine(data: Buffer): void {
    this.queued.push(data);
    this.queuedBytes += data.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Write the queued lines now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.queued.length === 0) return;
    const data = this.queued.length === 1 ? (this.queued[0] as Buffer) : Buffer.concat(this.queued, this.queuedBytes);
    this.queued = [];
    this.queuedBytes = 0;
    this.write(data);
  }
}

/** Where the worker reads and writes the protocol: descriptors, read by the reader thread. */
export interface Channel {
  /** The descriptor the supervisor's lines arrive on. */
  readonly inputFd: number;
  /** The descriptor the worker's lines go to (the same socket as `inputFd` on fd 3). */
  readonly outputFd: number;
  readonly description: string;
}

/**
 * Take the protocol channel away from user code.
 *
 * With `FLW_CHANNEL_FD` set, that descriptor is the channel both ways and
 * the variable is removed from `process.env` so child processes do not look
 * for it. Without it, stdin and stdout are the channel, and
 * `process.stdout.write` (which `console.log` goes through) is pointed at
 * stderr before user code runs. Throws when the descriptor is unusable.
 */
export function openChannel(env: NodeJS.ProcessEnv = process.env): Channel {
  const raw = env["FLW_CHANNEL_FD"];
  if (raw) {
    const fd = Number(raw);
    if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(fd)) {
      throw new Error(`FLW_CHANNEL_FD must be a descriptor number, got ${JSON.stringify(raw)}`);
    }
    const stat = fstatSync(fd); // throws EBADF for a descriptor that is not open
    if (!stat.isSocket() && !stat.isFIFO()) {
      throw new Error(`FLW_CHANNEL_FD=${fd} is neither a socket nor a pipe`);
    }
    delete env["FLW_CHANNEL_FD"];
    return { inputFd: fd, outputFd: fd, description: `fd ${fd}` };
  }
  const stdout = process.stdout;
  const stderr = process.stderr;
  const toStderr = (...args: unknown[]): boolean => (stderr.write as (...a: unknown[]) => boolean)(...args);
  stdout.write = toStderr as typeof stdout.write;
  return { inputFd: 0, outputFd: 1, description: "stdin/stdout" };
}
