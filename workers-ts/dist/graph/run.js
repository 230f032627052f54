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
import { CallContext, currentCall, runInCall } from "../context.js";
import { errorText } from "../error_text.js";
import { BatchFlow, BatchNode, Flow, FunctionNode, NodeError, Parallel, asError, attemptScope, hasFallback, isWorkerNode, labelOf, ownParamsOf, paramsScope, } from "./dsl.js";
import { pause } from "../pause.js";
import { toJsonText } from "../worker/protocol.js";
/** Steps a run may take unless its flow says otherwise (GRAPHS.md). */
export const DEFAULT_MAX_STEPS = 10_000;
/** The first retry's wait unless a node says otherwise, and the cap of later ones, in milliseconds. */
export const DEFAULT_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 30_000;
function textOf(value) {
    try {
        return toJsonText(value);
    }
    catch {
        return undefined;
    }
}
function snapshot(shared) {
    const out = new Map();
    for (const [key, value] of Object.entries(shared)) {
        if (value !== undefined)
            out.set(key, { value, text: textOf(value) });
    }
    return out;
}
function same(held, value) {
    if (held.text === undefined)
        return held.value === value;
    return textOf(value) === held.text;
}
/** Set an own member, `__proto__` included. */
function setOwn(obj, key, value) {
    if (key === "__proto__")
        Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
    else
        obj[key] = value;
}
/** The keys whose value is new or changed since `before`, and those gone (or now `undefined`). */
function diff(before, shared) {
    const set = [];
    const gone = [];
    const now = shared;
    for (const [key, value] of Object.entries(now)) {
        if (value === undefined)
            continue;
        const held = before.get(key);
        if (held === undefined || !same(held, value))
            set.push([key, value]);
    }
    for (const key of before.keys()) {
        if (!Object.prototype.hasOwnProperty.call(now, key) || now[key] === undefined)
            gone.push(key);
    }
    return { set, delete: gone };
}
/** Apply `changes` to `target`. */
function apply(changes, target) {
    const obj = target;
    for (const [key, value] of changes.set)
        setOwn(obj, key, value);
    for (const key of changes.delete)
        delete obj[key];
}
/** What turned `before` into `after`, by top-level key. */
function between(before, after) {
    return diff(snapshot(before), after);
}
function hasOwn(obj, key) {
    return Object.prototype.hasOwnProperty.call(obj, key);
}
function isPlainObject(value) {
    if (typeof value !== "object" || value === null || Array.isArray(value))
        return false;
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
}
/** Whether two values differ: by JSON text, or (for what JSON cannot hold) by reference. */
function differs(a, b) {
    const ta = textOf(a);
    const tb = textOf(b);
    return ta === undefined || tb === undefined ? a !== b : ta !== tb;
}
/** A copy of the store's own members, made by `copyValue`. */
function copyStore(shared) {
    const seen = new Map();
    const out = {};
    for (const [key, value] of Object.entries(shared))
        setOwn(out, key, copyValue(value, seen));
    return out;
}
/** Plain objects and arrays copied all the way down (cycles kept); anything else is shared. */
function copyValue(value, seen) {
    if (typeof value !== "object" || value === null)
        return value;
    const known = seen.get(value);
    if (known !== undefined)
        return known;
    if (Array.isArray(value)) {
        const out = new Array(value.length);
        seen.set(value, out);
        value.forEach((v, i) => {
            out[i] = copyValue(v, seen);
        });
        return out;
    }
    if (!isPlainObject(value))
        return value;
    const out = Object.create(Object.getPrototypeOf(value));
    seen.set(value, out);
    for (const [key, v] of Object.entries(value))
        setOwn(out, key, copyValue(v, seen));
    return out;
}
/**
 * `changes` made on `base` into `store`, which others changed since (the
 * runs of a concurrent batch flow share one store): a key nobody else
 * changed takes the new value; where both sides changed objects, the
 * members each changed are kept, recursively; any other clash goes to this
 * side. The supervisor's `Changes::apply_since`.
 */
