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
import { type Context } from "../context.js";
import { errorText } from "../error_text.js";
import { runGraph } from "./run.js";
import { isValidToolName } from "../worker/protocol.js";

/**
 * The shared store as nodes see it unless told otherwise: a JSON object
 * whose members are loosely typed. Give nodes a type of your own with
 * `node<MyStore>(...)`, `class X extends Node<MyStore>`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Shared = Record<string, any>;

/**
 * PocketFlow's `params`: what the batch flows around a node set for one run
 * of their graph (a parameter set), as class nodes read it in `this.params`.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Params = Record<string, any>;

/** What a node returns: the action that picks the next edge, or nothing for `"default"`. */
export type Action = string | null | undefined | void;

/** A node of any store type (what successors and branches hold). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyNode = GraphNode<any>;

/**
 * The options of a node's entry in a flow document: what the supervisor
 * applies around each attempt (and `run()` in-process, the same way).
 */
export interface EntryOptions {
  /** More attempts after a failed one (default 0). */
  readonly retries?: number;
  /** Milliseconds before the first retry (default 100); each later retry waits twice as long, up to 30 s. */
  readonly backoff?: number;
  /** Milliseconds one attempt may take. */
  readonly timeout?: number;
  /** Batch nodes: items in flight at once; parallel: branches at once. */
  readonly limit?: number;
}

/**
 * An event of an in-process run, as `flw run --events jsonl` writes it
 * (GRAPHS.md "Events"): `event` is `node_started`, `node_retry`,
 * `node_fallback`, `node_finished`, `node_failed`, `batch_items`,
 * `item_finished` or `merge_conflict`, with that event's members.
 */
export interface RunEvent {
  readonly event: string;
  /** Milliseconds since the run started. */
  readonly t_ms: number;
  readonly path: string;
  readonly [member: string]: unknown;
}

/** Options of `run()`, which runs a node or a flow in this process. */
export interface RunOptions {
  /** Cancels the run; by default the signal of the tool call or node running now, if any. */
  readonly signal?: AbortSignal;
  /** Gets each node event of the run, with the supervisor's members (and its paths for named nodes); a hook that throws is dropped, not fatal. */
  readonly onEvent?: (event: RunEvent) => void;
}

/**
 * Why a node failed, as a fallback gets it and as `run()` throws it:
 * `kind` is an error kind of PROTOCOL.md (`tool_error`, `timeout`, ...) or
 * `max_steps`; the original error, when there is one, is the `cause`.
 */
export class NodeError extends Error {
  readonly kind: string;

  constructor(kind: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NodeError";
    this.kind = kind;
  }
}

