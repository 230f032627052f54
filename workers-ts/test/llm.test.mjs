// llm against a real OpenAI-compatible server: the loopback one of
// tests/openai_server.py, run as a subprocess (python3, or FLW_PYTHON).
// The last tests call llm from tools of a real worker process.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { z } from "zod";
import { llm, tool } from "../dist/index.js";
import { SseParser } from "../dist/llm/sse.js";
import { killSpawned, sleep, spawnWorker } from "./helpers.mjs";

const SERVER = fileURLToPath(new URL("../../tests/openai_server.py", import.meta.url));
const PYTHON = process.env.FLW_PYTHON || "python3";

/** The server's tokens of `content`, as it streams them (one event each). */
function tokenize(content) {
  const tokens = content.match(/\s*\S+/g) ?? [];
  if (tokens.length === 0) return content ? [content] : [];
  tokens[tokens.length - 1] += content.slice(tokens.join("").length);
  return tokens;
}

/** A loopback server process, scripted and read over its admin endpoints. */
class ModelServer {
  static async start(...args) {
    const proc = spawn(PYTHON, [SERVER, "--port", "0", ...args], { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: proc.stdout });
    const first = await new Promise((resolve, reject) => {
      lines.once("line", resolve);
      proc.once("exit", (code) => reject(new Error(`${SERVER} exited with ${code} before listening`)));
      proc.once("error", reject);
    });
    const match = /^listening on (http:\/\/\S+\/v1)$/.exec(first);
    assert.ok(match, `unexpected first line: ${first}`);
    lines.on("line", () => {}); // the event log: drained, not kept
    return new ModelServer(proc, match[1]);
  }

  constructor(proc, baseUrl) {
    this.proc = proc;
    this.baseUrl = baseUrl;
    this.url = `${baseUrl}/chat/completions`;
    this.root = baseUrl.slice(0, -"/v1".length);
  }

  async admin(path, body) {
    const init = body === undefined ? {} : { method: "POST", body: JSON.stringify(body) };
    const response = await fetch(`${this.root}${path}`, init);
    assert.equal(response.status, 200, await response.clone().text());
    return response.json();
  }

  async reset(rules = []) {
    await this.admin("/_rules", rules);
    await this.admin("/_clear", {});
  }

  events(kind) {
    return this.admin("/_events").then((events) => (kind ? events.filter((e) => e.event === kind) : events));
  }

  async requests() {
    return (await this.events("request")).map((e) => e.body);
  }

  /** Polls the events until one of `kind` shows up; returns it. */
  async waitFor(kind, timeout = 5000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const [event] = await this.events(kind);
      if (event !== undefined) return event;
      if (Date.now() > deadline) throw new Error(`no ${kind} event in ${timeout} ms: ${JSON.stringify(await this.events())}`);
      await sleep(20);
    }
  }

  stop() {
    this.proc.kill("SIGTERM");
  }
}

/** Runs `fn` with these environment variables (undefined: unset), then puts them back. */
async function withEnv(vars, fn) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** A local port with nothing listening on it. */
async function closedPort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A node:http server for what the loopback server cannot do (redirects,
 * huge bodies, a stream left open, n > 1): `handle(req, res)` answers each
 * request once its body is in. `requests` records them; `closed` counts
 * responses whose connection went away before they ended.
 */
