/**
 * Tags in the environment of the processes a worker's calls start, and the
 * sweep that finds them again, so that a cancel reaches the processes that
 * left their parent's process group (`setsid`, a daemon's double fork).
 *
 * Every child process a worker starts through `node:child_process` gets
 * `FLW_CALL_TAG=<worker>.<call>` in its environment: `<worker>` is random
 * per worker process, `<call>` the id of the call that started it (`0`
 * outside a call). Environments are inherited, so the child's own children
 * carry the tag too, wherever they move: another session, another process
 * group, another parent after a double fork. On Linux `/proc/PID/environ`
 * shows every process's environment to its owner, so a sweep of `/proc`
 * finds every process of this user that still carries a tag, and signals
 * it. (Jenkins finds the processes of a build the same way.)
 *
 * What a sweep cannot find: a process started with an environment of its
 * own that drops the tag (`env -i`, a shell script that rebuilds its
 * environment, many daemons), a process of another user (`sudo`, a
 * set-user-ID program), and anything on a system without `/proc`. Those
 * are reached only through the process group, and the supervisor's own
 * containment.
 *
 * A process is signalled right after its environment was read with the
 * tag in it, so a pid reused in between is the only risk, as with any kill
 * by pid.
 */

import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync, readdirSync } from "node:fs";

/** How many passes a sweep with SIGKILL makes at most while it still finds processes. */
export const SWEEP_PASSES = 5;

/** The pause between two such passes, in milliseconds. */
export const SWEEP_PAUSE_MS = 10;

/** The environment variable that carries the tag. */
export const CALL_TAG_ENV = "FLW_CALL_TAG";

/** This worker's part of every tag: random, so no two workers' tags are alike (not even with a reused pid). */
export const WORKER_TAG = randomBytes(8).toString("hex");

/** The tag of the processes call `id` starts (`undefined`: outside a call). */
export function callTag(id: number | undefined): string {
  return `${WORKER_TAG}.${id ?? 0}`;
}

/** What a sweep looks for: one call's tag, or (`prefix`) every tag of a worker. */
export interface TagMatch {
  readonly tag: string;
  /** Match every tag that starts with `tag` (a worker's `<worker>.`), not just `tag` itself. */
  readonly prefix?: boolean;
}

const ENTRY = Buffer.from(`${CALL_TAG_ENV}=`);

/** Which of `needles` the tag in an environment block (`NAME=value\0...`) starts with; -1 for none. */
function carries(environ: Buffer, needles: readonly Buffer[]): number {
  for (let at = environ.indexOf(ENTRY); at >= 0; at = environ.indexOf(ENTRY, at + 1)) {
    if (at > 0 && environ[at - 1] !== 0) continue; // the text inside another variable's value
    const value = at + ENTRY.length;
    for (let i = 0; i < needles.length; i++) {
      const needle = needles[i] as Buffer;
      const end = value + needle.length;
      if (end <= environ.length && environ.compare(needle, 0, needle.length, value, end) === 0) return i;
    }
  }
  return -1;
}

let buffer = Buffer.allocUnsafe(64 * 1024);

/**
 * The environment block of process `pid`, or `undefined` when it cannot be
 * read. Valid until the next call: it is read into one reused buffer
 * (open, read, close: about half the time `readFileSync` takes, which a
 * sweep of a few hundred processes notices).
 */
function readEnviron(pid: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/environ`, "r");
  } catch {
    return undefined;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const bigger = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(bigger);
        buffer = bigger;
      }
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) return buffer.subarray(0, length);
      length += n;
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Whether this system shows processes' environments in `/proc` (Linux). */
export const canSweep: boolean = (() => {
  try {
    return readFileSync(`/proc/${process.pid}/environ`).length >= 0;
  } catch {
    return false;
  }
})();

/**
 * Send each `signal` to every process (but this one) whose environment
 * carries a tag its `match` fits; one pass over `/proc` serves them all.
 * Returns how many processes each match found (zeros without `/proc`).
 */
export function signalTagged(requests: readonly { match: TagMatch; signal: NodeJS.Signals }[]): number[] {
  const found = requests.map(() => 0);
  if (!canSweep || requests.length === 0) return found;
  const needles = requests.map(({ match }) => Buffer.from(match.prefix === true ? match.tag : `${match.tag}\0`));
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return found;
  }
  for (const entry of entries) {
    const code = entry.charCodeAt(0);
    if (code < 48 || code > 57) continue; // not a pid
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const environ = readEnviron(entry);
    if (environ === undefined) continue; // gone, or another user's
    const which = carries(environ, needles);
    if (which < 0) continue;
    try {
      process.kill(pid, (requests[which] as { signal: NodeJS.Signals }).signal);
      found[which] = (found[which] as number) + 1;
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/**
 * SIGKILL every process that carries one of this worker's tags, whatever
 * call started it: what the worker does before it kills its own group.
 * Sweeps until a pass finds none (a process may fork while it is swept),
 * at most {@link SWEEP_PASSES} times, pausing in between. Blocks; works
 * from any thread.
 */
export function killAllTagged(workerTag: string = WORKER_TAG): void {
  const match = { tag: `${workerTag}.`, prefix: true };
  for (let pass = 0; pass < SWEEP_PASSES; pass++) {
    if (pass > 0) Atomics.wait(PAUSE, 0, 0, SWEEP_PAUSE_MS);
    const [found] = signalTagged([{ match, signal: "SIGKILL" }]);
    if (found === 0) return;
  }
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));
