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
export { detachedContext } from "./context.js";
export { isTool, tool } from "./tool.js";
export { validate } from "./schema.js";
export { ProtocolError } from "./protocol.js";
export { SDK_VERSION } from "./version.js";
