/**
 * `tool()`: declare a tool. The worker's entry point finds the tools among
 * a script's exports; a tool's name is its export name unless `name` is
 * given. The input is a JSON Schema literal or a Standard Schema (a zod 4
 * object, for one; see `standard_schema.ts`).
 */

import type { Context } from "./context.js";
import { isValidToolName } from "./worker/protocol.js";
import type { Infer, JsonSchema, ObjectSchema } from "./schema.js";
import {
  type InferStandardOutput,
  type StandardSchemaV1,
  inputJsonSchemaOf,
  isStandardSchema,
  jsonSchemaOf,
} from "./standard_schema.js";

const TOOL: unique symbol = Symbol.for("flw.tool") as never;

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
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyTool = Tool<any, unknown>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Declare a tool. With a JSON Schema literal as `input`, the argument type
 * of `run` is inferred from it: `{ type: "string" }` is `string`,
 * properties not in `required` are optional, `enum` gives a union of its
 * values. With a Standard Schema (`z.object({...})`), it is the schema's
 * output type.
 */
export function tool<const S extends ObjectSchema, R>(definition: ToolDefinition<S, R>): Tool<Infer<S>, R>;
export function tool<S extends StandardSchemaV1, R>(
  definition: StandardToolDefinition<S, R>,
): Tool<InferStandardOutput<S>, R>;
export function tool(definition: ToolDefinition<ObjectSchema, unknown> | StandardToolDefinition<StandardSchemaV1, unknown>): AnyTool {
  const { name, description = "", input, output, run } = definition;
  if (name !== undefined && (typeof name !== "string" || !isValidToolName(name))) {
    throw new TypeError(`tool(): name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(name)}`);
  }
  if (typeof description !== "string") throw new TypeError("tool(): description must be a string");
  let inputSchema: ObjectSchema;
  let inputStandardSchema: StandardSchemaV1 | undefined;
  if (isStandardSchema(input)) {
    inputSchema = inputJsonSchemaOf(input);
    inputStandardSchema = input;
  } else if (isPlainObject(input) && input.type === "object") {
    inputSchema = input as ObjectSchema;
  } else {
    throw new TypeError('tool(): input must be a JSON Schema object with "type": "object", or a Standard Schema such as z.object({...})');
  }
  let outputSchema: JsonSchema | undefined;
  if (isStandardSchema(output)) {
    outputSchema = jsonSchemaOf(output, "output", "output");
  } else if (output === undefined || isPlainObject(output)) {
    outputSchema = output;
  } else {
    throw new TypeError("tool(): output must be a JSON Schema object or a Standard Schema");
  }
  if (typeof run !== "function") throw new TypeError("tool(): run must be a function");
  return Object.freeze({
    [TOOL]: true as const,
    name,
    description,
    inputSchema,
    inputStandardSchema,
    outputSchema,
    run: run as AnyTool["run"],
  });
}

/** Whether `value` was made by `tool()` (of any copy of this SDK). */
export function isTool(value: unknown): value is AnyTool {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[TOOL] === true;
}

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
export function collectTools(namespace: Record<string, unknown>): NamedTool[] {
  const out: NamedTool[] = [];
  const where = new Map<string, string>();
  for (const [exportName, value] of Object.entries(namespace)) {
    if (!isTool(value)) continue;
    let name = value.name;
    if (name === undefined) {
      if (exportName === "default") {
        throw new Error("the default export is a tool without a name: give it one with tool({ name: ..., ... })");
      }
      name = exportName;
    }
    if (!isValidToolName(name)) {
      throw new Error(`export ${exportName}: tool name ${JSON.stringify(name)} is not 1-128 characters of A-Z a-z 0-9 _ - .`);
    }
    const other = where.get(name);
    if (other !== undefined) {
      throw new Error(`two tools are named ${JSON.stringify(name)} (exports ${other} and ${exportName}); tool names must be unique`);
    }
    where.set(name, exportName);
    out.push({ name, tool: value });
  }
  return out;
}
