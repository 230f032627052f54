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
 * Graph nodes and flows (PocketFlow's model, run by the supervisor):
 *
 * ```ts
 * import { flow, node } from "flw-worker";
 *
 * export const decide = node((s) => ((s.notes?.length ?? 0) < 2 ? "search" : "answer"));
 * export const search = node((s) => { (s.notes ??= []).push(`note ${s.notes.length}`); });
 * export const answer = node((s) => { s.answer = s.notes.join(" / "); });
 * decide.on("search", search);
 * decide.on("answer", answer);
 * search.next(decide);
 * export const agent = flow({ start: decide });
 * ```
 *
 * Model calls to OpenAI-compatible endpoints (the reply's text streams to
 * the call as chunks):
 *
 * ```ts
 * import { llm } from "flw-worker";
 *
 * const reply = await llm.chat("Say hi.", { model: "qwen3:8b" });
 * ```
 *
 * The supervisor runs `node dist/main.js SCRIPT`, which serves the tools,
 * nodes and flows the script exports.
 */

export { type Context, currentContext, detachedContext } from "./context.js";
export {
  type Action,
  type AnyNode,
  AsyncBatchFlow,
  AsyncParallelBatchFlow,
  BatchFlow,
  type BatchFlowOptions,
  BatchNode,
  ClassNode,
  type ClassNodeOptions,
  type EntryOptions,
  type FallbackFn,
  Flow,
  type FlowOptions,
  FunctionNode,
  GraphNode,
  Node,
  type NodeDefinition,
  NodeError,
  type NodeFn,
  type NodeOptions,
  Parallel,
  type ParallelOptions,
  type ParameterSets,
  type Params,
  type RunEvent,
  type RunOptions,
  type Shared,
  flow,
  node,
  parallel,
} from "./graph/dsl.js";
export * as llm from "./llm/index.js";
export { type AnyTool, type StandardToolDefinition, type Tool, type ToolDefinition, isTool, tool } from "./tool.js";
export type { InferStandardInput, InferStandardOutput, StandardIssue, StandardResult, StandardSchemaV1 } from "./standard_schema.js";
export type { Infer, JsonSchema, JsonTypeName, JsonValue, ObjectSchema } from "./schema.js";
export { validate } from "./schema.js";
export { type ErrorKind, type LogLevel, ProtocolError } from "./worker/protocol.js";
export { SDK_VERSION } from "./version.js";
