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

import { STATUS_CODES } from "node:http";
import { APIError, ConnectionError, TimeoutError } from "./errors.js";
import { pause } from "../pause.js";

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
export const MIB = 1024 * 1024;

const RETRY_STATUSES = new Set([408, 409, 429]);
/** The `code`s of the network errors retried: the connection refused, reset or closed before a response. */
const RETRY_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "UND_ERR_SOCKET"]);
const BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 8000;
const MAX_RETRY_AFTER_MS = 60_000;
/** The most of an error response's body read (as the Python SDK). */
const MAX_ERROR_BODY_BYTES = MIB;
const ERROR_BODY_CHARS = 2000;

/** POST with retries; resolves once a 2xx response's headers came. */
export async function post(options: PostOptions): Promise<OpenResponse> {
  const { maxRetries } = options;
  const gaveUp = (attempt: number): string => (attempt === 0 ? "" : ` (after ${attempt} ${attempt === 1 ? "retry" : "retries"})`);
  for (let attempt = 0; ; attempt++) {
    const exchange = new Exchange(options);
    let response: Response;
    try {
      response = await exchange.start();
    } catch (err) {
      exchange.close();
      if (!(err instanceof ConnectionError) || !retryableNetworkError(err.cause)) throw err;
      if (attempt >= maxRetries) {
        throw attempt === 0 ? err : new ConnectionError(`${err.message}${gaveUp(attempt)}`, err.url, err.cause);
      }
      const wait = backoff(attempt);
      options.log(`${err.message}; retry ${attempt + 1} of ${maxRetries} in ${seconds(wait)}`);
      await pause(wait, options.signal);
      continue;
    }
    if (response.ok) return exchange.open(response);
    const status = response.status;
    const location = response.headers.get("location");
    if (status >= 300 && status < 400 && location !== null) {
      exchange.close();
      throw redirectError(options, response, location);
    }
    let text: string;
    try {
      text = await collect(exchange.open(response));
    } finally {
      exchange.close();
    }
    const retryable = RETRY_STATUSES.has(status) || status >= 500;
    const after = retryable ? retryAfter(response.headers) : undefined;
    if (!retryable) throw apiError(options, response, text, "");
    if (attempt >= maxRetries) throw apiError(options, response, text, gaveUp(attempt));
    if (after !== undefined && after > MAX_RETRY_AFTER_MS) {
      const asked = Math.round(after / 1000);
      const note = ` (the server asks to retry after ${asked} s, more than the ${MAX_RETRY_AFTER_MS / 1000} s llm waits: not retried)`;
      throw apiError(options, response, text, `${gaveUp(attempt)}${note}`);
    }
    const error = apiError(options, response, text, "");
    const wait = after ?? backoff(attempt);
    options.log(`${error.message}; retry ${attempt + 1} of ${maxRetries} in ${seconds(wait)}`);
    await pause(wait, options.signal);
  }
}

/** One attempt: its controller (linked to the caller's signal) and its idle timer. */
class Exchange {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private finished = false;
  private received = 0;
  private readonly onAbort = (): void => this.controller.abort(this.options.signal?.reason);

  constructor(private readonly options: PostOptions) {
    const signal = options.signal;
    if (signal?.aborted) this.controller.abort(signal.reason);
    else signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  async start(): Promise<Response> {
    const { url, headers, body } = this.options;
    this.arm();
    try {
      // Not "follow": a 301 or 302 would turn the POST into a GET (see redirectError).
      return await fetch(url, { method: "POST", headers, body, redirect: "manual", signal: this.controller.signal });
    } catch (err) {
      const signal = this.options.signal;
      if (signal?.aborted || this.timedOut || isNetworkError(err)) throw this.failure(err, "cannot reach the endpoint");
      // fetch refused the request before sending it (index.ts checks what it can first): not a network error.
      throw err;
    }
  }

  open(response: Response): OpenResponse {
    this.arm();
    const exchange = this;
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
      get received() {
        return exchange.received;
      },
      text: () => this.read(response),
      close: () => this.close(),
    };
  }

  private async *read(response: Response): AsyncGenerator<string, void, undefined> {
    if (response.body === null) {
      this.finished = true;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder("utf-8");
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw this.failure(err, "the connection broke while the reply came");
        }
        if (chunk.done) break;
        this.received += chunk.value.byteLength;
        this.arm();
        const text = decoder.decode(chunk.value, { stream: true });
        if (text !== "") yield text;
      }
      this.finished = true;
      this.disarm();
    } finally {
      // Left early (the reader stopped at [DONE], or a limit): cancel the body, which closes the connection.
      if (!this.finished) reader.cancel().catch(() => {});
    }
    const rest = decoder.decode();
    if (rest !== "") yield rest;
  }

  close(): void {
    this.disarm();
    this.options.signal?.removeEventListener("abort", this.onAbort);
    if (!this.finished && !this.controller.signal.aborted) {
      this.controller.abort(new DOMException("the reply was not read to its end", "AbortError"));
    }
  }

  /** (Re)start the idle timer. */
  private arm(): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort(new TimeoutError(this.options.url, this.options.timeout));
    }, this.options.timeout);
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** What a failed `fetch` or read becomes: the caller's abort reason, a timeout, or a connection error. */
  private failure(err: unknown, what: string): unknown {
    const signal = this.options.signal;
    if (signal?.aborted) return signal.reason;
    if (this.timedOut) return new TimeoutError(this.options.url, this.options.timeout);
    return new ConnectionError(`POST ${this.options.url}: ${what}: ${networkText(err)}`, this.options.url, err);
  }
}

