/**
 * The channel reader thread (a `node:worker_threads` Worker started by
 * `channel_reader.ts`): reads the supervisor's lines with a bounded line
 * reader, answers `heartbeat` itself, hands every other line to the main
 * thread, and is the channel watchdog.
 *
 * It runs on its own event loop, so neither heartbeats nor the watchdog wait
 * for a tool that blocks the main thread. Lines too long are skipped with a
 * note on stderr. When the channel reaches end-of-file or fails before
 * `shutdown`, the supervisor is gone: the thread SIGKILLs the processes that
 * carry the worker's tags (`process_tags.ts`) and the process group
 * itself, or, when the process leads no group, asks the main thread to exit
 * 1 (and SIGKILLs the process if the main thread does not within
 * {@link LOST_EXIT_MS}).
 */

import { createReadStream, fstatSync } from "node:fs";
import net from "node:net";
import tty from "node:tty";
import { parentPort, workerData } from "node:worker_threads";
import { LineReader } from "./channel.js";
import type { ReaderData, ReaderEvent } from "./channel_reader.js";
import { FdWriter } from "./fd_writer.js";
import { killOwnGroup, note } from "./process_group.js";
import { killAllTagged } from "./process_tags.js";
import { type Message, ProtocolError, decode, encodeLine } from "./protocol.js";
import { STOPPING } from "./shared_state.js";

/** How long the main thread has to exit after the channel is lost, when there is no group to kill. */
export const LOST_EXIT_MS = 2000;

if (parentPort === null) throw new Error("reader_thread.js runs as a worker thread of the flw worker");
const port = parentPort;
const data = workerData as ReaderData;

let lostOnce = false;

/** The channel is gone (unless `shutdown` came first): end the worker and what it started. */
function lost(reason: string): void {
  if (lostOnce || Atomics.load(data.state, STOPPING) === 1) return;
  lostOnce = true;
  const text = `${reason}; the supervisor is gone, killing the process group`;
  note(data.label, text);
  killAllTagged(data.workerTag);
  if (killOwnGroup()) return;
  port.postMessage({ lost: text } satisfies ReaderEvent);
  setTimeout(() => process.kill(process.pid, "SIGKILL"), LOST_EXIT_MS);
}

/** How much one read of the channel takes at most. */
const READ_BYTES = 64 * 1024;

/**
 * A readable stream on `fd` that never closes the descriptor while the
 * process runs, handing each chunk read to `received` (which must be done
 * with it when it returns: a socket or pipe is read into one reused buffer).
 */
function openInput(fd: number, received: (chunk: Buffer) => void): NodeJS.ReadableStream {
  const stat = fstatSync(fd);
  if (stat.isSocket() || stat.isFIFO()) {
    // Writable and half-open: the stream does not destroy itself (closing the
    // descriptor) at end-of-file, so the main thread can still write replies.
    // `onread` (typed for net.connect only) reads into one buffer, with no stream machinery per chunk.
    const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
      fd,
      readable: true,
      writable: true,
      allowHalfOpen: true,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BYTES),
        callback: (bytes, into) => {
          received(Buffer.from(into.buffer, into.byteOffset, bytes));
          return true;
        },
      },
    };
    return new net.Socket(options);
  }
  const stream = tty.isatty(fd) ? new tty.ReadStream(fd) : createReadStream("", { fd, autoClose: false });
  stream.on("data", (chunk: Buffer | string) => received(typeof chunk === "string" ? Buffer.from(chunk) : chunk));
  return stream;
}

const writer = new FdWriter(data.outputFd, data.state, (err) => lost(`writing to the channel failed: ${err.message}`));
const reader = new LineReader(data.maxLineBytes);

const HEARTBEAT = Buffer.from('"heartbeat"');
const SHUTDOWN = Buffer.from('"shutdown"');

/** The message on `line`, or `undefined` when it does not decode (the main thread says why). */
function tryDecode(line: Buffer): Message | undefined {
  try {
    return decode(line, "supervisor", data.maxLineBytes);
  } catch {
    return undefined;
  }
}

/**
 * Split a chunk into lines; answer the heartbeats among them and hand the
 * rest to the main thread as one buffer of whole lines, which it decodes
 * (so each line is decoded once, on the thread that runs its call). Only a
 * line that holds `"heartbeat"` or `"shutdown"` is decoded here, to see
 * whether it is one: the supervisor's canonical lines always spell the type
 * so. (A heartbeat spelled otherwise reaches the main thread, which answers
 * it too.)
 */
function received(chunk: Buffer): void {
  const lines: Buffer[] = [];
  let size = 0;
  for (const item of reader.push(chunk)) {
    if (item instanceof ProtocolError) {
      note(data.label, item.detail);
      continue;
    }
    if (item.includes(HEARTBEAT)) {
      const message = tryDecode(item);
      if (message?.type === "heartbeat") {
        writer.write(encodeLine({ type: "heartbeat", seq: message["seq"] }));
        continue;
      }
    } else if (item.includes(SHUTDOWN) && tryDecode(item)?.type === "shutdown") {
      Atomics.store(data.state, STOPPING, 1); // the end of the channel that follows is expected
    }
    lines.push(item);
    size += item.length + 1;
  }
  if (size === 0) return;
  // A buffer of its own (never a slice of Node's shared pool), moved to the main thread without a copy.
  const batch = new Uint8Array(size);
  let offset = 0;
  for (const line of lines) {
    batch.set(line, offset);
    batch[offset + line.length] = 0x0a;
    offset += line.length + 1;
  }
  port.postMessage({ lines: batch } satisfies ReaderEvent, [batch.buffer]);
}

// This thread must outlive the channel's end-of-file: when a worker thread
// exits, Node closes the handles it opened, and the main thread still writes
// replies to that descriptor after `shutdown`. A listener on the parent port
// keeps the thread's event loop alive until the process exits.
port.on("message", () => {});

const input = openInput(data.inputFd, received);
input.on("end", () =>
  lost(reader.end() ? "the channel ended in the middle of a line" : "the channel reached end-of-file"),
);
input.on("error", (err: Error) => lost(`reading the channel failed: ${err.message}`));
