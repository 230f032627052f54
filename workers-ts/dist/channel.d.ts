/**
 * The protocol channel: a bounded line reader, a line writer, and
 * {@link openChannel}, which takes the channel away from user code.
 *
 * The reader never holds more than `maxLineBytes + 1` bytes of one line:
 * past that it drops what it has, skips to the end of the line and reports
 * `line_too_long`. The writer writes whole lines in order on one stream.
 */
import { Writable } from "node:stream";
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
/** Writes protocol messages as whole lines on one stream, in order. */
export declare class LineWriter {
    private readonly write;
    readonly maxLineBytes: number;
    constructor(write: (data: Buffer | string, callback?: (err?: Error | null) => void) => unknown, maxLineBytes: number);
    /** The line for `message`; `ProtocolError("line_too_long")` when it is over the limit. */
    encode(message: Record<string, unknown>): Buffer;
    /** Encode `message` and write it as one line. */
    send(message: Record<string, unknown>): void;
    /** Write lines already encoded and checked. */
    writeLine(data: Buffer): void;
    /** Resolves once every line written so far has been handed to the system. */
    flush(): Promise<void>;
}
/** Where the worker reads and writes the protocol. */
export interface Channel {
    readonly input: NodeJS.ReadableStream;
    readonly write: (data: Buffer | string, callback?: (err?: Error | null) => void) => unknown;
    /** The stream the writer writes to: its `error` means the channel is gone. */
    readonly output: Writable;
    readonly description: string;
}
/**
 * Take the protocol channel away from user code.
 *
 * With `FLW_CHANNEL_FD` set, that descriptor becomes a socket and the
 * variable is removed from `process.env` so child processes do not look for
 * it. Without it, stdin and stdout are the channel: the writer keeps the
 * original `process.stdout.write`, and `process.stdout.write` (which
 * `console.log` goes through) is pointed at stderr before user code runs.
 * Throws when the descriptor is unusable.
 */
export declare function openChannel(env?: NodeJS.ProcessEnv): Channel;