async function httpServer(handle) {
  const requests = [];
  const state = { closed: 0 };
  const server = createHttpServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (piece) => (body += piece));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, body: body ? JSON.parse(body) : undefined });
      res.on("error", () => {});
      res.on("close", () => {
        if (!res.writableFinished) state.closed++;
      });
      handle(req, res);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const root = `http://127.0.0.1:${server.address().port}`;
  return {
    root,
    requests,
    get closed() {
      return state.closed;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Polls `check` until it is true; fails after `timeout` ms. */
async function until(check, what, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeout} ms`);
    await sleep(20);
  }
}

/** Writes a stream's head and these chunks as server-sent events (the response is left open). */
function sse(res, chunks) {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const chunk of chunks) res.write(typeof chunk === "string" ? `data: ${chunk}\n\n` : `data: ${JSON.stringify(chunk)}\n\n`);
}

const chunk = (choices, extra = {}) => ({ object: "chat.completion.chunk", model: "tiny", choices, ...extra });

const weather = tool({
  name: "weather",
  description: "The weather of a city.",
  input: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  run: ({ city }) => {
    if (city === "Atlantis") throw new Error("no such city");
    return `sunny in ${city}`;
  },
});

let model;
let opts; // the options every in-process call needs
before(async () => {
  // Hermetic: the developer's own endpoint settings play no part.
  for (const name of ["OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"]) delete process.env[name];
  model = await ModelServer.start();
  opts = { baseUrl: model.baseUrl, model: "loopback", maxRetries: 0 };
});
after(() => {
  model?.stop();
  killSpawned();
});
beforeEach(() => model.reset());

describe("chat", () => {
  test("streams: deltas in order, the first before the server is done, the request as OpenAI's", async () => {
    const story = Array.from({ length: 8 }, (_, i) => `word${i}`).join(" ");
    await model.reset([{ match: "story", content: story, token_delay: 0.05 }]);
    const deltas = [];
    const messages = [{ role: "user", content: "a story" }];
    const stream = llm.stream(messages, { ...opts, system: "Be brief.", onDelta: (t) => deltas.push(t) });
    const seen = [];
    for await (const text of stream) {
      if (seen.length === 0) assert.deepEqual(await model.events("done"), [], "the whole reply was in before the first delta");
      seen.push(text);
    }
    const reply = await stream.reply;
    assert.deepEqual(seen, tokenize(story));
    assert.deepEqual(deltas, seen);
    assert.equal(reply.content, story);
    assert.equal(reply.finishReason, "stop");
    assert.equal(reply.model, "loopback");
    assert.deepEqual(reply.toolCalls, []);
    assert.deepEqual(reply.usage, { prompt_tokens: 4, completion_tokens: 8, total_tokens: 12 });
    assert.deepEqual(reply.message, { role: "assistant", content: story });
    assert.deepEqual(reply.messages, [{ role: "system", content: "Be brief." }, ...messages, reply.message]);
    assert.deepEqual(messages, [{ role: "user", content: "a story" }], "the caller's messages are not changed");
    assert.equal(reply.raw.object, "chat.completion.chunk");
    const [request] = await model.events("request");
    assert.equal(request.stream, true);
    assert.equal(request.authorization, null, "no key, no Authorization header");
    assert.deepEqual(request.body, {
      model: "loopback",
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "a story" }],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  test("stream: false reads one JSON response", async () => {
    const deltas = [];
    const reply = await llm.chat("hello there", { ...opts, stream: false, onDelta: (t) => deltas.push(t) });
    assert.equal(reply.content, "echo: hello there");
    assert.deepEqual(deltas, ["echo: hello there"], "the whole text is one delta");
    assert.equal(reply.finishReason, "stop");
    assert.equal(reply.raw.object, "chat.completion");
    assert.equal(reply.usage.completion_tokens, 3);
    const [request] = await model.events("request");
    assert.equal(request.stream, false);
    assert.equal("stream" in request.body, false);
  });

  test("options go into the body; extra is merged last", async () => {
    await llm.chat([{ role: "user", content: "hi" }], {
      ...opts,
      temperature: 0.2,
      maxTokens: 50,
      toolChoice: "none",
      tools: [weather],
      extra: { seed: 7, temperature: 0 },
    });
    const [body] = await model.requests();
    assert.equal(body.temperature, 0);
    assert.equal(body.max_tokens, 50);
    assert.equal(body.tool_choice, "none");
    assert.equal(body.seed, 7);
  });

  test("json mode asks for a JSON object and reply.json() parses it", async () => {
    await model.reset([
      { match: "fenced", content: '```json\n{"fenced": true}\n```' },
      { match: "prose", content: "Sure! Here is the JSON you asked for." },
      { content: '{"answer": 42, "list": [1, 2]}' },
    ]);
    const reply = await llm.chat("give json", { ...opts, json: true });
    assert.deepEqual(reply.json(), { answer: 42, list: [1, 2] });
    const [body] = await model.requests();
    assert.deepEqual(body.response_format, { type: "json_object" });
    assert.deepEqual((await llm.chat("fenced", opts)).json(), { fenced: true });
    const prose = await llm.chat("prose", opts);
    assert.throws(() => prose.json(), (err) => {
      assert.ok(err instanceof llm.LLMError);
      assert.match(err.message, /^the reply is not JSON \(.*\): "Sure! Here is the JSON you asked for\."$/);
      return true;
    });
  });

  test("tools: a tool() is sent with its schema, and the model's calls are parsed", async () => {
    await model.reset([
      { tool_calls: [{ name: "weather", arguments: { city: "Paris" } }, { name: "greet", arguments: { name: "Ann" } }] },
    ]);
    const greet = tool({ description: "Greet.", input: z.object({ name: z.string() }), run: ({ name }) => `hi ${name}` });
    const raw = { type: "function", function: { name: "raw_fn", parameters: { type: "object", properties: {} } } };
    const reply = await llm.chat("weather?", { ...opts, tools: { weather, greet, raw } });
    const [{ body, request: n }] = await model.events("request");
    assert.deepEqual(body.tools[0], {
      type: "function",
      function: { name: "weather", description: "The weather of a city.", parameters: weather.inputSchema },
    });
    assert.equal(body.tools[1].function.name, "greet", "an unnamed tool takes its key");
    assert.deepEqual(body.tools[1].function.parameters.properties, { name: { type: "string" } });
    assert.deepEqual(body.tools[2], raw);
    assert.equal(reply.finishReason, "tool_calls");
    assert.equal(reply.content, "");
    assert.deepEqual(reply.toolCalls, [
      { id: `call_${n}_0`, name: "weather", arguments: { city: "Paris" }, argumentsJson: '{"city": "Paris"}', error: null },
      { id: `call_${n}_1`, name: "greet", arguments: { name: "Ann" }, argumentsJson: '{"name": "Ann"}', error: null },
    ]);
    assert.deepEqual(reply.message, {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: `call_${n}_0`, type: "function", function: { name: "weather", arguments: '{"city": "Paris"}' } },
        { id: `call_${n}_1`, type: "function", function: { name: "greet", arguments: '{"name": "Ann"}' } },
      ],
    });
    // The same, not streamed.
    const whole = await llm.chat("weather?", { ...opts, tools: [weather], stream: false });
    assert.deepEqual(whole.toolCalls, reply.toolCalls.map((c) => ({ ...c, id: c.id.replace(`_${n}_`, `_${n + 1}_`) })));
  });

  test("a tool() without a name in an array is refused, naming the ways to name it", async () => {
    const unnamed = tool({ input: { type: "object", properties: {} }, run: () => 1 });
    await assert.rejects(llm.chat("x", { ...opts, tools: [weather, unnamed] }), {
      name: "TypeError",
      message: 'llm.chat(): tools[1] has no name: give it one (tool({ name: "search", ... })) or pass tools as an object ({ search })',
    });
    const dotted = tool({ name: "ns.echo", input: { type: "object", properties: {} }, run: () => 1 });
    await llm.chat("x", { ...opts, tools: [dotted] });
    const [body] = await model.requests();
    assert.equal(body.tools[0].function.name, "ns_echo", "OpenAI names have no dots");
  });
});

describe("runTools", () => {
  test("runs the tools the model asks for and sends their results back, until it answers", async () => {
    await model.reset([
      { match: "weather in Paris", tool_calls: [{ name: "weather", arguments: { city: "Paris" } }] },
      { match: "^sunny in Paris$", content: "It is sunny in Paris." },
    ]);
    const deltas = [];
    const reply = await llm.runTools("What is the weather in Paris?", { ...opts, tools: [weather], onDelta: (t) => deltas.push(t) });
    assert.equal(reply.content, "It is sunny in Paris.");
    assert.equal(deltas.join(""), "It is sunny in Paris.");
    const [{ body: first, request: n }, { body: second }] = await model.events("request");
    assert.deepEqual(first.messages, [{ role: "user", content: "What is the weather in Paris?" }]);
    assert.deepEqual(second.messages.slice(1), [
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: `call_${n}_0`, type: "function", function: { name: "weather", arguments: '{"city": "Paris"}' } }],
      },
      { role: "tool", tool_call_id: `call_${n}_0`, content: "sunny in Paris" },
    ]);
    assert.deepEqual(second.tools, first.tools);
    assert.deepEqual(reply.messages, [...second.messages, reply.message]);
  });

  test("arguments that are not JSON, a tool that throws and an unknown tool become error results", async () => {
    await model.reset([
      {
        match: "^go$",
        tool_calls: [
          { name: "weather", arguments: '{"city": "Par' },
          { name: "weather", arguments: { city: "Atlantis" } },
          { name: "weather", arguments: { town: "Rome" } },
          { name: "nope", arguments: {} },
          { name: "plain", arguments: { n: 2 } },
        ],
      },
      { match: "^4$", content: "done" },
    ]);
    const plain = { description: "Twice n.", parameters: { type: "object", properties: { n: { type: "number" } } }, run: ({ n }) => n * 2 };
    const reply = await llm.runTools("go", { ...opts, tools: { weather, plain } });
    assert.equal(reply.content, "done");
    const bad = reply.messages[1].tool_calls[0];
    assert.equal(bad.function.arguments, '{"city": "Par', "sent back as the model wrote it");
    const results = reply.messages.filter((m) => m.role === "tool").map((m) => m.content);
    assert.match(results[0], /^error: weather: the arguments are not valid JSON \(.+\): "\{\\"city\\": \\"Par"; send a JSON object$/);
    assert.equal(results[1], "error: weather: Error: no such city");
    assert.equal(results[2], 'error: weather: invalid arguments: args is missing the required property "city"');
    assert.equal(results[3], "error: nope: no such tool (tools: weather, plain)");
    assert.equal(results[4], "4");
  });

  test("a reply with invalid arguments keeps them, with the error, and {} as arguments", async () => {
    await model.reset([{ tool_calls: [{ name: "weather", arguments: "[1, 2]", id: "c1" }] }]);
    const [call] = (await llm.chat("x", { ...opts, tools: [weather] })).toolCalls;
    assert.deepEqual(call, { id: "c1", name: "weather", arguments: {}, argumentsJson: "[1, 2]", error: "the arguments are an array, not an object" });
  });

  test("more than maxTurns model calls is an LLMError", async () => {
    await model.reset([{ tool_calls: [{ name: "weather", arguments: { city: "Oslo" } }] }]);
    await assert.rejects(llm.runTools("loop", { ...opts, tools: [weather], maxTurns: 3 }), {
      name: "LLMError",
      message: "llm.runTools(): the model still asks for tools (weather) after 3 model calls (maxTurns)",
    });
    assert.equal((await model.events("request")).length, 3);
  });

  test("every tool needs a run function", async () => {
    const raw = { type: "function", function: { name: "raw_fn" } };
    await assert.rejects(llm.runTools("x", { ...opts, tools: [raw] }), {
      name: "TypeError",
      message: 'llm.runTools(): tool "raw_fn" has no run function',
    });
  });
});

describe("errors and retries", () => {
  test("a 429 is retried after its Retry-After", async () => {
    await model.reset([{ status: 429, retry_after: 1, times: 1 }]);
    const started = Date.now();
    const reply = await llm.chat("again", { ...opts, maxRetries: 2 });
    const elapsed = Date.now() - started;
    assert.equal(reply.content, "echo: again");
    assert.ok(elapsed >= 950, `retried after ${elapsed} ms, not after Retry-After: 1`);
    assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
    const events = await model.events();
    const n = events[0].request;
    assert.deepEqual(
      events.map((e) => [e.event, e.request]),
      [["request", n], ["error_reply", n], ["request", n + 1], ["done", n + 1]],
    );
  });

  test("a Retry-After over 60 s is not waited for, and the error says so", async () => {
    await model.reset([{ status: 429, retry_after: 120 }]);
    await assert.rejects(llm.chat("x", { ...opts, maxRetries: 2 }), {
      name: "APIError",
      status: 429,
      message:
        `POST ${model.url}: 429 Too Many Requests: Too Many Requests ` +
        "(the server asks to retry after 120 s, more than the 60 s llm waits: not retried)",
    });
    assert.equal((await model.events("request")).length, 1);
  });

  test("a 500 on every try ends in an APIError after maxRetries retries", async () => {
    await model.reset([{ status: 500, error: "the GPU caught fire" }]);
    const started = Date.now();
    const err = await llm.chat("x", { ...opts, maxRetries: 2 }).catch((e) => e);
    assert.ok(err instanceof llm.APIError && err instanceof llm.LLMError && llm.isLLMError(err));
    assert.equal(err.status, 500);
    assert.equal(err.message, `POST ${model.url}: 500 Internal Server Error: the GPU caught fire (after 2 retries)`);
    assert.equal(err.body.error.message, "the GPU caught fire");
    assert.equal((await model.events("request")).length, 3);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 375 + 750 - 50, `backed off ${elapsed} ms in all (500 ms, then 1 s, less jitter)`);
  });

  test("a 400 is not retried; a 404 names the URL and the server's message", async () => {
    await model.reset([{ status: 400, error: "bad model" }]);
    await assert.rejects(llm.chat("x", { ...opts, maxRetries: 2 }), {
      name: "APIError",
      message: `POST ${model.url}: 400 Bad Request: bad model`,
    });
    assert.equal((await model.events("request")).length, 1);
    await assert.rejects(llm.chat("x", { ...opts, baseUrl: `${model.root}/` }), {
      name: "APIError",
      status: 404,
      message: `POST ${model.root}/chat/completions: 404 Not Found: no route for POST /chat/completions`,
    });
  });

  test("401: the message tells whether a key was sent; the key goes as a bearer token", async () => {
    const locked = await ModelServer.start("--api-key", "s3cret");
    try {
      const base = { ...opts, baseUrl: locked.baseUrl };
      await assert.rejects(llm.chat("x", base), {
        name: "APIError",
        status: 401,
        message: `POST ${locked.url}: 401 Unauthorized: Missing API key. (no API key was sent: set OPENAI_API_KEY or pass apiKey)`,
      });
      await assert.rejects(llm.chat("x", { ...base, apiKey: "wrong" }), {
        message: `POST ${locked.url}: 401 Unauthorized: Incorrect API key provided. (check OPENAI_API_KEY or apiKey)`,
      });
      await withEnv({ OPENAI_API_KEY: "s3cret" }, async () => {
        assert.equal((await llm.chat("in", base)).content, "echo: in");
      });
      const auth = (await locked.events("request")).map((e) => e.authorization);
      assert.deepEqual(auth, [null, "Bearer wrong", "Bearer s3cret"]);
    } finally {
      locked.stop();
    }
  });

  test("403: the same hint as a 401", async () => {
    await model.reset([{ status: 403, error: "not allowed" }]);
    await assert.rejects(llm.chat("x", { ...opts, apiKey: "k" }), {
      name: "APIError",
      status: 403,
      message: `POST ${model.url}: 403 Forbidden: not allowed (check OPENAI_API_KEY or apiKey)`,
    });
    await assert.rejects(llm.chat("x", opts), {
      message: `POST ${model.url}: 403 Forbidden: not allowed (no API key was sent: set OPENAI_API_KEY or pass apiKey)`,
    });
  });

  test("an API key that cannot go in a header is a ConfigError naming where it came from, not showing it; nothing is sent", async () => {
    await assert.rejects(llm.chat("x", { ...opts, apiKey: "sk-secret\nX-Injected: 1" }), (err) => {
      assert.ok(err instanceof llm.ConfigError, String(err));
      assert.equal(err.message, "flw llm: the apiKey option cannot be sent in an HTTP header: it holds a line break (at index 9 of 23)");
      return true;
    });
    await withEnv({ OPENAI_API_KEY: "sk-secret\r" }, () =>
      assert.rejects(llm.chat("x", opts), {
        name: "ConfigError",
        message: "flw llm: OPENAI_API_KEY cannot be sent in an HTTP header: it holds a line break (at index 9 of 10)",
      }),
    );
    await assert.rejects(llm.client({ apiKey: "sk-\u2019" }).chat("x", opts), {
      name: "ConfigError",
      message: "flw llm: the apiKey of llm.client() cannot be sent in an HTTP header: it holds the character U+2019 (at index 3 of 4)",
    });
    assert.equal((await model.events("request")).length, 0);
  });

  test("nothing listening: a ConnectionError naming the URL", async () => {
    const url = `http://127.0.0.1:${await closedPort()}/v1`;
    const err = await llm.chat("x", { ...opts, baseUrl: url }).catch((e) => e);
    assert.ok(err instanceof llm.ConnectionError, String(err));
    assert.match(err.message, new RegExp(`^POST ${url}/chat/completions: cannot reach the endpoint: .*ECONNREFUSED`));
  });

  test("a server that dies mid-stream: a ConnectionError, not retried, and the text so far went out", async () => {
    const doomed = await ModelServer.start("--token-delay", "0.05");
    try {
      const deltas = [];
      const pending = llm.chat("one two three four five six seven eight nine ten", {
        ...opts,
        baseUrl: doomed.baseUrl,
        maxRetries: 2,
        onDelta: (t) => {
          deltas.push(t);
          if (deltas.length === 3) doomed.proc.kill("SIGKILL");
        },
      });
      const err = await pending.catch((e) => e);
      assert.ok(err instanceof llm.ConnectionError, String(err));
      assert.match(err.message, new RegExp(`^POST ${doomed.url}: the connection broke while the reply came: `));
      assert.deepEqual(deltas.slice(0, 3), ["echo:", " one", " two"]);
    } finally {
      doomed.stop();
    }
  });

  test("no data for `timeout` ms is a TimeoutError naming the URL and the timeout, and the connection is closed", async () => {
    await model.reset([{ content: "slow slow slow slow", token_delay: 1 }]);
    const started = Date.now();
    const err = await llm.chat("x", { ...opts, timeout: 300 }).catch((e) => e);
    assert.ok(err instanceof llm.TimeoutError, String(err));
    assert.equal(err.message, `POST ${model.url}: no data for 300 ms (timeout)`);
    assert.equal(err.timeout, 300);
    assert.ok(Date.now() - started < 10_000, "it did not wait for the slow reply");
    const closed = await model.waitFor("client_closed", 10_000);
    assert.equal(closed.tokens_sent, 0);
    assert.ok(closed.tokens_sent < closed.tokens, JSON.stringify(closed));
  });

  test("the timeout is idle time: a slow stream whose tokens keep coming is not cut", async () => {
    // 6 tokens 0.2 s apart: more than the timeout in all, far less between two.
    await model.reset([{ content: "a b c d e f", token_delay: 0.2 }]);
    assert.equal((await llm.chat("x", { ...opts, timeout: 1000 })).content, "a b c d e f");
  });
});

