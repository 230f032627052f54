// Real worker processes: `node dist/main.js FIXTURE` with the channel on fd 3.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { SDK_VERSION } from "../dist/index.js";
import { alive, killSpawned, sleep, spawnWorker, waitDead } from "./helpers.mjs";

after(killSpawned);

describe("handshake", () => {
  test("hello announces the tools with their schemas", async () => {
    const worker = spawnWorker("tools.mjs");
    const hello = await worker.recv();
    assert.deepStrictEqual(Object.keys(hello), ["type", "protocol", "sdk", "sdk_version", "runtime", "pid", "tools"]);
    assert.deepStrictEqual(hello.protocol, [1]);
    assert.equal(hello.sdk, "typescript");
    assert.equal(hello.sdk_version, SDK_VERSION);
    assert.equal(hello.runtime, `node ${process.versions.node}`);
    assert.equal(hello.pid, worker.pid);
    const tools = Object.fromEntries(hello.tools.map((t) => [t.name, t]));
    assert.deepStrictEqual(tools.echo, {
      name: "echo",
      description: "Return the text unchanged.",
      input_schema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
    });
    assert.deepStrictEqual(tools.slow.input_schema.properties, {
      seconds: { type: "number" },
      steps: { type: "integer", default: 10 },
    });
    assert.equal(tools["ns.renamed"].description, "Has another name.");
    assert.equal(tools.renamed, undefined);
    assert.equal(tools.notATool, undefined);
    worker.send({ type: "shutdown" });
    assert.deepStrictEqual(await worker.wait(), { code: 0, signal: null });
  });

  test("shutdown instead of welcome exits 0 with the reason", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.recv();
    worker.send({ type: "shutdown", reason: "no common protocol version" });
    assert.equal((await worker.wait()).code, 0);
    await worker.expectStderr(/flw\[test\]: shutdown before welcome: no common protocol version/);
  });

  test("a welcome with a version we do not speak exits 1", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.recv();
    worker.send({ type: "welcome", protocol: 2 });
    assert.equal((await worker.wait()).code, 1);
    await worker.expectStderr(/welcome chose protocol 2/);
  });

  test("a script that throws at import exits 1 before hello, with the stack on stderr", async () => {
    const worker = spawnWorker("throws.mjs");
    assert.equal((await worker.wait()).code, 1);
    assert.deepStrictEqual(worker.messages, []);
    await worker.expectStderr(/cannot load .*throws\.mjs: the script threw an exception/);
    await worker.expectStderr(/Error: config file missing\n\s+at loadConfig \(.*throws\.mjs:\d+:\d+\)/);
  });

  test("two tools with one name fail before hello", async () => {
    const worker = spawnWorker("duplicate.mjs");
    assert.equal((await worker.wait()).code, 1);
    assert.deepStrictEqual(worker.messages, []);
    await worker.expectStderr(/two tools are named "same" \(exports a and b\)/);
  });
});

