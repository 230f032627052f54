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
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** The default line limit in bytes, without the `\n`. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

/** The largest call id (and the largest integer any member may hold). */
export const MAX_ID = Number.MAX_SAFE_INTEGER;

export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const ERROR_KINDS = [
  "tool_error",
  "invalid_arguments",
  "unknown_tool",
  "cancelled",
  "internal",
  "timeout",
  "worker_crashed",
  "worker_killed",
  "protocol_error",
  "overloaded",
  "unavailable",
  "shutting_down",
  "superseded",
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export const ERROR_CODES = [
  "line_too_long",
  "invalid_utf8",
  "invalid_json",
  "not_object",
  "missing_type",
  "unknown_type",
  "missing_field",
  "invalid_field",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export type Sender = "worker" | "supervisor";

/** A decoded message: `type` plus the members its table defines. */
export type Message = { type: string } & Record<string, unknown>;

/**
 * A line or message that does not fit the protocol. `code` is one of the
 * decoding error codes of PROTOCOL.md; `detail` says what is wrong for a
 * person and names the member or the limit involved.
 */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  readonly detail: string;

  constructor(code: ErrorCode, detail: string) {
    super(`${code}: ${detail}`);
    this.name = "ProtocolError";
    this.code = code;
    this.detail = detail;
  }
}

const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/** Whether `name` is 1-128 characters of `A-Z a-z 0-9 _ - .`. */
export function isValidToolName(name: string): boolean {
  return TOOL_NAME.test(name);
}

// ---------------------------------------------------------------------------
// Member checks. Each takes the value, the member's path (for messages) and
// whether the member's text held a number written as a float; it returns the
// value to keep or throws ProtocolError("invalid_field").

type Check = (value: unknown, where: string, hasFloat: boolean) => unknown;
/** What a check returns for a member that counts as absent (left out of the message). */
const ABSENT: unique symbol = Symbol("absent");
type Field = readonly [name: string, check: Check, required: boolean];

function describe(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "boolean" || typeof value === "number") return String(value);
  if (typeof value === "string") {
    const text = value.length <= 40 ? value : value.slice(0, 37) + "...";
    return JSON.stringify(text);
  }
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `a value of type ${typeof value}`;
}

function invalid(where: string, expected: string, value: unknown): ProtocolError {
  return new ProtocolError("invalid_field", `\`${where}\` must be ${expected}, got ${describe(value)}`);
}

function intIn(low: number): Check {
  return (value, where, hasFloat) => {
    if (typeof value !== "number" || hasFloat || !Number.isInteger(value) || value < low || value > MAX_ID) {
      throw invalid(where, `an integer from ${low} to ${MAX_ID}`, hasFloat ? `${String(value)} written as a float` : value);
    }
    return value;
  };
}

const callId = intIn(1);
const nonNegative = intIn(0);
const version = intIn(1);
const pid = intIn(1);

const string: Check = (value, where) => {
  if (typeof value !== "string") throw invalid(where, "a string", value);
  return value;
};

const number: Check = (value, where) => {
  if (typeof value !== "number" || !Number.isFinite(value)) throw invalid(where, "a number", value);
  return value;
};

const any: Check = (value) => value;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const array: Check = (value, where) => {
  if (!Array.isArray(value)) throw invalid(where, "an array", value);
  return value;
};

const object: Check = (value, where) => {
  if (!isObject(value)) throw invalid(where, "an object", value);
  return value;
};

const level: Check = (value, where) => {
  if (!(LOG_LEVELS as readonly unknown[]).includes(value)) throw invalid(where, `one of ${LOG_LEVELS.join(", ")}`, value);
  return value;
};

const kind: Check = (value, where) => {
  if (!(ERROR_KINDS as readonly unknown[]).includes(value)) throw invalid(where, "an error kind of PROTOCOL.md", value);
  return value;
};

const versions: Check = (value, where, hasFloat) => {
  const items = array(value, where, false) as unknown[];
  if (items.length === 0) throw invalid(where, "a non-empty array of integers", value);
  return items.map((item, i) => version(item, `${where}[${i}]`, hasFloat));
};

const toolName: Check = (value, where) => {
  const name = string(value, where, false) as string;
  if (!isValidToolName(name)) throw invalid(where, "1-128 characters of A-Z a-z 0-9 _ - .", value);
  return name;
};

const TOOL_FIELDS: readonly Field[] = [
  ["name", toolName, true],
  ["description", string, true],
  ["input_schema", object, true],
  ["output_schema", object, false],
];

