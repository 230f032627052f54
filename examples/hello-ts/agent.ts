// The smallest flw worker in TypeScript: two tools. `text`, `seconds` and
// `steps` are typed from the input schemas. Run it with
//   flw call examples/hello-ts/agent.ts slow --json '{"seconds": 0.5, "steps": 5}'
import { tool } from "flw-worker";

export const echo = tool({
  description: "Return the text unchanged.",
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: async ({ text }) => text,
});

export const slow = tool({
  description: "Sleep in steps, reporting progress.",
  input: {
    type: "object",
    properties: { seconds: { type: "number" }, steps: { type: "integer", default: 10 } },
    required: ["seconds"],
  },
  run: async ({ seconds, steps = 10 }, ctx) => {
    for (let i = 0; i < steps; i++) {
      await ctx.progress(i + 1, steps, `step ${i + 1}`);
      await new Promise((r) => setTimeout(r, (seconds * 1000) / steps));
    }
    return "done";
  },
});
