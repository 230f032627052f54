/**
 * Tools for the model: what `tools` may hold, how each is sent
 * (`{type: "function", function: {name, description, parameters}}`), and
 * how `runTools` runs the calls the model asks for.
 */
import { type Context } from "../context.js";
import type { ToolCall } from "./reply.js";
import { type JsonSchema } from "../schema.js";
import { type Tool } from "../tool.js";
/**
 * A tool written in place: its parameters' JSON Schema and, for `runTools`,
 * what runs it (`run(args, ctx)`, the arguments checked against `parameters`
 * first).
 */
export interface FunctionTool {
    /** The name; in an object of tools, the key when this is not given. */
    readonly name?: string;
    readonly description?: string;
    /** The JSON Schema of the arguments object (default: an object with any members). */
    readonly parameters?: JsonSchema;
    run?(args: Record<string, unknown>, ctx: Context): unknown;
}
/** A tool as the chat-completions API describes it, optionally with what runs it. */
export interface OpenAITool {
    readonly type: "function";
    readonly function: {
        readonly name: string;
        readonly description?: string;
        readonly parameters?: JsonSchema;
        readonly strict?: boolean;
    };
    run?(args: Record<string, unknown>, ctx: Context): unknown;
}
/** One entry of `tools`: a flw-worker `tool()`, a {@link FunctionTool} or an {@link OpenAITool}. */
export type ToolSpec = Tool | FunctionTool | OpenAITool;
/**
 * The `tools` option: an array, or an object whose keys name the tools
 * that have no name of their own (`{ search, fetch_page }`, as a worker
 * names its exports).
 */
export type Tools = readonly ToolSpec[] | {
    readonly [name: string]: ToolSpec;
};
/** A tool ready to send and to run. */
export interface ResolvedTool {
    readonly name: string;
    readonly wire: {
        readonly type: "function";
        readonly function: Record<string, unknown>;
    };
    readonly run: ((call: ToolCall, ctx: Context) => Promise<unknown>) | undefined;
}
/** Check and convert the `tools` option; throws a `TypeError` naming the entry that is wrong. */
export declare function resolveTools(tools: Tools, where: string): ResolvedTool[];
/**
 * Run one tool call for `runTools`: its result as the text of a `tool`
 * message. A string result is sent as is, anything else as JSON. A call
 * that fails gives the model a text to read instead: `error: <name>: no
 * such tool (tools: a, b)`, `error: <name>: the arguments are ...` (not a
 * JSON object), `error: <name>: invalid arguments: ...` (not fitting the
 * schema), `error: <name>: <ErrorName>: <message>` (a thrown error). Only
 * a cancel (the signal aborted) rejects.
 */
export declare function runToolCall(call: ToolCall, tools: ReadonlyMap<string, ResolvedTool>, signal: AbortSignal | undefined): Promise<string>;
