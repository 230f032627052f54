/**
 * SDK notes on stderr and the end of the worker's process group: what the
 * watchdog does on either thread when the supervisor is gone.
 */
import { writeSync } from "node:fs";
/** Write one SDK message to stderr (`flw[label]: text`), never failing. */
export function note(label, text) {
    try {
        writeSync(2, `flw[${label}]: ${text}\n`);
    }
    catch {
        // stderr is gone: nothing to tell anyone
    }
}
/** Whether this process leads a process group (the supervisor starts workers with `setsid`). */
export function isGroupLeader() {
    try {
        process.kill(-process.pid, 0); // a group with our pid as its id can only be ours
        return true;
    }
    catch {
        return false;
    }
}
/**
 * SIGKILL this process's group, which takes every process its tools
 * started with it, when it leads one. Returns `false` (and does nothing)
 * when it does not. Works from any thread.
 */
export function killOwnGroup() {
    if (!isGroupLeader())
        return false;
    try {
        process.kill(-process.pid, "SIGKILL");
        return true;
    }
    catch {
        return false;
    }
}
