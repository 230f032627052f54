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
/** How long the main thread has to exit after the channel is lost, when there is no group to kill. */
export declare const LOST_EXIT_MS = 2000;