function applySince(changes, base, store) {
    const b = base;
    const now = store;
    for (const [key, value] of changes.set) {
        let merged = value;
        if (hasOwn(now, key) && (!hasOwn(b, key) || differs(b[key], now[key]))) {
            merged = merge3(b[key], hasOwn(b, key), now[key], value);
        }
        setOwn(now, key, merged);
    }
    for (const key of changes.delete)
        delete now[key];
}
function merge3(base, hadBase, now, theirs) {
    if (hadBase && !isPlainObject(base))
        return theirs;
    if (!isPlainObject(now) || !isPlainObject(theirs))
        return theirs;
    const baseObj = isPlainObject(base) ? base : {};
    const out = {};
    for (const [key, value] of Object.entries(now))
        setOwn(out, key, value);
    for (const [key, value] of Object.entries(theirs)) {
        const had = hasOwn(baseObj, key);
        if (had && !differs(baseObj[key], value))
            continue; // this side left it as it was
        let merged = value;
        if (hasOwn(out, key) && (!had || differs(baseObj[key], out[key])))
            merged = merge3(baseObj[key], had, out[key], value);
        setOwn(out, key, merged);
    }
    for (const key of Object.keys(baseObj)) {
        // this side deleted it, and the other left it
        if (!hasOwn(theirs, key) && hasOwn(out, key) && !differs(baseObj[key], out[key]))
            delete out[key];
    }
    return out;
}
/**
 * The phases a node answers: `run` (and `fallback`); for a batch node
 * `prep`, `exec`, `post` (and `fallback`); for a batch flow `prep`, `post`.
 */
export function phasesOf(node) {
    if (node instanceof BatchFlow)
        return ["prep", "post"];
    const phases = node instanceof BatchNode ? ["prep", "exec", "post"] : ["run"];
    if (hasFallback(node))
        phases.push("fallback");
    return phases;
}
/**
 * Run one phase of `node` (named `name`) for a `node` message and return
 * its outcome. Throws what the node threw, or a `TypeError` naming the node
 * for a return value the protocol cannot carry.
 */
