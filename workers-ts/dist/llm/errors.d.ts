/**
 * The errors of `llm`: one base class, `LLMError`, and a subclass per
 * consequence: fix the setup (`ConfigError`), the endpoint answered an
 * error status (`APIError`), it went quiet (`TimeoutError`), or it could
 * not be reached or the connection broke (`ConnectionError`).
 *
 * A cancelled request (the `signal` aborted) is not an `LLMError`: it
 * rejects with the signal's reason, as `fetch` does.
 */
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
export declare class LLMError extends Error {
    constructor(message: string, options?: ErrorOptions);
}
/** Whether `value` is an `LLMError` (of any copy of this SDK). */
export declare function isLLMError(value: unknown): value is LLMError;
/** No model, no endpoint, a base URL that is not one, or an API key that cannot be sent: nothing was sent. */
export declare class ConfigError extends LLMError {
    constructor(message: string);
}
/**
 * The endpoint answered with an error status (after the retries, for the
 * statuses that are retried; a 3xx, which is not followed, included), or
 * sent an error inside the event stream.
 */
export declare class APIError extends LLMError {
    /** The HTTP status (200 for an error sent inside a stream). */
    readonly status: number;
    /** The error body: its JSON value, else its text. */
    readonly body: unknown;
    readonly url: string;
    constructor(message: string, url: string, status: number, body: unknown);
}
/** No byte came from the endpoint for `timeout` ms (connecting, before the headers, or between two chunks of the body). */
export declare class TimeoutError extends LLMError {
    readonly url: string;
    /** The idle time allowed, in ms. */
    readonly timeout: number;
    constructor(url: string, timeout: number);
}
/**
 * A network error: the endpoint could not be reached (refused, DNS, TLS),
 * or the connection broke while the reply came. `cause` is `fetch`'s error
 * (its own `cause` holds undici's, with the `code`).
 */
export declare class ConnectionError extends LLMError {
    readonly url: string;
    constructor(message: string, url: string, cause: unknown);
}
