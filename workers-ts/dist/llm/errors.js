/**
 * The errors of `llm`: one base class, `LLMError`, and a subclass per
 * consequence: fix the setup (`ConfigError`), the endpoint answered an
 * error status (`APIError`), it went quiet (`TimeoutError`), or it could
 * not be reached or the connection broke (`ConnectionError`).
 *
 * A cancelled request (the `signal` aborted) is not an `LLMError`: it
 * rejects with the signal's reason, as `fetch` does.
 */
const LLM_ERROR = Symbol.for("flw.llm.error");
/**
 * The base class of every error `llm` raises about a model call.
 *
 * @example
 * ```ts
 * try {
 *   await llm.chat("hi");
 * } catch (err) {
 *   if (err instanceof llm.APIError && err.status === 429) { ... }
 *   else if (llm.isLLMError(err)) { ... }
 *   else throw err; // a cancel, or a bug
 * }
 * ```
 */
export class LLMError extends Error {
    constructor(message, options) {
        super(message, options);
        this.name = "LLMError";
    }
}
// A brand on the prototype, shared by every copy of this SDK (the one flw
// embeds and one installed from npm), for isLLMError.
Object.defineProperty(LLMError.prototype, LLM_ERROR, { value: true });
/** Whether `value` is an `LLMError` (of any copy of this SDK). */
export function isLLMError(value) {
    return typeof value === "object" && value !== null && value[LLM_ERROR] === true;
}
/** No model, no endpoint, a base URL that is not one, or an API key that cannot be sent: nothing was sent. */
export class ConfigError extends LLMError {
    constructor(message) {
        super(message);
        this.name = "ConfigError";
    }
}
/**
 * The endpoint answered with an error status (after the retries, for the
 * statuses that are retried; a 3xx, which is not followed, included), or
 * sent an error inside the event stream.
 */
export class APIError extends LLMError {
    /** The HTTP status (200 for an error sent inside a stream). */
    status;
    /** The error body: its JSON value, else its text. */
    body;
    url;
    constructor(message, url, status, body) {
        super(message);
        this.name = "APIError";
        this.url = url;
        this.status = status;
        this.body = body;
    }
}
/** No byte came from the endpoint for `timeout` ms (connecting, before the headers, or between two chunks of the body). */
export class TimeoutError extends LLMError {
    url;
    /** The idle time allowed, in ms. */
    timeout;
    constructor(url, timeout) {
        super(`POST ${url}: no data for ${timeout} ms (timeout)`);
        this.name = "TimeoutError";
        this.url = url;
        this.timeout = timeout;
    }
}
/**
 * A network error: the endpoint could not be reached (refused, DNS, TLS),
 * or the connection broke while the reply came. `cause` is `fetch`'s error
 * (its own `cause` holds undici's, with the `code`).
 */
export class ConnectionError extends LLMError {
    url;
    constructor(message, url, cause) {
        super(message, { cause });
        this.name = "ConnectionError";
        this.url = url;
    }
}
