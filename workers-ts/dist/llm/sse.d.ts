/**
 * An incremental parser of server-sent events (the `text/event-stream`
 * format of the HTML standard), fed the body's text as it arrives.
 *
 * Lines end in LF, CRLF or CR (a CR at the end of one piece and an LF at
 * the start of the next are one line end). `data:` lines append to the
 * event's data (joined with LF), `event:` sets its type, lines that start
 * with `:` are comments, `id:` and `retry:` are ignored; an empty line
 * dispatches the event, if it has data. One space after the colon is
 * dropped. At the end of the stream an event without its empty line is
 * still dispatched (servers that forget the last blank line exist).
 */
/** One event: its type (`message` unless an `event:` line said otherwise) and data. */
export interface SseEvent {
    readonly event: string;
    readonly data: string;
}
export declare class SseParser {
    private buffer;
    /** The last piece ended in CR: an LF at the start of the next piece belongs to it. */
    private afterCr;
    private data;
    /** The characters of `data`. */
    private dataChars;
    private event;
    /** The characters held: the line not yet ended and the data of the event not yet dispatched (for a limit). */
    get pending(): number;
    /** Feed a piece of the body; returns the events it completed. */
    push(text: string): SseEvent[];
    /** The end of the stream: the event still open, if it has data. */
    end(): SseEvent[];
    private line;
}
