/**
 * One model request over `fetch`: the POST with its retries, the idle
 * timeout, and the body read as decoded text.
 *
 * Retried: the statuses 408, 409, 429 and 5xx, and network errors before a
 * response, up to `maxRetries` times, after `retry-after-ms` or
 * `Retry-After` when the endpoint sends one (more than 60 s: not retried),
 * else after 500 ms * 2^attempt less up to a quarter (jitter), at most 8 s.
 * Nothing is retried once a successful response's body is being read.
 *
 * The timeout is idle time: it runs while connecting and waiting for the
 * headers, and again between two pieces of the body, and aborts the
 * request when it runs out. An abort of the caller's signal aborts the
 * request (closing its connection) and rejects with the signal's reason,
 * also while waiting to retry.
 */

import { STATUS_CODES } from "node:http";
import { APIError, ConnectionError, TimeoutError } from "./llm_errors.js";

/** What a request needs to know. */
export interface PostOptions {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Idle time allowed, ms. */
  readonly timeout: number;
  readonly maxRetries: number;
  readonly signal: AbortSignal | undefined;
  /** Whether an API key was sent (for the hint of a 401). */
  readonly keySent: boolean;
  /** Where a note on each retry goes. */
  readonly log: (message: string) => void;
}

/** A successful response whose body is still to be read. */
export interface OpenResponse {
  readonly status: number;
  readonly contentType: string;
  /** The body as text, piece by piece (the idle timeout restarting on each). */
  text(): AsyncGenerator<string, void, undefined>;
  /** Stop: clear the timer, and abort the request if its body was not read to the end. */
  close(): void;
}

const RETRY_STATUSES = new Set([408, 409, 429]);
const BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 8000;
const MAX_RETRY_AFTER_MS = 60_000;
const ERROR_BODY_CHARS = 2000;

/** POST with retries; resolves once a 2xx response's headers came. */
export async function post(options: PostOptions): Promise<OpenResponse> {
  for (let attempt = 0; ; attempt++) {
    const exchange = new Exchange(options);
    let response: Response;
    try {
      response = await exchange.start();
    } catch (err) {
      exchange.close();
      if (err instanceof ConnectionError && attempt < options.maxRetries) {
        const wait = backoff(attempt);
        options.log(`${err.message}; retry ${attempt + 1} of ${options.maxRetries} in ${seconds(wait)}`);
        await sleep(wait, options.signal);
        continue;
      }
      throw err;
    }
    if (response.ok) return exchange.open(response);
    let text: string;
    try {
      text = await collect(exchange.open(response).text());
    } finally {
      exchange.close();
    }
    const error = apiError(options, response, text);
    const after = retryAfter(response.headers);
    const retryable = RETRY_STATUSES.has(response.status) || response.status >= 500;
    if (!retryable || attempt >= options.maxRetries || (after !== undefined && after > MAX_RETRY_AFTER_MS)) throw error;
    const wait = after ?? backoff(attempt);
    options.log(`${error.message}; retry ${attempt + 1} of ${options.maxRetries} in ${seconds(wait)}`);
    await sleep(wait, options.signal);
  }
}

/** One attempt: its controller (linked to the caller's signal) and its idle timer. */
class Exchange {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private timedOut = false;
  private finished = false;
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
      return await fetch(url, { method: "POST", headers, body, signal: this.controller.signal });
    } catch (err) {
      throw this.failure(err, "cannot reach the endpoint");
    }
  }

  open(response: Response): OpenResponse {
    this.arm();
    return {
      status: response.status,
      contentType: response.headers.get("content-type") ?? "",
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
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        throw this.failure(err, "the connection broke while the reply came");
      }
      if (chunk.done) break;
      this.arm();
      const text = decoder.decode(chunk.value, { stream: true });
      if (text !== "") yield text;
    }
    this.finished = true;
    this.disarm();
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

/**
 * A network error as text: undici's `fetch failed` and `terminated` say
 * little, their cause says what (`connect ECONNREFUSED ...`, `other side closed`).
 */
function networkText(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && (e.message === "fetch failed" || e.message === "terminated") && e.cause instanceof Error) e = e.cause;
  if (e instanceof Error) return e.message || e.name;
  return String(e);
}

async function collect(pieces: AsyncIterable<string>): Promise<string> {
  let text = "";
  for await (const piece of pieces) text += piece;
  return text;
}

/** `POST <url>: 404 Not Found: <the error's message>`, with the body parsed when it is JSON. */
function apiError(options: PostOptions, response: Response, text: string): APIError {
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const status = response.status;
  const reason = response.statusText || STATUS_CODES[status] || "";
  let message = `POST ${options.url}: ${status}${reason ? ` ${reason}` : ""}`;
  const detail = errorDetail(body);
  if (detail !== "") message += `: ${detail}`;
  if (status === 401) {
    message += options.keySent
      ? " (check OPENAI_API_KEY or the apiKey option)"
      : " (no API key was sent: set OPENAI_API_KEY or pass apiKey)";
  }
  return new APIError(message, options.url, status, body);
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
  return Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** attempt) * (1 - Math.random() * 0.25);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Wait `ms`, or reject with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
