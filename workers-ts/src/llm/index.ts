/**
 * `llm`: calls to OpenAI-compatible chat-completions endpoints (OpenAI,
 * vLLM, the llama.cpp server, Ollama's `/v1`) over `fetch`, with no vendor
 * SDK. The package exports this module as the namespace `llm`.
 *
 * The endpoint and model come from the options, else from `llm.client()`,
 * else from `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `OPENAI_MODEL`, read
 * at each call. Inside a tool call the reply's text goes to the call as
 * chunks while it streams, and the call's cancel aborts the request.
 *
 * @example
 * ```ts
 * import { llm, tool } from "flw-worker";
 *
 * export const summarize = tool({
 *   input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
 *   run: async ({ text }) => (await llm.chat(text, { system: "Summarize in one sentence." })).content,
 * });
 * ```
 */

import { currentContext } from "../context.js";
import { APIError, ConfigError, LLMError } from "./errors.js";
import { MIB, type OpenResponse, errorDetail, post } from "./http.js";
import { type Message, type Reply, StreamAccumulator, replyOfResponse } from "./reply.js";
import { SseParser } from "./sse.js";
import { type ChatStream, TextStream } from "./stream.js";
import { type ResolvedTool, type Tools, resolveTools, runToolCall } from "./tools.js";
import { SDK_VERSION } from "../version.js";

export { APIError, ConfigError, ConnectionError, LLMError, TimeoutError, isLLMError } from "./errors.js";
export type { AssistantMessage, Message, Reply, ToolCall, Usage, WireToolCall } from "./reply.js";
export type { ChatStream } from "./stream.js";
export type { FunctionTool, OpenAITool, Tools, ToolSpec } from "./tools.js";

/** Where and how to call: the options `llm.client()` keeps, and every call may override. */
export interface ClientOptions {
  /** The endpoint's base URL, such as `http://localhost:11434/v1` (default: `OPENAI_BASE_URL`, else OpenAI's when there is a key). */
  readonly baseUrl?: string;
  /** Sent as `Authorization: Bearer <apiKey>` (default: `OPENAI_API_KEY`; none: no header). */
  readonly apiKey?: string;
  /** The model (default: `OPENAI_MODEL`). */
  readonly model?: string;
  /** Idle time allowed, in ms: connecting, waiting for the headers, between two pieces of the body (default 60,000). */
  readonly timeout?: number;
  /** Retries of 408, 409, 429, 5xx and of a connection refused, reset or closed before any response (default 2). */
  readonly maxRetries?: number;
}

/** A named function for `tool_choice`, or `auto`, `none`, `required`. */
export type ToolChoice = "auto" | "none" | "required" | { readonly type: "function"; readonly function: { readonly name: string } };

/** The options of `llm.chat()` and `llm.stream()`. */
export interface ChatOptions extends ClientOptions {
  /** A system message put before the messages. */
  readonly system?: string;
  readonly temperature?: number;
  /** Sent as `max_tokens`. */
  readonly maxTokens?: number;
  /** The tools the model may call (see {@link Tools}). */
  readonly tools?: Tools;
  readonly toolChoice?: ToolChoice;
  /** Ask for a JSON object (`response_format: {type: "json_object"}`); read it with `reply.json()`. */
  readonly json?: boolean;
  /** Stream the reply (default `true`). */
  readonly stream?: boolean;
  /** More members of the request body, merged last (they win). */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** Called with each piece of text as it comes. */
  readonly onDelta?: (text: string) => void;
  /** Inside a call, send each piece of text to the call as a chunk (default `true`). */
  readonly chunks?: boolean;
  /** Aborts the request (default: the current call's signal). */
  readonly signal?: AbortSignal;
}

/** The options of `llm.runTools()`: those of `chat`, with `tools` required. */
export interface RunToolsOptions extends ChatOptions {
  readonly tools: Tools;
  /** At most this many model calls (default 8). */
  readonly maxTurns?: number;
}

/** A user message, or the messages of a transcript (never changed). */
export type Messages = string | readonly Message[];

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_RETRIES = 2;
const DEFAULT_MAX_TURNS = 8;
const OPENAI_URL = "https://api.openai.com/v1";
/** The most of a JSON response (`stream: false`) read. */
const MAX_JSON_BYTES = 64 * MIB;
/** The longest line, or event, of a stream. */
const MAX_SSE_CHARS = 16 * MIB;

/**
 * Defaults for the calls made through it; what it does not set comes from
 * the environment at each call.
 *
 * @example
 * ```ts
 * const local = llm.client({ baseUrl: "http://localhost:11434/v1", model: "qwen3:8b" });
 * const reply = await local.chat("Say hi.");
 * ```
 */
export class Client {
  readonly options: ClientOptions;