describe("endpoints that misbehave", () => {
  test("a base URL with a query string: /chat/completions goes on the path, the query stays", async () => {
    const server = await httpServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }] }));
    });
    try {
      for (const base of [`${server.root}/v1?api-version=2024-06-01`, `${server.root}/v1/?api-version=2024-06-01#frag`]) {
        assert.equal((await llm.chat("x", { ...opts, baseUrl: base, stream: false })).content, "ok");
      }
      await llm.chat("x", { ...opts, baseUrl: server.root, stream: false });
      assert.deepEqual(
        server.requests.map((r) => [r.method, r.url]),
        [
          ["POST", "/v1/chat/completions?api-version=2024-06-01"],
          ["POST", "/v1/chat/completions?api-version=2024-06-01"],
          ["POST", "/chat/completions"],
        ],
      );
    } finally {
      await server.close();
    }
  });

  test("a stream with n > 1: only the choice with index 0 makes the reply", async () => {
    const server = await httpServer((req, res) => {
      if (req.url.startsWith("/indexed/")) {
        sse(res, [
          chunk([{ index: 0, delta: { role: "assistant", content: "" } }, { index: 1, delta: { role: "assistant", content: "" } }]),
          chunk([{ index: 1, delta: { content: "other" } }]),
          chunk([{ index: 0, delta: { content: "Hel" } }]),
          chunk([{ index: 1, delta: { content: " text" }, finish_reason: "length" }]),
          chunk([{ index: 0, delta: { content: "lo" } }]),
          chunk([{ index: 0, delta: {}, finish_reason: "stop" }]),
          chunk([], { usage: { total_tokens: 9 } }),
          "[DONE]",
        ]);
      } else {
        // No index at all (servers that leave it out): the first choice.
        sse(res, [chunk([{ delta: { content: "A" } }]), chunk([{ delta: { content: "B" }, finish_reason: "stop" }]), "[DONE]"]);
      }
      res.end();
    });
    try {
      const reply = await llm.chat("x", { ...opts, baseUrl: `${server.root}/indexed`, extra: { n: 2 } });
      assert.equal(reply.content, "Hello");
      assert.equal(reply.finishReason, "stop");
      assert.deepEqual(reply.usage, { total_tokens: 9 });
      assert.equal(server.requests[0].body.n, 2);
      const plain = await llm.chat("x", { ...opts, baseUrl: `${server.root}/plain` });
      assert.equal(plain.content, "AB");
      assert.equal(plain.finishReason, "stop");
    } finally {
      await server.close();
    }
  });

  test("a redirect is not followed (the POST would become a GET): an APIError naming the new place", async () => {
    const server = await httpServer((req, res) => {
      if (req.url.startsWith("/moved/")) res.writeHead(301, { location: "https://models.example/v1/chat/completions" });
      else res.writeHead(308, { location: "/v2/chat/completions" });
      res.end("see elsewhere");
    });
    try {
      const url = `${server.root}/moved/chat/completions`;
      await assert.rejects(llm.chat("x", { ...opts, baseUrl: `${server.root}/moved`, maxRetries: 2 }), {
        name: "APIError",
        status: 301,
        message: `POST ${url}: 301 Moved Permanently: the endpoint redirects to https://models.example/v1/chat/completions; set the base URL to it`,
      });
      await assert.rejects(llm.chat("x", { ...opts, baseUrl: `${server.root}/v1` }), {
        status: 308,
        message: `POST ${server.root}/v1/chat/completions: 308 Permanent Redirect: the endpoint redirects to ${server.root}/v2/chat/completions; set the base URL to it`,
      });
      assert.deepEqual(
        server.requests.map((r) => [r.method, r.url]),
        [
          ["POST", "/moved/chat/completions"],
          ["POST", "/v1/chat/completions"],
        ],
        "one request each, no retry, no GET",
      );
    } finally {
      await server.close();
    }
  });

  test("huge bodies: an error body is cut at 1 MiB, a stream's line or a JSON response over its limit is an LLMError", async () => {
    const mib = "x".repeat(1024 * 1024);
    // Writes `count` MiB, as fast as the client reads; stops when it goes away.
    const flood = async (res, count, head) => {
      if (head) res.write(head);
      for (let i = 0; i < count && !res.destroyed; i++) {
        if (res.write(mib)) continue;
        await new Promise((resolve) => {
          const go = () => {
            res.off("drain", go);
            res.off("close", go);
            resolve();
          };
          res.on("drain", go);
          res.on("close", go);
        });
      }
      res.end();
    };
    const server = await httpServer((req, res) => {
      if (req.url.startsWith("/error/")) {
        res.writeHead(400, { "content-type": "text/plain" });
        void flood(res, 3);
      } else if (req.url.startsWith("/sse/")) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        void flood(res, 20, "data: ");
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        void flood(res, 70, '{"junk": "');
      }
    });
    try {
      const err = await llm.chat("x", { ...opts, baseUrl: `${server.root}/error` }).catch((e) => e);
      assert.ok(err instanceof llm.APIError, String(err));
      assert.equal(err.status, 400);
      assert.equal(typeof err.body, "string");
      assert.ok(err.body.length <= 1024 * 1024, `${err.body.length} characters kept`);
      assert.ok(err.message.length < 3000, "the message shows the start of the body only");
      await assert.rejects(llm.chat("x", { ...opts, baseUrl: `${server.root}/sse` }), {
        name: "LLMError",
        message: `POST ${server.root}/sse/chat/completions: a line or event of the stream is over the limit of 16 MiB`,
      });
      await assert.rejects(llm.chat("x", { ...opts, baseUrl: `${server.root}/json`, stream: false }), {
        name: "LLMError",
        message: `POST ${server.root}/json/chat/completions: the response is over the limit of 64 MiB`,
      });
    } finally {
      await server.close();
    }
  });

  test("data: [DONE] ends the reply, though the server keeps the connection open", async () => {
    const server = await httpServer((_req, res) => {
      sse(res, [chunk([{ index: 0, delta: { content: "all" } }]), chunk([{ index: 0, delta: { content: " done" }, finish_reason: "stop" }]), "[DONE]"]);
      // ... and never res.end().
    });
    try {
      const started = Date.now();
      const reply = await llm.chat("x", { ...opts, baseUrl: server.root, timeout: 30_000 });
      assert.equal(reply.content, "all done");
      assert.ok(Date.now() - started < 10_000, "it did not wait for the end of the body");
      await until(() => server.closed === 1, "the client closed the connection");
    } finally {
      await server.close();
    }
  });

  test("network errors: refused and reset connections are retried; a TLS error is not", async () => {
    let connections = 0;
    let answer = "reset";
    const resetting = createServer((socket) => {
      connections++;
      socket.on("error", () => {});
      socket.once("data", () => {
        if (answer === "reset") socket.resetAndDestroy();
        else socket.end("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
      });
    });
    await new Promise((resolve) => resetting.listen(0, "127.0.0.1", resolve));
    const port = resetting.address().port;
    try {
      const quick = { ...opts, maxRetries: 1 };
      const reset = await llm.chat("x", { ...quick, baseUrl: `http://127.0.0.1:${port}/v1` }).catch((e) => e);
      assert.ok(reset instanceof llm.ConnectionError, String(reset));
      assert.match(reset.message, /^POST http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions: cannot reach the endpoint: .*ECONNRESET.* \(after 1 retry\)$/);
      assert.equal(connections, 2);
      // https to a server that answers in plain HTTP: the handshake fails, which a retry would not mend.
      connections = 0;
      answer = "plain";
      const tls = await llm.chat("x", { ...quick, baseUrl: `https://127.0.0.1:${port}/v1` }).catch((e) => e);
      assert.ok(tls instanceof llm.ConnectionError, String(tls));
      assert.doesNotMatch(tls.message, /after/);
      assert.equal(connections, 1);
      const refusedUrl = `http://127.0.0.1:${await closedPort()}/v1`;
      const refused = await llm.chat("x", { ...quick, baseUrl: refusedUrl }).catch((e) => e);
      assert.ok(refused instanceof llm.ConnectionError, String(refused));
      assert.match(refused.message, /ECONNREFUSED.* \(after 1 retry\)$/);
    } finally {
      resetting.close();
    }
  });
});

