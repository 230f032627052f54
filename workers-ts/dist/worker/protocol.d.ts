/**
 * The wire codec: decode and encode protocol lines exactly as PROTOCOL.md says.
 *
 * `decode` turns one line (without its `\n`) into a message object holding
 * only the members the protocol defines, in the order its tables give, and
 * throws a {@link ProtocolError} carrying one of the decoding error codes.
 * `encode` checks a message the same way and writes canonical compact JSON:
 * `type` first, then the other members in table order, optional members
 * without a value left out, non-ASCII text as UTF-8.
 *
 * Lines are parsed by a small strict JSON parser of our own rather than
 * `JSON.parse`, because the protocol tells `1` from `1.0` (an integer member
 * written as a float is `invalid_field`) and `JSON.parse` cannot.
 */
/** The protocol versions this SDK speaks, highest first. */
export declare const PROTOCOL_VERSIONS: readonly number[];
/** The default line limit in bytes, without the `\n`. */
export declare const DEFAULT_MAX_LINE_BYTES: number;
/** The largest call id (and the largest integer any member may hold). */
export declare const MAX_ID: number;
export declare const LOG_LEVELS: readonly ["debug", "info", "warning", "error"];
export type LogLevel = (typeof LOG_LEVELS)[number];
export declare const ERROR_KINDS: readonly ["tool_error", "invalid_arguments", "unknown_tool", "cancelled", "internal", "timeout", "worker_crashed", "worker_killed", "protocol_error", "overloaded", "unavailable", "shutting_down", "superseded"];
export type ErrorKind = (typeof ERROR_KINDS)[number];
export declare const ERROR_CODES: readonly ["line_too_long", "invalid_utf8", "invalid_json", "not_object", "missing_type", "unknown_type", "missing_field", "invalid_field"];
export type ErrorCode = (typeof ERROR_CODES)[number];
export type Sender = "worker" | "supervisor";
/** A decoded message: `type` plus the members its table defines. */
export type Message = {
    type: string;
} & Record<string, unknown>;
/**
 * A line or message that does not fit the protocol. `code` is one of the
 * decoding error codes of PROTOCOL.md; `detail` says what is wrong for a
 * person and names the member or the limit involved.
 */
export declare class ProtocolError extends Error {
    readonly code: ErrorCode;
    readonly detail: string;
    constructor(code: ErrorCode, detail: string);
}
/** Whether `name` is 1-128 characters of `A-Z a-z 0-9 _ - .`. */
export declare function isValidToolName(name: string): boolean;
type Check = (value: unknown, where: string, hasFloat: boolean) => unknown;
type Field = readonly [name: string, check: Check, required: boolean];
export declare const NODE_KINDS: readonly ["node", "batch", "batch_flow"];
export type NodeKind = (typeof NODE_KINDS)[number];
export declare const NODE_PHASES: readonly ["run", "prep", "exec", "post", "fallback"];
export type NodePhase = (typeof NODE_PHASES)[number];
/** Member tables of the messages a worker sends, in table order. */
export declare const WORKER_MESSAGES: Readonly<Record<string, readonly Field[]>>;
/** Member tables of the messages the supervisor sends, in table order. */
export declare const SUPERVISOR_MESSAGES: Readonly<Record<string, readonly Field[]>>;
/**
 * Decode one line (without its `\n`) sent by `sender`.
 *
 * A trailing `\r` is tolerated. Returns the message with only the members
 * the protocol defines, in table order. Throws {@link ProtocolError} with the
 * code of the first problem found.
 */
export declare function decode(line: Uint8Array | string, sender: Sender, maxLineBytes?: number): Message;
/**
 * JSON text for `value` as Python's `json.dumps(..., ensure_ascii=False,
 * separators=(",", ":"), allow_nan=False)` writes it: NaN and infinities are
 * refused, and so are lone surrogates (which have no UTF-8 form). Values
 * JSON has no form for follow `JSON.stringify` (`undefined` members left
 * out, `toJSON` used); a BigInt or a cycle throws.
 */
export declare function toJsonText(value: unknown): string;
/**
 * Encode a message as one canonical line, without the `\n`.
 *
 * The message is checked like a decoded one; members are written in table
 * order, unknown members dropped, compact, with non-ASCII text as is.
 * Values JSON cannot hold throw `ProtocolError("invalid_field")`.
 */
export declare function encode(msg: Record<string, unknown>): string;
/** Encode a message as UTF-8 bytes ending in `\n`. */
export declare function encodeLine(msg: Record<string, unknown>): Buffer;
export {};
