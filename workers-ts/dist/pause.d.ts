/** A wait that a signal can cut short, shared by the graph runner's retries and `llm`'s. */
/** Resolve after `ms`, or reject with the signal's reason when it aborts first. */
export declare function pause(ms: number, signal: AbortSignal | undefined): Promise<void>;