const tools: Check = (value, where) => {
  const list = (array(value, where, false) as unknown[]).map((item, i) =>
    members(object(item, `${where}[${i}]`, false) as Record<string, unknown>, TOOL_FIELDS, `${where}[${i}]`, undefined),
  );
  const seen = new Set<unknown>();
  list.forEach((item, i) => {
    if (seen.has(item["name"])) {
      throw new ProtocolError("invalid_field", `\`${where}[${i}].name\` repeats the tool name ${describe(item["name"])}`);
    }
    seen.add(item["name"]);
  });
  return list;
};

export const NODE_KINDS = ["node", "batch", "batch_flow"] as const;
export type NodeKind = (typeof NODE_KINDS)[number];

export const NODE_PHASES = ["run", "prep", "exec", "post", "fallback"] as const;
export type NodePhase = (typeof NODE_PHASES)[number];

function oneOf(values: readonly string[]): Check {
  return (value, where) => {
    if (!values.includes(value as string)) throw invalid(where, `one of ${values.join(", ")}`, value);
    return value;
  };
}

const nodeKind = oneOf(NODE_KINDS);
const phase = oneOf(NODE_PHASES);

const isTrue: Check = (value, where) => {
  if (value !== true) throw invalid(where, "true (or left out)", value);
  return value;
};

const NODE_FIELDS: readonly Field[] = [
  ["name", toolName, true],
  ["kind", nodeKind, false], // absent is invalid_field, not missing_field (see below)
  ["description", string, true],
  ["fallback", isTrue, false],
];

const nodes: Check = (value, where) => {
  const list = (array(value, where, false) as unknown[]).map((item, i) => {
    const at = `${where}[${i}]`;
    const obj = object(item, at, false) as Record<string, unknown>;
    if (obj["kind"] === undefined) throw invalid(`${at}.kind`, `one of ${NODE_KINDS.join(", ")}`, undefined);
    return members(obj, NODE_FIELDS, at, undefined);
  });
  const seen = new Set<unknown>();
  list.forEach((item, i) => {
    if (seen.has(item["name"])) {
      throw new ProtocolError("invalid_field", `\`${where}[${i}].name\` repeats the node name ${describe(item["name"])}`);
    }
    seen.add(item["name"]);
  });
  return list;
};

const flows: Check = (value, where) =>
  (array(value, where, false) as unknown[]).map((item, i) => object(item, `${where}[${i}]`, false));

/** A value that is left out when it is `null` (`item`, `prep`): a `null` decodes as absent. */
const nullable: Check = (value) => (value === null ? ABSENT : value);

const nodeError: Check = (value, where) => {
  const obj = object(value, where, false) as Record<string, unknown>;
  for (const name of ["kind", "message"]) {
    if (typeof obj[name] !== "string") throw invalid(`${where}.${name}`, "a string", obj[name]);
  }
  return { kind: obj["kind"], message: obj["message"] };
};

/** Member tables of the messages a worker sends, in table order. */
export const WORKER_MESSAGES: Readonly<Record<string, readonly Field[]>> = {
  hello: [
    ["protocol", versions, true],
    ["sdk", string, true],
    ["sdk_version", string, true],
    ["runtime", string, false],
    ["pid", pid, false],
    ["tools", tools, true],
    ["nodes", nodes, false],
    ["flows", flows, false],
  ],
  result: [
    ["id", callId, true],
    ["value", any, true],
  ],
  error: [
    ["id", callId, true],
    ["kind", kind, true],
    ["message", string, true],
    ["traceback", string, false],
  ],
  progress: [
    ["id", callId, true],
    ["progress", number, true],
    ["total", number, false],
    ["message", string, false],
  ],
  log: [
    ["level", level, true],
    ["message", string, true],
    ["id", callId, false],
  ],
  chunk: [
    ["id", callId, true],
    ["data", any, true],
  ],
  heartbeat: [["seq", nonNegative, true]],
};

/** Member tables of the messages the supervisor sends, in table order. */
export const SUPERVISOR_MESSAGES: Readonly<Record<string, readonly Field[]>> = {
  welcome: [["protocol", version, true]],
  call: [
    ["id", callId, true],
    ["tool", string, true],
    ["args", object, true],
    ["deadline_ms", nonNegative, false],
  ],
  node: [
    ["id", callId, true],
    ["node", string, true],
    ["phase", phase, true],
    ["shared", object, false],
    ["item", nullable, false],
    ["prep", nullable, false],
    ["results", array, false],
    ["error", nodeError, false],
    ["params", object, false],
    ["deadline_ms", nonNegative, false],
  ],
  cancel: [["id", callId, true]],
  heartbeat: [["seq", nonNegative, true]],
  shutdown: [["reason", string, false]],
};

