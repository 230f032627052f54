/**
 * The graph part of the manifest: which nodes a script's exports hold,
 * their names, and the flow documents of GRAPHS.md for `hello.flows`.
 *
 * Names: the `name` option; else the export name (an object exported
 * under two names other than `default` needs a `name`); else a function
 * node's function name, a class node's class name. A node reached only
 * through a flow must get its name one of these ways. Two different node
 * objects with one name, or two different flows, are a definition error
 * naming where each was found.
 *
 * `hello.nodes`: every exported node and every node an announced flow
 * reaches, and for each batch flow its `prep` and `post` as a node of kind
 * `batch_flow` with the flow's name (its document's `batch.node`).
 * `hello.flows`: every exported flow and every named flow nested in one. In a document an entry's id is its name; a named nested flow is
 * referenced (`{"flow": "review"}`), an unnamed one is inlined with the id
 * `flow_1`, `flow_2`, ... (an unnamed fan-out: `parallel_1`, ...).
 */
import { BatchFlow, BatchNode, Flow, FunctionNode, GraphNode, Parallel, hasFallback, isWorkerNode, labelOf, resolvedNames, } from "./dsl.js";
import { isValidToolName } from "../worker/protocol.js";
/** An empty graph (a script without nodes). */
export const NO_GRAPH = { nodes: new Map(), manifest: [], flows: [] };
function describeNode(node) {
    if (node instanceof FunctionNode)
        return node.fn.name ? `the function node of ${node.fn.name}()` : "a function node";
    if (node instanceof BatchFlow) {
        const cls = node.constructor.name;
        return cls && cls !== "BatchFlow" && cls !== "AsyncBatchFlow" && cls !== "AsyncParallelBatchFlow" ? `the batch flow ${cls}` : "a batch flow";
    }
    if (node instanceof Flow)
        return "a flow";
    if (node instanceof Parallel)
        return "a parallel()";
    const cls = node.constructor.name;
    return cls ? `a ${cls} node` : "a class node";
}
/**
 * The nodes and flows among a module's exports. Throws an `Error` naming
 * the problem for a node without a name, a name given twice, a bad name,
 * flows that nest each other in a cycle, or a parallel branch with edges.
 */
