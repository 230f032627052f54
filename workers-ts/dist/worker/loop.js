/**
 * The worker: handshake, call dispatch, cancellation and the watchdog.
 *
 * A call is a `call` message (a tool) or a `node` message (one phase of a
 * graph node); they share one id space and everything else. Every call
 * runs as a promise on the event loop, inside its own call scope (see
 * `runInCall`), so calls are concurrent in both modes. Every call gets
 * exactly one terminal reply; progress, logs and chunks that come after it
 * are dropped. In `shared` mode, the child processes a call starts are
 * recorded, and killed when the call is cancelled, with the processes
 * under them that left their group (`children.ts`).
 *
 * The channel is read by a thread of its own (`channel_reader.ts`), which
 * answers heartbeats, so a tool that blocks this thread (a long synchronous
 * loop) is not taken for a dead worker. Both threads write lines through one
 * `FdWriter`-locked descriptor.
 *
 * The watchdog: when the channel reaches end-of-file or fails (the
 * supervisor is gone, perhaps killed with SIGKILL) the worker kills its own
 * process group with SIGKILL, which takes every process its tools started
 * with it, and the processes that carry its tags (`process_tags.ts`), which
 * takes most of those that left the group. SIGTERM does the same, but its
 * handler runs on the event loop: while a tool blocks it, SIGTERM waits,
 * and the supervisor's SIGKILL of the group comes first.
 */
import { fileURLToPath } from "node:url";
import { LineWriter } from "./channel.js";
import { startReaderThread } from "./channel_reader.js";
import { CallChildren, installChildTracking, killTaggedProcesses } from "./children.js";
import { CallContext, runInCall } from "../context.js";
import { errorText } from "../error_text.js";
import { FdWriter } from "./fd_writer.js";
import { NO_GRAPH } from "../graph/manifest.js";
import { phasesOf, runPhase } from "../graph/run.js";
import { killOwnGroup, note } from "./process_group.js";
import { WORKER_TAG, callTag } from "./process_tags.js";
import { DEFAULT_MAX_LINE_BYTES, PROTOCOL_VERSIONS, ProtocolError, decode, toJsonText, } from "./protocol.js";
import { validate } from "../schema.js";
import { STOPPING, newSharedState } from "./shared_state.js";
import { checkWithStandardSchema } from "../standard_schema.js";
import { SDK_VERSION } from "../version.js";
export { note } from "./process_group.js";
/** How long `shutdown` waits for calls still in flight, in milliseconds. */
export const SHUTDOWN_GRACE_MS = 3000;
/** Read `FLW_MODE`, `FLW_MAX_LINE_BYTES` and `FLW_WORKER`. */
export function settingsFromEnv(env, defaultLabel) {
    const label = env["FLW_WORKER"] || defaultLabel;
    let mode = env["FLW_MODE"] || "isolated";
    if (mode !== "isolated" && mode !== "shared") {
        note(label, `FLW_MODE=${JSON.stringify(mode)} is neither 'isolated' nor 'shared'; using 'isolated'`);
        mode = "isolated";
    }
    const raw = env["FLW_MAX_LINE_BYTES"];
    let maxLineBytes = DEFAULT_MAX_LINE_BYTES;
    if (raw) {
        const value = Number(raw);
        if (/^[0-9]+$/.test(raw.trim()) && Number.isSafeInteger(value) && value >= 1) {
            maxLineBytes = value;
        }
        else {
            note(label, `FLW_MAX_LINE_BYTES=${JSON.stringify(raw)} is not a positive integer; using ${maxLineBytes}`);
        }
    }
    return { mode: mode, maxLineBytes, label };
}
/**
 * The watchdog's action: end this worker and everything it started. The
 * processes that carry one of its tags get SIGKILL (`process_tags.ts`);
 * as a process-group leader the whole group gets SIGKILL too; otherwise
 * only this process exits, with status 1.
 */
