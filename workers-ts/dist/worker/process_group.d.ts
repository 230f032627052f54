/**
 * SDK notes on stderr and the end of the worker's process group: what the
 * watchdog does on either thread when the supervisor is gone.
 */
/** Write one SDK message to stderr (`flw[label]: text`), never failing. */
export declare function note(label: string, text: string): void;
/** Whether this process leads a process group (the supervisor starts workers with `setsid`). */
export declare function isGroupLeader(): boolean;
/**
 * SIGKILL this process's group, which takes every process its tools
 * started with it, when it leads one. Returns `false` (and does nothing)
 * when it does not. Works from any thread.
 */
export declare function killOwnGroup(): boolean;