describe("calls", () => {
  let worker;
  let nextId = 1000;
  const id = () => nextId++;
  before(async () => {
    worker = spawnWorker("tools.mjs", { env: { FLW_MODE: "shared" } });
    await worker.handshake();
  });
  after(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    assert.deepStrictEqual(worker.garbage, []);
  });

  test("echo, a sync tool, a renamed tool, undefined as null", async () => {
    assert.equal(await worker.result(id(), "echo", { text: "héllo → 世界" }), "héllo → 世界");
    assert.equal(await worker.result(id(), "ns.renamed"), "sync result");
    assert.equal(await worker.result(id(), "nothing"), null);
  });

  test("progress comes before the result", async () => {
    const callId = id();
    const messages = await worker.call(callId, "slow", { seconds: 0.05, steps: 5 });
    assert.deepStrictEqual(
      messages.map((m) => m.type),
      ["progress", "progress", "progress", "progress", "progress", "result"],
    );
    assert.deepStrictEqual(messages[0], { type: "progress", id: callId, progress: 1, total: 5, message: "step 1" });
    assert.equal(messages.at(-1).value, "done");
  });

  test("chunks and logs stream before the result", async () => {
    const callId = id();
    const messages = await worker.call(callId, "stream", { n: 3 });
    assert.deepStrictEqual(messages, [
      { type: "chunk", id: callId, data: "tok0" },
      { type: "chunk", id: callId, data: "tok1" },
      { type: "chunk", id: callId, data: "tok2" },
      { type: "log", level: "warning", message: "careful", id: callId },
      { type: "log", level: "info", message: "plain", id: callId },
      { type: "result", id: callId, value: { count: 3 } },
    ]);
  });

  test("hundreds of concurrent calls all get their reply", async () => {
    const slowId = id();
    worker.send({ type: "call", id: slowId, tool: "slow", args: { seconds: 0.2, steps: 2 } });
    const ids = Array.from({ length: 300 }, () => id());
    worker.sendRaw(
      ids.map((callId) => JSON.stringify({ type: "call", id: callId, tool: "echo", args: { text: `t${callId}` } }) + "\n").join(""),
    );
    for (const callId of ids) {
      const reply = await worker.recv((m) => m.id === callId && m.type === "result");
      assert.equal(reply.value, `t${callId}`);
    }
    // The echoes did not wait for the slow call.
    assert.ok(!worker.messages.some((m) => m.id === slowId && m.type === "result"));
    assert.equal((await worker.recv((m) => m.id === slowId && m.type === "result")).value, "done");
    worker.messages = worker.messages.filter((m) => m.id !== slowId);
  });

  test("cancel aborts ctx.signal and the call replies cancelled", async () => {
    const callId = id();
    worker.send({ type: "call", id: callId, tool: "wait_cancel", args: {} });
    await sleep(50);
    worker.send({ type: "cancel", id: callId });
    assert.deepStrictEqual(await worker.recv((m) => m.id === callId), {
      type: "error",
      id: callId,
      kind: "cancelled",
      message: `call ${callId} was cancelled`,
    });
  });

  test("cancel of a finished or unknown call is ignored", async () => {
    const callId = id();
    assert.equal(await worker.result(callId, "echo", { text: "x" }), "x");
    worker.send({ type: "cancel", id: callId });
    worker.send({ type: "cancel", id: 999999 });
    worker.send({ type: "heartbeat", seq: 77 });
    assert.deepStrictEqual(await worker.recv(), { type: "heartbeat", seq: 77 });
  });

  test("cancel aborts an in-flight fetch and the server sees the connection close", async () => {
    let closed;
    const serverSawClose = new Promise((resolve) => (closed = resolve));
    let requested;
    const gotRequest = new Promise((resolve) => (requested = resolve));
    const server = createServer((req) => {
      req.socket.on("close", closed);
      requested(); // and never answer
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const callId = id();
      worker.send({ type: "call", id: callId, tool: "fetch_url", args: { url: `http://127.0.0.1:${server.address().port}/slow` } });
      await gotRequest;
      worker.send({ type: "cancel", id: callId });
      const reply = await worker.recv((m) => m.id === callId);
      assert.equal(reply.kind, "cancelled");
      await Promise.race([serverSawClose, sleep(5000).then(() => assert.fail("the server never saw the connection close"))]);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  test("a tool that throws gives tool_error with its stack", async () => {
    const [reply] = await worker.call(id(), "fail", { why: "url" });
    assert.equal(reply.kind, "tool_error");
    assert.equal(reply.message, "RangeError: bad url");
    assert.match(reply.traceback, /^RangeError: bad url\n\s+at .*fixtures\/tools\.mjs:\d+:\d+/);
    // No frame of the SDK, in any of its folders.
    assert.doesNotMatch(reply.traceback, /workers-ts\/dist\//);
  });

  test("a tool that throws at once has no SDK frame in its stack, from any SDK folder", async () => {
    const [reply] = await worker.call(id(), "failAtOnce", {});
    assert.equal(reply.kind, "tool_error");
    assert.match(reply.traceback, /^TypeError: bad at once\n\s+at .*fixtures\/tools\.mjs:\d+:\d+/);
    assert.doesNotMatch(reply.traceback, /workers-ts\/dist\//);
  });

  test("unknown tool", async () => {
    const [reply] = await worker.call(id(), "nope");
    assert.equal(reply.kind, "unknown_tool");
    assert.match(reply.message, /no tool named "nope" in worker test \(tools: .*echo/);
  });

  const badArgs = [
    [{}, /missing the required property "n"/],
    [{ n: 1.5 }, /args\.n must be an integer, got number 1\.5/],
    [{ n: "1" }, /args\.n must be an integer, got string "1"/],
    [{ n: 1, color: "blue" }, /args\.color must be one of "red", "green", got "blue"/],
    [{ n: 1, tags: ["a", 2] }, /args\.tags\[1\] must be a string, got integer 2/],
    [{ n: 1, point: {} }, /args\.point is missing the required property "x"/],
    [{ n: 1, point: { x: 1, y: 2 } }, /args\.point has an unexpected property "y"/],
  ];
  for (const [args, words] of badArgs) {
    test(`invalid arguments: ${JSON.stringify(args)}`, async () => {
      const [reply] = await worker.call(id(), "kinds", args);
      assert.equal(reply.kind, "invalid_arguments");
      assert.match(reply.message, words);
    });
  }

  test("valid arguments of many kinds pass through", async () => {
    const args = { n: 3, color: "green", tags: ["a"], point: { x: 1.5 }, extra: true };
    assert.deepStrictEqual(await worker.result(id(), "kinds", args), args);
  });

  for (const what of ["nan", "bigint", "cycle"]) {
    test(`a result JSON cannot hold is a tool_error naming the tool (${what})`, async () => {
      const [reply] = await worker.call(id(), "not_json", { what });
      assert.equal(reply.kind, "tool_error");
      assert.match(reply.message, /tool "not_json" returned a value that is not JSON-serializable/);
    });
  }

  test("heartbeats are echoed", async () => {
    worker.send({ type: "heartbeat", seq: 0 });
    worker.send({ type: "heartbeat", seq: 1 });
    assert.deepStrictEqual(await worker.recv(), { type: "heartbeat", seq: 0 });
    assert.deepStrictEqual(await worker.recv(), { type: "heartbeat", seq: 1 });
  });

  test("bad lines from the supervisor are skipped with a note", async () => {
    worker.sendRaw("not json\n");
    worker.sendRaw('{"type":"telemetry"}\n');
    worker.sendRaw('{"type":"cancel","id":0}\n');
    worker.sendRaw('{"type":"heartbeat","seq":1.0}\n');
    worker.send({ type: "heartbeat", seq: 9 });
    assert.deepStrictEqual(await worker.recv(), { type: "heartbeat", seq: 9 });
    await worker.expectStderr(/flw\[test\]: ignoring a line from the supervisor: invalid_json/);
    await worker.expectStderr(/ignoring a line from the supervisor: unknown_type/);
    await worker.expectStderr(/ignoring a line from the supervisor: invalid_field: `seq`/);
  });

  test("the channel is out of reach of child processes", async () => {
    assert.equal(await worker.result(id(), "env_channel"), false);
    const listing = await worker.result(id(), "child_fds");
    const sockets = listing.split("\n").filter((line) => / (?:[3-9]|\d\d+) -> socket:/.test(line));
    assert.deepStrictEqual(sockets, [], listing);
  });
});

describe("limits and output", () => {
  test("the line limit both ways", async () => {
    const worker = spawnWorker("tools.mjs", { env: { FLW_MAX_LINE_BYTES: "4096" } });
    await worker.handshake();
    worker.sendRaw(`{"type":"call","id":1,"tool":"big","args":{"n":1},"pad":"${"x".repeat(10000)}"}\n`);
    worker.send({ type: "heartbeat", seq: 1 });
    assert.deepStrictEqual(await worker.recv(), { type: "heartbeat", seq: 1 });
    const [error] = await worker.call(2, "big", { n: 5000 });
    assert.equal(error.kind, "tool_error");
    const size = `{"type":"result","id":2,"value":"${"x".repeat(5000)}"}`.length;
    assert.match(error.message, new RegExp(`${size} bytes`));
    assert.match(error.message, /limit of 4096 bytes/);
    assert.equal(await worker.result(3, "big", { n: 10 }), "x".repeat(10));
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    await worker.expectStderr(/longer than the limit of 4096 bytes/);
  });

  test("console.log, process.stdout.write and child output go to stdout, not the channel", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.handshake();
    assert.equal(await worker.result(1, "noisy"), "quiet");
    assert.equal(await worker.result(2, "echo", { text: "still fine" }), "still fine");
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    assert.deepStrictEqual(worker.garbage, []);
    assert.deepStrictEqual(worker.messages, []);
    assert.deepStrictEqual(worker.stdout.split("\n"), ["printed by noisy", "raw write by noisy", "echo by noisy", ""]);
    await worker.expectStderr(/stderr by noisy/);
  });

  test("without FLW_CHANNEL_FD the protocol runs on stdin/stdout and console.log goes to stderr", async () => {
    const worker = spawnWorker("tools.mjs", { channel: false });
    const hello = await worker.handshake();
    assert.equal(hello.type, "hello");
    worker.send({ type: "call", id: 1, tool: "noisy", args: {} });
    const reply = await worker.recv((m) => m.id === 1);
    assert.equal(reply.value, "quiet");
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    // Known limitation: Node cannot re-point fd 1, so a child process that
    // inherits stdout still writes into the protocol stream in this mode.
    assert.deepStrictEqual(worker.garbage, ["echo by noisy"]);
    await worker.expectStderr(/printed by noisy\nraw write by noisy\n/);
  });
});

describe("lifecycle and the watchdog", () => {
  test("shutdown waits for a call in flight, then exits 0", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.handshake();
    worker.send({ type: "call", id: 1, tool: "slow", args: { seconds: 0.3, steps: 3 } });
    await worker.recv((m) => m.type === "progress");
    worker.send({ type: "shutdown" });
    const reply = await worker.recv((m) => m.type === "result");
    assert.equal(reply.value, "done");
    assert.equal((await worker.wait()).code, 0);
  });

  test("shutdown gives up on a call after the grace period", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.handshake();
    worker.send({ type: "call", id: 1, tool: "wait_cancel", args: {} });
    await sleep(50);
    const started = Date.now();
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait(8000)).code, 0);
    assert.ok(Date.now() - started >= 2900);
    await worker.expectStderr(/1 call\(s\) still running after 3 s/);
  });

  test("the channel closing kills the worker and its children", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.handshake();
    const child = await worker.result(1, "spawn_sleep");
    assert.ok(alive(child));
    worker.channel.destroy();
    assert.equal((await worker.wait()).signal, "SIGKILL");
    assert.ok(await waitDead(child), "sleep 300 outlived the worker");
    await worker.expectStderr(/the channel reached end-of-file; the supervisor is gone, killing the process group/);
  });

  test("SIGTERM kills the worker and its children", async () => {
    const worker = spawnWorker("tools.mjs");
    await worker.handshake();
    const child = await worker.result(1, "spawn_sleep");
    process.kill(worker.pid, "SIGTERM");
    assert.equal((await worker.wait()).signal, "SIGKILL");
    assert.ok(await waitDead(child), "sleep 300 outlived the worker");
  });

  test("the watchdog works while the script is still loading", async () => {
    const worker = spawnWorker("slow_import.mjs");
    await sleep(300);
    worker.channel.destroy();
    assert.equal((await worker.wait()).signal, "SIGKILL");
    assert.deepStrictEqual(worker.messages, []);
  });
});