export function collectGraph(namespace) {
    return new Collector(namespace).collect();
}
class Collector {
    exportNames = new Map();
    nodes = new Map();
    registered = new Map();
    manifest = [];
    /** The flows `hello.flows` documents, by name, and the ones still to document. */
    flows = new Map();
    flowNames = new Map();
    queue = [];
    constructor(namespace) {
        for (const [exportName, value] of Object.entries(namespace)) {
            if (!(value instanceof GraphNode))
                continue;
            const names = this.exportNames.get(value) ?? [];
            names.push(exportName);
            this.exportNames.set(value, names);
        }
    }
    collect() {
        const exported = [...this.exportNames.keys()];
        for (const node of exported) {
            if (isWorkerNode(node))
                this.register(node, this.exportsOf(node));
        }
        for (const flow of exported) {
            if (flow instanceof Flow)
                this.announce(flow, this.exportsOf(flow));
        }
        const flows = [];
        for (let i = 0; i < this.queue.length; i++) {
            const flow = this.queue[i];
            flows.push(this.document(flow, this.flowNames.get(flow), [flow]));
        }
        const nodes = new Map([...this.nodes].map(([name, { node }]) => [name, node]));
        return { nodes, manifest: this.manifest, flows };
    }
    exportsOf(node) {
        return `export ${this.exportNames.get(node)?.join(", ")}`;
    }
    /**
     * The name of `node`: its `name`, its one export name (other than
     * `default`), its function's name (function nodes) or its class's name
     * (class nodes); `undefined` for none.
     */
    nameOf(node, where) {
        let name = node.name;
        if (name === undefined) {
            const exports = (this.exportNames.get(node) ?? []).filter((n) => n !== "default");
            if (exports.length > 1) {
                const names = exports.join(" and ");
                throw new Error(`${where}: ${describeNode(node)} is exported as ${names}: give it one name with the name option`);
            }
            name = exports[0];
        }
        if (name === undefined && node instanceof FunctionNode && node.fn.name)
            name = node.fn.name;
        if (name === undefined && isWorkerNode(node) && !(node instanceof FunctionNode)) {
            const cls = node.constructor.name;
            if (cls && cls !== "Node" && cls !== "BatchNode")
                name = cls;
        }
        if (name !== undefined && !isValidToolName(name)) {
            throw new Error(`${where}: the name ${JSON.stringify(name)} is not 1-128 characters of A-Z a-z 0-9 _ - .`);
        }
        if (name !== undefined)
            resolvedNames.set(node, name);
        return name;
    }
    /** Add a worker node to the manifest (once); returns its name. */
    register(node, where) {
        const known = this.registered.get(node);
        if (known !== undefined)
            return known;
        const name = this.nameOf(node, where);
        if (name === undefined) {
            throw new Error(`${where}: ${describeNode(node)} has no name: give it one with the name option, or export it`);
        }
        const other = this.nodes.get(name);
        if (other !== undefined) {
            throw new Error(`two different nodes are named ${JSON.stringify(name)}: ` +
                `${describeNode(other.node)} (${other.where}) and ${describeNode(node)} (${where})`);
        }
        this.nodes.set(name, { node, where });
        this.registered.set(node, name);
        const entry = {
            name,
            kind: node instanceof BatchNode ? "batch" : "node",
            description: node.description,
        };
        if (hasFallback(node))
            entry.fallback = true;
        this.manifest.push(entry);
        return name;
    }
    /** Add a batch flow's `prep` and `post` to the manifest as the node `name` of kind `batch_flow` (once). */
    registerBatchFlow(flow, name, where) {
        const other = this.nodes.get(name);
        if (other?.node === flow)
            return;
        if (other !== undefined) {
            throw new Error(`batch flow ${JSON.stringify(name)} (${where}) needs a node of its name for its prep and post, ` +
                `but ${describeNode(other.node)} (${other.where}) has it; rename one of them`);
        }
        this.nodes.set(name, { node: flow, where });
        this.manifest.push({ name, kind: "batch_flow", description: flow.description });
    }
    /** Add a named flow to `hello.flows` (once); returns its name, or `undefined` for an unnamed flow. */
    announce(flow, where) {
        const known = this.flowNames.get(flow);
        if (known !== undefined)
            return known;
        const name = this.nameOf(flow, where);
        if (name === undefined) {
            if (!this.exportNames.has(flow))
                return undefined; // inlined where it is used
            throw new Error(`${where}: the flow has no name: give it one with flow({ name: ..., ... })`);
        }
        const other = this.flows.get(name);
        if (other !== undefined) {
            throw new Error(`two different flows are named ${JSON.stringify(name)} (${other.where} and ${where})`);
        }
        this.flows.set(name, { flow, where });
        this.flowNames.set(flow, name);
        this.queue.push(flow);
        return name;
    }
    /** The GRAPHS.md document of `flow`, named `name`; `stack` holds the flows being inlined around it. */
    document(flow, name, stack) {
        const within = `flow ${JSON.stringify(name)}`;
        // The entries, breadth first through successors and branches (with where each was found).
        const order = [];
        const found = new Map();
        const visit = (node, where) => {
            if (found.has(node))
                return;
            found.set(node, where);
            order.push(node);
        };
        visit(flow.start, `the start of ${within}`);
        for (let i = 0; i < order.length; i++) {
            const node = order[i];
            const label = node.name ?? this.exportNames.get(node)?.[0] ?? labelOf(node);
            if (node instanceof Parallel) {
                node.branches.forEach((branch, j) => {
                    const where = `branch ${j + 1} of parallel ${JSON.stringify(label)} in ${within}`;
                    if (branch.successors.size > 0) {
                        throw new Error(`${where}: ${describeNode(branch)} has successors; a branch is one node: wrap a chain in a flow()`);
                    }
                    visit(branch, where);
                });
            }
            for (const [action, target] of node.successors) {
                visit(target, `${within}, after ${JSON.stringify(label)} (action ${JSON.stringify(action)})`);
            }
        }
        // Ids: names first, then flow_1, parallel_1, ... for the unnamed.
        const ids = new Map();
        const owners = new Map();
        for (const node of order) {
            const where = found.get(node);
            let id;
            if (isWorkerNode(node))
                id = this.register(node, where);
            else if (node instanceof Flow)
                id = this.announce(node, where);
            else
                id = this.nameOf(node, where);
            if (id === undefined)
                continue;
            const other = owners.get(id);
            if (other !== undefined) {
                throw new Error(`${within}: two different entries have the id ${JSON.stringify(id)}: ` +
                    `${describeNode(other)} (${found.get(other)}) and ${describeNode(node)} (${where})`);
            }
            ids.set(node, id);
            owners.set(id, node);
        }
        const counters = { flow: 0, parallel: 0 };
        for (const node of order) {
            if (ids.has(node))
                continue;
            const prefix = node instanceof Flow ? "flow" : "parallel";
            let id;
            do
                id = `${prefix}_${++counters[prefix]}`;
            while (owners.has(id));
            ids.set(node, id);
            owners.set(id, node);
        }
        const nodes = {};
        const edges = [];
        for (const node of order) {
            const id = ids.get(node);
            let entry;
            if (node instanceof Flow) {
                const named = this.flowNames.get(node);
                if (named === undefined && stack.includes(node)) {
                    const names = [...stack, node].map((f) => this.flowNames.get(f) ?? labelOf(f));
                    throw new Error(`${within}: unnamed flows nest each other in a cycle (${names.join(" -> ")}); give them names`);
                }
                entry = { flow: named ?? this.document(node, id, [...stack, node]) };
            }
            else if (node instanceof Parallel) {
                entry = { parallel: node.branches.map((branch) => ids.get(branch)) };
            }
            else {
                entry = { node: id };
            }
            const { retries, backoff, timeout, limit } = node.options;
            if (retries !== undefined)
                entry["retries"] = retries;
            if (backoff !== undefined)
                entry["backoff_ms"] = backoff;
            if (timeout !== undefined)
                entry["timeout_ms"] = timeout;
            if (limit !== undefined)
                entry["limit"] = limit;
            Object.defineProperty(nodes, id, { value: entry, writable: true, enumerable: true, configurable: true });
            for (const [action, target] of node.successors) {
                edges.push({ from: id, to: ids.get(target), action });
            }
        }
        const doc = { name };
        if (flow.description)
            doc["description"] = flow.description;
        if (flow instanceof BatchFlow) {
            this.registerBatchFlow(flow, name, within);
            const batch = { node: name, concurrent: flow.concurrent };
            if (flow.limit !== undefined)
                batch["limit"] = flow.limit;
            doc["batch"] = batch;
        }
        doc["start"] = ids.get(flow.start);
        doc["nodes"] = nodes;
        doc["edges"] = edges;
        if (flow.maxSteps !== undefined)
            doc["max_steps"] = flow.maxSteps;
        if (flow.deadline !== undefined)
            doc["deadline_ms"] = flow.deadline;
        return doc;
    }
}