const SENDERS: Readonly<Record<Sender, Readonly<Record<string, readonly Field[]>>>> = {
  worker: WORKER_MESSAGES,
  supervisor: SUPERVISOR_MESSAGES,
};

const hasOwn = (obj: object, key: string): boolean => Object.prototype.hasOwnProperty.call(obj, key);

/**
 * Copy the members a table defines, checked, in table order. A member whose
 * value is `undefined` counts as absent (JavaScript's way to leave one out).
 */
function members(
  obj: Record<string, unknown>,
  fields: readonly Field[],
  where: string,
  floats: ReadonlySet<string> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const prefix = where ? `${where}.` : "";
  for (const [name, check, required] of fields) {
    if (hasOwn(obj, name) && obj[name] !== undefined) {
      const value = check(obj[name], prefix + name, floats?.has(name) ?? false);
      if (value !== ABSENT) out[name] = value;
    } else if (required) {
      throw new ProtocolError("missing_field", `member \`${prefix}${name}\` is missing`);
    }
  }
  return out;
}

function message(obj: Record<string, unknown>, sender: Sender | undefined, floats?: ReadonlySet<string>): Message {
  const type = obj["type"];
  if (typeof type !== "string") throw new ProtocolError("missing_type", "the object has no string member `type`");
  const tables = sender !== undefined ? [SENDERS[sender]] : [WORKER_MESSAGES, SUPERVISOR_MESSAGES];
  for (const table of tables) {
    const fields = hasOwn(table, type) ? table[type] : undefined;
    if (fields !== undefined) return { type, ...members(obj, fields, "", floats) };
  }
  const origin = sender !== undefined ? ` from the ${sender}` : "";
  throw new ProtocolError("unknown_type", `message type ${JSON.stringify(type)} is not defined${origin}`);
}

// ---------------------------------------------------------------------------
// Strict JSON parsing.

const MAX_DEPTH = 1000;
const STRING_RUN = /[^"\\\u0000-\u001f]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class JsonSyntaxError extends Error {}

/**
 * Parses one JSON text. Numbers written with a fraction or an exponent are
 * counted in `floats`, so the caller can tell which top-level members held
 * one; non-finite numbers (`1e400`) are refused like Python's decoder does.
 */
class Parser {
  pos = 0;
  floats = 0;

  constructor(private readonly text: string) {}

  parseTop(): { value: unknown; floatMembers: Set<string> } {
    const floatMembers = new Set<string>();
    this.ws();
    const value = this.value(0, floatMembers);
    this.ws();
    if (this.pos !== this.text.length) this.fail("extra data");
    return { value, floatMembers };
  }

  private fail(what: string): never {
    throw new JsonSyntaxError(`${what} at character ${this.pos}`);
  }

  private ws(): void {
    const text = this.text;
    let pos = this.pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
    this.pos = pos;
  }

  private value(depth: number, floatMembers?: Set<string>): unknown {
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.object(depth + 1, floatMembers);
      case "[":
        return this.array(depth + 1);
      case '"':
        return this.string();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      default:
        return this.number();
    }
  }

  private literal<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail("expecting value");
    this.pos += word.length;
    return value;
  }

  private number(): number {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) this.fail("expecting value");
    const value = Number(match[0]);
    if (!Number.isFinite(value)) this.fail(`number ${match[0]} is out of range`);
    if (match[1] !== undefined || match[2] !== undefined) this.floats++;
    this.pos += match[0].length;
    return value;
  }

  private string(): string {
    const text = this.text;
    this.pos++; // the opening quote
    let out = "";
    for (;;) {
      STRING_RUN.lastIndex = this.pos;
      const run = STRING_RUN.exec(text);
      if (run !== null && run[0].length > 0) {
        out += run[0];
        this.pos += run[0].length;
      }
      const c = text[this.pos];
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c !== "\\") this.fail(c === undefined ? "unterminated string" : "invalid control character in string");
      const e = text[this.pos + 1];
      if (e === "u") {
        const hex = text.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else {
        const replacement = e === undefined ? undefined : ESCAPES[e];
        if (replacement === undefined) this.fail("invalid escape");
        out += replacement;
        this.pos += 2;
      }
    }
  }

  private array(depth: number): unknown[] {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.pos++;
    const out: unknown[] = [];
    this.ws();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth));
      this.ws();
      const c = this.text[this.pos++];
      if (c === "]") return out;
      if (c !== ",") this.fail("expecting ',' or ']'");
    }
  }

  private object(depth: number, floatMembers?: Set<string>): Record<string, unknown> {
    if (depth > MAX_DEPTH) this.fail("nested too deeply");
    this.pos++;
    const out: Record<string, unknown> = {};
    this.ws();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') this.fail("expecting a property name in double quotes");
      const key = this.string();
      this.ws();
      if (this.text[this.pos] !== ":") this.fail("expecting ':'");
      this.pos++;
      this.ws();
      const before = this.floats;
      const value = this.value(depth);
      if (floatMembers !== undefined) {
        if (this.floats !== before) floatMembers.add(key);
        else floatMembers.delete(key);
      }
      if (key === "__proto__") {
        Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
      } else {
        out[key] = value;
      }
      this.ws();
      const c = this.text[this.pos++];
      if (c === "}") return out;
      if (c !== ",") this.fail("expecting ',' or '}'");
    }
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function toBytes(line: Uint8Array | string): Uint8Array {
  return typeof line === "string" ? Buffer.from(line, "utf8") : line;
}

