/**
 * `llm.stream()`'s object: the text pieces of one call, queued as they
 * come and read with `for await`, and the call's reply. Leaving the loop
 * early aborts the call.
 */

import type { Reply } from "./reply.js";

/** What `llm.stream()` returns: the text pieces as they come (iterate once), and the whole reply. */
export interface ChatStream extends AsyncIterable<string> {
  readonly reply: Promise<Reply>;
}

/** The text of one call, queued as it comes, and its reply. */
export class TextStream implements ChatStream {
  readonly reply: Promise<Reply>;
  private readonly queue: string[] = [];
  private settled = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  private readonly controller = new AbortController();

  constructor(start: (signal: AbortSignal, sink: (text: string) => void) => Promise<Reply>, parent: AbortSignal | undefined) {
    const onAbort = (): void => this.controller.abort(parent?.reason);
    if (parent?.aborted) this.controller.abort(parent.reason);
    else parent?.addEventListener("abort", onAbort, { once: true });
    const end = (): void => {
      this.settled = true;
      parent?.removeEventListener("abort", onAbort);
      this.wakeUp();
    };
    this.reply = start(this.controller.signal, (text) => {
      this.queue.push(text);
      this.wakeUp();
    }).then(
      (reply) => {
        end();
        return reply;
      },
      (error: unknown) => {
        this.failure = { error };
        end();
        throw error;
      },
    );
    // A caller who only iterates sees the error there; this keeps it from also being an unhandled rejection.
    this.reply.catch(() => {});
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<string, void, undefined> {
    try {
      for (;;) {
        const text = this.queue.shift();
        if (text !== undefined) {
          yield text;
          continue;
        }
        if (this.failure !== undefined) throw this.failure.error;
        if (this.settled) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      if (!this.settled) {
        this.controller.abort(new DOMException("llm.stream(): the loop was left before the reply ended", "AbortError"));
      }
    }
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