export async function runPhase(node, name, request, ctx) {
    const shared = request.shared ?? {};
    const before = request.phase === "exec" ? undefined : snapshot(shared);
    const outcome = {};
    await withParams(node, paramsFor(node, request.params ?? {}), async () => {
        if (node instanceof BatchFlow) {
            if (request.phase === "prep")
                outcome.value = await batchFlowPrep(node, shared, name);
            else
                setAction(outcome, await batchFlowPost(node, shared, request.prep ?? null, name));
            return;
        }
        switch (request.phase) {
            case "run":
                setAction(outcome, await runOnce(node, shared, ctx, name));
                break;
            case "fallback": {
                const given = request.error;
                const error = given ? new NodeError(given.kind, given.message) : new NodeError("internal", "no error was given to the fallback");
                setAction(outcome, await fallbackOnce(node, shared, error, ctx, name));
                break;
            }
            case "prep":
                outcome.value = await batchPrep(node, shared, name);
                break;
            case "exec": {
                const value = await batchExec(node, request.item ?? null);
                if (value !== undefined && value !== null)
                    outcome.value = value;
                break;
            }
            case "post":
                setAction(outcome, await batchPost(node, shared, request.prep ?? null, request.results ?? [], name));
                break;
        }
    });
    if (before !== undefined) {
        const changes = diff(before, shared);
        const set = {};
        for (const [key, value] of changes.set) {
            if (textOf(value) === undefined) {
                throw new TypeError(`node ${JSON.stringify(name)} left shared[${JSON.stringify(key)}] holding a value JSON cannot hold: ${describeBadJson(value)}`);
            }
            setOwn(set, key, value);
        }
        if (changes.set.length > 0 || changes.delete.length > 0) {
            outcome.changes = {};
            if (changes.set.length > 0)
                outcome.changes.set = set;
            if (changes.delete.length > 0)
                outcome.changes.delete = changes.delete;
        }
    }
    return outcome;
}
function describeBadJson(value) {
    try {
        toJsonText(value);
        return "?";
    }
    catch (err) {
        return err.message;
    }
}
function setAction(outcome, action) {
    if (action !== undefined)
        outcome.action = action;
}
/** A node's return value as an action: a string, or `undefined` for none (`null`, `undefined` and `""` are none). */
function actionOf(value, who) {
    if (value === undefined || value === null || value === "")
        return undefined;
    if (typeof value === "string")
        return value;
    let shown;
    try {
        shown = typeof value === "object" ? (Array.isArray(value) ? "an array" : "an object") : `${typeof value} ${String(value)}`;
    }
    catch {
        shown = typeof value;
    }
    throw new TypeError(`${who} returned ${shown}; a node returns an action (a string) or nothing`);
}
/** A whole visit of a function or class node (the `run` phase). */
async function runOnce(node, shared, ctx, name) {
    if (node instanceof FunctionNode)
        return actionOf(await node.fn(shared, ctx), `node ${JSON.stringify(name)}`);
    if (node instanceof BatchNode) {
        const items = await batchPrep(node, shared, name);
        const results = [];
        for (const item of items)
            results.push(await batchExec(node, item));
        return await batchPost(node, shared, items, results, name);
    }
    const prepRes = await node.prep(shared);
    const execRes = await retried(node, () => node.exec(prepRes), (error) => node.execFallback(prepRes, error));
    return actionOf(await node.post(shared, prepRes, execRes), `post() of node ${JSON.stringify(name)}`);
}
/** The `fallback` phase: a function node's fallback; a class node's prep, execFallback and post. */
async function fallbackOnce(node, shared, error, ctx, name) {
    if (node instanceof FunctionNode) {
        if (node.fallback === undefined)
            throw error;
        return actionOf(await node.fallback(shared, error, ctx), `the fallback of node ${JSON.stringify(name)}`);
    }
    if (node instanceof BatchNode) {
        const items = await batchPrep(node, shared, name);
        const results = [];
        for (const item of items)
            results.push(await node.execFallback(item, error));
        return await batchPost(node, shared, items, results, name);
    }
    const prepRes = await node.prep(shared);
    const execRes = await node.execFallback(prepRes, error);
    return actionOf(await node.post(shared, prepRes, execRes), `post() of node ${JSON.stringify(name)}`);
}
async function batchPrep(node, shared, name) {
    const items = await node.prep(shared);
    if (items === undefined || items === null)
        return [];
    if (!Array.isArray(items)) {
        const what = typeof items === "object" ? "an object" : typeof items;
        throw new TypeError(`prep() of batch node ${JSON.stringify(name)} returned ${what}; it must return an array of items`);
    }
    return items;
}
function batchExec(node, item) {
    return retried(node, () => node.exec(item), (error) => node.execFallback(item, error));
}
async function batchPost(node, shared, items, results, name) {
    return actionOf(await node.post(shared, items, results), `post() of batch node ${JSON.stringify(name)}`);
}
/** What a batch flow's `prep` returned, checked: an array of parameter objects (`[]` for none). */
async function batchFlowPrep(flow, shared, name) {
    const sets = await flow.prep(shared);
    if (sets === undefined || sets === null)
        return [];
    if (!Array.isArray(sets) || !sets.every((set) => typeof set === "object" && set !== null && !Array.isArray(set))) {
        let shown;
        try {
            shown = toJsonText(sets);
            if (shown.length > 200)
                shown = `${shown.slice(0, 200)}...`;
        }
        catch {
            shown = Array.isArray(sets) ? "an array" : typeof sets;
        }
        throw new TypeError(`prep() of batch flow ${JSON.stringify(name)} returned ${shown}; it must return an array of parameter objects`);
    }
    return sets;
}
async function batchFlowPost(flow, shared, prepRes, name) {
    return actionOf(await flow.post(shared, prepRes, undefined), `post() of batch flow ${JSON.stringify(name)}`);
}
/**
 * The `params` a phase of `node` sees, given those of the batch flows it
 * runs in: a batch flow's own (`setParams`) with them added, as PocketFlow's
 * `BatchFlow` merges them; for any other node, them.
 */
