/**
 * flw-worker: write tools in TypeScript for the flw supervisor.
 *
 * ```ts
 * import { tool } from "flw-worker";
 *
 * export const echo = tool({
 *   description: "Return the text unchanged.",
 *   input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
 *   run: async ({ text }) => text,
 * });
 * ```
 *
 * `input` may also be a zod 4 schema (any Standard Schema with a JSON Schema
 * converter): `input: z.object({ text: z.string() })`.
 *
 * The supervisor runs `node dist/main.js SCRIPT`, which serves the tools the
 * script exports.
 */

export { type Context, detachedContext } from "./context.js";
export { type AnyTool, type StandardToolDefinition, type Tool, type ToolDefinition, isTool, tool } from "./tool.js";
export type { InferStandardInput, InferStandardOutput, StandardIssue, StandardResult, StandardSchemaV1 } from "./standard_schema.js";
export type { Infer, JsonSchema, JsonTypeName, JsonValue, ObjectSchema } from "./schema.js";
export { validate } from "./schema.js";
export { type ErrorKind, type LogLevel, ProtocolError } from "./protocol.js";
export { SDK_VERSION } from "./version.js";
