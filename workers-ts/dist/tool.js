/**
 * `tool()`: declare a tool. The worker's entry point finds the tools among
 * a script's exports; a tool's name is its export name unless `name` is
 * given. The input is a JSON Schema literal or a Standard Schema (a zod 4
 * object, for one; see `standard_schema.ts`).
 */
import { isValidToolName } from "./worker/protocol.js";
import { inputJsonSchemaOf, isStandardSchema, jsonSchemaOf, } from "./standard_schema.js";
const TOOL = Symbol.for("flw.tool");
function isPlainObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
export function tool(definition) {
    const { name, description = "", input, output, run } = definition;
    if (name !== undefined && (typeof name !== "string" || !isValidToolName(name))) {
        throw new TypeError(`tool(): name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(name)}`);
    }
    if (typeof description !== "string")
        throw new TypeError("tool(): description must be a string");
    let inputSchema;
    let inputStandardSchema;
    if (isStandardSchema(input)) {
        inputSchema = inputJsonSchemaOf(input);
        inputStandardSchema = input;
    }
    else if (isPlainObject(input) && input.type === "object") {
        inputSchema = input;
    }
    else {
        throw new TypeError('tool(): input must be a JSON Schema object with "type": "object", or a Standard Schema such as z.object({...})');
    }
    let outputSchema;
    if (isStandardSchema(output)) {
        outputSchema = jsonSchemaOf(output, "output", "output");
    }
    else if (output === undefined || isPlainObject(output)) {
        outputSchema = output;
    }
    else {
        throw new TypeError("tool(): output must be a JSON Schema object or a Standard Schema");
    }
    if (typeof run !== "function")
        throw new TypeError("tool(): run must be a function");
    return Object.freeze({
        [TOOL]: true,
        name,
        description,
        inputSchema,
        inputStandardSchema,
        outputSchema,
        run: run,
    });
}
/** Whether `value` was made by `tool()` (of any copy of this SDK). */
export function isTool(value) {
    return typeof value === "object" && value !== null && value[TOOL] === true;
}
/**
 * The tools among a module's exports, named by their `name` or export name,
 * in export order. Throws an `Error` naming the problem for a duplicate or
 * invalid name.
 */
export function collectTools(namespace) {
    const out = [];
    const where = new Map();
    for (const [exportName, value] of Object.entries(namespace)) {
        if (!isTool(value))
            continue;
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
