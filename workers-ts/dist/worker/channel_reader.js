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
/**
 * Start the reader thread on `data`. It runs until the process exits (so
 * the entry point ends the worker with `process.exit`).
 */
export function startReaderThread(data, handlers) {
    const thread = new Thread(new URL("./reader_thread.js", import.meta.url), {
        workerData: data,
        execArgv: [], // no --import of a TypeScript loader in this thread: it runs plain JavaScript
        stdin: false,
    });
    thread.on("message", (event) => {
        if ("lines" in event)
            handlers.lines(Buffer.from(event.lines.buffer, event.lines.byteOffset, event.lines.byteLength));
        else
            handlers.lost(event.lost);
    });
    thread.on("error", (err) => handlers.failed(err));
    return thread;
}
