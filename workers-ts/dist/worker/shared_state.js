/**
 * What the main thread and the channel reader thread share: a few `Int32`
 * slots on one `SharedArrayBuffer`, used with `Atomics`.
 */
/** The lock that keeps lines written by the two threads whole (see `FdWriter`). */
export const WRITE_LOCK = 0;
/** 1 once `shutdown` came or the worker is exiting: the end of the channel is then expected. */
export const STOPPING = 1;
const SLOTS = 2;
/** A fresh shared state: every slot 0 (unlocked, not stopping). */
export function newSharedState() {
    return new Int32Array(new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT));
}
