/**
 * A model's reply: built from one chat-completions response, or
 * accumulated from the chunks of a streamed one (text deltas appended,
 * tool-call deltas gathered by their `index`).
 */

import { LLMError } from "./errors.js";

/** A message of the transcript, as OpenAI-compatible endpoints take it. */
export interface Message {
  readonly role: string;
  readonly content?: string | null | readonly unknown[];
  readonly [key: string]: unknown;
}

/** A tool call as the endpoint sends it (and as it is sent back in the transcript). */
export interface WireToolCall {
  readonly id: string;
  readonly type: "function";
  readonly function: { readonly name: string; readonly arguments: string };
}

/** The assistant message of a reply, ready to append to the transcript. */
export interface AssistantMessage extends Message {
  readonly role: "assistant";
  /** The text; `null` when the reply has tool calls and no text. */
  readonly content: string | null;
  readonly tool_calls?: readonly WireToolCall[];
}

/** A tool the model asked to call. */
export interface ToolCall {
  readonly id: string;
  readonly name: string;
  /** The arguments parsed from `argumentsJson`; `{}` when they are not a JSON object (see `error`). */
  readonly arguments: Record<string, unknown>;
  /** The arguments as the model wrote them. */
  readonly argumentsJson: string;
  /**
   * Why `argumentsJson` is not a JSON object, or `null` when it is (empty
   * arguments count as `{}`). `runTools` sends this back to the model
   * instead of running the tool.
   */
  readonly error: string | null;
}

/** Token counts, as the endpoint reports them. */
export interface Usage {
  readonly prompt_tokens?: number;
  readonly completion_tokens?: number;
  readonly total_tokens?: number;
  readonly [key: string]: unknown;
}

/** What `llm.chat()` resolves to. */
export interface Reply {
  /** The text of the reply (`""` when there is none). */
  readonly content: string;
  readonly toolCalls: readonly ToolCall[];
  /** `stop`, `length`, `tool_calls`, ... or `null` when the endpoint did not say. */
  readonly finishReason: string | null;
  readonly usage: Usage | null;
  /** The model that answered, as the endpoint names it. */
  readonly model: string | null;
  /** The assistant message, to append to the transcript. */
  readonly message: AssistantMessage;
  /** The transcript: the messages sent (the system message included) and `message`. A new array. */
  readonly messages: Message[];
  /** The last JSON received: the response, or the last chunk of a streamed one. */
  readonly raw: unknown;
  /**
   * The content parsed as JSON (a Markdown code fence around it is allowed);
   * throws an `LLMError` showing its start when it is not JSON.
   */
  json(): unknown;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);
const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);

class ReplyObject implements Reply {
  readonly message: AssistantMessage;
  readonly messages: Message[];

  constructor(
    readonly content: string,
    readonly toolCalls: readonly ToolCall[],
    readonly finishReason: string | null,
    readonly usage: Usage | null,
    readonly model: string | null,
    readonly raw: unknown,
    sent: readonly Message[],
  ) {
    const message: { role: "assistant"; content: string | null; tool_calls?: WireToolCall[] } = {
      role: "assistant",
      content: toolCalls.length > 0 && content === "" ? null : content,
    };
    if (toolCalls.length > 0) {
      message.tool_calls = toolCalls.map((call) => ({
        id: call.id,
        type: "function",
        function: { name: call.name, arguments: call.argumentsJson || "{}" },
      }));
    }
    this.message = message;
    this.messages = [...sent, message];
  }

  json(): unknown {
    try {
      return JSON.parse(unfenced(this.content));
    } catch (err) {
      const start = this.content.length > 200 ? `${this.content.slice(0, 200)}...` : this.content;
      throw new LLMError(`the reply is not JSON (${(err as Error).message}): ${JSON.stringify(start)}`, { cause: err });
    }
  }
}

/** The text inside a Markdown code fence (with or without a language), else the text. */
function unfenced(text: string): string {
  const trimmed = text.trim();
  const match = /^```[A-Za-z0-9]*[ \t]*\r?\n([\s\S]*)```$/.exec(trimmed);
  return match?.[1] ?? trimmed;
}