/**
 * Decode one line (without its `\n`) sent by `sender`.
 *
 * A trailing `\r` is tolerated. Returns the message with only the members
 * the protocol defines, in table order. Throws {@link ProtocolError} with the
 * code of the first problem found.
 */
export function decode(line: Uint8Array | string, sender: Sender, maxLineBytes: number = DEFAULT_MAX_LINE_BYTES): Message {
  let raw = toBytes(line);
  if (raw.length > maxLineBytes) {
    throw new ProtocolError("line_too_long", `the line is ${raw.length} bytes, over the limit of ${maxLineBytes} bytes`);
  }
  if (raw.length > 0 && raw[raw.length - 1] === 0x0d) raw = raw.subarray(0, raw.length - 1);
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    throw new ProtocolError("invalid_utf8", "the line is not UTF-8");
  }
  let parsed: { value: unknown; floatMembers: Set<string> };
  try {
    parsed = new Parser(text).parseTop();
  } catch (err) {
    if (err instanceof JsonSyntaxError || err instanceof RangeError) {
      throw new ProtocolError("invalid_json", `the line is not JSON: ${err.message}`);
    }
    throw err;
  }
  if (!isObject(parsed.value)) {
    throw new ProtocolError("not_object", `the line holds ${describe(parsed.value)}, not an object`);
  }
  return message(parsed.value, sender, parsed.floatMembers);
}

function refuseNonFinite(_key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`${value} is not JSON`);
  }
  return value;
}

/** Matches a `\uD800`-`\uDFFF` escape that `JSON.stringify` wrote for a lone surrogate. */
const LONE_SURROGATE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f]/;

/**
 * JSON text for `value` as Python's `json.dumps(..., ensure_ascii=False,
 * separators=(",", ":"), allow_nan=False)` writes it: NaN and infinities are
 * refused, and so are lone surrogates (which have no UTF-8 form). Values
 * JSON has no form for follow `JSON.stringify` (`undefined` members left
 * out, `toJSON` used); a BigInt or a cycle throws.
 */
export function toJsonText(value: unknown): string {
  const text = JSON.stringify(value, refuseNonFinite) as string | undefined;
  if (text === undefined) throw new TypeError(`${describe(value)} is not JSON`);
  if (text.includes("\\ud") && LONE_SURROGATE_ESCAPE.test(text)) {
    throw new TypeError("a string holds a lone surrogate, which is not valid Unicode");
  }
  return text;
}

/**
 * Encode a message as one canonical line, without the `\n`.
 *
 * The message is checked like a decoded one; members are written in table
 * order, unknown members dropped, compact, with non-ASCII text as is.
 * Values JSON cannot hold throw `ProtocolError("invalid_field")`.
 */
export function encode(msg: Record<string, unknown>): string {
  if (!isObject(msg)) throw new ProtocolError("not_object", `a message must be an object, got ${describe(msg)}`);
  const canonical = message(msg, undefined);
  try {
    return toJsonText(canonical);
  } catch (err) {
    throw new ProtocolError("invalid_field", `a member cannot be written as JSON: ${(err as Error).message}`);
  }
}

/** Encode a message as UTF-8 bytes ending in `\n`. */
export function encodeLine(msg: Record<string, unknown>): Buffer {
  return Buffer.from(encode(msg) + "\n", "utf8");
}
