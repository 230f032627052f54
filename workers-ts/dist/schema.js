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
// ---------------------------------------------------------------------------
// Validation.
function typeName(value) {
    if (value === null)
        return "null";
    if (Array.isArray(value))
        return "array";
    if (typeof value === "number")
        return Number.isInteger(value) ? "integer" : "number";
    return typeof value;
}
function hasType(value, name) {
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
function sameJson(a, b) {
    if (a === b)
        return true;
    if (typeof a !== "object" || typeof b !== "object" || a === null || b === null)
        return false;
    return JSON.stringify(a) === JSON.stringify(b);
}
function show(value) {
    const text = JSON.stringify(value) ?? String(value);
    return text.length <= 60 ? text : text.slice(0, 57) + "...";
}
/**
 * The first way `value` does not fit `schema`, as a sentence naming the
 * path (`args.points[2].x`), or `undefined` when it fits.
 */
export function validate(value, schema, path = "args") {
    if (typeof schema !== "object" || schema === null)
        return undefined; // `true` or nonsense: accept
    const s = schema;
    if (s.type !== undefined) {
        const names = Array.isArray(s.type) ? s.type : [s.type];
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
            if (problem !== undefined)
                return problem;
        }
    }
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
        const obj = value;
        for (const name of s.required ?? []) {
            if (!Object.prototype.hasOwnProperty.call(obj, name))
                return `${path} is missing the required property ${JSON.stringify(name)}`;
        }
        const properties = s.properties ?? {};
        for (const [name, member] of Object.entries(obj)) {
            const sub = Object.prototype.hasOwnProperty.call(properties, name) ? properties[name] : undefined;
            const where = /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? `${path}.${name}` : `${path}[${JSON.stringify(name)}]`;
            if (sub !== undefined) {
                const problem = validate(member, sub, where);
                if (problem !== undefined)
                    return problem;
            }
            else if (s.additionalProperties === false) {
                return `${path} has an unexpected property ${JSON.stringify(name)}`;
            }
            else if (typeof s.additionalProperties === "object") {
                const problem = validate(member, s.additionalProperties, where);
                if (problem !== undefined)
                    return problem;
            }
        }
    }
    return undefined;
}
