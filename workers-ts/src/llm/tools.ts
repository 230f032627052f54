/**
 * Tools for the model: what `tools` may hold, how each is sent
 * (`{type: "function", function: {name, description, parameters}}`), and
 * how `runTools` runs the calls the model asks for.
 */

import { type Context, currentContext, detachedContext } from "../context.js";
import { errorText } from "../error_text.js";
import type { ToolCall } from "./reply.js";
import { isValidToolName } from "../worker/protocol.js";
import { type JsonSchema, validate } from "../schema.js";
import { checkWithStandardSchema } from "../standard_schema.js";
import { type Tool, isTool } from "../tool.js";

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
export type Tools = readonly ToolSpec[] | { readonly [name: string]: ToolSpec };

/** A tool ready to send and to run. */
export interface ResolvedTool {
  readonly name: string;
  readonly wire: { readonly type: "function"; readonly function: Record<string, unknown> };
  readonly run: ((call: ToolCall, ctx: Context) => Promise<unknown>) | undefined;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Check and convert the `tools` option; throws a `TypeError` naming the entry that is wrong. */
export function resolveTools(tools: Tools, where: string): ResolvedTool[] {
  if (!Array.isArray(tools) && !isObject(tools)) throw new TypeError(`${where}: tools must be an array or an object of tools`);
  const entries: [string | undefined, unknown][] = Array.isArray(tools)
    ? tools.map((spec): [string | undefined, unknown] => [undefined, spec])
    : Object.entries(tools);
  const out: ResolvedTool[] = [];
  const seen = new Set<string>();
  entries.forEach(([key, spec], i) => {
    const label = key === undefined ? `tools[${i}]` : `tools.${key}`;
    const tool = resolveOne(spec, key, `${where}: ${label}`);
    if (seen.has(tool.name)) throw new TypeError(`${where}: two tools are named ${JSON.stringify(tool.name)}`);
    seen.add(tool.name);
    out.push(tool);
  });
  return out;
}

function resolveOne(spec: unknown, key: string | undefined, where: string): ResolvedTool {
  // flw names may hold dots, OpenAI's may not (^[A-Za-z0-9_-]{1,64}$): other characters are sent as "_".
  const named = (name: unknown): string => {
    const chosen = name ?? key;
    if (chosen === undefined) {
      throw new TypeError(`${where} has no name: give it one (tool({ name: "search", ... })) or pass tools as an object ({ search })`);
    }
    if (typeof chosen !== "string" || !isValidToolName(chosen)) {
      throw new TypeError(`${where}: the name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(chosen)}`);
    }
    return chosen.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 64);
  };
  if (isTool(spec)) {
    const name = named(spec.name);
    const standard = spec.inputStandardSchema;
    return {
      name,
      wire: wire(name, spec.description, spec.inputSchema, undefined),
      run: async (call, ctx) => {
        let input: unknown = call.arguments;
        if (standard !== undefined) {
          let checked = checkWithStandardSchema(standard, input);
          if (checked instanceof Promise) checked = await checked;
          if ("problem" in checked) throw new ArgumentsError(checked.problem);
          input = checked.value;
        } else {
          const problem = validate(input, spec.inputSchema);
          if (problem !== undefined) throw new ArgumentsError(problem);
        }
        return await spec.run(input as never, ctx);
      },
    };
  }
  if (!isObject(spec)) throw new TypeError(`${where} is not a tool: pass tool({...}), { name, parameters, run } or { type: "function", function: {...} }`);
  const run = spec["run"];
  if (run !== undefined && typeof run !== "function") throw new TypeError(`${where}: run must be a function`);
  let name: string;
  let description: unknown;
  let parameters: unknown;
  let strict: unknown;
  if (spec["type"] === "function" && isObject(spec["function"])) {
    const fn = spec["function"];
    if (typeof fn["name"] !== "string" || fn["name"] === "") throw new TypeError(`${where}: function.name must be a string`);
    name = fn["name"]; // sent as given

    ({ description, parameters, strict } = fn);
  } else {
    name = named(spec["name"]);
    ({ description, parameters } = spec);
  }
  if (description !== undefined && typeof description !== "string") throw new TypeError(`${where}: description must be a string`);
  if (parameters !== undefined && !isObject(parameters)) throw new TypeError(`${where}: parameters must be a JSON Schema object`);
  const schema = (parameters ?? { type: "object", properties: {} }) as JsonSchema;
  return {
    name,
    wire: wire(name, description, schema, strict),
    run:
      typeof run === "function"
        ? async (call, ctx) => {
            const problem = validate(call.arguments, schema);
            if (problem !== undefined) throw new ArgumentsError(problem);
            return await (run as (args: Record<string, unknown>, ctx: Context) => unknown).call(spec, call.arguments, ctx);
          }
        : undefined,
  };
}

function wire(name: string, description: unknown, parameters: JsonSchema, strict: unknown): ResolvedTool["wire"] {
  const fn: Record<string, unknown> = { name };
  if (typeof description === "string" && description !== "") fn["description"] = description;
  fn["parameters"] = parameters;
  if (strict !== undefined) fn["strict"] = strict;
  return { type: "function", function: fn };
}

/** Arguments the tool's schema refused. */
class ArgumentsError extends Error {}

/**
 * Run one tool call for `runTools`: its result as the text of a `tool`
 * message. A string result is sent as is, anything else as JSON. A call
 * that fails gives the model a text to read instead: `error: <name>: no
 * such tool (tools: a, b)`, `error: <name>: the arguments are ...` (not a
 * JSON object), `error: <name>: invalid arguments: ...` (not fitting the
 * schema), `error: <name>: <ErrorName>: <message>` (a thrown error). Only
 * a cancel (the signal aborted) rejects.
 */
export async function runToolCall(call: ToolCall, tools: ReadonlyMap<string, ResolvedTool>, signal: AbortSignal | undefined): Promise<string> {
  const tool = tools.get(call.name);
  if (tool?.run === undefined) {
    const names = [...tools.keys()].join(", ");
    return `error: ${call.name}: no such tool (tools: ${names})`;
  }
  if (call.error !== null) {
    return `error: ${call.name}: ${call.error}: ${JSON.stringify(call.argumentsJson.slice(0, 200))}; send a JSON object`;
  }
  const ctx = currentContext() ?? detachedContext(signal);
  let value: unknown;
  try {
    value = await tool.run(call, ctx);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof ArgumentsError) return `error: ${call.name}: invalid arguments: ${err.message}`;
    return `error: ${call.name}: ${errorText(err)}`;
  }
  if (signal?.aborted) throw signal.reason;
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value === undefined ? null : value) ?? "null";
  } catch (err) {
    return `error: ${call.name}: the result is not JSON: ${(err as Error).message}`;
  }
}
