// Type tests: `tsc --noEmit` (npm run check) fails when inference breaks.
import { z } from "zod";
import {
  type Context,
  type Infer,
  type InferStandardOutput,
  type StandardSchemaV1,
  type Tool,
  detachedContext,
  tool,
} from "../../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_ok: T): void {}

// The README example compiles as written.
export const echo = tool({
  description: "Return the text unchanged.",
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: async ({ text }) => text,
});

export const slow = tool({
  description: "Sleep in steps, reporting progress.",
  input: { type: "object", properties: { seconds: { type: "number" }, steps: { type: "integer", default: 10 } }, required: ["seconds"] },
  run: async ({ seconds, steps = 10 }, ctx) => {
    for (let i = 0; i < steps; i++) {
      await ctx.progress(i + 1, steps, `step ${i + 1}`);
      await new Promise((r) => setTimeout(r, (seconds * 1000) / steps));
    }
    return "done";
  },
});

expectType<Equal<typeof echo, Tool<{ text: string }, string>>>(true);
expectType<Equal<Parameters<typeof slow.run>[0], { seconds: number; steps?: number }>>(true);

// Every kind the subset covers.
export const kinds = tool({
  input: {
    type: "object",
    properties: {
      s: { type: "string" },
      i: { type: "integer" },
      b: { type: "boolean" },
      n: { type: "null" },
      color: { enum: ["red", "green"] },
      fixed: { const: 3 },
      maybe: { type: ["string", "null"] },
      tags: { type: "array", items: { type: "string" } },
      anything: { type: "array" },
      point: { type: "object", properties: { x: { type: "number" }, y: { type: "number" } }, required: ["x"] },
      bag: { type: "object" },
      either: { anyOf: [{ type: "string" }, { type: "integer" }] },
      untyped: { description: "no type" },
    },
    required: ["s", "color", "tags", "point"],
  },
  run: (args, ctx: Context) => {
    expectType<Equal<typeof args.s, string>>(true);
    expectType<Equal<typeof args.i, number | undefined>>(true);
    expectType<Equal<typeof args.b, boolean | undefined>>(true);
    expectType<Equal<typeof args.n, null | undefined>>(true);
    expectType<Equal<typeof args.color, "red" | "green">>(true);
    expectType<Equal<typeof args.fixed, 3 | undefined>>(true);
    expectType<Equal<typeof args.maybe, string | null | undefined>>(true);
    expectType<Equal<typeof args.tags, string[]>>(true);
    expectType<Equal<typeof args.anything, unknown[] | undefined>>(true);
    expectType<Equal<typeof args.point, { x: number; y?: number }>>(true);
    expectType<Equal<typeof args.bag, { [key: string]: unknown } | undefined>>(true);
    expectType<Equal<typeof args.either, string | number | undefined>>(true);
    expectType<Equal<typeof args.untyped, unknown>>(true);
    expectType<Equal<typeof ctx.signal, AbortSignal>>(true);
    return args.point.x;
  },
});

expectType<Equal<Infer<{ type: "object"; properties: {} }>, {}>>(true);

// A sync run, an explicit name, no properties at all.
export const now = tool({ name: "clock.now", input: { type: "object" }, run: () => Date.now() });
expectType<Equal<Parameters<typeof now.run>[0], { [key: string]: unknown }>>(true);

// Mistakes the types catch.
tool({
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  // @ts-expect-error text is a string, not a number
  run: ({ text }: { text: number }) => text,
});
tool({
  input: { type: "object", properties: { text: { type: "string" } } },
  // @ts-expect-error text is optional, so it may be undefined
  run: ({ text }) => text.toUpperCase(),
});
// @ts-expect-error the input schema must be an object schema
tool({ input: { type: "string" }, run: () => 1 });

// Calling a tool by hand.
export async function byHand(): Promise<string> {
  return await echo.run({ text: "hi" }, detachedContext());
}

// A zod 4 schema as input: run gets the schema's output type (defaults filled in, transforms applied).
const Greeting = z.object({
  name: z.string(),
  times: z.number().int().default(1),
  tone: z.enum(["plain", "loud"]).optional(),
  when: z.string().transform((s) => s.length),
});

export const greet = tool({
  description: "Greet someone.",
  input: Greeting,
  run: (args) => {
    expectType<Equal<typeof args.name, string>>(true);
    expectType<Equal<typeof args.times, number>>(true);
    expectType<Equal<typeof args.tone, "plain" | "loud" | undefined>>(true);
    expectType<Equal<typeof args.when, number>>(true);
    return `hello ${args.name}`;
  },
});
expectType<Equal<Parameters<typeof greet.run>[0], z.output<typeof Greeting>>>(true);
expectType<Equal<typeof greet, Tool<z.output<typeof Greeting>, string>>>(true);
expectType<Equal<InferStandardOutput<typeof Greeting>, z.output<typeof Greeting>>>(true);

// A zod schema is a StandardSchemaV1 as the SDK declares it.
const asStandard: StandardSchemaV1 = Greeting;
void asStandard;

tool({
  input: z.object({ n: z.number() }),
  // @ts-expect-error n is a number, not a string
  run: ({ n }: { n: string }) => n,
});
tool({
  input: z.object({ n: z.number() }),
  // @ts-expect-error there is no member m
  run: (args) => args.m,
});
