/**
 * `Context`: what a running tool uses to report progress, logs and chunks,
 * and to learn that its call was cancelled.
 *
 * The methods send their message at once and return a promise that is
 * already resolved, so `await ctx.progress(...)` and a bare
 * `ctx.progress(...)` both work. After the call's terminal reply they do
 * nothing. A context made with {@link detachedContext} (a unit test, a
 * script run by hand) is not attached to a worker: progress and chunks go
 * nowhere and logs go to stderr.
 */
import type { CallChildren } from "./worker/children.js";
import { type LogLevel } from "./worker/protocol.js";
/** The running call, as seen by the tool (the second argument of `run`). */
export interface Context {
    /** The id of the call (`undefined` outside a worker). */
    readonly callId: number | undefined;
    /** The name of the tool being called (`undefined` outside a worker). */
    readonly tool: string | undefined;
    /** Aborted when the caller cancels the call; pass it to `fetch`, timers, child processes. */
    readonly signal: AbortSignal;
    /** Whether the caller asked to stop this call (`signal.aborted`). */
    readonly cancelled: boolean;
    /** Report progress: `progress` out of `total` (when known). */
    progress(progress: number, total?: number, message?: string): Promise<void>;
    /** Send a log line for this call; `level` is debug, info (default), warning or error. */
    log(message: unknown, level?: LogLevel): Promise<void>;
    debug(message: unknown): Promise<void>;
    info(message: unknown): Promise<void>;
    warning(message: unknown): Promise<void>;
    error(message: unknown): Promise<void>;
    /** Stream a piece of output (usually a string) before the result. */
    chunk(data: unknown): Promise<void>;
}
/** Sends one message of the call, or drops it once the call has ended. */
export type Emit = (message: Record<string, unknown>) => void;
export declare class CallContext implements Context {
    readonly callId: number | undefined;
    readonly tool: string | undefined;
    readonly signal: AbortSignal;
    private readonly emit;
    constructor(callId: number | undefined, tool: string | undefined, signal: AbortSignal, emit: Emit | undefined);
    /**
     * A context for work done inside this call (a graph node run in-process
     * by a tool): the same call id and output, another name and signal.
     */
    derive(tool: string | undefined, signal: AbortSignal): CallContext;
    get cancelled(): boolean;
    progress(progress: number, total?: number, message?: string): Promise<void>;
    log(message: unknown, level?: LogLevel): Promise<void>;
    debug(message: unknown): Promise<void>;
    info(message: unknown): Promise<void>;
    warning(message: unknown): Promise<void>;
    error(message: unknown): Promise<void>;
    chunk(data: unknown): Promise<void>;
}
/**
 * A context attached to no worker, to call a tool's `run` by hand:
 * `await echo.run({ text: "hi" }, detachedContext())`. Pass a signal to
 * test cancellation.
 */
export declare function detachedContext(signal?: AbortSignal): Context;
/** What code running inside a call can reach: its context and, in shared mode, the record of its children. */
export interface CallScope {
    readonly context: Context;
    readonly children: CallChildren | undefined;
}
/** Run `fn` inside `scope`: it, its promises and callbacks see the scope. */
export declare function runInCall<T>(scope: CallScope, fn: () => T): T;
/** The scope of the call running now, if any. */
export declare function currentCall(): CallScope | undefined;
/**
 * The context of the tool call or graph node running now, or `undefined`
 * outside one. Class nodes use it in `prep`, `exec` and `post`, which have
 * no context parameter:
 *
 * @example
 * ```ts
 * class Fetch extends Node {
 *   override async exec(url: string) {
 *     const ctx = currentContext();
 *     await ctx?.progress(1, 2, "fetching");
 *     return (await fetch(url, { signal: ctx?.signal })).text();
 *   }
 * }
 * ```
 */
export declare function currentContext(): Context | undefined;
