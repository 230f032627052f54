/**
 * A model's reply: built from one chat-completions response, or
 * accumulated from the chunks of a streamed one (text deltas appended,
 * tool-call deltas gathered by their `index`).
 */
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
    readonly function: {
        readonly name: string;
        readonly arguments: string;
    };
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
/** A tool call from its parts: the arguments parsed, or why they could not be. */
export declare function toolCallOf(id: string, name: string, argumentsJson: string): ToolCall;
/** The reply in a chat-completions response (`stream: false`). */
export declare function replyOfResponse(body: unknown, sent: readonly Message[], url: string): Reply;
/** Gathers the chunks of a streamed response into a reply. */
export declare class StreamAccumulator {
    private content;
    private readonly calls;
    private finishReason;
    private usage;
    private model;
    private last;
    /** Take one chunk; returns its text delta (`""` when it has none). */
    add(chunk: Json): string;
    /**
     * A tool-call delta, by its `index`. Without one (servers that send whole
     * calls): the call with the same `id`, else a new call when it has an `id`
     * (or is the first), else the last call.
     */
    private addCall;
    reply(sent: readonly Message[]): Reply;
}
export {};
