/**
 * Which child processes a call started, so that cancelling the call stops
 * them (`shared` mode).
 *
 * In `isolated` mode a cancel kills the worker's whole process group, which
 * takes every process its tool started. In `shared` mode the group also
 * hosts other calls, so a call that stops on request keeps its process
 * group, and what it started would live on. So, in shared mode, the SDK
 * records every child process started while a call runs and, when the call
 * is cancelled, sends each one still running SIGTERM, then SIGKILL after
 * {@link CHILD_KILL_GRACE_MS}: its process group when it was started with
 * `detached: true` (it leads one), else the process itself. A child the
 * call starts after the cancel is killed at once.
 *
 * The record follows the call through its promises and callbacks in the
 * call's `AsyncLocalStorage` scope (`runInCall` in `context.ts`). Children
 * are seen where every way of starting one goes through:
 * `ChildProcess.prototype.spawn`, which `spawn`, `exec`,
 * `execFile`, `fork` and their promisified forms all call (so ESM named
 * imports of `node:child_process` see it too, with no export replaced).
 * The synchronous forms (`spawnSync`, `execSync`) block the event loop
 * until their child ends, so there is nothing to kill by the time a cancel
 * is read.
 *
 * A child is signalled only while Node has not reaped it (its `exitCode`
 * and `signalCode` are still `null`), so its pid cannot have been reused.
 */
import { ChildProcess } from "node:child_process";
import { currentCall } from "./context.js";
/** How long a cancelled call's children get between SIGTERM and SIGKILL, in milliseconds. */
export const CHILD_KILL_GRACE_MS = 500;
function running(child) {
    return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}
function signal(started, sig) {
    const { child, leadsGroup } = started;
    if (!running(child))
        return;
    try {
        process.kill(leadsGroup ? -child.pid : child.pid, sig);
    }
    catch {
        // gone meanwhile
    }
}
function terminate(started) {
    if (!running(started.child))
        return;
    signal(started, "SIGTERM");
    setTimeout(() => signal(started, "SIGKILL"), CHILD_KILL_GRACE_MS).unref();
}
/** The child processes of one call. */
export class CallChildren {
    started = [];
    cancelled = false;
    closed = false;
    /** Record a child the call started (killed at once if the call was cancelled). */
    add(child, leadsGroup) {
        if (this.closed)
            return;
        const started = { child, leadsGroup };
        if (this.cancelled) {
            terminate(started);
            return;
        }
        this.started.push(started);
        child.once("exit", () => {
            const i = this.started.indexOf(started);
            if (i >= 0)
                this.started.splice(i, 1);
        });
    }
    /** The call was cancelled: stop every child it started that still runs. */
    cancel() {
        if (this.closed || this.cancelled)
            return;
        this.cancelled = true;
        for (const started of this.started)
            terminate(started);
        this.started = [];
    }
    /** The call ended: record nothing more (children of a call that was not cancelled live on). */
    close() {
        this.closed = true;
        this.started = [];
    }
}
let installed = false;
/** Record the children started inside calls from now on (once; cheap to repeat). */
export function installChildTracking() {
    if (installed)
        return;
    installed = true;
    const proto = ChildProcess.prototype;
    const original = proto.spawn;
    proto.spawn = function spawn(options) {
        const result = original.call(this, options);
        const children = currentCall()?.children;
        if (children !== undefined && this.pid !== undefined)
            children.add(this, options?.detached === true);
        return result;
    };
}
