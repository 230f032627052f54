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
import { type PhaseNode } from "./dsl.js";
import { type NodeKind } from "../worker/protocol.js";
/** A node object of `hello.nodes`. */
export interface NodeManifest {
    readonly name: string;
    readonly kind: NodeKind;
    readonly description: string;
    readonly fallback?: true;
}
/** What the worker serves besides tools: nodes by name, their manifest, and the flow documents. */
export interface Graph {
    readonly nodes: ReadonlyMap<string, PhaseNode>;
    readonly manifest: readonly NodeManifest[];
    readonly flows: readonly Record<string, unknown>[];
}
/** An empty graph (a script without nodes). */
export declare const NO_GRAPH: Graph;
/**
 * The nodes and flows among a module's exports. Throws an `Error` naming
 * the problem for a node without a name, a name given twice, a bad name,
 * flows that nest each other in a cycle, or a parallel branch with edges.
 */
export declare function collectGraph(namespace: Record<string, unknown>): Graph;
