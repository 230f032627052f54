// The benchmark tools in TypeScript, served by `flw mcp bench/peers/flw_tools.ts`
// (the "flw defaults (TS)" column of workload (l), model-like waits). The
// bodies do what the Python tools of the same names in flw_tools.py do.
import { tool } from "flw-worker";

const msInput = { type: "object", properties: { ms: { type: "integer" } }, required: ["ms"] } as const;

export const echo = tool({
  description: "Return the text unchanged.",
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: async ({ text }) => text,
});

export const wait_async = tool({
  description: "Wait ms milliseconds like a model call awaited on the event loop.",
  input: msInput,
  run: async ({ ms }) => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return "ok";
  },
});