export function killProcessGroup(label, reason) {
    note(label, reason);
    killTaggedProcesses();
    killOwnGroup();
    process.exit(1);
}
function errorReply(id, kind, message, traceback) {
    const reply = { type: "error", id, kind, message };
    if (traceback !== undefined)
        reply["traceback"] = traceback;
    return reply;
}
function invalidArguments(id, tool, problem) {
    return errorReply(id, "invalid_arguments", `invalid arguments for tool ${JSON.stringify(tool)}: ${problem}`);
}
/** Arguments a Standard Schema refused (found inside the call, answered `invalid_arguments`). */
class InvalidArguments extends Error {
}
function cancelledReply(id) {
    return errorReply(id, "cancelled", `call ${id} was cancelled`);
}
/** The SDK's folder (`dist/`; this module is in its `worker/` folder). */
const SDK_URL = new URL("..", import.meta.url).href;
const SDK_PATH = fileURLToPath(SDK_URL);
/** The stack of an error without the SDK's own frames (nor the frame that tracks a call's children). */
function stackOf(err) {
    if (typeof err.stack !== "string")
        return undefined;
    return err.stack
        .split("\n")
        .filter((line) => !line.includes(SDK_URL) && !line.includes(SDK_PATH) && !line.includes("AsyncLocalStorage.run"))
        .join("\n");
}
/** Serves tools over one channel until `shutdown` or the channel ends. */
export class Worker {
    channel;
    settings;
    state = newSharedState();
    writer;
    tools = new Map();
    nodes = new Map();
    calls = new Map();
    pending = [];
    welcomed = false;
    stopping = false; // shutdown came: the end of the channel is expected
    stopped = false; // shutdown came after welcome: no more calls
    answer;
    onAnswer;
    onStopped;
    onIdle;
    constructor(channel, settings) {
        this.channel = channel;
        this.settings = settings;
        const fdWriter = new FdWriter(channel.outputFd, this.state, (err) => this.channelLost(`writing to the channel failed: ${err.message}`));
        this.writer = new LineWriter((data) => fdWriter.write(data), settings.maxLineBytes);
        installChildTracking();
    }
    // -- channel and watchdog ----------------------------------------------
    /** Start the reader thread (reading and guarding the channel); messages wait until `serve`. */
    start() {
        const label = this.settings.label;
        startReaderThread({
            inputFd: this.channel.inputFd,
            outputFd: this.channel.outputFd,
            maxLineBytes: this.settings.maxLineBytes,
            label,
            state: this.state,
            workerTag: WORKER_TAG,
        }, {
            lines: (lines) => this.received(lines),
            lost: () => process.exit(1), // the reader thread wrote the note
            failed: (err) => killProcessGroup(label, `the channel reader thread failed: ${err.stack ?? errorText(err)}`),
        });
    }
    /**
     * Make SIGTERM kill the process group; report stray errors instead of dying
     * of them; write the replies still queued if a tool calls `process.exit`.
     */
    installHandlers() {
        const label = this.settings.label;
        process.on("SIGTERM", () => killProcessGroup(label, "SIGTERM: killing the worker's process group"));
        process.on("exit", () => this.writer.flush());
        process.on("unhandledRejection", (reason) => {
            note(label, `unhandled promise rejection: ${reason instanceof Error ? (reason.stack ?? errorText(reason)) : errorText(reason)}`);
        });
        process.on("uncaughtException", (err) => {
            note(label, `uncaught exception: ${err.stack ?? errorText(err)}`);
        });
    }
    channelLost(reason) {
        if (this.stopping)
            return;
        killProcessGroup(this.settings.label, `${reason}; the supervisor is gone, killing the process group`);
    }
    // -- serving -------------------------------------------------------------
    /** Send `hello`, serve calls until `shutdown`; resolve to the exit status. */
    async serve(tools, graph = NO_GRAPH) {
        const label = this.settings.label;
        this.tools = new Map(tools.map((entry) => [entry.name, entry]));
        this.nodes = graph.nodes;
        try {
            this.writer.send(this.hello(tools, graph));
        }
        catch (err) {
            note(label, `cannot send hello: ${err instanceof ProtocolError ? err.detail : errorText(err)}`);
            return 1;
        }
        const answered = new Promise((resolve) => (this.onAnswer = resolve));
        const stopped = new Promise((resolve) => (this.onStopped = resolve));
        const early = this.pending ?? [];
        this.pending = undefined;
        for (const lines of early)
            this.received(lines);
        await answered;
        const answer = this.answer;
        if (answer.type === "shutdown") {
            note(label, `shutdown before welcome: ${typeof answer["reason"] === "string" ? answer["reason"] : "no reason given"}`);
            return 0;
        }
        if (!this.welcomed) {
            note(label, `welcome chose protocol ${String(answer["protocol"])}, but this SDK speaks [${PROTOCOL_VERSIONS.join(", ")}]`);
            return 1;
        }
        await stopped;
        if (this.calls.size > 0) {
            let timer;
            await Promise.race([
                new Promise((resolve) => (this.onIdle = resolve)),
                new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS))),
            ]);
            clearTimeout(timer);
            if (this.calls.size > 0) {
                note(label, `shutdown: ${this.calls.size} call(s) still running after ${SHUTDOWN_GRACE_MS / 1000} s; exiting anyway`);
            }
        }
        return 0;
    }
    /** Stop guarding the channel and write the lines still queued: the worker is about to exit. */
    async close() {
        this.stopping = true;
        Atomics.store(this.state, STOPPING, 1);
        this.writer.flush();
    }
    hello(tools, graph) {
        const hello = {
            type: "hello",
            protocol: [...PROTOCOL_VERSIONS],
            sdk: "typescript",
            sdk_version: SDK_VERSION,
            runtime: `node ${process.versions.node}`,
            pid: process.pid,
            tools: tools.map(({ name, tool }) => {
                const entry = { name, description: tool.description, input_schema: tool.inputSchema };
                if (tool.outputSchema !== undefined)
                    entry["output_schema"] = tool.outputSchema;
                return entry;
            }),
        };
        if (graph.manifest.length > 0)
            hello["nodes"] = graph.manifest;
        if (graph.flows.length > 0)
            hello["flows"] = graph.flows;
        return hello;
    }
    // -- what the reader thread hands over ----------------------------------
    /** Whole lines from the reader thread (each ending in `\n`): decode and dispatch them. */
    received(lines) {
        if (this.pending !== undefined) {
            this.pending.push(lines); // came while the script was loading
            return;
        }
        const label = this.settings.label;
        let start = 0;
        while (start < lines.length) {
            let end = lines.indexOf(0x0a, start);
            if (end < 0)
                end = lines.length;
            let message;
            try {
                message = decode(lines.subarray(start, end), "supervisor", this.settings.maxLineBytes);
            }
            catch (err) {
                if (!(err instanceof ProtocolError))
                    throw err;
                note(label, `ignoring a line from the supervisor: ${err.message}`);
                continue;
            }
            finally {
                start = end + 1;
            }
            this.dispatch(message);
        }
    }
    dispatch(message) {
        const label = this.settings.label;
        switch (message.type) {
            case "call":
                this.accept(message);
                break;
            case "node":
                this.acceptNode(message);
                break;
            case "heartbeat": // the reader thread answers those spelled canonically; any other is answered here
                this.writer.send({ type: "heartbeat", seq: message["seq"] });
                break;
            case "cancel": {
                const call = this.calls.get(message["id"]);
                if (call !== undefined)
                    this.cancel(call);
                break;
            }
            case "welcome":
                if (this.answer !== undefined) {
                    note(label, "ignoring a second welcome");
                }
                else {
                    this.welcomed = PROTOCOL_VERSIONS.includes(message["protocol"]);
                    this.answer = message;
                    this.onAnswer?.();
                }
                break;
            case "shutdown":
                this.stopping = true;
                Atomics.store(this.state, STOPPING, 1);
                if (this.answer === undefined) {
                    this.answer = message; // serve() reports the reason
                    this.onAnswer?.();
                }
                else {
                    if (typeof message["reason"] === "string")
                        note(label, `shutdown: ${message["reason"]}`);
                    this.stopped = true;
                    this.onStopped?.();
                }
                break;
        }
    }
    /** Whether a call with this id may start now (a note says why not). */
    admissible(id) {
        const label = this.settings.label;
        if (!this.welcomed || this.stopped) {
            note(label, `ignoring call ${id}: not serving calls now`);
            return false;
        }
        if (this.calls.has(id)) {
            note(label, `ignoring call ${id}: a call with that id is running`);
            return false;
        }
        return true;
    }
    newCall(id, what, name) {
        const call = {
            id,
            what,
            name,
            controller: new AbortController(),
            children: this.settings.mode === "shared" ? new CallChildren(callTag(id)) : undefined,
            done: false,
            cancelRequested: false,
        };
        this.calls.set(id, call);
        return call;
    }
    accept(message) {
        const id = message["id"];
        if (!this.admissible(id))
            return;
        const toolName = message["tool"];
        const entry = this.tools.get(toolName);
        if (entry === undefined) {
            const names = [...this.tools.keys()].sort().join(", ") || "none";
            this.writeReply(errorReply(id, "unknown_tool", `no tool named ${JSON.stringify(toolName)} in worker ${this.settings.label} (tools: ${names})`));
            return;
        }
        const args = message["args"];
        const { tool } = entry;
        if (tool.inputStandardSchema === undefined) {
            const problem = validate(args, tool.inputSchema);
            if (problem !== undefined) {
                this.writeReply(invalidArguments(id, entry.name, problem));
                return;
            }
        }
        const call = this.newCall(id, "tool", entry.name);
        void this.run(call, async (ctx) => {
            let input = args;
            if (tool.inputStandardSchema !== undefined) {
                let checked = checkWithStandardSchema(tool.inputStandardSchema, args);
                if (checked instanceof Promise)
                    checked = await checked;
                if ("problem" in checked)
                    throw new InvalidArguments(checked.problem);
                input = checked.value;
            }
            return await tool.run(input, ctx);
        });
    }
    acceptNode(message) {
        const id = message["id"];
        if (!this.admissible(id))
            return;
        const name = message["node"];
        const phase = message["phase"];
        const node = this.nodes.get(name);
        if (node === undefined) {
            const names = [...this.nodes.keys()].sort().join(", ") || "none";
            this.writeReply(errorReply(id, "unknown_tool", `no node named ${JSON.stringify(name)} in worker ${this.settings.label} (nodes: ${names})`));
            return;
        }
        const phases = phasesOf(node);
        if (!phases.includes(phase)) {
            const kind = node.kind === "batch" ? "a batch node" : node.kind === "flow" ? "a batch flow" : "a node";
            this.writeReply(errorReply(id, "invalid_arguments", `node ${JSON.stringify(name)} is ${kind} with the phases ${phases.join(", ")}, not ${phase}`));
            return;
        }
        const call = this.newCall(id, "node", name);
        void this.run(call, (ctx) => runPhase(node, name, message, ctx));
    }
    cancel(call) {
        if (call.done || call.cancelRequested)
            return;
        call.cancelRequested = true;
        call.controller.abort(new DOMException(`call ${call.id} was cancelled`, "AbortError"));
        call.children?.cancel();
    }
    /** Run a call's body in its scope and send its one terminal reply. */
    async run(call, body) {
        let reply;
        try {
            const ctx = new CallContext(call.id, call.name, call.controller.signal, (msg) => this.emit(call, msg));
            const value = await runInCall({ context: ctx, children: call.children }, () => body(ctx));
            reply = call.cancelRequested ? cancelledReply(call.id) : this.success(call, value);
        }
        catch (err) {
            if (call.cancelRequested)
                reply = cancelledReply(call.id);
            else if (err instanceof InvalidArguments)
                reply = invalidArguments(call.id, call.name, err.message);
            else
                reply = this.failure(call, err);
        }
        this.finish(call, reply);
    }
    // -- replies ---------------------------------------------------------------
    success(call, value) {
        let text;
        try {
            text = toJsonText(value === undefined ? null : value);
        }
        catch (err) {
            return errorReply(call.id, "tool_error", `${call.what} ${JSON.stringify(call.name)} returned a value that is not JSON-serializable: ${err.message}`);
        }
        const line = Buffer.from(`{"type":"result","id":${call.id},"value":${text}}\n`, "utf8");
        const size = line.length - 1;
        if (size > this.settings.maxLineBytes) {
            return errorReply(call.id, "tool_error", `cannot send the result of the call: the result message is ${size} bytes, over the line limit ` +
                `of ${this.settings.maxLineBytes} bytes (FLW_MAX_LINE_BYTES)`);
        }
        return line;
    }
    failure(call, err) {
        return errorReply(call.id, "tool_error", errorText(err), err instanceof Error ? stackOf(err) : undefined);
    }
    emit(call, message) {
        if (call.done)
            return;
        try {
            this.writer.send(message);
        }
        catch (err) {
            if (err instanceof ProtocolError)
                throw new Error(`ctx.${String(message["type"])}(): ${err.detail}`);
            throw err;
        }
    }
    finish(call, reply) {
        if (call.done)
            return;
        call.done = true;
        this.calls.delete(call.id);
        call.children?.close();
        this.writeReply(reply);
        if (this.calls.size === 0)
            this.onIdle?.();
    }
    /** Write a terminal reply; one that cannot be sent becomes a `tool_error`. */
    writeReply(reply) {
        if (Buffer.isBuffer(reply)) {
            this.writer.queueLine(reply);
            return;
        }
        let line;
        try {
            line = this.writer.encode(reply);
        }
        catch (err) {
            const detail = err instanceof ProtocolError ? err.detail : errorText(err);
            const what = reply["type"] === "result" ? "result" : "error";
            line = this.writer.encode(errorReply(reply["id"], "tool_error", `cannot send the ${what} of the call: ${detail}`));
        }
        this.writer.queueLine(line);
    }
}
