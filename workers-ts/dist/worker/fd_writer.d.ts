/**
 * Writes whole lines to the channel's descriptor from two threads: the main
 * thread (replies, progress, logs) and the reader thread (heartbeats). Each
 * line goes out with `writeSync` while its writer holds a lock in shared
 * memory, so lines never interleave; a full socket buffer (`EAGAIN`) is
 * waited out in 1 ms naps, still holding the lock.
 */
/** A line writer on one descriptor, safe to use from several threads that share `state`. */
export declare class FdWriter {
    readonly fd: number;
    private readonly state;
    private readonly onError;
    private broken;
    private readonly napCell;
    /**
     * @param fd the descriptor to write to
     * @param state the shared state (see `shared_state.ts`) holding the write lock
     * @param onError told once about the first write that fails; later writes are dropped
     */
    constructor(fd: number, state: Int32Array, onError: (err: Error) => void);
    /** Write `data` (one or more whole lines) in full, or report the failure to `onError`. */
    write(data: Uint8Array): void;
    private lock;
    private unlock;
}