describe("configuration", () => {
  const unset = { OPENAI_BASE_URL: undefined, OPENAI_API_KEY: undefined, OPENAI_MODEL: undefined };

  test("no endpoint, no model, a bad URL: ConfigErrors that say what to set", async () => {
    await withEnv(unset, async () => {
      await assert.rejects(llm.chat("x", { model: "m" }), {
        name: "ConfigError",
        message:
          "flw llm: no model endpoint: set OPENAI_BASE_URL (for example http://localhost:11434/v1 for Ollama) " +
          "or OPENAI_API_KEY (for api.openai.com), or pass baseUrl",
      });
      await assert.rejects(llm.chat("x", { baseUrl: model.baseUrl }), {
        name: "ConfigError",
        message: "flw llm: no model: set OPENAI_MODEL or pass the model option (or llm.client({ model }))",
      });
      await assert.rejects(llm.chat("x", { model: "m", baseUrl: "localhost:8080/v1" }), {
        message: 'flw llm: the baseUrl option is not an http or https URL: "localhost:8080/v1"',
      });
      await withEnv({ OPENAI_BASE_URL: "not a url" }, () =>
        assert.rejects(llm.chat("x", { model: "m" }), { message: 'flw llm: OPENAI_BASE_URL is not a valid URL: "not a url"' }),
      );
      await assert.rejects(llm.client({ baseUrl: "nope" }).chat("x", { model: "m" }), {
        message: 'flw llm: the baseUrl of llm.client() is not a valid URL: "nope"',
      });
      assert.throws(() => llm.stream("x"), { name: "ConfigError" });
    });
    assert.equal((await model.events("request")).length, 0);
  });

  test("the environment is read at each call; the client's options come before it, the call's before both", async () => {
    await withEnv({ ...unset, OPENAI_BASE_URL: `${model.baseUrl}/`, OPENAI_MODEL: "from-env" }, async () => {
      assert.equal((await llm.chat("one")).content, "echo: one");
      const client = llm.client({ model: "from-client", apiKey: "k1" });
      await client.chat("two");
      await client.chat("three", { model: "from-call", apiKey: "k2" });
      await client.runTools("four", { tools: [weather] });
      const stream = client.stream("five");
      for await (const _ of stream);
      assert.equal((await stream.reply).content, "echo: five");
    });
    const requests = await model.events("request");
    assert.deepEqual(
      requests.map((e) => [e.model, e.authorization]),
      [["from-env", null], ["from-client", "Bearer k1"], ["from-call", "Bearer k2"], ["from-client", "Bearer k1"], ["from-client", "Bearer k1"]],
    );
  });

  test("bad options are TypeErrors and RangeErrors", async () => {
    await assert.rejects(llm.chat(42, opts), { name: "TypeError", message: "llm.chat(): messages must be a string or an array of messages" });
    await assert.rejects(llm.chat([{ content: "x" }], opts), { message: "llm.chat(): messages[0] must be an object with a role" });
    await assert.rejects(llm.chat("x", { ...opts, timeout: -1 }), { name: "RangeError" });
    await assert.rejects(llm.runTools("x", { ...opts }), { message: "llm.runTools(): the tools option is required" });
    assert.throws(() => llm.client({ maxRetries: 1.5 }), { name: "RangeError" });
  });
});

