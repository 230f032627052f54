// Type tests of llm: `tsc --noEmit` (npm run check) fails when they break.
import { z } from "zod";
import { type Context, llm, tool } from "../../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_ok: T): void {}
type IsAny<T> = 0 extends 1 & T ? true : false;

// The README example compiles as written.
export const weather = tool({
  name: "weather",
  description: "The weather of a city.",
  input: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  run: async ({ city }) => `sunny in ${city}`,
});

export const ask = tool({
  input: { type: "object", properties: { question: { type: "string" } }, required: ["question"] },
  run: async ({ question }) => {
    const reply = await llm.runTools(question, { tools: [weather], system: "Answer in one sentence." });
    return reply.content;
  },
});

export async function readme(): Promise<void> {
  const reply = await llm.chat("Name three primes.", { temperature: 0 });
  const again = await llm.chat([...reply.messages, { role: "user", content: "Three more." }]);
  const data = (await llm.chat("A JSON object with a key 'primes'.", { json: true })).json();
  const s = llm.stream("Tell a story.", { onDelta: (_text) => {} });
  for await (const text of s) process.stdout.write(text);
  const local = llm.client({ baseUrl: "http://localhost:11434/v1", model: "qwen3:8b", timeout: 120_000 });

  expectType<Equal<typeof reply, llm.Reply>>(true);
  expectType<Equal<typeof again.content, string>>(true);
  expectType<Equal<typeof data, unknown>>(true);
  expectType<Equal<Awaited<typeof s.reply>, llm.Reply>>(true);
  expectType<Equal<typeof local, llm.Client>>(true);
  expectType<Equal<typeof reply.toolCalls, readonly llm.ToolCall[]>>(true);
  expectType<Equal<llm.ToolCall["arguments"], Record<string, unknown>>>(true);
  expectType<Equal<llm.ToolCall["error"], string | null>>(true);
  expectType<Equal<typeof reply.message.content, string | null>>(true);
  expectType<Equal<IsAny<llm.Reply["raw"]>, false>>(true);
  expectType<Equal<IsAny<llm.Reply["usage"]>, false>>(true);
}

// Every kind of tool, in an array and in an object.
const greet = tool({ input: z.object({ name: z.string() }), run: ({ name }) => `hi ${name}` });
const plain = {
  description: "Twice n.",
  parameters: { type: "object", properties: { n: { type: "number" } } },
  run: (args: Record<string, unknown>, _ctx: Context) => Number(args["n"]) * 2,
} as const;
const raw = { type: "function", function: { name: "lookup", parameters: { type: "object" } } } as const;
export const tools: llm.Tools = [weather, { name: "plain", ...plain }, raw];
export const named: llm.Tools = { weather, greet, plain, raw };

export async function options(signal: AbortSignal): Promise<void> {
  await llm.chat("x", {
    model: "m",
    system: "s",
    temperature: 0,
    maxTokens: 10,
    tools: named,
    toolChoice: { type: "function", function: { name: "weather" } },
    json: false,
    stream: false,
    timeout: 1000,
    maxRetries: 0,
    baseUrl: "http://localhost:8000/v1",
    apiKey: "k",
    extra: { seed: 1 },
    onDelta: (text) => expectType<Equal<typeof text, string>>(true),
    chunks: false,
    signal,
  });
  try {
    await llm.runTools("x", { tools, maxTurns: 3 });
  } catch (err) {
    if (err instanceof llm.APIError) expectType<Equal<typeof err.status, number>>(true);
    if (llm.isLLMError(err)) expectType<Equal<typeof err, llm.LLMError>>(true);
  }
  // @ts-expect-error: runTools needs tools
  await llm.runTools("x", {});
  // @ts-expect-error: not a tool choice
  await llm.chat("x", { toolChoice: "sometimes" });
}
