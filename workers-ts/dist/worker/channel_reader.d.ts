/**
 * The main thread's side of the channel reader thread (`reader_thread.ts`).
 *
 * The reader thread owns reading the channel: it splits it into lines,
 * answers `heartbeat` itself and hands every other line to the main thread,
 * in batches (one per read). So heartbeats are answered, and the watchdog
 * sees the supervisor go, even while a tool blocks the main event loop with
 * synchronous work.
 */
import { Worker as Thread } from "node:worker_threads";
/** What the reader thread is started with (its `workerData`). */
export interface ReaderData {
    /** The descriptor to read the supervisor's lines from. */
    readonly inputFd: number;
    /** The descriptor to write heartbeat answers to. */
    readonly outputFd: number;
    readonly maxLineBytes: number;
    /** The worker's name in SDK notes. */
    readonly label: string;
    /** The state shared with the main thread (`shared_state.ts`). */
    readonly state: Int32Array;
    /** The worker's part of its children's tags (`process_tags.ts`), to kill them when the channel is lost. */
    readonly workerTag: string;
}
/** What the reader thread posts to the main thread. */
export type ReaderEvent = 
/** Whole lines from the supervisor other than heartbeats, in order, each ending in `\n`. */
{
    readonly lines: Uint8Array;
}
/** The channel is gone and this process leads no group: the main thread must exit. */
 | {
    readonly lost: string;
};
/** What the main thread does with what the reader thread tells it. */
export interface ReaderHandlers {
    /** Decode and dispatch these lines (each ends in `\n`). */
    readonly lines: (lines: Buffer) => void;
    /** Exit: the channel is gone and there is no process group to kill (the note is written). */
    readonly lost: (reason: string) => void;
    /** The reader thread failed (threw, or could not start). */
    readonly failed: (err: Error) => void;
}
/**
 * Start the reader thread on `data`. It runs until the process exits (so
 * the entry point ends the worker with `process.exit`).
 */
export declare function startReaderThread(data: ReaderData, handlers: ReaderHandlers): Thread;
