/**
 * One model request over `fetch`: the POST with its retries, the idle
 * timeout, and the body read as decoded text.
 *
 * Retried, up to `maxRetries` times: the statuses 408, 409, 429 and 5xx,
 * and a connection refused, reset or closed before any response (the
 * `code` of the network error undici gives as `fetch`'s cause:
 * `ECONNREFUSED`, `ECONNRESET`, `ECONNABORTED`, `EPIPE`, `UND_ERR_SOCKET`),
 * as the Python SDK does. Not retried: a name that does not resolve
 * (`ENOTFOUND`, `EAI_AGAIN`), TLS and certificate errors, timeouts, and
 * anything once a successful response's body is being read. The wait is
 * `retry-after-ms` or `Retry-After` when the endpoint sends one (more than
 * 60 s: not retried, and the error says so), else 500 ms * 2^attempt less
 * up to a quarter (jitter), at most 8 s.
 *
 * Redirects are not followed (a POST would become a GET): a 3xx is an
 * `APIError` naming where it points.
 *
 * The timeout is idle time: it runs while connecting and waiting for the
 * headers, and again between two pieces of the body, and aborts the
 * request when it runs out. An abort of the caller's signal aborts the
 * request (closing its connection) and rejects with the signal's reason,
 * also while waiting to retry.
 */
/** What a request needs to know. */
export interface PostOptions {
    readonly url: string;
    readonly headers: Readonly<Record<string, string>>;
    readonly body: string;
    /** Idle time allowed, ms. */
    readonly timeout: number;
    readonly maxRetries: number;
    readonly signal: AbortSignal | undefined;
    /** Whether an API key was sent (for the hint of a 401 or 403). */
    readonly keySent: boolean;
    /** Where a note on each retry goes. */
    readonly log: (message: string) => void;
}
/** A successful response whose body is still to be read. */
export interface OpenResponse {
    readonly status: number;
    readonly contentType: string;
    /** The bytes of the body read so far. */
    readonly received: number;
    /**
     * The body as text, piece by piece (the idle timeout restarting on each).
     * Leaving the loop early cancels the body.
     */
    text(): AsyncGenerator<string, void, undefined>;
    /** Stop: clear the timer, and abort the request if its body was not read to the end. */
    close(): void;
}
/** 1 MiB, in bytes. */
export declare const MIB: number;
/** POST with retries; resolves once a 2xx response's headers came. */
export declare function post(options: PostOptions): Promise<OpenResponse>;
/** The message of an error body: OpenAI's `error.message`, else `error` or `message` or `detail` as text, else the start of the body. */
export declare function errorDetail(body: unknown): string;
