/**
 * `llm.stream()`'s object: the text pieces of one call, queued as they
 * come and read with `for await`, and the call's reply. Leaving the loop
 * early aborts the call.
 */
/** The text of one call, queued as it comes, and its reply. */
export class TextStream {
    reply;
    queue = [];
    settled = false;
    failure;
    wake;
    controller = new AbortController();
    constructor(start, parent) {
        const onAbort = () => this.controller.abort(parent?.reason);
        if (parent?.aborted)
            this.controller.abort(parent.reason);
        else
            parent?.addEventListener("abort", onAbort, { once: true });
        const end = () => {
            this.settled = true;
            parent?.removeEventListener("abort", onAbort);
            this.wakeUp();
        };
        this.reply = start(this.controller.signal, (text) => {
            this.queue.push(text);
            this.wakeUp();
        }).then((reply) => {
            end();
            return reply;
        }, (error) => {
            this.failure = { error };
            end();
            throw error;
        });
        // A caller who only iterates sees the error there; this keeps it from also being an unhandled rejection.
        this.reply.catch(() => { });
    }
    async *[Symbol.asyncIterator]() {
        try {
            for (;;) {
                const text = this.queue.shift();
                if (text !== undefined) {
                    yield text;
                    continue;
                }
                if (this.failure !== undefined)
                    throw this.failure.error;
                if (this.settled)
                    return;
                await new Promise((resolve) => (this.wake = resolve));
            }
        }
        finally {
            if (!this.settled) {
                this.controller.abort(new DOMException("llm.stream(): the loop was left before the reply ended", "AbortError"));
            }
        }
    }
    wakeUp() {
        const wake = this.wake;
        this.wake = undefined;
        wake?.();
    }
}