function paramsFor(node, given) {
    return node instanceof BatchFlow ? { ...ownParamsOf(node), ...given } : { ...given };
}
/** Run `body` with `node.params` reading `params`. */
function withParams(node, params, body) {
    return paramsScope.run({ node, params }, body);
}
/** PocketFlow's `Node._exec`: `maxRetries` attempts of `exec`, `wait` ms apart, then `execFallback`. */
async function retried(node, exec, fallback) {
    const tries = Math.max(1, node.maxRetries);
    for (let i = 0;; i++) {
        try {
            return await attemptScope.run(i, exec);
        }
        catch (err) {
            const signal = currentCall()?.context.signal;
            if (signal?.aborted)
                throw err;
            if (i >= tries - 1)
                return await attemptScope.run(i, () => fallback(asError(err)));
            if (node.wait > 0)
                await pause(node.wait, signal);
        }
    }
}
/** An event's `error` member. */
function errorMember(err) {
    if (err instanceof NodeError)
        return { kind: err.kind, message: err.message };
    return { kind: "tool_error", message: errorText(err) };
}
/** Emits `batch_items`; the function returned emits `item_finished` for each. */
function itemEvents(state, path, total) {
    state.emit("batch_items", path, { total });
    let done = 0;
    return (i, began) => {
        done++;
        state.emit("item_finished", `${path}[${i}]`, { done, total, ms: Math.floor(performance.now() - began) });
    };
}
/** An AbortController that also aborts (with the same reason) when `parent` does. */
function linked(parent) {
    const controller = new AbortController();
    if (parent === undefined)
        return { controller, dispose: () => { } };
    if (parent.aborted) {
        controller.abort(parent.reason);
        return { controller, dispose: () => { } };
    }
    const onAbort = () => controller.abort(parent.reason);
    parent.addEventListener("abort", onAbort, { once: true });
    return { controller, dispose: () => parent.removeEventListener("abort", onAbort) };
}
/** Run `work`, but settle as soon as `signal` aborts (with its reason). */
function untilAborted(work, signal) {
    return new Promise((resolve, reject) => {
        if (signal.aborted) {
            reject(signal.reason);
            return;
        }
        const onAbort = () => reject(signal.reason);
        signal.addEventListener("abort", onAbort, { once: true });
        Promise.resolve()
            .then(work)
            .then(resolve, reject)
            .finally(() => signal.removeEventListener("abort", onAbort));
    });
}
/** The reason a run stopped from outside, as a `NodeError`. */
function stopped(signal, path) {
    const reason = signal.reason;
    if (reason instanceof NodeError)
        return reason;
    return new NodeError("cancelled", `the run was cancelled at ${path}`, { cause: reason });
}
/**
 * The timeouts of attempts (told apart from a NodeError a node throws
 * itself). Not a subclass of NodeError: this module and dsl.ts import
 * each other, so nothing here may use dsl.ts at the top level.
 */
const timeouts = new WeakSet();
function attemptTimeout(message) {
    const error = new NodeError("timeout", message);
    timeouts.add(error);
    return error;
}
function contextFor(state, name, signal) {
    const outer = state.outer?.context;
    if (outer instanceof CallContext)
        return outer.derive(name, signal);
    return new CallContext(outer?.callId, name, signal, undefined);
}
function warn(state, message) {
    void contextFor(state, undefined, state.signal).warning(message);
}
/** Bring `shared` up to date with the store the walk shares, if any. */
function refresh(scope, shared) {
    if (scope.sharedWith === undefined)
        return;
    const obj = shared;
    for (const key of Object.keys(obj))
        delete obj[key];
    for (const [key, value] of Object.entries(scope.sharedWith))
        setOwn(obj, key, value);
}
/**
 * Apply `changes`, in order, to `shared`, which is as the node that made
 * them found it; with a store the walk shares, their net effect goes into
 * that store and `shared` is brought up to date with it.
 */
