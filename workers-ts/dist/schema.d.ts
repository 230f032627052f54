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
export type JsonValue = null | boolean | number | string | JsonValue[] | {
    [key: string]: JsonValue;
};
export type JsonTypeName = "string" | "number" | "integer" | "boolean" | "null" | "array" | "object";
/** A JSON Schema, loosely: the keywords this SDK reads, and anything else. */
export interface JsonSchema {
    readonly type?: JsonTypeName | readonly JsonTypeName[];
    readonly enum?: readonly unknown[];
    readonly const?: unknown;
    readonly properties?: {
        readonly [name: string]: JsonSchema;
    };
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
type Simplify<T> = {
    [K in keyof T]: T[K];
} & {};
type TypeOf<N> = N extends "string" ? string : N extends "number" | "integer" ? number : N extends "boolean" ? boolean : N extends "null" ? null : N extends "array" ? unknown[] : N extends "object" ? {
    [key: string]: unknown;
} : unknown;
type RequiredOf<S> = S extends {
    readonly required: readonly (infer R)[];
} ? R : never;
type InferObject<P, R> = Simplify<{
    -readonly [K in keyof P as K extends R ? K : never]: Infer<P[K]>;
} & {
    -readonly [K in keyof P as K extends R ? never : K]?: Infer<P[K]>;
}>;
type InferByType<S, N> = N extends "array" ? S extends {
    readonly items: infer I;
} ? Infer<I>[] : unknown[] : N extends "object" ? S extends {
    readonly properties: infer P;
} ? InferObject<P, RequiredOf<S>> : {
    [key: string]: unknown;
} : TypeOf<N>;
/** The TypeScript type of the values a JSON Schema literal accepts (a practical subset). */
export type Infer<S> = S extends {
    readonly const: infer C;
} ? C : S extends {
    readonly enum: readonly (infer E)[];
} ? E : S extends {
    readonly anyOf: readonly (infer A)[];
} ? Infer<A> : S extends {
    readonly oneOf: readonly (infer A)[];
} ? Infer<A> : S extends {
    readonly type: readonly (infer N)[];
} ? N extends unknown ? InferByType<S, N> : never : S extends {
    readonly type: infer N;
} ? InferByType<S, N> : unknown;
/**
 * The first way `value` does not fit `schema`, as a sentence naming the
 * path (`args.points[2].x`), or `undefined` when it fits.
 */
export declare function validate(value: unknown, schema: unknown, path?: string): string | undefined;
export {};
