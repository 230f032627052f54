/**
 * The worker: handshake, call dispatch, cancellation and the watchdog.
 *
 * A call is a `call` message (a tool) or a `node` message (one phase of a
 * graph node); they share one id space and everything else. Every call
 * runs as a promise on the event loop, inside its own call scope (see
 * `runInCall`), so calls are concurrent in both modes. Every call gets
 * exactly one terminal reply; progress, logs and chunks that come after it
 * are dropped. In `shared` mode, the child processes a call starts are
 * recorded, and killed when the call is cancelled, with the processes
 * under them that left their group (`children.ts`).
 *
 * The channel is read by a thread of its own (`channel_reader.ts`), which
 * answers heartbeats, so a tool that blocks this thread (a long synchronous
 * loop) is not taken for a dead worker. Both threads write lines through one
 * `FdWriter`-locked descriptor.
 *
 * The watchdog: when the channel reaches end-of-file or fails (the
 * supervisor is gone, perhaps killed with SIGKILL) the worker kills its own
 * process group with SIGKILL, which takes every process its tools started
 * with it, and the processes that carry its tags (`process_tags.ts`), which
 * takes most of those that left the group. SIGTERM does the same, but its
 * handler runs on the event loop: while a tool blocks it, SIGTERM waits,
 * and the supervisor's SIGKILL of the group comes first.
 */
import { type Channel } from "./channel.js";
import { type Graph } from "../graph/manifest.js";
import type { NamedTool } from "../tool.js";
export { note } from "./process_group.js";
/** How long `shutdown` waits for calls still in flight, in milliseconds. */
export declare const SHUTDOWN_GRACE_MS = 3000;
export type Mode = "isolated" | "shared";
/** What the supervisor tells the worker through its environment. */
export interface Settings {
    readonly mode: Mode;
    readonly maxLineBytes: number;
    readonly label: string;
}
/** Read `FLW_MODE`, `FLW_MAX_LINE_BYTES` and `FLW_WORKER`. */
export declare function settingsFromEnv(env: NodeJS.ProcessEnv, defaultLabel: string): Settings;
/**
 * The watchdog's action: end this worker and everything it started. The
 * processes that carry one of its tags get SIGKILL (`process_tags.ts`);
 * as a process-group leader the whole group gets SIGKILL too; otherwise
 * only this process exits, with status 1.
 */
export declare function killProcessGroup(label: string, reason: string): never;
/** Serves tools over one channel until `shutdown` or the channel ends. */
export declare class Worker {
    private readonly channel;
    readonly settings: Settings;
    private readonly state;
    private readonly writer;
    private tools;
    private nodes;
    private readonly calls;
    private pending;
    private welcomed;
    private stopping;
    private stopped;
    private answer;
    private onAnswer;
    private onStopped;
    private onIdle;
    constructor(channel: Channel, settings: Settings);
    /** Start the reader thread (reading and guarding the channel); messages wait until `serve`. */
    start(): void;
    /**
     * Make SIGTERM kill the process group; report stray errors instead of dying
     * of them; write the replies still queued if a tool calls `process.exit`.
     */
    installHandlers(): void;
    private channelLost;
    /** Send `hello`, serve calls until `shutdown`; resolve to the exit status. */
    serve(tools: readonly NamedTool[], graph?: Graph): Promise<number>;
    /** Stop guarding the channel and write the lines still queued: the worker is about to exit. */
    close(): Promise<void>;
    private hello;
    /** Whole lines from the reader thread (each ending in `\n`): decode and dispatch them. */
    private received;
    private dispatch;
    /** Whether a call with this id may start now (a note says why not). */
    private admissible;
    private newCall;
    private accept;
    private acceptNode;
    private cancel;
    /** Run a call's body in its scope and send its one terminal reply. */
    private run;
    private success;
    private failure;
    private emit;
    private finish;
    /** Write a terminal reply; one that cannot be sent becomes a `tool_error`. */
    private writeReply;
}
