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
    readonly path?: ReadonlyArray<PropertyKey | {
        readonly key: PropertyKey;
    }> | undefined;
}
/** What `validate` returns: the parsed value, or the issues. */
export type StandardResult<Output> = {
    readonly value: Output;
    readonly issues?: undefined;
} | {
    readonly issues: ReadonlyArray<StandardIssue>;
};
/** A Standard Schema v1 (the `~standard` property of a zod 4 schema, for one). */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
    readonly "~standard": {
        readonly version: 1;
        readonly vendor: string;
        readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
        readonly types?: {
            readonly input: Input;
            readonly output: Output;
        } | undefined;
    };
}
/** The type a Standard Schema gives after validation (what `run` receives). */
export type InferStandardOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"];
/** The type a Standard Schema accepts before validation. */
export type InferStandardInput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["input"];
/** The JSON Schema dialect asked of Standard JSON Schema converters (the one MCP uses). */
export declare const JSON_SCHEMA_TARGET = "draft-2020-12";
/** Whether `value` is a Standard Schema (v1): an object with a `~standard` that can `validate`. */
export declare function isStandardSchema(value: unknown): value is StandardSchemaV1;
/**
 * The JSON Schema of what `schema` accepts (`io` "input") or gives
 * ("output"), from its Standard JSON Schema converter. Throws a `TypeError`
 * that says what to do when the schema has none or the conversion fails.
 */
export declare function jsonSchemaOf(schema: StandardSchemaV1, io: "input" | "output", what: string): JsonSchema;
/** The JSON Schema of a tool's input: it must describe an object. */
export declare function inputJsonSchemaOf(schema: StandardSchemaV1): ObjectSchema;
/** The issues as one sentence: `args.n: Invalid input: ...; args.tags[1]: ...`. */
export declare function issuesText(issues: ReadonlyArray<StandardIssue>): string;
/** The outcome of checking arguments: the parsed value, or what is wrong. */
export type Checked = {
    readonly value: unknown;
} | {
    readonly problem: string;
};
/**
 * Validate `value` with `schema`: synchronous when the schema's `validate`
 * is (zod's is, unless the schema has async refinements).
 */
export declare function checkWithStandardSchema(schema: StandardSchemaV1, value: unknown): Checked | Promise<Checked>;
