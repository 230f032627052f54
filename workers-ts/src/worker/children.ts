/**
 * Which child processes a call started, so that cancelling the call stops
 * them (`shared` mode), and the tag every child process carries.
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
 * A process can leave its group: a child's own child that calls `setsid`,
 * or a daemon that double-forks, is out of reach of a group kill. So every
 * child process also gets the call's tag in its environment
 * (`process_tags.ts`), which its descendants inherit. On Linux, a cancelled
 * call that started any child also sweeps `/proc` for processes with its
 * tag, with SIGTERM at the cancel and SIGKILL after the grace period, which
 * takes the ones that left the group unless they dropped the tag from
 * their environment. The tag is set in both modes: when the worker ends
 * (watchdog, SIGTERM, exit) it SIGKILLs every process with one of its tags.
 *
 * The record follows the call through its promises and callbacks in the
 * call's `AsyncLocalStorage` scope (`runInCall` in `context.ts`). Children
 * are seen where every way of starting one goes through:
 * `ChildProcess.prototype.spawn`, which `spawn`, `exec`,
 * `execFile`, `fork` and their promisified forms all call (so ESM named
 * imports of `node:child_process` see it too, with no export replaced).
 * The tag goes into the environment Node has built for the child there
 * (`envPairs`, where Node itself adds `NODE_CHANNEL_FD` for `fork`).
 * The synchronous forms (`spawnSync`, `execSync`) block the event loop
 * until their child ends, so there is nothing to kill by the time a cancel
 * is read; they get no tag, so a background process they leave behind
 * (`execSync("server &")`) is reached only through the worker's group.
 *
 * A child is signalled only while Node has not reaped it (its `exitCode`
 * and `signalCode` are still `null`), so its pid cannot have been reused.
 */

import { ChildProcess, type SpawnOptions } from "node:child_process";
import { currentCall } from "../context.js";
import { CALL_TAG_ENV, SWEEP_PASSES, callTag, canSweep, killAllTagged, signalTagged } from "./process_tags.js";

/** How long a cancelled call's children get between SIGTERM and SIGKILL, in milliseconds. */
export const CHILD_KILL_GRACE_MS = 500;

/** The pause between two SIGKILL sweeps of a call's tag while they still find processes. */
const RESWEEP_MS = 20;

interface Started {
  readonly child: ChildProcess;
  /** Started with `detached: true`: it leads a process group of its own. */
  readonly leadsGroup: boolean;
}

function running(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

function signal(started: Started, sig: NodeJS.Signals): void {
  const { child, leadsGroup } = started;
  if (!running(child)) return;
  try {
    process.kill(leadsGroup ? -(child.pid as number) : (child.pid as number), sig);
  } catch {
    // gone meanwhile
  }
}

function terminate(started: Started): void {
  if (!running(started.child)) return;
  signal(started, "SIGTERM");
  setTimeout(() => signal(started, "SIGKILL"), CHILD_KILL_GRACE_MS).unref();
}

interface Sweep {
  readonly tag: string;
  readonly signal: NodeJS.Signals;
  /** Passes left while passes still find processes. */
  readonly passes: number;
}

let queued: Sweep[] = [];

/** Sweep for `tag` soon: the sweeps asked for in one turn of the event loop share one pass over `/proc`. */
function sweep(tag: string, signal: NodeJS.Signals, passes = 1): void {
  if (!canSweep) return;
  queued.push({ tag, signal, passes });
  if (queued.length === 1) setImmediate(sweepQueued);
}

function sweepQueued(): void {
  const batch = queued;
  queued = [];
  const found = signalTagged(batch.map(({ tag, signal }) => ({ match: { tag }, signal })));
  batch.forEach((s, i) => {
    if ((found[i] as number) > 0 && s.passes > 1) {
      setTimeout(() => sweep(s.tag, s.signal, s.passes - 1), RESWEEP_MS).unref();
    }
  });
}

/** SIGTERM the processes with `tag` now, SIGKILL them after the grace period. */
function sweepCall(tag: string): void {
  sweep(tag, "SIGTERM");
  setTimeout(() => sweep(tag, "SIGKILL", SWEEP_PASSES), CHILD_KILL_GRACE_MS).unref();
}

/** The child processes of one call. */
export class CallChildren {
  private started: Started[] = [];
  /** It started a child: a cancel must sweep for its tag. */
  private spawned = false;
  private cancelled = false;
  private closed = false;

  /** `tag`: the tag in its children's environment ({@link callTag} of its id). */
  constructor(readonly tag: string) {}

  /** Record a child the call started (killed at once if the call was cancelled, even after it ended). */
  add(child: ChildProcess, leadsGroup: boolean): void {
    const started: Started = { child, leadsGroup };
    if (this.cancelled) {
      terminate(started);
      sweepCall(this.tag);
      return;
    }
    if (this.closed) return;
    this.spawned = true;
    this.started.push(started);
    child.once("exit", () => {
      const i = this.started.indexOf(started);
      if (i >= 0) this.started.splice(i, 1);
    });
  }

  /** The call was cancelled: stop every child it started that still runs. */
  cancel(): void {
    if (this.closed || this.cancelled) return;
    this.cancelled = true;
    for (const started of this.started) terminate(started);
    this.started = [];
    if (this.spawned) sweepCall(this.tag);
  }

  /** The call ended: record nothing more (children of a call that was not cancelled live on, until the worker ends). */
  close(): void {
    this.closed = true;
    this.started = [];
  }
}

let installed = false;
let tagged = false;

/** What `ChildProcess.prototype.spawn` gets from `spawn()` (Node's internal, normalized options). */
interface NormalizedSpawnOptions extends SpawnOptions {
  /** The child's environment as `NAME=value` strings. */
  envPairs?: string[];
}

/**
 * Tag every child process started from now on and record the children
 * started inside calls that have a record (shared mode), once; cheap to
 * repeat. When this process exits, it SIGKILLs every process that carries
 * one of its tags (if it started any child).
 */
export function installChildTracking(): void {
  if (installed) return;
  installed = true;
  const proto = ChildProcess.prototype as unknown as { spawn: (options: NormalizedSpawnOptions) => unknown };
  const original = proto.spawn;
  const prefix = `${CALL_TAG_ENV}=`;
  proto.spawn = function spawn(this: ChildProcess, options: NormalizedSpawnOptions): unknown {
    const scope = currentCall();
    if (options !== null && typeof options === "object" && Array.isArray(options.envPairs)) {
      const pairs = options.envPairs.filter((pair) => typeof pair !== "string" || !pair.startsWith(prefix));
      pairs.push(prefix + callTag(scope?.context.callId));
      options.envPairs = pairs;
      tagged = true;
    }
    const result = original.call(this, options);
    const children = scope?.children;
    if (children !== undefined && this.pid !== undefined) children.add(this, options?.detached === true);
    return result;
  };
  process.on("exit", killTaggedProcesses);
}

/** SIGKILL every process that carries one of this worker's tags, if it ever started a child (blocks for the sweep). */
export function killTaggedProcesses(): void {
  if (tagged) killAllTagged();
}