  constructor(options: ClientOptions = {}) {
    checkClientOptions(options, "llm.client()");
    this.options = Object.freeze({ ...options });
  }

  /** One model call; resolves to the whole reply. */
  chat(messages: Messages, options: ChatOptions = {}): Promise<Reply> {
    try {
      const call = prepare(messages, options, this.options, "llm.chat()");
      return complete(call, options.signal ?? currentContext()?.signal, undefined);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** One model call whose text can be read as it comes; leaving the loop early aborts it. */
  stream(messages: Messages, options: ChatOptions = {}): ChatStream {
    const call = prepare(messages, options, this.options, "llm.stream()");
    return new TextStream((signal, sink) => complete(call, signal, sink), options.signal ?? currentContext()?.signal);
  }

  /**
   * Call the model, run the tools it asks for, send their results back, and
   * again, until a reply asks for none: that reply is the result.
   */
  async runTools(messages: Messages, options: RunToolsOptions): Promise<Reply> {
    const where = "llm.runTools()";
    const maxTurns = options?.maxTurns ?? DEFAULT_MAX_TURNS;
    if (!Number.isSafeInteger(maxTurns) || maxTurns < 1) throw new RangeError(`${where}: maxTurns must be a positive integer, not ${maxTurns}`);
    if (options?.tools === undefined) throw new TypeError(`${where}: the tools option is required`);
    const first = prepare(messages, options, this.options, where);
    for (const tool of first.tools) {
      if (tool.run === undefined) throw new TypeError(`${where}: tool ${JSON.stringify(tool.name)} has no run function`);
    }
    const byName = new Map(first.tools.map((tool) => [tool.name, tool]));
    const signal = options.signal ?? currentContext()?.signal;
    let call = first;
    for (let turn = 1; ; turn++) {
      const reply = await complete(call, signal, undefined);
      if (reply.toolCalls.length === 0) return reply;
      if (turn >= maxTurns) {
        const names = reply.toolCalls.map((c) => c.name).join(", ");
        throw new LLMError(`${where}: the model still asks for tools (${names}) after ${maxTurns} model calls (maxTurns)`);
      }
      const transcript = [...reply.messages];
      for (const toolCall of reply.toolCalls) {
        const content = await runToolCall(toolCall, byName, signal);
        transcript.push({ role: "tool", tool_call_id: toolCall.id, content });
      }
      call = { ...call, transcript, body: { ...call.body, messages: transcript } };
    }
  }
}

const DEFAULT_CLIENT = new Client();

/**
 * One model call. `messages` is a user message or a transcript; the reply
 * streams by default, its text going to `onDelta` and, inside a call, to
 * the call's chunks.
 *
 * @example
 * ```ts
 * const reply = await llm.chat("Name three primes.", { model: "gpt-4o-mini", temperature: 0 });
 * reply.content;  // "2, 3 and 5."
 * reply.messages; // the transcript, to continue it
 * ```
 */
export function chat(messages: Messages, options?: ChatOptions): Promise<Reply> {
  return DEFAULT_CLIENT.chat(messages, options);
}

/**
 * One model call whose text comes piece by piece:
 *
 * @example
 * ```ts
 * const s = llm.stream("Tell a story.");
 * for await (const text of s) process.stdout.write(text);
 * const reply = await s.reply;
 * ```
 */
export function stream(messages: Messages, options?: ChatOptions): ChatStream {
  return DEFAULT_CLIENT.stream(messages, options);
}

/**
 * The tool loop: call the model, run the tools it asks for (`tool()`s,
 * `{ name, parameters, run }` objects), send the results, repeat until a
 * reply asks for no tool. A tool that throws gives the model the text
 * `error: <name>: <ErrorName>: <message>` as its result.
 *
 * @example
 * ```ts
 * const reply = await llm.runTools("What is the weather in Paris?", { tools: { weather } });
 * ```
 */
export function runTools(messages: Messages, options: RunToolsOptions): Promise<Reply> {
  return DEFAULT_CLIENT.runTools(messages, options);
}

/** A client with defaults of its own (endpoint, key, model, timeout, retries). */
export function client(options?: ClientOptions): Client {
  return new Client(options);
}

// -- one call ------------------------------------------------------------------

/** A call ready to send: where, what, and where its text goes. */
interface Prepared {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly keySent: boolean;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly transcript: readonly Message[];
  readonly body: Record<string, unknown>;
  readonly tools: readonly ResolvedTool[];
  readonly streaming: boolean;
  readonly onDelta: ((text: string) => void) | undefined;
  readonly chunks: boolean;
}

function prepare(messages: Messages, options: ChatOptions, defaults: ClientOptions, where: string): Prepared {
  if (typeof options !== "object" || options === null) throw new TypeError(`${where}: options must be an object`);
  checkClientOptions(options, where);
  const { system, temperature, maxTokens, toolChoice, json, extra, onDelta } = options;
  if (system !== undefined && typeof system !== "string") throw new TypeError(`${where}: system must be a string`);
  if (onDelta !== undefined && typeof onDelta !== "function") throw new TypeError(`${where}: onDelta must be a function`);
  if (extra !== undefined && (typeof extra !== "object" || extra === null || Array.isArray(extra))) {
    throw new TypeError(`${where}: extra must be an object`);
  }
  const transcript = transcriptOf(messages, system, where);
  const tools = options.tools === undefined ? [] : resolveTools(options.tools, where);
  const { url, key } = endpointOf(options, defaults);
  const model = options.model ?? defaults.model ?? (process.env["OPENAI_MODEL"] || undefined);
  if (model === undefined || model === "") {
    throw new ConfigError("flw llm: no model: set OPENAI_MODEL or pass the model option (or llm.client({ model }))");
  }
  const streaming = options.stream ?? true;
  const body: Record<string, unknown> = { model, messages: transcript };
  if (temperature !== undefined) body["temperature"] = temperature;
  if (maxTokens !== undefined) body["max_tokens"] = maxTokens;
  if (tools.length > 0) body["tools"] = tools.map((tool) => tool.wire);
  if (toolChoice !== undefined) body["tool_choice"] = toolChoice;
  if (json === true) body["response_format"] = { type: "json_object" };
  if (streaming) {
    body["stream"] = true;
    body["stream_options"] = { include_usage: true };
  }
  Object.assign(body, extra);
  const headers: Record<string, string> = {
    "content-type": "application/json",
    accept: streaming ? "text/event-stream, application/json" : "application/json",
    "user-agent": `flw-worker/${SDK_VERSION}`,
  };
  if (key !== undefined) headers["authorization"] = `Bearer ${key}`;
  return {
    url,
    headers,
    keySent: key !== undefined,
    timeout: options.timeout ?? defaults.timeout ?? DEFAULT_TIMEOUT_MS,
    maxRetries: options.maxRetries ?? defaults.maxRetries ?? DEFAULT_MAX_RETRIES,
    transcript,
    body,
    tools,
    streaming,
    onDelta,
    chunks: options.chunks ?? true,
  };
}

function checkClientOptions(options: ClientOptions, where: string): void {
  for (const name of ["baseUrl", "apiKey", "model"] as const) {
    const value = options[name];
    if (value !== undefined && typeof value !== "string") throw new TypeError(`${where}: ${name} must be a string`);
  }
  const { timeout, maxRetries } = options;
  if (timeout !== undefined && !(typeof timeout === "number" && timeout > 0 && timeout <= 2 ** 31 - 1)) {
    throw new RangeError(`${where}: timeout must be a number of ms above 0, not ${timeout}`);
  }
  if (maxRetries !== undefined && !(Number.isSafeInteger(maxRetries) && maxRetries >= 0)) {
    throw new RangeError(`${where}: maxRetries must be an integer of 0 or more, not ${maxRetries}`);
  }
}

function transcriptOf(messages: Messages, system: string | undefined, where: string): Message[] {
  let list: Message[];
  if (typeof messages === "string") list = [{ role: "user", content: messages }];
  else if (Array.isArray(messages)) list = [...(messages as readonly Message[])];
  else throw new TypeError(`${where}: messages must be a string or an array of messages`);
  list.forEach((message, i) => {
    if (typeof message !== "object" || message === null || typeof message.role !== "string") {
      throw new TypeError(`${where}: messages[${i}] must be an object with a role`);
    }
  });
  if (system !== undefined) list.unshift({ role: "system", content: system });
  return list;
}

/** The URL of `chat/completions` and the key: options, then the client's, then the environment. */
function endpointOf(options: ClientOptions, defaults: ClientOptions): { url: string; key: string | undefined } {
  let key: string | undefined;
  let keySource: string;
  if (options.apiKey !== undefined) [key, keySource] = [options.apiKey, "the apiKey option"];
  else if (defaults.apiKey !== undefined) [key, keySource] = [defaults.apiKey, "the apiKey of llm.client()"];
  else [key, keySource] = [process.env["OPENAI_API_KEY"], "OPENAI_API_KEY"];
  const hasKey = key !== undefined && key !== "";
  if (hasKey) checkHeaderValue(key as string, keySource);
  let base: string;
  let source: string;
  if (options.baseUrl !== undefined) [base, source] = [options.baseUrl, "the baseUrl option"];
  else if (defaults.baseUrl !== undefined) [base, source] = [defaults.baseUrl, "the baseUrl of llm.client()"];
  else if (process.env["OPENAI_BASE_URL"]) [base, source] = [process.env["OPENAI_BASE_URL"], "OPENAI_BASE_URL"];
  else if (hasKey) [base, source] = [OPENAI_URL, "the default URL"];
  else {
    throw new ConfigError(
      "flw llm: no model endpoint: set OPENAI_BASE_URL (for example http://localhost:11434/v1 for Ollama) " +
        "or OPENAI_API_KEY (for api.openai.com), or pass baseUrl",
    );
  }
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new ConfigError(`flw llm: ${source} is not a valid URL: ${JSON.stringify(base)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`flw llm: ${source} is not an http or https URL: ${JSON.stringify(base)}`);
  }
  if (url.username !== "" || url.password !== "") {
    // fetch refuses such URLs; the URL is not shown, it holds a secret.
    throw new ConfigError(`flw llm: ${source} holds a user name or password, which fetch cannot send: pass the key as apiKey or OPENAI_API_KEY`);
  }
  // The path gets /chat/completions (a query string stays after it; a fragment is dropped).
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/chat/completions`;
  url.hash = "";
  return { url: url.href, key: hasKey ? key : undefined };
}

/**
 * An API key goes in the `Authorization` header: refuse here, as a
 * `ConfigError` that does not show the key, what `fetch` would refuse
 * (with the key in its message) or trim: control characters, line breaks,
 * characters above U+00FF.
 */
function checkHeaderValue(key: string, source: string): void {
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code >= 0x20 && code !== 0x7f && code <= 0xff) continue;
    const what = code === 0x0a || code === 0x0d ? "a line break" : `the character U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
    throw new ConfigError(`flw llm: ${source} cannot be sent in an HTTP header: it holds ${what} (at index ${i} of ${key.length})`);
  }
}

/** Send the call, read the reply; each piece of text goes to `onDelta`, the call's chunks and `sink`. */
async function complete(call: Prepared, signal: AbortSignal | undefined, sink: ((text: string) => void) | undefined): Promise<Reply> {
  const ctx = currentContext();
  const inCall = ctx?.callId !== undefined;
  const deliver = (text: string): void => {
    call.onDelta?.(text);
    if (call.chunks && inCall) void ctx?.chunk(text);
    sink?.(text);
  };
  const response = await post({
    url: call.url,
    headers: call.headers,
    body: JSON.stringify(call.body),
    timeout: call.timeout,
    maxRetries: call.maxRetries,
    signal,
    keySent: call.keySent,
    log: (message) => {
      if (inCall) void ctx?.log(`llm: ${message}`, "info");
    },
  });
  try {
    const type = response.contentType.toLowerCase();
    if (type.includes("text/event-stream") || (call.streaming && !type.includes("json"))) {
      return await readStream(call, response, deliver);
    }
    let text = "";
    for await (const piece of response.text()) {
      text += piece;
      if (response.received > MAX_JSON_BYTES) throw new LLMError(`POST ${call.url}: the response is over the limit of ${MAX_JSON_BYTES / MIB} MiB`);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new LLMError(`POST ${call.url}: the response is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
    }
    const reply = replyOfResponse(body, call.transcript, call.url);
    if (reply.content !== "") deliver(reply.content);
    return reply;
  } finally {
    response.close();
  }
}

