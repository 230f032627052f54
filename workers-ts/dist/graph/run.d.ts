/**
 * Running graph nodes: one phase for a `node` message, or a whole graph in
 * this process (`run()`).
 *
 * A phase runs on the store the message carries and reports what it did
 * to it as `changes` by top-level key: each value's JSON text before the
 * phase is compared with its text after (PROTOCOL.md, "Graph nodes").
 *
 * The in-process runner follows GRAPHS.md: one visit per node (counted
 * against `maxSteps`), `retries` with doubling `backoff` and a `timeout`
 * per attempt, the fallback after the last failure, batch items at once
 * (`limit` in flight), parallel branches on copies of the store merged in
 * listed order, batch flows once per parameter set (overlapping for
 * `AsyncParallelBatchFlow`); the graph-run vectors
 * (protocol/vectors/graph_runs.json) hold it to the supervisor's runner.
 * `onEvent` gets the supervisor's node events (its paths where nodes are
 * named as `flw run` names them); a hook that throws is dropped.
 *
 * Each phase works on a copy of the store (plain objects and arrays are
 * copied; other values, such as class instances, are shared), and what it
 * changed (by top-level key) goes into the caller's store when it returns:
 * a failed or timed-out attempt's changes are dropped, even those it makes
 * after it was abandoned.
 */
import { type Context } from "../context.js";
import { type AnyNode, type Params, type PhaseNode, type RunOptions, type Shared } from "./dsl.js";
import { type NodePhase } from "../worker/protocol.js";
/** Steps a run may take unless its flow says otherwise (GRAPHS.md). */
export declare const DEFAULT_MAX_STEPS = 10000;
/** The first retry's wait unless a node says otherwise, and the cap of later ones, in milliseconds. */
export declare const DEFAULT_BACKOFF_MS = 100;
export declare const MAX_BACKOFF_MS = 30000;
/** The outcome object of PROTOCOL.md: each member left out when it has no value. */
export interface Outcome {
    action?: string;
    value?: unknown;
    changes?: {
        set?: Record<string, unknown>;
        delete?: string[];
    };
}
/** The part of a `node` message a phase reads. */
export interface PhaseRequest {
    readonly phase: NodePhase;
    readonly shared?: Record<string, unknown>;
    readonly item?: unknown;
    readonly prep?: unknown;
    readonly results?: unknown[];
    readonly error?: {
        kind: string;
        message: string;
    };
    readonly params?: Params;
}
/**
 * The phases a node answers: `run` (and `fallback`); for a batch node
 * `prep`, `exec`, `post` (and `fallback`); for a batch flow `prep`, `post`.
 */
export declare function phasesOf(node: PhaseNode): NodePhase[];
/**
 * Run one phase of `node` (named `name`) for a `node` message and return
 * its outcome. Throws what the node threw, or a `TypeError` naming the node
 * for a return value the protocol cannot carry.
 */
export declare function runPhase(node: PhaseNode, name: string, request: PhaseRequest, ctx: Context): Promise<Outcome>;
/** `run()` of any node: the graph under it, in this process, on `shared`. */
export declare function runGraph(root: AnyNode, shared: Shared, options: RunOptions): Promise<string | undefined>;
