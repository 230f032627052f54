/**
 * The protocol channel: a bounded line reader, a line writer, and
 * {@link openChannel}, which takes the channel away from user code.
 *
 * The reader never holds more than `maxLineBytes + 1` bytes of one line:
 * past that it drops what it has, skips to the end of the line and reports
 * `line_too_long`. The writer writes whole lines in order through one
 * write function (an `FdWriter`, see `fd_writer.ts`).
 */
import { ProtocolError } from "./protocol.js";
/** A line without its `\n`, or the report of an over-long line that was skipped. */
export type LineItem = Buffer | ProtocolError;
/**
 * Splits a byte stream into `\n`-terminated lines with a bounded buffer.
 * `push` takes one chunk and returns the items it completed; `end` says
 * whether the stream stopped in the middle of a line.
 */
export declare class LineReader {
    readonly maxLineBytes: number;
    private parts;
    private size;
    private discarding;
    constructor(maxLineBytes: number);
    push(chunk: Buffer): LineItem[];
    /** At end-of-file: whether a line was left unfinished (its bytes are dropped). */
    end(): boolean;
    private tooLong;
}
/**
 * Writes protocol messages as whole lines, in order, through one write
 * function. Lines given to {@link LineWriter.queueLine} (the terminal
 * replies) are gathered and written together in one microtask, so a batch
 * of calls that end together costs one write; every other line is written
 * at once, after the lines queued before it.
 */
export declare class LineWriter {
    private readonly write;
    readonly maxLineBytes: number;
    private queued;
    private queuedBytes;
    private flushScheduled;
    constructor(write: (data: Uint8Array) => void, maxLineBytes: number);
    /** The line for `message`; `ProtocolError("line_too_long")` when it is over the limit. */
    encode(message: Record<string, unknown>): Buffer;
    /** Encode `message` and write it as one line, now. */
    send(message: Record<string, unknown>): void;
    /** Write a line already encoded and checked, now. */
    writeLine(data: Buffer): void;
    /** Write a line already encoded and checked with the others queued in this turn of the event loop. */
    queueLine(data: Buffer): void;
    /** Write the queued lines now. */
    flush(): void;
}
/** Where the worker reads and writes the protocol: descriptors, read by the reader thread. */
export interface Channel {
    /** The descriptor the supervisor's lines arrive on. */
    readonly inputFd: number;
    /** The descriptor the worker's lines go to (the same socket as `inputFd` on fd 3). */
    readonly outputFd: number;
    readonly description: string;
}
/**
 * Take the protocol channel away from user code.
 *
 * With `FLW_CHANNEL_FD` set, that descriptor is the channel both ways and
 * the variable is removed from `process.env` so child processes do not look
 * for it. Without it, stdin and stdout are the channel, and
 * `process.stdout.write` (which `console.log` goes through) is pointed at
 * stderr before user code runs. Throws when the descriptor is unusable.
 */
export declare function openChannel(env?: NodeJS.ProcessEnv): Channel;