async function readStream(call: Prepared, response: OpenResponse, deliver: (text: string) => void): Promise<Reply> {
  const parser = new SseParser();
  const acc = new StreamAccumulator();
  let done = false;
  const take = (events: ReturnType<SseParser["push"]>): void => {
    for (const event of events) {
      if (done) return;
      if (event.data === "[DONE]") {
        done = true;
        return;
      }
      let chunk: unknown;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        throw new LLMError(`POST ${call.url}: an event of the stream is not JSON: ${JSON.stringify(event.data.slice(0, 200))}`);
      }
      if (typeof chunk !== "object" || chunk === null || Array.isArray(chunk)) {
        throw new LLMError(`POST ${call.url}: an event of the stream is not a JSON object: ${event.data.slice(0, 200)}`);
      }
      const record = chunk as Record<string, unknown>;
      if (event.event === "error" || (record["error"] !== undefined && record["error"] !== null)) {
        throw new APIError(`POST ${call.url}: error in the stream: ${errorDetail(record)}`, call.url, response.status, record);
      }
      const text = acc.add(record);
      if (text !== "") deliver(text);
    }
  };
  // Stop at [DONE]: leaving the loop cancels the body, so a server that keeps the connection open after it is not waited for.
  for await (const piece of response.text()) {
    take(parser.push(piece));
    if (done) break;
    if (parser.pending > MAX_SSE_CHARS) {
      throw new LLMError(`POST ${call.url}: a line or event of the stream is over the limit of ${MAX_SSE_CHARS / MIB} MiB`);
    }
  }
  if (!done) take(parser.end());
  return acc.reply(call.transcript);
}