/** A tool call from its parts: the arguments parsed, or why they could not be. */
export function toolCallOf(id: string, name: string, argumentsJson: string): ToolCall {
  let args: Record<string, unknown> = {};
  let error: string | null = null;
  if (argumentsJson.trim() !== "") {
    try {
      const value: unknown = JSON.parse(argumentsJson);
      if (isObject(value)) args = value;
      else error = `the arguments are ${Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`}, not an object`;
    } catch (err) {
      error = `the arguments are not valid JSON (${(err as Error).message})`;
    }
  }
  return { id, name, arguments: args, argumentsJson, error };
}

/**
 * The first choice of a response or chunk: the one with `index` 0. With
 * `n` > 1 a chunk may carry only other choices: then none (their text is
 * not this reply's). Only when no choice has an index is the first one taken.
 */
function firstChoice(body: Json): Json | undefined {
  const choices = body["choices"];
  if (!Array.isArray(choices)) return undefined;
  const indexed = choices.some((c) => isObject(c) && c["index"] !== undefined && c["index"] !== null);
  const choice: unknown = indexed ? choices.find((c) => isObject(c) && c["index"] === 0) : choices[0];
  return isObject(choice) ? choice : undefined;
}

/** The reply in a chat-completions response (`stream: false`). */
export function replyOfResponse(body: unknown, sent: readonly Message[], url: string): Reply {
  if (!isObject(body)) throw new LLMError(`POST ${url}: the response is not a JSON object`);
  const choice = firstChoice(body);
  if (choice === undefined) throw new LLMError(`POST ${url}: the response has no choices: ${JSON.stringify(body).slice(0, 200)}`);
  const message = isObject(choice["message"]) ? choice["message"] : {};
  const calls: ToolCall[] = [];
  const wire = message["tool_calls"];
  if (Array.isArray(wire)) {
    wire.forEach((item: unknown, i) => {
      if (!isObject(item)) return;
      const fn = isObject(item["function"]) ? item["function"] : {};
      const args = fn["arguments"];
      const json = typeof args === "string" ? args : args === undefined ? "" : JSON.stringify(args);
      calls.push(toolCallOf(text(item["id"]) ?? `call_${i}`, text(fn["name"]) ?? "", json));
    });
  }
  return new ReplyObject(
    text(message["content"]) ?? "",
    calls,
    text(choice["finish_reason"]) ?? null,
    isObject(body["usage"]) ? (body["usage"] as Usage) : null,
    text(body["model"]) ?? null,
    body,
    sent,
  );
}

interface PartialCall {
  id: string | undefined;
  name: string;
  args: string;
}

/** Gathers the chunks of a streamed response into a reply. */
export class StreamAccumulator {
  private content = "";
  private readonly calls = new Map<number, PartialCall>();
  private finishReason: string | null = null;
  private usage: Usage | null = null;
  private model: string | null = null;
  private last: unknown = null;

  /** Take one chunk; returns its text delta (`""` when it has none). */
  add(chunk: Json): string {
    this.last = chunk;
    const model = text(chunk["model"]);
    if (model !== undefined && model !== "") this.model = model;
    if (isObject(chunk["usage"])) this.usage = chunk["usage"] as Usage;
    const choice = firstChoice(chunk);
    if (choice === undefined) return "";
    const reason = text(choice["finish_reason"]);
    if (reason !== undefined) this.finishReason = reason;
    const delta = isObject(choice["delta"]) ? choice["delta"] : isObject(choice["message"]) ? choice["message"] : {};
    const deltas = delta["tool_calls"];
    if (Array.isArray(deltas)) for (const item of deltas) if (isObject(item)) this.addCall(item);
    const piece = text(delta["content"]) ?? "";
    this.content += piece;
    return piece;
  }

  /**
   * A tool-call delta, by its `index`. Without one (servers that send whole
   * calls): the call with the same `id`, else a new call when it has an `id`
   * (or is the first), else the last call.
   */
  private addCall(delta: Json): void {
    const id = text(delta["id"]);
    let index: number;
    if (typeof delta["index"] === "number") index = delta["index"];
    else {
      const known = [...this.calls].find(([, call]) => id !== undefined && id !== "" && call.id === id);
      if (known !== undefined) index = known[0];
      else if ((id !== undefined && id !== "") || this.calls.size === 0) index = this.calls.size;
      else index = Math.max(...this.calls.keys());
    }
    let call = this.calls.get(index);
    if (call === undefined) {
      call = { id: undefined, name: "", args: "" };
      this.calls.set(index, call);
    }
    if (id !== undefined && id !== "") call.id = id;
    const fn = isObject(delta["function"]) ? delta["function"] : {};
    const name = text(fn["name"]);
    if (name !== undefined && name !== "") call.name = name;
    const args = fn["arguments"];
    call.args += typeof args === "string" ? args : args === undefined || args === null ? "" : JSON.stringify(args);
  }

  reply(sent: readonly Message[]): Reply {
    const calls = [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]) => toolCallOf(call.id ?? `call_${index}`, call.name, call.args));
    return new ReplyObject(this.content, calls, this.finishReason, this.usage, this.model, this.last, sent);
  }
}