/** Whether `fetch` rejected because of the network (undici's `TypeError: fetch failed`, its cause saying what). */
function isNetworkError(err: unknown): boolean {
  return err instanceof TypeError && err.message === "fetch failed" && err.cause !== undefined;
}

/**
 * Whether a network error of `fetch` may be retried: a connection refused,
 * reset or closed before any response, by the `code` of its cause (all the
 * causes, for an `AggregateError` of several addresses tried). Not: DNS
 * failures, TLS and certificate errors, anything without a code.
 */
function retryableNetworkError(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof AggregateError && cause.errors.length > 0 && (cause as { code?: unknown }).code === undefined) {
    return cause.errors.every((e: unknown) => RETRY_CODES.has(codeOf(e)));
  }
  return RETRY_CODES.has(codeOf(cause));
}

function codeOf(err: unknown): string {
  const code = typeof err === "object" && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : "";
}

/**
 * A network error as text: undici's `fetch failed` and `terminated` say
 * little, their cause says what (`connect ECONNREFUSED ...`, `other side closed`).
 */
function networkText(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && (e.message === "fetch failed" || e.message === "terminated") && e.cause instanceof Error) e = e.cause;
  // OpenSSL's messages end in a line break.
  if (e instanceof Error) return e.message.trim() || e.name;
  return String(e).trim();
}

/** An error response's body, up to MAX_ERROR_BODY_BYTES (the rest is not read). */
async function collect(response: OpenResponse): Promise<string> {
  let text = "";
  for await (const piece of response.text()) {
    text += piece;
    if (response.received >= MAX_ERROR_BODY_BYTES) break;
  }
  return text.length > MAX_ERROR_BODY_BYTES ? text.slice(0, MAX_ERROR_BODY_BYTES) : text;
}

function statusLine(options: PostOptions, response: Response): string {
  const status = response.status;
  const reason = response.statusText || STATUS_CODES[status] || "";
  return `POST ${options.url}: ${status}${reason ? ` ${reason}` : ""}`;
}

/** `POST <url>: 404 Not Found: <the error's message>`, with the body parsed when it is JSON; `note` goes last. */
function apiError(options: PostOptions, response: Response, text: string, note: string): APIError {
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const status = response.status;
  let message = statusLine(options, response);
  const detail = errorDetail(body);
  if (detail !== "") message += `: ${detail}`;
  if (status === 401 || status === 403) {
    message += options.keySent ? " (check OPENAI_API_KEY or apiKey)" : " (no API key was sent: set OPENAI_API_KEY or pass apiKey)";
  }
  return new APIError(message + note, options.url, status, body);
}

/** A 3xx: not followed, since fetch would resend the POST as a GET; the base URL should name the new place. */
function redirectError(options: PostOptions, response: Response, location: string): APIError {
  let target = location;
  try {
    target = new URL(location, options.url).href;
  } catch {
    // not a URL: shown as sent
  }
  const message = `${statusLine(options, response)}: the endpoint redirects to ${target}; set the base URL to it`;
  return new APIError(message, options.url, response.status, "");
}

/** The message of an error body: OpenAI's `error.message`, else `error` or `message` or `detail` as text, else the start of the body. */
export function errorDetail(body: unknown): string {
  if (typeof body === "object" && body !== null) {
    const record = body as Record<string, unknown>;
    const error = record["error"];
    if (typeof error === "object" && error !== null) {
      const message = (error as Record<string, unknown>)["message"];
      if (typeof message === "string") return message;
    }
    for (const key of ["error", "message", "detail"]) {
      const value = record[key];
      if (typeof value === "string") return value;
    }
    body = JSON.stringify(body);
  }
  const text = String(body).trim();
  return text.length > ERROR_BODY_CHARS ? `${text.slice(0, ERROR_BODY_CHARS)}...` : text;
}

/** The wait a response asks for, in ms: `retry-after-ms`, else `Retry-After` (seconds or an HTTP date). */
function retryAfter(headers: Headers): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function backoff(attempt: number): number {
  return Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** Math.min(attempt, 16)) * (1 - Math.random() * 0.25);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
