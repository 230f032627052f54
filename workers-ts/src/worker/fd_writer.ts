/**
 * Writes whole lines to the channel's descriptor from two threads: the main
 * thread (replies, progress, logs) and the reader thread (heartbeats). Each
 * line goes out with `writeSync` while its writer holds a lock in shared
 * memory, so lines never interleave; a full socket buffer (`EAGAIN`) is
 * waited out in 1 ms naps, still holding the lock.
 */

import { writeSync } from "node:fs";
import { WRITE_LOCK } from "./shared_state.js";

const UNLOCKED = 0;
const LOCKED = 1;
const CONTENDED = 2; // locked, and a thread may be waiting

const NAP_MS = 1;

/** A line writer on one descriptor, safe to use from several threads that share `state`. */
export class FdWriter {
  private broken = false;
  private readonly napCell = new Int32Array(new SharedArrayBuffer(4));

  /**
   * @param fd the descriptor to write to
   * @param state the shared state (see `shared_state.ts`) holding the write lock
   * @param onError told once about the first write that fails; later writes are dropped
   */
  constructor(
    readonly fd: number,
    private readonly state: Int32Array,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Write `data` (one or more whole lines) in full, or report the failure to `onError`. */
  write(data: Uint8Array): void {
    if (this.broken || data.length === 0) return;
    let failure: Error | undefined;
    this.lock();
    try {
      let offset = 0;
      while (offset < data.length) {
        try {
          offset += writeSync(this.fd, data, offset, data.length - offset);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === "EAGAIN" || code === "EWOULDBLOCK") {
            Atomics.wait(this.napCell, 0, 0, NAP_MS); // the reader of the channel is behind
          } else if (code !== "EINTR") {
            failure = err as Error;
            break;
          }
        }
      }
    } finally {
      this.unlock();
    }
    if (failure !== undefined) {
      this.broken = true;
      this.onError(failure);
    }
  }

  // A futex-style mutex (Drepper, "Futexes Are Tricky", mutex 2): no
  // `Atomics.notify` unless a thread may be waiting.

  private lock(): void {
    const s = this.state;
    let c = Atomics.compareExchange(s, WRITE_LOCK, UNLOCKED, LOCKED);
    if (c === UNLOCKED) return;
    if (c !== CONTENDED) c = Atomics.exchange(s, WRITE_LOCK, CONTENDED);
    while (c !== UNLOCKED) {
      Atomics.wait(s, WRITE_LOCK, CONTENDED);
      c = Atomics.exchange(s, WRITE_LOCK, CONTENDED);
    }
  }

  private unlock(): void {
    const s = this.state;
    if (Atomics.sub(s, WRITE_LOCK, 1) !== LOCKED) {
      Atomics.store(s, WRITE_LOCK, UNLOCKED);
      Atomics.notify(s, WRITE_LOCK, 1);
    }
  }
}