function commit(scope, shared, ...changes) {
    if (scope.sharedWith === undefined) {
        for (const c of changes)
            apply(c, shared);
        return;
    }
    const after = shallowCopy(shared);
    for (const c of changes)
        apply(c, after);
    applySince(between(shared, after), shared, scope.sharedWith);
    refresh(scope, shared);
}
function shallowCopy(shared) {
    const out = {};
    for (const [key, value] of Object.entries(shared))
        setOwn(out, key, value);
    return out;
}
/** Run `body` on a copy of `store`; its value and its changes to the copy. */
async function onCopy(store, body) {
    const before = snapshot(store);
    const work = copyStore(store);
    const value = await body(work);
    return { value, changes: diff(before, work) };
}
/** `run()` of any node: the graph under it, in this process, on `shared`. */
export async function runGraph(root, shared, options) {
    if (typeof shared !== "object" || shared === null || Array.isArray(shared)) {
        throw new TypeError(`run(): the shared store must be an object, got ${Array.isArray(shared) ? "an array" : String(shared)}`);
    }
    const outer = currentCall();
    const { controller, dispose } = linked(options.signal ?? outer?.context.signal);
    const flow = root instanceof Flow ? root : undefined;
    let timer;
    if (flow?.deadline !== undefined) {
        const ms = flow.deadline;
        const reason = () => new NodeError("timeout", `flow ${labelOf(root)} passed its deadline of ${ms} ms`);
        timer = setTimeout(() => controller.abort(reason()), ms);
    }
    const began = performance.now();
    let onEvent = options.onEvent;
    if (onEvent !== undefined && typeof onEvent !== "function") {
        throw new TypeError(`run(): onEvent must be a function of one event, not ${typeof onEvent}`);
    }
    // A hook that throws (or rejects) never changes the run: it is noted
    // once on stderr and gets no more events.
    const dropHook = (err) => {
        if (onEvent === undefined)
            return;
        onEvent = undefined;
        process.stderr.write(`flw: onEvent threw ${errorText(err)}; it gets no more events\n`);
    };
    const emit = (event, path, members = {}) => {
        if (onEvent === undefined)
            return;
        try {
            const r = onEvent({ event, t_ms: Math.floor(performance.now() - began), path, ...members });
            if (r instanceof Promise)
                r.catch(dropHook);
        }
        catch (err) {
            dropHook(err);
        }
    };
    const state = { steps: { n: 0 }, maxSteps: flow?.maxSteps ?? DEFAULT_MAX_STEPS, signal: controller.signal, outer, emit };
    const scope = { params: { ...ownParamsOf(root) }, sharedWith: undefined };
    try {
        // The top flow is the run itself, not a visit (as in the supervisor).
        if (root instanceof Flow)
            return await runFlow(root, shared, state, scope, labelOf(root));
        return await visit(root, shared, state, scope, undefined);
    }
    finally {
        clearTimeout(timer);
        dispose();
    }
}
/** One visit of `node` in the flow at `flowPath` (`undefined`: the run's root). */
async function visit(node, shared, state, scope, flowPath) {
    const path = flowPath === undefined ? labelOf(node) : `${flowPath}/${labelOf(node)}`;
    if (state.signal.aborted)
        throw stopped(state.signal, path);
    if (++state.steps.n > state.maxSteps) {
        throw new NodeError("max_steps", `the run passed its limit of ${state.maxSteps} steps at ${path}`);
    }
    const kind = node instanceof BatchFlow ? "batch_flow" : node.kind;
    state.emit("node_started", path, { kind, step: state.steps.n });
    const began = performance.now();
    let action;
    try {
        if (node instanceof Flow)
            action = await runFlow(node, shared, state, scope, path);
        else if (node instanceof Parallel)
            action = await runParallel(node, shared, state, scope, flowPath, path);
        else if (isWorkerNode(node))
            action = await runNode(node, shared, state, scope, path);
        else
            throw new TypeError(`${path} is not a node, flow or parallel`);
    }
    catch (err) {
        // A stopped visit (a cancel, the deadline, a sibling's failure) has no event, as in the supervisor.
        if (!state.signal.aborted)
            state.emit("node_failed", path, { error: errorMember(err), ms: Math.floor(performance.now() - began) });
        throw err;
    }
    state.emit("node_finished", path, { action: action ?? "default", ms: Math.floor(performance.now() - began) });
    return action;
}
function runFlow(flow, shared, state, scope, path) {
    if (flow instanceof BatchFlow)
        return runBatchFlow(flow, shared, state, scope, path);
    return walk(flow, shared, state, scope, path);
}
/** Walk `flow` from its start; the last node's action. */
async function walk(flow, shared, state, scope, path) {
    let current = flow.start;
    let action;
    while (current !== undefined) {
        const id = labelOf(current);
        action = await visit(current, shared, state, scope, path);
        const key = action ?? "default";
        const next = current.successors.get(key);
        if (next === undefined && current.successors.size > 0) {
            // PocketFlow's wording, then where (as the supervisor says it).
            const edges = [...current.successors.keys()].map((a) => `'${a}'`).join(", ");
            warn(state, `Flow ends: '${key}' not found in [${edges}] (the edges of ${path}/${id})`);
        }
        current = next;
    }
    return action;
}
/**
 * A batch flow: its `prep` gives the parameter sets, the graph runs once
 * per set (path `PATH[i]`) with the set added to the parameters in force,
 * one run after another or (`concurrent`) overlapping on one store, then
 * its `post` gives the action. Its own phases have no retries or timeout.
 */
