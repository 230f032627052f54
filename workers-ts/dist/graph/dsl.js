/**
 * The graph DSL: nodes, flows and parallel fan-outs, PocketFlow's model.
 *
 * A node reads and changes the shared store (a JSON object) and returns an
 * action; edges labelled by actions lead to the next node. Function nodes
 * (`node(fn)`) do it in one function; class nodes (`extends Node`) split it
 * into `prep`, `exec` (retried in-process, with `execFallback`) and `post`;
 * a `BatchNode` runs `exec` once per item. `flow()` wires nodes into a
 * graph that is itself a node; `parallel()` runs branches on copies of the
 * store and merges them; a `BatchFlow` runs its graph once per parameter
 * set, its nodes reading the set in `this.params` (PocketFlow's batch flows).
 *
 * The worker announces the nodes and the flows a script exports
 * (`manifest.ts`) and runs one phase of a node per `node` message;
 * `run()` on any of these objects runs it in this process instead
 * (`run.ts`), with the semantics of GRAPHS.md.
 *
 * @example
 * ```ts
 * import { flow, node } from "flw-worker";
 *
 * export const decide = node((s) => ((s.notes?.length ?? 0) < 2 ? "search" : "answer"));
 * export const search = node((s) => { (s.notes ??= []).push(`note ${s.notes.length}`); });
 * export const answer = node((s) => { s.answer = s.notes.join(" / "); });
 * decide.on("search", search);
 * decide.on("answer", answer);
 * search.next(decide);
 * export const agent = flow({ start: decide });
 * ```
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { errorText } from "../error_text.js";
import { runGraph } from "./run.js";
import { isValidToolName } from "../worker/protocol.js";
/**
 * Why a node failed, as a fallback gets it and as `run()` throws it:
 * `kind` is an error kind of PROTOCOL.md (`tool_error`, `timeout`, ...) or
 * `max_steps`; the original error, when there is one, is the `cause`.
 */
