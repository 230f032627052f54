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

import { AsyncLocalStorage } from "node:async_hooks";
import type { CallChildren } from "./worker/children.js";
import { LOG_LEVELS, type LogLevel, toJsonText } from "./worker/protocol.js";

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

const MAX_LOG_CHARS = 1024 * 1024;
const SENT: Promise<void> = Promise.resolve();

function finite(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`ctx.progress(): ${name} must be a number, not ${value === null ? "null" : typeof value}`);
  }
  if (!Number.isFinite(value)) throw new RangeError(`ctx.progress(): ${name} must be finite, not ${value}`);
  return value;
}

export class CallContext implements Context {
  constructor(
    readonly callId: number | undefined,
    readonly tool: string | undefined,
    readonly signal: AbortSignal,
    private readonly emit: Emit | undefined,
  ) {}

  /**
   * A context for work done inside this call (a graph node run in-process
   * by a tool): the same call id and output, another name and signal.
   */
  derive(tool: string | undefined, signal: AbortSignal): CallContext {
    return new CallContext(this.callId, tool, signal, this.emit);
  }

  get cancelled(): boolean {
    return this.signal.aborted;
  }

  progress(progress: number, total?: number, message?: string): Promise<void> {
    const msg: Record<string, unknown> = { type: "progress", id: this.callId, progress: finite("progress", progress) };
    if (total !== undefined && total !== null) msg["total"] = finite("total", total);
    if (message !== undefined && message !== null) msg["message"] = String(message);
    this.emit?.(msg);
    return SENT;
  }

  log(message: unknown, level: LogLevel = "info"): Promise<void> {
    if (!LOG_LEVELS.includes(level)) {
      throw new RangeError(`ctx.log(): level must be one of ${LOG_LEVELS.join(", ")}, not ${JSON.stringify(level)}`);
    }
    let text = String(message);
    if (text.length > MAX_LOG_CHARS) {
      const cut = text.length - MAX_LOG_CHARS;
      text = `${text.slice(0, MAX_LOG_CHARS)}... [${cut} character${cut === 1 ? "" : "s"} cut]`;
    }
    if (this.emit === undefined) {
      process.stderr.write(`flw: ${level}: ${text}\n`);
    } else {
      const msg: Record<string, unknown> = { type: "log", level, message: text };
      if (this.callId !== undefined) msg["id"] = this.callId;
      this.emit(msg);
    }
    return SENT;
  }

  debug(message: unknown): Promise<void> {
    return this.log(message, "debug");
  }

  info(message: unknown): Promise<void> {
    return this.log(message, "info");
  }

  warning(message: unknown): Promise<void> {
    return this.log(message, "warning");
  }

  error(message: unknown): Promise<void> {
    return this.log(message, "error");
  }

  chunk(data: unknown): Promise<void> {
    let value: unknown;
    try {
      value = JSON.parse(toJsonText(data));
    } catch (err) {
      throw new TypeError(`ctx.chunk() needs a JSON value: ${(err as Error).message}`);
    }
    this.emit?.({ type: "chunk", id: this.callId, data: value });
    return SENT;
  }
}

/**
 * A context attached to no worker, to call a tool's `run` by hand:
 * `await echo.run({ text: "hi" }, detachedContext())`. Pass a signal to
 * test cancellation.
 */
export function detachedContext(signal: AbortSignal = new AbortController().signal): Context {
  return new CallContext(undefined, undefined, signal, undefined);
}

/** What code running inside a call can reach: its context and, in shared mode, the record of its children. */
export interface CallScope {
  readonly context: Context;
  readonly children: CallChildren | undefined;
}

const scopes = new AsyncLocalStorage<CallScope>();

/** Run `fn` inside `scope`: it, its promises and callbacks see the scope. */
export function runInCall<T>(scope: CallScope, fn: () => T): T {
  return scopes.run(scope, fn);
}

/** The scope of the call running now, if any. */
export function currentCall(): CallScope | undefined {
  return scopes.getStore();
}

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
export function currentContext(): Context | undefined {
  return scopes.getStore()?.context;
}
