/**
 * A model's reply: built from one chat-completions response, or
 * accumulated from the chunks of a streamed one (text deltas appended,
 * tool-call deltas gathered by their `index`).
 */
import { LLMError } from "./errors.js";
const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);
const text = (value) => (typeof value === "string" ? value : undefined);
class ReplyObject {
    content;
    toolCalls;
    finishReason;
    usage;
    model;
    raw;
    message;
    messages;
    constructor(content, toolCalls, finishReason, usage, model, raw, sent) {
        this.content = content;
        this.toolCalls = toolCalls;
        this.finishReason = finishReason;
        this.usage = usage;
        this.model = model;
        this.raw = raw;
        const message = {
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
    json() {
        try {
            return JSON.parse(unfenced(this.content));
        }
        catch (err) {
            const start = this.content.length > 200 ? `${this.content.slice(0, 200)}...` : this.content;
            throw new LLMError(`the reply is not JSON (${err.message}): ${JSON.stringify(start)}`, { cause: err });
        }
    }
}
/** The text inside a Markdown code fence (with or without a language), else the text. */
function unfenced(text) {
    const trimmed = text.trim();
    const match = /^```[A-Za-z0-9]*[ \t]*\r?\n([\s\S]*)```$/.exec(trimmed);
    return match?.[1] ?? trimmed;
}
/** A tool call from its parts: the arguments parsed, or why they could not be. */
export function toolCallOf(id, name, argumentsJson) {
    let args = {};
    let error = null;
    if (argumentsJson.trim() !== "") {
        try {
            const value = JSON.parse(argumentsJson);
            if (isObject(value))
                args = value;
            else
                error = `the arguments are ${Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`}, not an object`;
        }
        catch (err) {
            error = `the arguments are not valid JSON (${err.message})`;
        }
    }
    return { id, name, arguments: args, argumentsJson, error };
}
/**
 * The first choice of a response or chunk: the one with `index` 0. With
 * `n` > 1 a chunk may carry only other choices: then none (their text is
 * not this reply's). Only when no choice has an index is the first one taken.
 */
function firstChoice(body) {
    const choices = body["choices"];
    if (!Array.isArray(choices))
        return undefined;
    const indexed = choices.some((c) => isObject(c) && c["index"] !== undefined && c["index"] !== null);
    const choice = indexed ? choices.find((c) => isObject(c) && c["index"] === 0) : choices[0];
    return isObject(choice) ? choice : undefined;
}
/** The reply in a chat-completions response (`stream: false`). */
export function replyOfResponse(body, sent, url) {
    if (!isObject(body))
        throw new LLMError(`POST ${url}: the response is not a JSON object`);
    const choice = firstChoice(body);
    if (choice === undefined)
        throw new LLMError(`POST ${url}: the response has no choices: ${JSON.stringify(body).slice(0, 200)}`);
    const message = isObject(choice["message"]) ? choice["message"] : {};
    const calls = [];
    const wire = message["tool_calls"];
    if (Array.isArray(wire)) {
        wire.forEach((item, i) => {
            if (!isObject(item))
                return;
            const fn = isObject(item["function"]) ? item["function"] : {};
            const args = fn["arguments"];
            const json = typeof args === "string" ? args : args === undefined ? "" : JSON.stringify(args);
            calls.push(toolCallOf(text(item["id"]) ?? `call_${i}`, text(fn["name"]) ?? "", json));
        });
    }
    return new ReplyObject(text(message["content"]) ?? "", calls, text(choice["finish_reason"]) ?? null, isObject(body["usage"]) ? body["usage"] : null, text(body["model"]) ?? null, body, sent);
}
/** Gathers the chunks of a streamed response into a reply. */
export class StreamAccumulator {
    content = "";
    calls = new Map();
    finishReason = null;
    usage = null;
    model = null;
    last = null;
    /** Take one chunk; returns its text delta (`""` when it has none). */
    add(chunk) {
        this.last = chunk;
        const model = text(chunk["model"]);
        if (model !== undefined && model !== "")
            this.model = model;
        if (isObject(chunk["usage"]))
            this.usage = chunk["usage"];
        const choice = firstChoice(chunk);
        if (choice === undefined)
            return "";
        const reason = text(choice["finish_reason"]);
        if (reason !== undefined)
            this.finishReason = reason;
        const delta = isObject(choice["delta"]) ? choice["delta"] : isObject(choice["message"]) ? choice["message"] : {};
        const deltas = delta["tool_calls"];
        if (Array.isArray(deltas))
            for (const item of deltas)
                if (isObject(item))
                    this.addCall(item);
        const piece = text(delta["content"]) ?? "";
        this.content += piece;
        return piece;
    }
    /**
     * A tool-call delta, by its `index`. Without one (servers that send whole
     * calls): the call with the same `id`, else a new call when it has an `id`
     * (or is the first), else the last call.
     */
    addCall(delta) {
        const id = text(delta["id"]);
        let index;
        if (typeof delta["index"] === "number")
            index = delta["index"];
        else {
            const known = [...this.calls].find(([, call]) => id !== undefined && id !== "" && call.id === id);
            if (known !== undefined)
                index = known[0];
            else if ((id !== undefined && id !== "") || this.calls.size === 0)
                index = this.calls.size;
            else
                index = Math.max(...this.calls.keys());
        }
        let call = this.calls.get(index);
        if (call === undefined) {
            call = { id: undefined, name: "", args: "" };
            this.calls.set(index, call);
        }
        if (id !== undefined && id !== "")
            call.id = id;
        const fn = isObject(delta["function"]) ? delta["function"] : {};
        const name = text(fn["name"]);
        if (name !== undefined && name !== "")
            call.name = name;
        const args = fn["arguments"];
        call.args += typeof args === "string" ? args : args === undefined || args === null ? "" : JSON.stringify(args);
    }
    reply(sent) {
        const calls = [...this.calls.entries()]
            .sort(([a], [b]) => a - b)
            .map(([index, call]) => toolCallOf(call.id ?? `call_${index}`, call.name, call.args));
        return new ReplyObject(this.content, calls, this.finishReason, this.usage, this.model, this.last, sent);
    }
}