export class NodeError extends Error {
    kind;
    constructor(kind, message, options) {
        super(message, options);
        this.name = "NodeError";
        this.kind = kind;
    }
}
const INT_OPTIONS = {
    retries: 0,
    backoff: 0,
    timeout: 1,
    limit: 1,
    maxRetries: 1,
    wait: 0,
    maxSteps: 1,
    deadline: 1,
};
/** Check the integer options that are set; throw a `RangeError` naming the bad one. */
function checkOptions(what, options) {
    for (const [key, low] of Object.entries(INT_OPTIONS)) {
        const value = options[key];
        if (value === undefined)
            continue;
        if (typeof value !== "number" || !Number.isSafeInteger(value) || value < low) {
            throw new RangeError(`${what}: ${key} must be an integer of ${low} or more, got ${String(value)}`);
        }
    }
}
function checkName(what, name) {
    if (name === undefined)
        return undefined;
    if (typeof name !== "string" || !isValidToolName(name)) {
        throw new TypeError(`${what}: name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(name)}`);
    }
    return name;
}
function entryOptions(options) {
    const out = {};
    if (options.retries !== undefined)
        out.retries = options.retries;
    if (options.backoff !== undefined)
        out.backoff = options.backoff;
    if (options.timeout !== undefined)
        out.timeout = options.timeout;
    if (options.limit !== undefined)
        out.limit = options.limit;
    return Object.freeze(out);
}
/** The parameters of the phase running now, and the node they are for (see {@link GraphNode.params}). */
export const paramsScope = new AsyncLocalStorage();
/** What `setParams` set on each node. */
const ownParams = new WeakMap();
/** What `setParams` set on `node` (`{}` if nothing), whatever phase runs now. */
export function ownParamsOf(node) {
    return ownParams.get(node) ?? {};
}
/** What every node, flow and parallel fan-out has: a name, successors, `run()`. */
export class GraphNode {
    /** The name given with the `name` option; else the worker names it by its export, function or class name. */
    name;
    /** What the node does, for people and models (the manifest's `description`). */
    description;
    /** The entry options of this node in a flow document (`retries`, `backoff`, `timeout`, `limit`). */
    options;
    /** The node each action leads to. */
    successors = new Map();
    constructor(what, options) {
        checkOptions(what, options);
        this.name = checkName(what, options.name);
        const description = options.description ?? "";
        if (typeof description !== "string")
            throw new TypeError(`${what}: description must be a string`);
        this.description = description;
        this.options = entryOptions(options);
    }
    /**
     * PocketFlow's `params`. In a phase of this node: the parameters of the
     * batch flows it runs in (for a batch flow's own `prep` and `post`, what
     * `setParams` set with those added over it); elsewhere what `setParams`
     * set (`{}` by default). A run of this node as the top one starts with
     * its `setParams` parameters.
     */
    get params() {
        const current = paramsScope.getStore();
        if (current !== undefined && current.node === this)
            return current.params;
        let own = ownParams.get(this);
        if (own === undefined)
            ownParams.set(this, (own = {}));
        return own;
    }
    /** Set `params` outside a run (PocketFlow's `set_params`). */
    setParams(params) {
        if (typeof params !== "object" || params === null || Array.isArray(params)) {
            throw new TypeError(`setParams(): params must be an object, got ${Array.isArray(params) ? "an array" : String(params)}`);
        }
        ownParams.set(this, params);
    }
    /**
     * Follow `target` after this node returns `action` (default `"default"`).
     * Returns `target`, so chains read `a.next(b).next(c)`.
     */
    next(target, action = "default") {
        if (!(target instanceof GraphNode)) {
            throw new TypeError(`next(): the target must be a node, flow or parallel, got ${typeof target}`);
        }
        if (typeof action !== "string" || action === "") {
            throw new TypeError(`next(): the action must be a non-empty string, got ${JSON.stringify(action)}`);
        }
        if (this.successors.has(action)) {
            process.emitWarning(`overwriting the successor of ${labelOf(this)} for action "${action}"`);
        }
        this.successors.set(action, target);
        return target;
    }
    /** Follow `target` after this node returns `action`. Returns `target`. */
    on(action, target) {
        return this.next(target, action);
    }
    /**
     * Run this node (a flow: its whole graph) in this process on `shared`,
     * which it changes in place, with the retries, timeouts, fallbacks and
     * step limit a supervisor would apply. Resolves to the last action;
     * rejects with a {@link NodeError}.
     */
    run(shared, options = {}) {
        return runGraph(this, shared, options);
    }
}
/** A node made of one function, as `node()` returns it. */
export class FunctionNode extends GraphNode {
    fn;
    fallback;
    constructor(fn, options = {}) {
        super("node()", options);
        if (typeof fn !== "function")
            throw new TypeError("node(): run must be a function");
        if (options.fallback !== undefined && typeof options.fallback !== "function") {
            throw new TypeError("node(): fallback must be a function");
        }
        this.fn = fn;
        this.fallback = options.fallback;
    }
    get kind() {
        return "node";
    }
}
export function node(fnOrDefinition, options) {
    if (typeof fnOrDefinition === "function")
        return new FunctionNode(fnOrDefinition, options);
    if (typeof fnOrDefinition !== "object" || fnOrDefinition === null) {
        throw new TypeError("node(): pass a function, or an object with a run function");
    }
    const { run, ...rest } = fnOrDefinition;
    return new FunctionNode(run, rest);
}
/** Which in-process attempt of a class node's `exec` is running (see `curRetry`). */
export const attemptScope = new AsyncLocalStorage();
/**
 * What class nodes share: PocketFlow's in-process retries of `exec`
 * (`maxRetries` attempts, `wait` ms apart, `curRetry` counting from 0).
 */