describe("cancellation", () => {
  test("an abort mid-stream rejects with the signal's reason and closes the connection at once", async () => {
    await model.reset([{ content: "tok ".repeat(100), token_delay: 0.05 }]);
    const controller = new AbortController();
    const deltas = [];
    const pending = llm.chat("x", {
      ...opts,
      signal: controller.signal,
      onDelta: (t) => {
        deltas.push(t);
        if (deltas.length === 3) controller.abort(new Error("stop now"));
      },
    });
    await assert.rejects(pending, { message: "stop now" });
    // A client that kept the connection would get all 100 tokens (5 s) and the server would record done instead.
    const closed = await model.waitFor("client_closed", 10_000);
    assert.ok(closed.tokens_sent >= 3 && closed.tokens_sent < closed.tokens, JSON.stringify(closed));
    assert.deepEqual(await model.events("done"), []);
  });

  test("an abort without a reason rejects with an AbortError", async () => {
    await model.reset([{ content: "tok ".repeat(100), token_delay: 0.05 }]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(llm.chat("x", { ...opts, signal: controller.signal }), { name: "AbortError" });
    const closed = await model.waitFor("client_closed", 10_000);
    assert.ok(closed.tokens_sent < closed.tokens, JSON.stringify(closed));
  });

  test("an abort while waiting to retry ends the wait", async () => {
    await model.reset([{ status: 503, retry_after: 30 }]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("enough")), 300);
    const started = Date.now();
    await assert.rejects(llm.chat("x", { ...opts, maxRetries: 2, signal: controller.signal }), { message: "enough" });
    assert.ok(Date.now() - started < 10_000, "the abort ended the 30 s wait");
    assert.equal((await model.events("request")).length, 1);
  });

  test("leaving a stream's loop early closes the connection; reply rejects with an AbortError", async () => {
    await model.reset([{ content: "tok ".repeat(100), token_delay: 0.05 }]);
    const stream = llm.stream("x", opts);
    let n = 0;
    for await (const _ of stream) if (++n === 2) break;
    await assert.rejects(stream.reply, { name: "AbortError", message: "llm.stream(): the loop was left before the reply ended" });
    const closed = await model.waitFor("client_closed", 10_000);
    assert.ok(closed.tokens_sent < closed.tokens, JSON.stringify(closed));
  });

  test("a tool run by runTools gets a detached context outside a call", async () => {
    await model.reset([{ match: "^go$", tool_calls: [{ name: "probe", arguments: {} }] }, { content: "ok" }]);
    let seen;
    const probe = tool({
      input: { type: "object", properties: {} },
      run: (_args, ctx) => {
        seen = ctx;
        return "probed";
      },
    });
    const controller = new AbortController();
    await llm.runTools("go", { ...opts, tools: { probe }, signal: controller.signal });
    assert.equal(seen.callId, undefined);
    assert.equal(seen.signal, controller.signal, "the tool gets the signal of the runTools call");
  });
});