const INT_OPTIONS: Readonly<Record<string, number>> = {
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
function checkOptions(what: string, options: object): void {
  for (const [key, low] of Object.entries(INT_OPTIONS)) {
    const value = (options as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < low) {
      throw new RangeError(`${what}: ${key} must be an integer of ${low} or more, got ${String(value)}`);
    }
  }
}

function checkName(what: string, name: unknown): string | undefined {
  if (name === undefined) return undefined;
  if (typeof name !== "string" || !isValidToolName(name)) {
    throw new TypeError(`${what}: name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(name)}`);
  }
  return name;
}

function entryOptions(options: EntryOptions): EntryOptions {
  const out: { -readonly [K in keyof EntryOptions]: EntryOptions[K] } = {};
  if (options.retries !== undefined) out.retries = options.retries;
  if (options.backoff !== undefined) out.backoff = options.backoff;
  if (options.timeout !== undefined) out.timeout = options.timeout;
  if (options.limit !== undefined) out.limit = options.limit;
  return Object.freeze(out);
}

/** The parameters of the phase running now, and the node they are for (see {@link GraphNode.params}). */
export const paramsScope = new AsyncLocalStorage<{ readonly node: AnyNode; readonly params: Params }>();

/** What `setParams` set on each node. */
const ownParams = new WeakMap<AnyNode, Params>();

/** What `setParams` set on `node` (`{}` if nothing), whatever phase runs now. */
export function ownParamsOf(node: AnyNode): Params {
  return ownParams.get(node) ?? {};
}

/** What every node, flow and parallel fan-out has: a name, successors, `run()`. */
export abstract class GraphNode<S extends object = Shared> {
  /** The name given with the `name` option; else the worker names it by its export, function or class name. */
  name: string | undefined;
  /** What the node does, for people and models (the manifest's `description`). */
  description: string;
  /** The entry options of this node in a flow document (`retries`, `backoff`, `timeout`, `limit`). */
  readonly options: EntryOptions;
  /** The node each action leads to. */
  readonly successors = new Map<string, AnyNode>();

  protected constructor(what: string, options: EntryOptions & { readonly name?: string; readonly description?: string }) {
    checkOptions(what, options);
    this.name = checkName(what, options.name);
    const description = options.description ?? "";
    if (typeof description !== "string") throw new TypeError(`${what}: description must be a string`);
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
  get params(): Params {
    const current = paramsScope.getStore();
    if (current !== undefined && current.node === this) return current.params;
    let own = ownParams.get(this);
    if (own === undefined) ownParams.set(this, (own = {}));
    return own;
  }

  /** Set `params` outside a run (PocketFlow's `set_params`). */
  setParams(params: Params): void {
    if (typeof params !== "object" || params === null || Array.isArray(params)) {
      throw new TypeError(`setParams(): params must be an object, got ${Array.isArray(params) ? "an array" : String(params)}`);
    }
    ownParams.set(this, params);
  }

  /** The node kind: `node` and `batch` run in a worker; `flow` and `parallel` are run by the graph. */
  abstract get kind(): "node" | "batch" | "flow" | "parallel";

  /**
   * Follow `target` after this node returns `action` (default `"default"`).
   * Returns `target`, so chains read `a.next(b).next(c)`.
   */
  next<T extends AnyNode>(target: T, action: string = "default"): T {
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
  on<T extends AnyNode>(action: string, target: T): T {
    return this.next(target, action);
  }

  /**
   * Run this node (a flow: its whole graph) in this process on `shared`,
   * which it changes in place, with the retries, timeouts, fallbacks and
   * step limit a supervisor would apply. Resolves to the last action;
   * rejects with a {@link NodeError}.
   */
  run(shared: S, options: RunOptions = {}): Promise<string | undefined> {
    return runGraph(this, shared, options);
  }
}

// ---------------------------------------------------------------------------
// Function nodes.

/** The body of a function node: changes `shared`, returns the action (or nothing). */
export type NodeFn<S extends object = Shared> = (shared: S, ctx: Context) => Action | Promise<Action>;

/** A function node's fallback: runs when its attempts all failed; its action and changes count as the node's. */
export type FallbackFn<S extends object = Shared> = (shared: S, error: NodeError, ctx: Context) => Action | Promise<Action>;

/** The options of `node(fn, options)`. */
export interface NodeOptions<S extends object = Shared> extends EntryOptions {
  /** The node's name; by default its export name, else the function's name. */
  readonly name?: string;
  readonly description?: string;
  /** Runs after the attempts all failed, with the last error. */
  readonly fallback?: FallbackFn<S>;
}

/** What `node({...})` takes: the options and `run`. */
export interface NodeDefinition<S extends object = Shared> extends NodeOptions<S> {
  readonly run: NodeFn<S>;
}

/** A node made of one function, as `node()` returns it. */
export class FunctionNode<S extends object = Shared> extends GraphNode<S> {
  readonly fn: NodeFn<S>;
  readonly fallback: FallbackFn<S> | undefined;

  constructor(fn: NodeFn<S>, options: NodeOptions<S> = {}) {
    super("node()", options);
    if (typeof fn !== "function") throw new TypeError("node(): run must be a function");
    if (options.fallback !== undefined && typeof options.fallback !== "function") {
      throw new TypeError("node(): fallback must be a function");
    }
    this.fn = fn;
    this.fallback = options.fallback;
  }

  get kind(): "node" {
    return "node";
  }
}

/**
 * A function node: `fn(shared, ctx)` changes the store and returns the
 * action (a string) or nothing.
 *
 * @example
 * ```ts
 * export const search = node(async (s, ctx) => {
 *   s.results = await (await fetch(s.url, { signal: ctx.signal })).json();
 * }, { retries: 2, timeout: 5000 });
 * ```
 */
export function node<S extends object = Shared>(fn: NodeFn<S>, options?: NodeOptions<S>): FunctionNode<S>;
export function node<S extends object = Shared>(definition: NodeDefinition<S>): FunctionNode<S>;
export function node<S extends object = Shared>(
  fnOrDefinition: NodeFn<S> | NodeDefinition<S>,
  options?: NodeOptions<S>,
): FunctionNode<S> {
  if (typeof fnOrDefinition === "function") return new FunctionNode(fnOrDefinition, options);
  if (typeof fnOrDefinition !== "object" || fnOrDefinition === null) {
    throw new TypeError("node(): pass a function, or an object with a run function");
  }
  const { run, ...rest } = fnOrDefinition;
  return new FunctionNode(run, rest);
}

// ---------------------------------------------------------------------------
// Class nodes.

/** The options of a class node's constructor. */
export interface ClassNodeOptions extends EntryOptions {
  readonly name?: string;
  readonly description?: string;
  /** Attempts of `exec` in-process, as PocketFlow's `max_retries` (default 1: no retry). */
  readonly maxRetries?: number;
  /** Milliseconds between in-process attempts of `exec` (default 0). */
  readonly wait?: number;
}

/** Which in-process attempt of a class node's `exec` is running (see `curRetry`). */
export const attemptScope = new AsyncLocalStorage<number>();

/**
 * What class nodes share: PocketFlow's in-process retries of `exec`
 * (`maxRetries` attempts, `wait` ms apart, `curRetry` counting from 0).
 */
export abstract class ClassNode<S extends object = Shared> extends GraphNode<S> {
  /** Attempts of `exec` in-process (PocketFlow's `max_retries`). */
  maxRetries: number;
  /** Milliseconds between in-process attempts of `exec`. */
  wait: number;

  protected constructor(what: string, options: ClassNodeOptions) {
    super(what, options);
    this.maxRetries = options.maxRetries ?? 1;
    this.wait = options.wait ?? 0;
  }

  /** Which in-process attempt of `exec` (or `execFallback`) is running, from 0. */
  get curRetry(): number {
    return attemptScope.getStore() ?? 0;
  }
}

/** A thrown value as an `Error` (a non-Error becomes one, with it as the cause). */
export function asError(err: unknown): Error {
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
export class Node<S extends object = Shared, P = any, E = any> extends ClassNode<S> {
  constructor(options: ClassNodeOptions = {}) {
    super("Node", options);
  }

  get kind(): "node" {
    return "node";
  }

  /** Read what `exec` needs from the store. */
  prep(_shared: S): P | Promise<P> {
    return undefined as P;
  }

  /** Do the work; it should not touch the store (it is what retries repeat). */
  exec(_prepRes: P): E | Promise<E> {
    return undefined as E;
  }

  /** Write the results to the store; return the action. */
  post(_shared: S, _prepRes: P, _execRes: E): Action | Promise<Action> {
    return undefined;
  }

  /** What `exec` gives when its attempts all failed; by default the error is thrown again. */
  execFallback(_prepRes: P, error: Error): E | Promise<E> {
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
export class BatchNode<S extends object = Shared, I = any, R = any> extends ClassNode<S> {
  constructor(options: ClassNodeOptions = {}) {
    super("BatchNode", options);
  }

  get kind(): "batch" {
    return "batch";
  }

  /** The items (an array; `null` or `undefined` count as none). */
  prep(_shared: S): readonly I[] | null | undefined | void | Promise<readonly I[] | null | undefined | void> {
    return [];
  }

  /** The work for one item. */
  exec(_item: I): R | Promise<R> {
    return undefined as R;
  }

  /** Write the results (in item order) to the store; return the action. */
  post(_shared: S, _items: I[], _results: R[]): Action | Promise<Action> {
    return undefined;
  }

  /** What `exec` gives for an item when its attempts all failed; by default the error is thrown again. */
  execFallback(_item: I, error: Error): R | Promise<R> {
    throw error;
  }
}

// ---------------------------------------------------------------------------
// Flows and parallel fan-outs.

/** What `flow()` takes. */
export interface FlowOptions<S extends object = Shared> {
  /** The first node. */
  readonly start: GraphNode<S>;
  /** The flow's name (also its MCP tool name); by default its export name. */
  readonly name?: string;
  readonly description?: string;
  /** The most node visits a run may make, nested flows and branches included (default 10,000). */
  readonly maxSteps?: number;
  /** Milliseconds the whole run may take. */
  readonly deadline?: number;
}

/** A graph of nodes; a node itself, so flows nest. */
export class Flow<S extends object = Shared> extends GraphNode<S> {
  readonly start: AnyNode;
  readonly maxSteps: number | undefined;
  readonly deadline: number | undefined;

  /** `what` names the constructor in errors (`flow()`, `BatchFlow`). */
  constructor(options: FlowOptions<S>, what: string = "flow()") {
    if (typeof options !== "object" || options === null) throw new TypeError(`${what}: pass { start, ... }`);
    super(what, { name: options.name, description: options.description });
    checkOptions(what, { maxSteps: options.maxSteps, deadline: options.deadline });
    if (!(options.start instanceof GraphNode)) throw new TypeError(`${what}: start must be a node, flow or parallel`);
    this.start = options.start;
    this.maxSteps = options.maxSteps;
    this.deadline = options.deadline;
  }

  get kind(): "flow" {
    return "flow";
  }
}

/**
 * A flow starting at `start`: follows the edges by each node's action until
 * a node has no edge for it; its action is that last action.
 */
export function flow<S extends object = Shared>(options: FlowOptions<S>): Flow<S> {
  return new Flow(options);
}

/** What a batch flow's constructor takes: a flow's options, and `limit`. */
export interface BatchFlowOptions<S extends object = Shared> extends FlowOptions<S> {
  /** Runs of the graph at once (`AsyncParallelBatchFlow`; default: all). */
  readonly limit?: number;
}

/** What a batch flow's `prep` returns: the parameter sets (`null` or `undefined`: none). */
export type ParameterSets<P extends Params = Params> = readonly P[] | null | undefined | void;

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
export class BatchFlow<S extends object = Shared, P extends Params = Params> extends Flow<S> {
  /** Runs in flight at once when they overlap (`AsyncParallelBatchFlow`). */
  readonly limit: number | undefined;

  constructor(options: BatchFlowOptions<S>, what: string = "BatchFlow") {
    super(options, what);
    checkOptions(what, { limit: options.limit });
    this.limit = options.limit;
  }

  /** Whether the runs overlap on the store (`AsyncParallelBatchFlow`) rather than go one after another. */
  get concurrent(): boolean {
    return false;
  }

  /** The parameter sets, one per run of the graph. */
  prep(_shared: S): ParameterSets<P> | Promise<ParameterSets<P>> {
    return [];
  }

  /** After the runs: the flow's action (`execRes` is always `undefined`, as in PocketFlow). */
  post(_shared: S, _prepRes: P[], _execRes: undefined): Action | Promise<Action> {
    return undefined;
  }
}

/**
 * PocketFlow's `AsyncBatchFlow`: a {@link BatchFlow} (whose methods may be
 * async already), under the name code ported from PocketFlow uses.
 */
export class AsyncBatchFlow<S extends object = Shared, P extends Params = Params> extends BatchFlow<S, P> {
  constructor(options: BatchFlowOptions<S>, what: string = "AsyncBatchFlow") {
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
export class AsyncParallelBatchFlow<S extends object = Shared, P extends Params = Params> extends AsyncBatchFlow<S, P> {
  constructor(options: BatchFlowOptions<S>, what: string = "AsyncParallelBatchFlow") {
    super(options, what);
  }

  override get concurrent(): boolean {
    return true;
  }
}

/** What `parallel()` takes besides the branches. */
export interface ParallelOptions {
  /** The entry's id in a flow document; by default its export name, else `parallel_1`, `parallel_2`, ... */
  readonly name?: string;
  readonly description?: string;
  /** Branches in flight at once (default: all). */
  readonly limit?: number;
}

/** A fan-out: its branches run on copies of the store, merged in listed order. */
export class Parallel<S extends object = Shared> extends GraphNode<S> {
  readonly branches: readonly AnyNode[];

  constructor(branches: readonly GraphNode<S>[], options: ParallelOptions = {}) {
    super("parallel()", { name: options.name, description: options.description, limit: options.limit });
    if (!Array.isArray(branches) || branches.length === 0) throw new TypeError("parallel(): pass a non-empty array of branches");
    branches.forEach((branch, i) => {
      if (!(branch instanceof GraphNode)) throw new TypeError(`parallel(): branch ${i} is not a node, flow or parallel`);
    });
    this.branches = Object.freeze([...branches]);
  }

  get kind(): "parallel" {
    return "parallel";
  }
}

/**
 * Run `branches` at the same time, each on its own copy of the store; then
 * apply each branch's changes (by top-level key) in listed order, so a key
 * two branches set ends as the later one left it. Its action is `"default"`.
 */
export function parallel<S extends object = Shared>(branches: readonly GraphNode<S>[], options?: ParallelOptions): Parallel<S> {
  return new Parallel(branches, options);
}

// ---------------------------------------------------------------------------
// Helpers for the worker and the runner.

/** A node a worker runs: a function node, a class node or a batch node. */
export type WorkerNode = FunctionNode<Shared> | Node<Shared> | BatchNode<Shared>;

/** What a worker runs one phase of for a `node` message: a worker node, or a batch flow's own `prep` and `post`. */
export type PhaseNode = WorkerNode | BatchFlow<Shared>;

/** Whether `value` is a node a worker runs (rather than a flow or a fan-out). */
export function isWorkerNode(value: unknown): value is WorkerNode {
  return value instanceof FunctionNode || value instanceof Node || value instanceof BatchNode;
}

/** Whether the node has a fallback: a function node's `fallback`, a class node's own `execFallback`. */
export function hasFallback(node: WorkerNode): boolean {
  if (node instanceof FunctionNode) return node.fallback !== undefined;
  if (node instanceof BatchNode) return node.execFallback !== BatchNode.prototype.execFallback;
  return node.execFallback !== Node.prototype.execFallback;
}

/** Names the worker gave nodes from their exports (so in-process errors use them too). */
export const resolvedNames = new WeakMap<AnyNode, string>();

/** How messages name a node: its name, else its function's or class's name. */
export function labelOf(node: AnyNode): string {
  const name = node.name ?? resolvedNames.get(node);
  if (name !== undefined) return name;
  if (node instanceof FunctionNode && node.fn.name) return node.fn.name;
  if (node instanceof Flow || node instanceof Parallel) return node.kind;
  const cls = node.constructor.name;
  return cls && cls !== "Node" && cls !== "BatchNode" ? cls : "node";
}
