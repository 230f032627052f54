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
/** The JSON Schema dialect asked of Standard JSON Schema converters (the one MCP uses). */
export const JSON_SCHEMA_TARGET = "draft-2020-12";
/** Whether `value` is a Standard Schema (v1): an object with a `~standard` that can `validate`. */
export function isStandardSchema(value) {
    if ((typeof value !== "object" && typeof value !== "function") || value === null)
        return false;
    const props = value["~standard"];
    return (typeof props === "object" &&
        props !== null &&
        props.version === 1 &&
        typeof props.validate === "function");
}
function vendorOf(schema) {
    const vendor = schema["~standard"].vendor;
    return typeof vendor === "string" ? vendor : "an unknown library";
}
/**
 * The JSON Schema of what `schema` accepts (`io` "input") or gives
 * ("output"), from its Standard JSON Schema converter. Throws a `TypeError`
 * that says what to do when the schema has none or the conversion fails.
 */
export function jsonSchemaOf(schema, io, what) {
    const vendor = vendorOf(schema);
    const converter = schema["~standard"].jsonSchema;
    const convert = converter?.[io];
    if (typeof convert !== "function") {
        throw new TypeError(`tool(): ${what} is a Standard Schema from ${vendor} that cannot give its JSON Schema ` +
            "(it has no `~standard.jsonSchema`); use a release that implements Standard JSON Schema " +
            `(zod 4.2 or later), or give ${what} as a JSON Schema object`);
    }
    let converted;
    try {
        converted = convert.call(converter, { target: JSON_SCHEMA_TARGET });
    }
    catch (err) {
        throw new TypeError(`tool(): cannot turn the ${vendor} schema of ${what} into JSON Schema: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof converted !== "object" || converted === null || Array.isArray(converted)) {
        throw new TypeError(`tool(): the ${vendor} schema of ${what} gave no JSON Schema object`);
    }
    return converted;
}
/** The JSON Schema of a tool's input: it must describe an object. */
export function inputJsonSchemaOf(schema) {
    const json = jsonSchemaOf(schema, "input", "input");
    if (json.type !== "object") {
        throw new TypeError(`tool(): input must describe an object (like z.object({...})), but its JSON Schema has "type": ${JSON.stringify(json.type ?? null)}`);
    }
    return json;
}
function pathText(path) {
    let out = "args";
    for (const segment of path ?? []) {
        const key = typeof segment === "object" && segment !== null ? segment.key : segment;
        if (typeof key === "number")
            out += `[${key}]`;
        else if (typeof key === "string" && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key))
            out += `.${key}`;
        else
            out += `[${JSON.stringify(String(key))}]`;
    }
    return out;
}
const MAX_ISSUES_SHOWN = 5;
/** The issues as one sentence: `args.n: Invalid input: ...; args.tags[1]: ...`. */
export function issuesText(issues) {
    const shown = issues.slice(0, MAX_ISSUES_SHOWN).map((issue) => `${pathText(issue.path)}: ${issue.message}`);
    if (issues.length > MAX_ISSUES_SHOWN)
        shown.push(`and ${issues.length - MAX_ISSUES_SHOWN} more`);
    return shown.join("; ") || "the schema refused them";
}
function checked(result) {
    if (result.issues !== undefined)
        return { problem: issuesText(result.issues) };
    return { value: result.value };
}
function isThenable(value) {
    return typeof value?.then === "function";
}
/**
 * Validate `value` with `schema`: synchronous when the schema's `validate`
 * is (zod's is, unless the schema has async refinements).
 */
export function checkWithStandardSchema(schema, value) {
    const result = schema["~standard"].validate(value);
    return isThenable(result) ? Promise.resolve(result).then(checked) : checked(result);
}