describe("inside a worker call", () => {
  let worker;
  let nextId = 1;
  beforeEach(async () => {
    worker = spawnWorker("llm.mjs", {
      env: { OPENAI_BASE_URL: model.baseUrl, OPENAI_MODEL: "loopback", OPENAI_API_KEY: "" },
    });
    await worker.handshake();
  });
  afterEach(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    assert.deepEqual(worker.garbage, []);
  });

  test("the reply's tokens are the call's chunks, in order, as they come", async () => {
    const story = Array.from({ length: 12 }, (_, i) => `word${i}`).join(" ");
    await model.reset([{ match: "story", content: story, token_delay: 0.05 }]);
    const id = nextId++;
    worker.send({ type: "call", id, tool: "ask", args: { prompt: "a story" } });
    const first = await worker.recv((m) => m.id === id);
    assert.deepEqual(first, { type: "chunk", id, data: "word0" });
    assert.deepEqual(await model.events("done"), [], "the first chunk came before the model was done");
    const rest = [];
    for (;;) {
      const message = await worker.recv((m) => m.id === id);
      if (message.type !== "chunk") {
        assert.deepEqual(message, { type: "result", id, value: story });
        break;
      }
      rest.push(message.data);
    }
    assert.deepEqual([first.data, ...rest], tokenize(story));
    const [request] = await model.events("request");
    assert.equal(request.authorization, null, "an empty OPENAI_API_KEY sends no key");
  });

  test("chunks: false keeps the tokens out of the call", async () => {
    const messages = await worker.call(nextId++, "ask_quietly", { prompt: "quiet" });
    assert.deepEqual(messages.map((m) => m.type), ["result"]);
    assert.equal(messages[0].value, "echo: quiet");
  });

  test("a cancel mid-stream closes the model connection and the call replies cancelled", async () => {
    await model.reset([{ content: "tok ".repeat(200), token_delay: 0.05 }]);
    const id = nextId++;
    worker.send({ type: "call", id, tool: "ask", args: { prompt: "long" } });
    await worker.recv((m) => m.id === id && m.type === "chunk");
    await worker.recv((m) => m.id === id && m.type === "chunk");
    worker.send({ type: "cancel", id });
    const reply = await worker.recv((m) => m.id === id && m.type !== "chunk");
    assert.deepEqual(reply, { type: "error", id, kind: "cancelled", message: `call ${id} was cancelled` });
    const closed = await model.waitFor("client_closed", 10_000);
    assert.ok(closed.tokens_sent >= 2 && closed.tokens_sent < closed.tokens, JSON.stringify(closed));
    assert.equal(closed.tokens, 200);
    assert.deepEqual(await model.events("done"), []);
  });

  test("retries are logged to the call", async () => {
    await model.reset([{ status: 429, retry_after: 0, times: 1 }]);
    const messages = await worker.call(nextId++, "ask", { prompt: "retry" });
    const log = messages.find((m) => m.type === "log");
    assert.deepEqual(log, {
      type: "log",
      id: log.id,
      level: "info",
      message: `llm: POST ${model.url}: 429 Too Many Requests: Too Many Requests; retry 1 of 2 in 0.0 s`,
    });
    assert.equal(messages.at(-1).value, "echo: retry");
  });

  test("runTools in a call: the tool runs with the call's context, the answer streams", async () => {
    await model.reset([
      { match: "weather in Paris", tool_calls: [{ name: "weather", arguments: { city: "Paris" } }] },
      { match: "^sunny in Paris$", content: "It is sunny in Paris." },
    ]);
    const messages = await worker.call(nextId++, "forecast", { question: "What is the weather in Paris?" });
    assert.deepEqual(
      messages.map((m) => (m.type === "chunk" ? m.data : m.type === "log" ? `log: ${m.message}` : m.value)),
      ["log: weather for Paris", "It", " is", " sunny", " in", " Paris.", "It is sunny in Paris."],
    );
  });
});

