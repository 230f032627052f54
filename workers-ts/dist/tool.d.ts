/**
 * `tool()`: declare a tool. The worker's entry point finds the tools among
 * a script's exports; a tool's name is its export name unless `name` is
 * given. The input is a JSON Schema literal or a Standard Schema (a zod 4
 * object, for one; see `standard_schema.ts`).
 */
import type { Context } from "./context.js";
import type { Infer, JsonSchema, ObjectSchema } from "./schema.js";
import { type InferStandardOutput, type StandardSchemaV1 } from "./standard_schema.js";
declare const TOOL: unique symbol;
/** What `tool()` takes. `run` may be sync or async. */
export interface ToolDefinition<S extends ObjectSchema, R> {
    /** The tool's name; by default the name it is exported under. */
    readonly name?: string;
    /** What the tool does, for the model and the people calling it. */
    readonly description?: string;
    /** JSON Schema of the arguments object (`"type": "object"`). */
    readonly input: S;
    /** The schema of an object result: a JSON Schema or a Standard Schema (optional, sent in the manifest). */
    readonly output?: JsonSchema | StandardSchemaV1;
    readonly run: (args: Infer<S>, ctx: Context) => R | Promise<R>;
}
/**
 * What `tool()` takes when `input` is a Standard Schema, such as
 * `z.object({ ... })` of zod 4.2 or later. `run` receives the arguments as
 * the schema parsed them (defaults filled in, transforms applied).
 */
export interface StandardToolDefinition<S extends StandardSchemaV1, R> {
    /** The tool's name; by default the name it is exported under. */
    readonly name?: string;
    /** What the tool does, for the model and the people calling it. */
    readonly description?: string;
    /** The schema of the arguments object; its JSON Schema goes to the manifest. */
    readonly input: S;
    /** The schema of an object result: a JSON Schema or a Standard Schema (optional, sent in the manifest). */
    readonly output?: JsonSchema | StandardSchemaV1;
    readonly run: (args: InferStandardOutput<S>, ctx: Context) => R | Promise<R>;
}
/** A tool, as `tool()` returns it. Its `run` can be called directly (see `detachedContext`). */
export interface Tool<A = never, R = unknown> {
    readonly [TOOL]: true;
    readonly name: string | undefined;
    readonly description: string;
    /** The JSON Schema of the arguments, as the manifest gives it. */
    readonly inputSchema: ObjectSchema;
    /** The Standard Schema the arguments are validated (and parsed) with, when `input` was one. */
    readonly inputStandardSchema: StandardSchemaV1 | undefined;
    readonly outputSchema: JsonSchema | undefined;
    readonly run: (args: A, ctx: Context) => R | Promise<R>;
}
/** A tool whose argument type does not matter (what the worker handles). */
export type AnyTool = Tool<any, unknown>;
/**
 * Declare a tool. With a JSON Schema literal as `input`, the argument type
 * of `run` is inferred from it: `{ type: "string" }` is `string`,
 * properties not in `required` are optional, `enum` gives a union of its
 * values. With a Standard Schema (`z.object({...})`), it is the schema's
 * output type.
 */
export declare function tool<const S extends ObjectSchema, R>(definition: ToolDefinition<S, R>): Tool<Infer<S>, R>;
export declare function tool<S extends StandardSchemaV1, R>(definition: StandardToolDefinition<S, R>): Tool<InferStandardOutput<S>, R>;
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