async function runBatchFlow(flow, shared, state, scope, path) {
    const name = labelOf(flow);
    const own = paramsFor(flow, scope.params);
    refresh(scope, shared);
    const prep = await attempts(flow, state, path, () => onCopy(shared, (work) => withParams(flow, own, () => batchFlowPrep(flow, work, name))));
    const sets = prep.value;
    commit(scope, shared, prep.changes);
    const finished = itemEvents(state, path, sets.length);
    const paramsOf = (i) => ({ ...scope.params, ...sets[i] });
    if (flow.concurrent && sets.length > 0) {
        const before = shallowCopy(shared);
        const store = shallowCopy(shared);
        try {
            await allOrFirstFailure(sets.length, flow.limit, state, async (i, runState) => {
                const began = performance.now();
                await walk(flow, {}, runState, { params: paramsOf(i), sharedWith: store }, `${path}[${i}]`);
                finished(i, began);
            });
        }
        finally {
            // The runs' net changes, as far as they went, go on to the store this flow works on.
            commit(scope, shared, between(before, store));
        }
    }
    else {
        for (let i = 0; i < sets.length; i++) {
            const began = performance.now();
            await walk(flow, shared, state, { params: paramsOf(i), sharedWith: scope.sharedWith }, `${path}[${i}]`);
            finished(i, began);
        }
    }
    refresh(scope, shared);
    const post = await attempts(flow, state, path, () => onCopy(shared, (work) => withParams(flow, own, () => batchFlowPost(flow, work, prep.value, name))));
    commit(scope, shared, post.changes);
    return post.value;
}
/** The branches are entries of the flow at `flowPath`, so their paths are its, as in the supervisor. */
async function runParallel(par, shared, state, scope, flowPath, path) {
    refresh(scope, shared);
    const before = shallowCopy(shared);
    const alone = { params: scope.params, sharedWith: undefined };
    const copies = await allOrFirstFailure(par.branches.length, par.options.limit, state, async (i, branchState) => {
        const branch = par.branches[i];
        const copy = copyStore(before);
        await visit(branch, copy, branchState, alone, flowPath);
        return copy;
    });
    const merged = shallowCopy(before);
    const touched = new Set();
    const clashes = new Set();
    for (const copy of copies) {
        // In listed order: a key two branches change ends as the later one left it.
        const changes = between(before, copy);
        for (const key of [...changes.set.map(([k]) => k), ...changes.delete]) {
            if (touched.has(key))
                clashes.add(key);
            touched.add(key);
        }
        apply(changes, merged);
    }
    if (clashes.size > 0) {
        state.emit("merge_conflict", path, { keys: [...clashes] });
        warn(state, `parallel ${path}: more than one branch changed ${[...clashes].join(", ")}; the later-listed branch won`);
    }
    commit(scope, shared, between(before, merged));
    return undefined;
}
/**
 * `one(i)` for each `i` below `total`, at most `limit` at once; the values in
 * order. The first failure aborts the others (their state's signal) and is
 * thrown once they have settled.
 */
