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
import { type Message, type Reply } from "./reply.js";
import { type ChatStream } from "./stream.js";
import { type Tools } from "./tools.js";
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
export type ToolChoice = "auto" | "none" | "required" | {
    readonly type: "function";
    readonly function: {
        readonly name: string;
    };
};
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
export declare class Client {
    readonly options: ClientOptions;
    constructor(options?: ClientOptions);
    /** One model call; resolves to the whole reply. */
    chat(messages: Messages, options?: ChatOptions): Promise<Reply>;
    /** One model call whose text can be read as it comes; leaving the loop early aborts it. */
    stream(messages: Messages, options?: ChatOptions): ChatStream;
    /**
     * Call the model, run the tools it asks for, send their results back, and
     * again, until a reply asks for none: that reply is the result.
     */
    runTools(messages: Messages, options: RunToolsOptions): Promise<Reply>;
}
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
export declare function chat(messages: Messages, options?: ChatOptions): Promise<Reply>;
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
export declare function stream(messages: Messages, options?: ChatOptions): ChatStream;
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
export declare function runTools(messages: Messages, options: RunToolsOptions): Promise<Reply>;
/** A client with defaults of its own (endpoint, key, model, timeout, retries). */
export declare function client(options?: ClientOptions): Client;
