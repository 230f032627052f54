/**
 * `tool()`: declare a tool. The worker's entry point finds the tools among
 * a script's exports; a tool's name is its export name unless `name` is
 * given.
 */
import type { Context } from "./context.js";
import type { Infer, JsonSchema, ObjectSchema } from "./schema.js";
declare const TOOL: unique symbol;
/** What `tool()` takes. `run` may be sync or async. */
export interface ToolDefinition<S extends ObjectSchema, R> {
    /** The tool's name; by default the name it is exported under. */
    readonly name?: string;
    /** What the tool does, for the model and the people calling it. */
    readonly description?: string;
    /** JSON Schema of the arguments object (`"type": "object"`). */
    readonly input: S;
    /** JSON Schema of an object result (optional, sent in the manifest). */
    readonly output?: JsonSchema;
    readonly run: (args: Infer<S>, ctx: Context) => R | Promise<R>;
}
/** A tool, as `tool()` returns it. Its `run` can be called directly (see `detachedContext`). */
export interface Tool<A = never, R = unknown> {
    readonly [TOOL]: true;
    readonly name: string | undefined;
    readonly description: string;
    readonly inputSchema: ObjectSchema;
    readonly outputSchema: JsonSchema | undefined;
    readonly run: (args: A, ctx: Context) => R | Promise<R>;
}
/** A tool whose argument type does not matter (what the worker handles). */
export type AnyTool = Tool<any, unknown>;
/**
 * Declare a tool. The argument type of `run` is inferred from the `input`
 * schema literal: `{ type: "string" }` is `string`, properties not in
 * `required` are optional, `enum` gives a union of its values.
 */
export declare function tool<const S extends ObjectSchema, R>(definition: ToolDefinition<S, R>): Tool<Infer<S>, R>;
/** Whether `value` was made by `tool()` (of any copy of this SDK). */
export declare function isTool(value: unknown): value is AnyTool;
/** A tool with its final name, as the worker serves it. */
export interface NamedTool {
    readonly name: string;
    readonly tool: AnyTool;
}
/**
 * The tools among a module's exports, named by their `name` or export name,
 * in export order. Throws an `Error` naming the problem for a duplicate or
 * invalid name.
 */
export declare function collectTools(namespace: Record<string, unknown>): NamedTool[];
export {};
