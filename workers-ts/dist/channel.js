/**
 * The protocol channel: a bounded line reader, a line writer, and
 * {@link openChannel}, which takes the channel away from user code.
 *
 * The reader never holds more than `maxLineBytes + 1` bytes of one line:
 * past that it drops what it has, skips to the end of the line and reports
 * `line_too_long`. The writer writes whole lines in order on one stream.
 */
import net from "node:net";
import { ProtocolError, encodeLine } from "./protocol.js";
/**
 * Splits a byte stream into `\n`-terminated lines with a bounded buffer.
 * `push` takes one chunk and returns the items it completed; `end` says
 * whether the stream stopped in the middle of a line.
 */
export class LineReader {
    maxLineBytes;
    parts = [];
    size = 0;
    discarding = false;
    constructor(maxLineBytes) {
        this.maxLineBytes = maxLineBytes;
    }
    push(chunk) {
        const items = [];
        let start = 0;
        for (;;) {
            const end = chunk.indexOf(0x0a, start);
            if (end < 0)
                break;
            if (this.discarding) {
                this.discarding = false;
                items.push(this.tooLong());
            }
            else if (this.size + (end - start) > this.maxLineBytes) {
                items.push(this.tooLong());
            }
            else if (this.size === 0) {
                items.push(chunk.subarray(start, end));
            }
            else {
                this.parts.push(chunk.subarray(start, end));
                items.push(Buffer.concat(this.parts, this.size + (end - start)));
            }
            this.parts = [];
            this.size = 0;
            start = end + 1;
        }
        if (start < chunk.length && !this.discarding) {
            const rest = chunk.length - start;
            if (this.size + rest > this.maxLineBytes) {
                this.parts = [];
                this.size = 0;
                this.discarding = true;
            }
            else {
                // Copy: the caller's chunk may be reused, and a small piece must not pin a large buffer.
                this.parts.push(Buffer.from(chunk.subarray(start)));
                this.size += rest;
            }
        }
        return items;
    }
    /** At end-of-file: whether a line was left unfinished (its bytes are dropped). */
    end() {
        const torn = this.discarding || this.size > 0;
        this.parts = [];
        this.size = 0;
        this.discarding = false;
        return torn;
    }
    tooLong() {
        return new ProtocolError("line_too_long", `a line was longer than the limit of ${this.maxLineBytes} bytes (FLW_MAX_LINE_BYTES) and was skipped`);
    }
}
/** Writes protocol messages as whole lines on one stream, in order. */
export class LineWriter {
    write;
    maxLineBytes;
    constructor(write, maxLineBytes) {
        this.write = write;
        this.maxLineBytes = maxLineBytes;
    }
    /** The line for `message`; `ProtocolError("line_too_long")` when it is over the limit. */
    encode(message) {
        const data = encodeLine(message);
        const size = data.length - 1;
        if (size > this.maxLineBytes) {
            throw new ProtocolError("line_too_long", `the ${String(message["type"])} message is ${size} bytes, over the line limit ` +
                `of ${this.maxLineBytes} bytes (FLW_MAX_LINE_BYTES)`);
        }
        return data;
    }
    /** Encode `message` and write it as one line. */
    send(message) {
        this.write(this.encode(message));
    }
    /** Write lines already encoded and checked. */
    writeLine(data) {
        this.write(data);
    }
    /** Resolves once every line written so far has been handed to the system. */
    flush() {
        return new Promise((resolve) => {
            this.write("", () => resolve());
        });
    }
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
export function openChannel(env = process.env) {
    const raw = env["FLW_CHANNEL_FD"];
    if (raw) {
        const fd = Number(raw);
        if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(fd)) {
            throw new Error(`FLW_CHANNEL_FD must be a descriptor number, got ${JSON.stringify(raw)}`);
        }
        const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
        delete env["FLW_CHANNEL_FD"];
        return {
            input: socket,
            write: (data, callback) => socket.write(data, callback),
            output: socket,
            description: `fd ${fd}`,
        };
    }
    const stdout = process.stdout;
    const stderr = process.stderr;
    const protocolWrite = stdout.write.bind(stdout);
    const toStderr = (...args) => stderr.write(...args);
    stdout.write = toStderr;
    return { input: process.stdin, write: protocolWrite, output: stdout, description: "stdin/stdout" };
}