async function allOrFirstFailure(total, limit, state, one) {
    const { controller, dispose } = linked(state.signal);
    const inner = { ...state, signal: controller.signal };
    const values = new Array(total);
    const failures = [];
    let next = 0;
    const lane = async () => {
        while (next < total && failures.length === 0) {
            const i = next++;
            try {
                values[i] = await one(i, inner);
            }
            catch (err) {
                if (failures.length === 0)
                    controller.abort(new NodeError("cancelled", "a sibling failed"));
                failures.push(err);
            }
        }
    };
    try {
        await Promise.all(Array.from({ length: Math.min(limit ?? total, total) }, lane));
    }
    finally {
        dispose();
    }
    if (failures.length > 0)
        throw failures[0];
    return values;
}
/**
 * A function or class node: `run` with retries, backoff and timeouts, then
 * its fallback; a batch node: `prep`, each item's `exec`, `post`, each with
 * them. The changes go into the store when the node has succeeded.
 */
async function runNode(node, shared, state, scope, path) {
    const name = labelOf(node);
    const params = scope.params;
    const phase = (store, body) => () => onCopy(store, (work) => withParams(node, params, () => body(work)));
    refresh(scope, shared);
    if (node instanceof BatchNode) {
        // As the supervisor: no fallback phase (execFallback applies per item, within exec).
        const prep = await attempts(node, state, path, phase(shared, (work) => batchPrep(node, work, name)));
        const items = prep.value;
        const finished = itemEvents(state, path, items.length);
        // The items at once, at most `limit` in flight, as the supervisor spreads them.
        const results = await allOrFirstFailure(items.length, node.options.limit, state, async (i, itemState) => {
            const began = performance.now();
            const value = await attempts(node, itemState, `${path}[${i}]`, () => withParams(node, params, () => batchExec(node, items[i])));
            finished(i, began);
            return value;
        });
        const postStore = shallowCopy(shared);
        apply(prep.changes, postStore);
        const post = await attempts(node, state, path, phase(postStore, (work) => batchPost(node, work, items, results, name)));
        commit(scope, shared, prep.changes, post.changes);
        return post.value;
    }
    let done;
    try {
        done = await attempts(node, state, path, (ctx) => phase(shared, (work) => runOnce(node, work, ctx, name))());
    }
    catch (err) {
        if (state.signal.aborted || !(err instanceof NodeError) || !hasFallback(node) || err.kind === "max_steps")
            throw err;
        state.emit("node_fallback", path, { error: errorMember(err) });
        done = await attempts(node, state, path, (ctx) => phase(shared, (work) => fallbackOnce(node, work, err, ctx, name))(), 0);
    }
    commit(scope, shared, done.changes);
    return done.value;
}
/**
 * Run `body` with the node's retries, each attempt under its timeout and
 * inside a call scope. Throws a NodeError after the last failure (or the
 * reason the run stopped). An attempt that is abandoned (timed out,
 * stopped) runs on if it ignores its signal; what it gives is dropped.
 */
async function attempts(node, state, path, body, retries = node.options.retries ?? 0) {
    const backoff = node.options.backoff ?? DEFAULT_BACKOFF_MS;
    const timeout = node.options.timeout;
    for (let attempt = 1;; attempt++) {
        const { controller, dispose } = linked(state.signal);
        let timer;
        if (timeout !== undefined) {
            timer = setTimeout(() => controller.abort(attemptTimeout(`node ${path} timed out after ${timeout} ms`)), timeout);
        }
        const ctx = contextFor(state, labelOf(node), controller.signal);
        try {
            const scope = { context: ctx, children: state.outer?.children };
            return await untilAborted(() => runInCall(scope, () => body(ctx)), controller.signal);
        }
        catch (err) {
            if (state.signal.aborted)
                throw stopped(state.signal, path);
            const error = err instanceof NodeError && timeouts.has(err)
                ? err
                : new NodeError("tool_error", `node ${path} failed: ${errorText(err)}`, { cause: err });
            if (attempt > retries)
                throw error;
            const wait = Math.min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_MS);
            state.emit("node_retry", path, { attempt, error: errorMember(error), wait_ms: wait });
            try {
                await pause(wait, state.signal);
            }
            catch {
                throw stopped(state.signal, path);
            }
        }
        finally {
            clearTimeout(timer);
            dispose();
        }
    }
}