describe("server-sent events", () => {
  // Each input is fed whole and split at every position: the events must not change.
  const check = (input, expected) => {
    for (let cut = 0; cut <= input.length; cut++) {
      const parser = new SseParser();
      const events = [...parser.push(input.slice(0, cut)), ...parser.push(input.slice(cut)), ...parser.end()];
      assert.deepEqual(events, expected, `split at ${cut}: ${JSON.stringify([input.slice(0, cut), input.slice(cut)])}`);
    }
  };

  test("data lines, comments, event types, line ends", () => {
    check(": keep-alive\n\ndata: {\"a\":1}\n\n", [{ event: "message", data: '{"a":1}' }]);
    check("data: one\r\ndata: two\r\n\r\ndata:three\r\rdata\n\n", [
      { event: "message", data: "one\ntwo" },
      { event: "message", data: "three" },
      { event: "message", data: "" },
    ]);
    check("event: error\ndata: {}\nid: 7\nretry: 10\n\nevent: ignored\n\ndata:  two spaces\n\n", [
      { event: "error", data: "{}" },
      { event: "message", data: " two spaces" },
    ]);
    check("data: [DONE]", [{ event: "message", data: "[DONE]" }]);
    check("data: é→😀\n\n", [{ event: "message", data: "é→😀" }]);
  });
});
