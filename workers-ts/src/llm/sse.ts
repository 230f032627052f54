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

export class SseParser {
  private buffer = "";
  /** The last piece ended in CR: an LF at the start of the next piece belongs to it. */
  private afterCr = false;
  private data: string[] = [];
  /** The characters of `data`. */
  private dataChars = 0;
  private event = "";

  /** The characters held: the line not yet ended and the data of the event not yet dispatched (for a limit). */
  get pending(): number {
    return this.buffer.length + this.dataChars;
  }

  /** Feed a piece of the body; returns the events it completed. */
  push(text: string): SseEvent[] {
    if (this.afterCr && text.startsWith("\n")) text = text.slice(1);
    this.afterCr = false;
    // The buffer held no line end: search only the new text (a long line costs no rescans).
    let from = this.buffer.length;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", from);
      const lf = this.buffer.indexOf("\n", from);
      if (cr < 0 && lf < 0) break;
      let end: number;
      let next: number;
      if (lf >= 0 && (cr < 0 || lf < cr)) {
        end = lf;
        next = lf + 1;
      } else if (cr + 1 < this.buffer.length) {
        end = cr;
        next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        // A CR at the very end: the line is complete; skip an LF that may come next.
        end = cr;
        next = cr + 1;
        this.afterCr = true;
      }
      this.line(this.buffer.slice(start, end), events);
      start = from = next;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** The end of the stream: the event still open, if it has data. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.buffer !== "") this.line(this.buffer, events);
    this.buffer = "";
    this.line("", events);
    return events;
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === "") {
      if (this.data.length > 0) events.push({ event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.dataChars = 0;
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.dataChars += value.length + 1;
    }
    else if (field === "event") this.event = value;
  }
}
