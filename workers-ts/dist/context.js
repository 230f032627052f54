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
import { LOG_LEVELS, toJsonText } from "./worker/protocol.js";
const MAX_LOG_CHARS = 1024 * 1024;
const SENT = Promise.resolve();
function finite(name, value) {
    if (typeof value !== "number") {
        throw new TypeError(`ctx.progress(): ${name} must be a number, not ${value === null ? "null" : typeof value}`);
    }
    if (!Number.isFinite(value))
        throw new RangeError(`ctx.progress(): ${name} must be finite, not ${value}`);
    return value;
}
export class CallContext {
    callId;
    tool;
    signal;
    emit;
    constructor(callId, tool, signal, emit) {
        this.callId = callId;
        this.tool = tool;
        this.signal = signal;
        this.emit = emit;
    }
    /**
     * A context for work done inside this call (a graph node run in-process
     * by a tool): the same call id and output, another name and signal.
     */
    derive(tool, signal) {
        return new CallContext(this.callId, tool, signal, this.emit);
    }
    get cancelled() {
        return this.signal.aborted;
    }
    progress(progress, total, message) {
        const msg = { type: "progress", id: this.callId, progress: finite("progress", progress) };
        if (total !== undefined && total !== null)
            msg["total"] = finite("total", total);
        if (message !== undefined && message !== null)
            msg["message"] = String(message);
        this.emit?.(msg);
        return SENT;
    }
    log(message, level = "info") {
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
        }
        else {
            const msg = { type: "log", level, message: text };
            if (this.callId !== undefined)
                msg["id"] = this.callId;
            this.emit(msg);
        }
        return SENT;
    }
    debug(message) {
        return this.log(message, "debug");
    }
    info(message) {
        return this.log(message, "info");
    }
    warning(message) {
        return this.log(message, "warning");
    }
    error(message) {
        return this.log(message, "error");
    }
    chunk(data) {
        let value;
        try {
            value = JSON.parse(toJsonText(data));
        }
        catch (err) {
            throw new TypeError(`ctx.chunk() needs a JSON value: ${err.message}`);
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
export function detachedContext(signal = new AbortController().signal) {
    return new CallContext(undefined, undefined, signal, undefined);
}
const scopes = new AsyncLocalStorage();
/** Run `fn` inside `scope`: it, its promises and callbacks see the scope. */
export function runInCall(scope, fn) {
    return scopes.run(scope, fn);
}
/** The scope of the call running now, if any. */
export function currentCall() {
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
export function currentContext() {
    return scopes.getStore()?.context;
}