export class ClassNode extends GraphNode {
    /** Attempts of `exec` in-process (PocketFlow's `max_retries`). */
    maxRetries;
    /** Milliseconds between in-process attempts of `exec`. */
    wait;
    constructor(what, options) {
        super(what, options);
        this.maxRetries = options.maxRetries ?? 1;
        this.wait = options.wait ?? 0;
    }
    /** Which in-process attempt of `exec` (or `execFallback`) is running, from 0. */
    get curRetry() {
        return attemptScope.getStore() ?? 0;
    }
}
/** A thrown value as an `Error` (a non-Error becomes one, with it as the cause). */
export function asError(err) {
    return err instanceof Error ? err : new Error(errorText(err), { cause: err });
}
/**
 * A class node, as PocketFlow's `Node`: `prep(shared)` reads the store,
 * `exec(prepRes)` does the work (retried `maxRetries` times, `wait` ms
 * apart, then `execFallback`), `post(shared, prepRes, execRes)` writes the
 * store and returns the action. Every method may be async; the call's
 * context is {@link currentContext}(). Overriding `execFallback` gives the
 * node the `fallback` phase.
 *
 * @example
 * ```ts
 * class Summarize extends Node {
 *   override prep(shared: Shared) { return shared.text as string; }
 *   override async exec(text: string) { return text.slice(0, 100); }
 *   override post(shared: Shared, _text: string, summary: string) { shared.summary = summary; }
 * }
 * export const summarize = new Summarize({ maxRetries: 3, wait: 1000 });
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export class Node extends ClassNode {
    constructor(options = {}) {
        super("Node", options);
    }
    get kind() {
        return "node";
    }
    /** Read what `exec` needs from the store. */
    prep(_shared) {
        return undefined;
    }
    /** Do the work; it should not touch the store (it is what retries repeat). */
    exec(_prepRes) {
        return undefined;
    }
    /** Write the results to the store; return the action. */
    post(_shared, _prepRes, _execRes) {
        return undefined;
    }
    /** What `exec` gives when its attempts all failed; by default the error is thrown again. */
    execFallback(_prepRes, error) {
        throw error;
    }
}
/**
 * A batch node, as PocketFlow's `BatchNode`: `prep(shared)` returns the
 * items (an array), `exec(item)` runs once per item (each with the
 * in-process retries and `execFallback(item, error)`), `post(shared,
 * items, results)` gets the results in item order. Under the supervisor the
 * items are spread over the pool's workers.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export class BatchNode extends ClassNode {
    constructor(options = {}) {
        super("BatchNode", options);
    }
    get kind() {
        return "batch";
    }
    /** The items (an array; `null` or `undefined` count as none). */
    prep(_shared) {
        return [];
    }
    /** The work for one item. */
    exec(_item) {
        return undefined;
    }
    /** Write the results (in item order) to the store; return the action. */
    post(_shared, _items, _results) {
        return undefined;
    }
    /** What `exec` gives for an item when its attempts all failed; by default the error is thrown again. */
    execFallback(_item, error) {
        throw error;
    }
}
/** A graph of nodes; a node itself, so flows nest. */
export class Flow extends GraphNode {
    start;
    maxSteps;
    deadline;
    /** `what` names the constructor in errors (`flow()`, `BatchFlow`). */
    constructor(options, what = "flow()") {
        if (typeof options !== "object" || options === null)
            throw new TypeError(`${what}: pass { start, ... }`);
        super(what, { name: options.name, description: options.description });
        checkOptions(what, { maxSteps: options.maxSteps, deadline: options.deadline });
        if (!(options.start instanceof GraphNode))
            throw new TypeError(`${what}: start must be a node, flow or parallel`);
        this.start = options.start;
        this.maxSteps = options.maxSteps;
        this.deadline = options.deadline;
    }
    get kind() {
        return "flow";
    }
}
/**
 * A flow starting at `start`: follows the edges by each node's action until
 * a node has no edge for it; its action is that last action.
 */
export function flow(options) {
    return new Flow(options);
}
/**
 * PocketFlow's `BatchFlow`: `prep(shared)` returns parameter sets (an array
 * of objects), the graph runs from `start` once per set, one run after
 * another on the store, its nodes reading the set (added to the parameters
 * of the batch flows around it) in `this.params`; then `post(shared,
 * prepRes, undefined)` returns the flow's action. Every method may be
 * async. The supervisor runs it too: its `prep` and `post` are a node of
 * kind `batch_flow` named after the flow (GRAPHS.md, "Batch flows").
 *
 * @example
 * ```ts
 * class Summarize extends Node {
 *   override prep(shared: Shared) { return shared.files[this.params.file] as string; }
 *   override post(shared: Shared, text: string) { (shared.summaries ??= {})[this.params.file] = text.slice(0, 80); }
 * }
 * class EachFile extends BatchFlow {
 *   override prep(shared: Shared) { return Object.keys(shared.files).map((file) => ({ file })); }
 * }
 * export const summaries = new EachFile({ start: new Summarize({ name: "summarize" }) });
 * ```
 */
