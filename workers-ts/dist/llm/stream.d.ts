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
export declare class TextStream implements ChatStream {
    readonly reply: Promise<Reply>;
    private readonly queue;
    private settled;
    private failure;
    private wake;
    private readonly controller;
    constructor(start: (signal: AbortSignal, sink: (text: string) => void) => Promise<Reply>, parent: AbortSignal | undefined);
    [Symbol.asyncIterator](): AsyncGenerator<string, void, undefined>;
    private wakeUp;
}
