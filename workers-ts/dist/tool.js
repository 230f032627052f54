/**
 * `tool()`: declare a tool. The worker's entry point finds the tools among
 * a script's exports; a tool's name is its export name unless `name` is
 * given.
 */
import { isValidToolName } from "./protocol.js";
const TOOL = Symbol.for("flw.tool");
function isPlainObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}
/**
 * Declare a tool. The argument type of `run` is inferred from the `input`
 * schema literal: `{ type: "string" }` is `string`, properties not in
 * `required` are optional, `enum` gives a union of its values.
 */
export function tool(definition) {
    const { name, description = "", input, output, run } = definition;
    if (name !== undefined && (typeof name !== "string" || !isValidToolName(name))) {
        throw new TypeError(`tool(): name must be 1-128 characters of A-Z a-z 0-9 _ - ., got ${JSON.stringify(name)}`);
    }
    if (typeof description !== "string")
        throw new TypeError("tool(): description must be a string");
    if (!isPlainObject(input) || input.type !== "object") {
        throw new TypeError('tool(): input must be a JSON Schema object with "type": "object"');
    }
    if (output !== undefined && !isPlainObject(output))
        throw new TypeError("tool(): output must be a JSON Schema object");
    if (typeof run !== "function")
        throw new TypeError("tool(): run must be a function");
    return Object.freeze({
        [TOOL]: true,
        name,
        description,
        inputSchema: input,
        outputSchema: output,
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
