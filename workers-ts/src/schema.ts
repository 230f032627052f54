/**
 * JSON Schema for tool inputs: the argument types inferred from a schema
 * literal at the type level ({@link Infer}), and a small validator for the
 * same subset ({@link validate}) that turns bad arguments into
 * `invalid_arguments` before a tool runs.
 *
 * The subset: `type` (one name or a list), `enum`, `const`, `properties`
 * with `required`, `additionalProperties: false`, `items`, `anyOf`/`oneOf`
 * (validated as "any of"). Other keywords pass through to the manifest and
 * are neither checked nor inferred.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type JsonTypeName = "string" | "number" | "integer" | "boolean" | "null" | "array" | "object";

/** A JSON Schema, loosely: the keywords this SDK reads, and anything else. */
export interface JsonSchema {
  readonly type?: JsonTypeName | readonly JsonTypeName[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly properties?: { readonly [name: string]: JsonSchema };
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | JsonSchema;
  readonly items?: JsonSchema;
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
  readonly description?: string;
  readonly default?: unknown;
  readonly [keyword: string]: unknown;
}

/** The schema of a tool's arguments: always an object. */
export interface ObjectSchema extends JsonSchema {
  readonly type: "object";
}

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type TypeOf<N> = N extends "string"
  ? string
  : N extends "number" | "integer"
    ? number
    : N extends "boolean"
      ? boolean
      : N extends "null"
        ? null
        : N extends "array"
          ? unknown[]
          : N extends "object"
            ? { [key: string]: unknown }
            : unknown;

type RequiredOf<S> = S extends { readonly required: readonly (infer R)[] } ? R : never;

type InferObject<P, R> = Simplify<
  { -readonly [K in keyof P as K extends R ? K : never]: Infer<P[K]> } & {
    -readonly [K in keyof P as K extends R ? never : K]?: Infer<P[K]>;
  }
>;

type InferByType<S, N> = N extends "array"
  ? S extends { readonly items: infer I }
    ? Infer<I>[]
    : unknown[]
  : N extends "object"
    ? S extends { readonly properties: infer P }
      ? InferObject<P, RequiredOf<S>>
      : { [key: string]: unknown }
    : TypeOf<N>;

/** The TypeScript type of the values a JSON Schema literal accepts (a practical subset). */
export type Infer<S> = S extends { readonly const: infer C }
  ? C
  : S extends { readonly enum: readonly (infer E)[] }
    ? E
    : S extends { readonly anyOf: readonly (infer A)[] }
      ? Infer<A>
      : S extends { readonly oneOf: readonly (infer A)[] }
        ? Infer<A>
        : S extends { readonly type: readonly (infer N)[] }
          ? N extends unknown
            ? InferByType<S, N>
            : never
          : S extends { readonly type: infer N }
            ? InferByType<S, N>
            : unknown;

// ---------------------------------------------------------------------------
// Validation.

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function hasType(value: unknown, name: string): boolean {
  switch (name) {
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return typeof value === "number" && Number.isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "null":
      return value === null;
    case "array":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    default:
      return true; // a type this validator does not know: not its business
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= 60 ? text : text.slice(0, 57) + "...";
}

/**
 * The first way `value` does not fit `schema`, as a sentence naming the
 * path (`args.points[2].x`), or `undefined` when it fits.
 */
export function validate(value: unknown, schema: unknown, path = "args"): string | undefined {
  if (typeof schema !== "object" || schema === null) return undefined; // `true` or nonsense: accept
  const s = schema as JsonSchema;
  if (s.type !== undefined) {
    const names: readonly string[] = Array.isArray(s.type) ? s.type : [s.type as string];
    if (!names.some((name) => hasType(value, name))) {
      return `${path} must be ${names.map((n) => (n === "integer" || n === "array" || n === "object" ? `an ${n}` : `a ${n}`)).join(" or ")}, got ${typeName(value)} ${show(value)}`;
    }
  }
  if (s.enum !== undefined && !s.enum.some((option) => sameJson(option, value))) {
    return `${path} must be one of ${s.enum.map(show).join(", ")}, got ${show(value)}`;
  }
  if (s.const !== undefined && !sameJson(s.const, value)) {
    return `${path} must be ${show(s.const)}, got ${show(value)}`;
  }
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives !== undefined && !alternatives.some((option) => validate(value, option, path) === undefined)) {
    return `${path} fits none of the allowed schemas, got ${show(value)}`;
  }
  if (Array.isArray(value) && s.items !== undefined) {
    for (let i = 0; i < value.length; i++) {
      const problem = validate(value[i], s.items, `${path}[${i}]`);
      if (problem !== undefined) return problem;
    }
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const name of s.required ?? []) {
      if (!Object.prototype.hasOwnProperty.call(obj, name)) return `${path} is missing the required property ${JSON.stringify(name)}`;
    }
    const properties = s.properties ?? {};
    for (const [name, member] of Object.entries(obj)) {
      const sub = Object.prototype.hasOwnProperty.call(properties, name) ? properties[name] : undefined;
      const where = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
      if (sub !== undefined) {
        const problem = validate(member, sub, where);
        if (problem !== undefined) return problem;
      } else if (s.additionalProperties === false) {
        return `${path} has an unexpected property ${JSON.stringify(name)}`;
      } else if (typeof s.additionalProperties === "object") {
        const problem = validate(member, s.additionalProperties, where);
        if (problem !== undefined) return problem;
      }
    }
  }
  return undefined;
}