export class BatchFlow extends Flow {
    /** Runs in flight at once when they overlap (`AsyncParallelBatchFlow`). */
    limit;
    constructor(options, what = "BatchFlow") {
        super(options, what);
        checkOptions(what, { limit: options.limit });
        this.limit = options.limit;
    }
    /** Whether the runs overlap on the store (`AsyncParallelBatchFlow`) rather than go one after another. */
    get concurrent() {
        return false;
    }
    /** The parameter sets, one per run of the graph. */
    prep(_shared) {
        return [];
    }
    /** After the runs: the flow's action (`execRes` is always `undefined`, as in PocketFlow). */
    post(_shared, _prepRes, _execRes) {
        return undefined;
    }
}
/**
 * PocketFlow's `AsyncBatchFlow`: a {@link BatchFlow} (whose methods may be
 * async already), under the name code ported from PocketFlow uses.
 */
export class AsyncBatchFlow extends BatchFlow {
    constructor(options, what = "AsyncBatchFlow") {
        super(options, what);
    }
}
/**
 * PocketFlow's `AsyncParallelBatchFlow`: the runs overlap (at most `limit`
 * at once) on the one store. Each node works on the store as it was when
 * the node started, and its changes go in when it finishes: a key another
 * run changed meanwhile takes this node's value, except that where both
 * changed an object, the members each changed are kept. The first run that
 * fails stops the others.
 */
export class AsyncParallelBatchFlow extends AsyncBatchFlow {
    constructor(options, what = "AsyncParallelBatchFlow") {
        super(options, what);
    }
    get concurrent() {
        return true;
    }
}
/** A fan-out: its branches run on copies of the store, merged in listed order. */
export class Parallel extends GraphNode {
    branches;
    constructor(branches, options = {}) {
        super("parallel()", { name: options.name, description: options.description, limit: options.limit });
        if (!Array.isArray(branches) || branches.length === 0)
            throw new TypeError("parallel(): pass a non-empty array of branches");
        branches.forEach((branch, i) => {
            if (!(branch instanceof GraphNode))
                throw new TypeError(`parallel(): branch ${i} is not a node, flow or parallel`);
        });
        this.branches = Object.freeze([...branches]);
    }
    get kind() {
        return "parallel";
    }
}
/**
 * Run `branches` at the same time, each on its own copy of the store; then
 * apply each branch's changes (by top-level key) in listed order, so a key
 * two branches set ends as the later one left it. Its action is `"default"`.
 */
export function parallel(branches, options) {
    return new Parallel(branches, options);
}
/** Whether `value` is a node a worker runs (rather than a flow or a fan-out). */
export function isWorkerNode(value) {
    return value instanceof FunctionNode || value instanceof Node || value instanceof BatchNode;
}
/** Whether the node has a fallback: a function node's `fallback`, a class node's own `execFallback`. */
export function hasFallback(node) {
    if (node instanceof FunctionNode)
        return node.fallback !== undefined;
    if (node instanceof BatchNode)
        return node.execFallback !== BatchNode.prototype.execFallback;
    return node.execFallback !== Node.prototype.execFallback;
}
/** Names the worker gave nodes from their exports (so in-process errors use them too). */
export const resolvedNames = new WeakMap();
/** How messages name a node: its name, else its function's or class's name. */
export function labelOf(node) {
    const name = node.name ?? resolvedNames.get(node);
    if (name !== undefined)
        return name;
    if (node instanceof FunctionNode && node.fn.name)
        return node.fn.name;
    if (node instanceof Flow || node instanceof Parallel)
        return node.kind;
    const cls = node.constructor.name;
    return cls && cls !== "Node" && cls !== "BatchNode" ? cls : "node";
}
