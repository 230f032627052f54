/**
 * Tool inputs given as a Standard Schema (https://standardschema.dev): a
 * zod 4 object, or a schema of any library that implements Standard Schema
 * v1 and Standard JSON Schema v1 (zod 4.2 or later, valibot, ArkType, ...).
 *
 * The SDK imports no schema library. It reads what the standard puts on
 * the schema's `~standard` property: `jsonSchema.input()` gives the JSON
 * Schema for the manifest, and `validate()` checks (and parses: defaults,
 * transforms) the arguments before `run` sees them. The types here are the
 * parts of the standard's own interfaces that the SDK uses, copied as the
 * standard intends.
 */

import type { JsonSchema, ObjectSchema } from "./schema.js";

/** A problem `validate` found, with where it is. */
export interface StandardIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** What `validate` returns: the parsed value, or the issues. */
export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardIssue> };

/** A Standard Schema v1 (the `~standard` property of a zod 4 schema, for one). */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** The type a Standard Schema gives after validation (what `run` receives). */
export type InferStandardOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"];

/** The type a Standard Schema accepts before validation. */
export type InferStandardInput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["input"];

/** The JSON Schema dialect asked of Standard JSON Schema converters (the one MCP uses). */
export const JSON_SCHEMA_TARGET = "draft-2020-12";

interface JsonSchemaConverter {
  readonly input?: (options: { readonly target: string }) => Record<string, unknown>;
  readonly output?: (options: { readonly target: string }) => Record<string, unknown>;
}

/** Whether `value` is a Standard Schema (v1): an object with a `~standard` that can `validate`. */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const props = (value as { "~standard"?: unknown })["~standard"];
  return (
    typeof props === "object" &&
    props !== null &&
    (props as { version?: unknown }).version === 1 &&
    typeof (props as { validate?: unknown }).validate === "function"
  );
}

function vendorOf(schema: StandardSchemaV1): string {
  const vendor = schema["~standard"].vendor;
  return typeof vendor === "string" ? vendor : "an unknown library";
}

/**
 * The JSON Schema of what `schema` accepts (`io` "input") or gives
 * ("output"), from its Standard JSON Schema converter. Throws a `TypeError`
 * that says what to do when the schema has none or the conversion fails.
 */
export function jsonSchemaOf(schema: StandardSchemaV1, io: "input" | "output", what: string): JsonSchema {
  const vendor = vendorOf(schema);
  const converter = (schema["~standard"] as { jsonSchema?: JsonSchemaConverter }).jsonSchema;
  const convert = converter?.[io];
  if (typeof convert !== "function") {
    throw new TypeError(
      `tool(): ${what} is a Standard Schema from ${vendor} that cannot give its JSON Schema ` +
        "(it has no `~standard.jsonSchema`); use a release that implements Standard JSON Schema " +
        `(zod 4.2 or later), or give ${what} as a JSON Schema object`,
    );
  }
  let converted: unknown;
  try {
    converted = convert.call(converter, { target: JSON_SCHEMA_TARGET });
  } catch (err) {
    throw new TypeError(
      `tool(): cannot turn the ${vendor} schema of ${what} into JSON Schema: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (typeof converted !== "object" || converted === null || Array.isArray(converted)) {
    throw new TypeError(`tool(): the ${vendor} schema of ${what} gave no JSON Schema object`);
  }
  return converted as JsonSchema;
}

/** The JSON Schema of a tool's input: it must describe an object. */
export function inputJsonSchemaOf(schema: StandardSchemaV1): ObjectSchema {
  const json = jsonSchemaOf(schema, "input", "input");
  if (json.type !== "object") {
    throw new TypeError(
      `tool(): input must describe an object (like z.object({...})), but its JSON Schema has "type": ${JSON.stringify(json.type ?? null)}`,
    );
  }
  return json as ObjectSchema;
}

function pathText(path: StandardIssue["path"]): string {
  let out = "args";
  for (const segment of path ?? []) {
    const key = typeof segment === "object" && segment !== null ? segment.key : segment;
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

const MAX_ISSUES_SHOWN = 5;

/** The issues as one sentence: `args.n: Invalid input: ...; args.tags[1]: ...`. */
export function issuesText(issues: ReadonlyArray<StandardIssue>): string {
  const shown = issues.slice(0, MAX_ISSUES_SHOWN).map((issue) => `${pathText(issue.path)}: ${issue.message}`);
  if (issues.length > MAX_ISSUES_SHOWN) shown.push(`and ${issues.length - MAX_ISSUES_SHOWN} more`);
  return shown.join("; ") || "the schema refused them";
}

/** The outcome of checking arguments: the parsed value, or what is wrong. */
export type Checked = { readonly value: unknown } | { readonly problem: string };

function checked(result: StandardResult<unknown>): Checked {
  if (result.issues !== undefined) return { problem: issuesText(result.issues) };
  return { value: result.value };
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/**
 * Validate `value` with `schema`: synchronous when the schema's `validate`
 * is (zod's is, unless the schema has async refinements).
 */
export function checkWithStandardSchema(schema: StandardSchemaV1, value: unknown): Checked | Promise<Checked> {
  const result = schema["~standard"].validate(value);
  return isThenable(result) ? Promise.resolve(result).then(checked) : checked(result);
}
