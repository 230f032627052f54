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
/** How many passes a sweep with SIGKILL makes at most while it still finds processes. */
export declare const SWEEP_PASSES = 5;
/** The pause between two such passes, in milliseconds. */
export declare const SWEEP_PAUSE_MS = 10;
/** The environment variable that carries the tag. */
export declare const CALL_TAG_ENV = "FLW_CALL_TAG";
/** This worker's part of every tag: random, so no two workers' tags are alike (not even with a reused pid). */
export declare const WORKER_TAG: string;
/** The tag of the processes call `id` starts (`undefined`: outside a call). */
export declare function callTag(id: number | undefined): string;
/** What a sweep looks for: one call's tag, or (`prefix`) every tag of a worker. */
export interface TagMatch {
    readonly tag: string;
    /** Match every tag that starts with `tag` (a worker's `<worker>.`), not just `tag` itself. */
    readonly prefix?: boolean;
}
/** Whether this system shows processes' environments in `/proc` (Linux). */
export declare const canSweep: boolean;
/**
 * Send each `signal` to every process (but this one) whose environment
 * carries a tag its `match` fits; one pass over `/proc` serves them all.
 * Returns how many processes each match found (zeros without `/proc`).
 */
export declare function signalTagged(requests: readonly {
    match: TagMatch;
    signal: NodeJS.Signals;
}[]): number[];
/**
 * SIGKILL every process that carries one of this worker's tags, whatever
 * call started it: what the worker does before it kills its own group.
 * Sweeps until a pass finds none (a process may fork while it is swept),
 * at most {@link SWEEP_PASSES} times, pausing in between. Blocks; works
 * from any thread.
 */
export declare function killAllTagged(workerTag?: string): void;
