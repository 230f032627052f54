// Graph nodes and flows: the manifest, node phases through a real worker
// process, definition errors, and in-process runs.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BatchNode, Node, NodeError, currentContext, flow, node, parallel } from "../dist/index.js";
import { killSpawned, sleep, spawnWorker } from "./helpers.mjs";

after(killSpawned);

/** Send a `node` message; every message of the call, the terminal reply last. */
async function nodeCall(worker, message) {
  worker.send({ type: "node", ...message });
  const out = [];
  for (;;) {
    const reply = await worker.recv((m) => m.id === message.id);
    out.push(reply);
    if (reply.type === "result" || reply.type === "error") return out;
  }
}

async function outcome(worker, message) {
  const messages = await nodeCall(worker, message);
  const last = messages.at(-1);
  if (last.type !== "result") throw new Error(`node call ${message.id} failed: ${JSON.stringify(last)}`);
  return last.value;
}

describe("manifest", () => {
  test("hello lists the nodes and the exported flows as documents", async () => {
    const worker = spawnWorker("graph.mjs");
    const hello = await worker.recv();
    assert.deepStrictEqual(Object.keys(hello), ["type", "protocol", "sdk", "sdk_version", "runtime", "pid", "tools", "nodes", "flows"]);
    assert.deepStrictEqual(
      hello.tools.map((t) => t.name),
      ["run_agent"],
    );
    assert.deepStrictEqual(hello.nodes, [
      // exported nodes, by export name
      { name: "answer", kind: "node", description: "" },
      { name: "bad_action", kind: "node", description: "" },
      { name: "decide", kind: "node", description: "Pick the next step." },
      { name: "edit", kind: "node", description: "" },
      { name: "flaky.node", kind: "node", description: "Fails when told to.", fallback: true },
      { name: "lengths", kind: "batch", description: "" },
      { name: "search", kind: "node", description: "" },
      { name: "summarize", kind: "node", description: "Shorten the text.", fallback: true },
      { name: "wait_cancel", kind: "node", description: "" },
      // reached from flows only: by function name, by the name option
      { name: "fetch_a", kind: "node", description: "" },
      { name: "fetch_b", kind: "node", description: "" },
      { name: "inner_step", kind: "node", description: "" },
      { name: "check", kind: "node", description: "" },
    ]);
    assert.deepStrictEqual(hello.flows, [
      {
        name: "agent",
        description: "Searches until it has two notes, then answers.",
        start: "decide",
        nodes: { decide: { node: "decide" }, search: { node: "search" }, answer: { node: "answer" } },
        edges: [
          { from: "decide", to: "search", action: "search" },
          { from: "decide", to: "answer", action: "answer" },
          { from: "search", to: "decide", action: "default" },
        ],
      },
      {
        name: "pipeline",
        start: "summarize",
        nodes: {
          summarize: { node: "summarize", retries: 1 },
          lengths: { node: "lengths", limit: 4 },
          review: { flow: "review" },
          parallel_1: { parallel: ["fetch_a", "fetch_b"], limit: 2 },
          fetch_a: { node: "fetch_a" },
          fetch_b: { node: "fetch_b" },
          flow_1: {
            flow: { name: "flow_1", start: "inner_step", nodes: { inner_step: { node: "inner_step" } }, edges: [] },
          },
        },
        edges: [
          { from: "summarize", to: "lengths", action: "done" },
          { from: "lengths", to: "review", action: "default" },
          { from: "review", to: "parallel_1", action: "default" },
          { from: "parallel_1", to: "flow_1", action: "default" },
        ],
        max_steps: 50,
        deadline_ms: 60000,
      },
      { name: "review", start: "check", nodes: { check: { node: "check" } }, edges: [] },
    ]);
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
  });

  test("node options become entry options; a named nested flow is announced too", async () => {
    const { collectGraph } = await import("../dist/graph/manifest.js");
    const a = node(() => "x", { retries: 3, backoff: 10, timeout: 2000 });
    const b = node(() => {});
    class Tidy extends Node {}
    const sub = flow({ start: new Tidy({ timeout: 50 }), name: "sub", description: "Tidy up." });
    a.on("x", b).next(sub);
    const graph = collectGraph({ a, b, f: flow({ start: a, name: "the.flow" }) });
    assert.deepStrictEqual(graph.flows, [
      {
        name: "the.flow",
        start: "a",
        nodes: { a: { node: "a", retries: 3, backoff_ms: 10, timeout_ms: 2000 }, b: { node: "b" }, sub: { flow: "sub" } },
        edges: [
          { from: "a", to: "b", action: "x" },
          { from: "b", to: "sub", action: "default" },
        ],
      },
      { name: "sub", description: "Tidy up.", start: "Tidy", nodes: { Tidy: { node: "Tidy", timeout_ms: 50 } }, edges: [] },
    ]);
    assert.deepStrictEqual(
      graph.manifest.map((n) => n.name),
      ["a", "b", "Tidy"],
    );
  });

  const definitionErrors = [
    ["a node without a name", "graph_unnamed.mjs", /cannot serve .*: flow "f", after "start" \(action "go"\): a function node has no name: give it one with the name option, or export it/],
    ["two nodes with one name", "graph_duplicate.mjs", /two different nodes are named "step": a function node \(export first\) and a function node \(flow "f", after "step" \(action "default"\)\)/],
  ];
  for (const [what, script, words] of definitionErrors) {
    test(`${what} fails before hello`, async () => {
      const worker = spawnWorker(script);
      assert.equal((await worker.wait()).code, 1);
      assert.deepStrictEqual(worker.messages, []);
      await worker.expectStderr(words);
    });
  }

  test("more definition errors name the problem", async () => {
    const { collectGraph } = await import("../dist/graph/manifest.js");
    const lone = node(() => {});
    assert.throws(() => collectGraph({ one: lone, two: lone }), /export one, two: a function node is exported as one and two: give it one name/);
    assert.throws(() => collectGraph({ x: node(() => {}, { name: "s" }), y: node(() => {}, { name: "s" }) }), /two different nodes are named "s"/);
    assert.throws(() => node(() => {}, { name: "a b" }), /name must be 1-128 characters/);
    assert.throws(() => node(() => {}, { retries: -1 }), /retries must be an integer of 0 or more, got -1/);
    assert.throws(() => flow({ start: node(() => {}), maxSteps: 0 }), /maxSteps must be an integer of 1 or more/);
    const a = node(() => {});
    const chained = node(() => {});
    chained.next(a);
    assert.throws(
      () => collectGraph({ a, chained, f: flow({ start: parallel([chained]) }) }),
      /branch 1 of parallel "parallel" in flow "f": a function node has successors/,
    );
    const x = node(() => {});
    const loop = flow({ start: x });
    x.next(flow({ start: loop }));
    assert.throws(() => collectGraph({ x, g: flow({ start: x }) }), /unnamed flows nest each other in a cycle/);
    const f1 = flow({ start: node(() => {}, { name: "n1" }), name: "same" });
    const f2 = flow({ start: node(() => {}, { name: "n2" }), name: "same" });
    assert.throws(() => collectGraph({ f1, f2 }), /two different flows are named "same"/);
  });
});

describe("node phases over the channel", () => {
  let worker;
  let nextId = 1;
  const id = () => nextId++;
  before(async () => {
    worker = spawnWorker("graph.mjs", { env: { FLW_MODE: "shared" } });
    await worker.handshake();
  });
  after(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
    assert.deepStrictEqual(worker.garbage, []);
  });

  test("run: the action, no changes", async () => {
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "decide", phase: "run", shared: {} }), { action: "search" });
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "decide", phase: "run", shared: { notes: [1, 2] } }), {
      action: "answer",
    });
  });

  test("run: no action (default) and a changed list sent whole", async () => {
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "search", phase: "run", shared: { notes: ["a"], q: "x" } }), {
      changes: { set: { notes: ["a", "note 1"] } },
    });
  });

  test("run: an async node that sets, appends, deletes, and logs first", async () => {
    const callId = id();
    const messages = await nodeCall(worker, {
      id: callId,
      node: "edit",
      phase: "run",
      shared: { count: 1, list: [], tmp: 1, gone: 2, keep: { a: 1 } },
    });
    assert.deepStrictEqual(messages, [
      { type: "log", level: "info", message: "editing", id: callId },
      {
        type: "result",
        id: callId,
        value: { action: "again", changes: { set: { count: 2, list: ["x"] }, delete: ["tmp", "gone"] } },
      },
    ]);
  });

  test("a node that throws gives tool_error with its stack; its fallback phase recovers", async () => {
    const [error] = await nodeCall(worker, { id: id(), node: "flaky.node", phase: "run", shared: { fail: "x" } });
    assert.equal(error.kind, "tool_error");
    assert.equal(error.message, "RangeError: told to fail (x)");
    assert.match(error.traceback, /^RangeError: told to fail \(x\)\n\s+at .*fixtures\/graph\.mjs:\d+:\d+/);
    assert.deepStrictEqual(
      await outcome(worker, {
        id: id(),
        node: "flaky.node",
        phase: "fallback",
        shared: { fail: "x" },
        error: { kind: "timeout", message: "too slow" },
      }),
      { action: "recovered", changes: { set: { fallback: "timeout: too slow" } } },
    );
  });

  test("class node: prep, exec, post in one run", async () => {
    const callId = id();
    const messages = await nodeCall(worker, { id: callId, node: "summarize", phase: "run", shared: { text: "hello world" } });
    assert.deepStrictEqual(messages, [
      { type: "progress", id: callId, progress: 1, total: 3, message: "attempt 0" },
      { type: "result", id: callId, value: { action: "done", changes: { set: { summary: "hello" } } } },
    ]);
  });

  test("class node: in-process retries, then execFallback", async () => {
    const callId = id();
    const messages = await nodeCall(worker, { id: callId, node: "summarize", phase: "run", shared: { text: "fail me" } });
    assert.deepStrictEqual(
      messages.map((m) => m.type === "progress" ? m.message : m.value),
      [
        "attempt 0",
        "attempt 1",
        "attempt 2",
        { action: "done", changes: { set: { summary: "fallback after 3 attempts: cannot summarize on attempt 2" } } },
      ],
    );
  });

  test("class node: the fallback phase is prep, execFallback, post", async () => {
    assert.deepStrictEqual(
      await outcome(worker, {
        id: id(),
        node: "summarize",
        phase: "fallback",
        shared: { text: "t" },
        error: { kind: "worker_crashed", message: "gone" },
      }),
      { action: "done", changes: { set: { summary: "fallback after 1 attempts: gone" } } },
    );
  });

  test("batch node: prep, exec per item, post", async () => {
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "lengths", phase: "prep", shared: { files: ["ab", "c"] } }), {
      value: ["ab", "c"],
    });
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "lengths", phase: "prep", shared: {} }), { value: [] });
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "lengths", phase: "exec", item: "abc" }), { value: 3 });
    assert.deepStrictEqual(await outcome(worker, { id: id(), node: "lengths", phase: "exec" }), {});
    const [error] = await nodeCall(worker, { id: id(), node: "lengths", phase: "exec", item: "bad" });
    assert.equal(error.kind, "tool_error");
    assert.equal(error.message, "Error: bad item");
    assert.deepStrictEqual(
      await outcome(worker, {
        id: id(),
        node: "lengths",
        phase: "post",
        shared: { files: ["ab", "c"] },
        prep: ["ab", "c"],
        results: [2, 1],
      }),
      { changes: { set: { lengths: { ab: 2, c: 1 } } } },
    );
  });

  test("a phase the node does not have is invalid_arguments", async () => {
    const cases = [
      ["decide", "prep", /node "decide" is a node with the phases run, not prep/],
      ["decide", "fallback", /node "decide" is a node with the phases run, not fallback/],
      ["lengths", "run", /node "lengths" is a batch node with the phases prep, exec, post, not run/],
    ];
    for (const [name, phase, words] of cases) {
      const [reply] = await nodeCall(worker, { id: id(), node: name, phase, shared: {} });
      assert.equal(reply.kind, "invalid_arguments");
      assert.match(reply.message, words);
    }
  });

  test("unknown node", async () => {
    const [reply] = await nodeCall(worker, { id: id(), node: "nope", phase: "run", shared: {} });
    assert.equal(reply.kind, "unknown_tool");
    assert.match(reply.message, /no node named "nope" in worker test \(nodes: .*decide/);
    const [flowReply] = await nodeCall(worker, { id: id(), node: "agent", phase: "run", shared: {} });
    assert.equal(flowReply.kind, "unknown_tool");
  });

  test("a return value that is not an action is a tool_error naming the node", async () => {
    const [reply] = await nodeCall(worker, { id: id(), node: "bad_action", phase: "run", shared: {} });
    assert.equal(reply.kind, "tool_error");
    assert.equal(reply.message, 'TypeError: node "bad_action" returned number 42; a node returns an action (a string) or nothing');
  });

  test("cancel of a node call", async () => {
    const callId = id();
    worker.send({ type: "node", id: callId, node: "wait_cancel", phase: "run", shared: {} });
    await sleep(50);
    worker.send({ type: "cancel", id: callId });
    assert.deepStrictEqual(await worker.recv((m) => m.id === callId), {
      type: "error",
      id: callId,
      kind: "cancelled",
      message: `call ${callId} was cancelled`,
    });
  });

  test("node and tool calls share one id space and run concurrently", async () => {
    const slow = id();
    worker.send({ type: "node", id: slow, node: "wait_cancel", phase: "run", shared: {} });
    worker.send({ type: "call", id: slow, tool: "run_agent", args: {} }); // same id: ignored
    const other = id();
    assert.deepStrictEqual(await worker.result(other, "run_agent"), {
      action: null,
      shared: { notes: ["note 0", "note 1"], answer: "note 0 / note 1" },
    });
    worker.send({ type: "cancel", id: slow });
    assert.equal((await worker.recv((m) => m.id === slow)).kind, "cancelled");
    await worker.expectStderr(new RegExp(`ignoring call ${slow}: a call with that id is running`));
  });
});

describe("isolated mode", () => {
  test("a node call runs and a cancelled one replies cancelled", async () => {
    const worker = spawnWorker("graph.mjs");
    await worker.handshake();
    assert.deepStrictEqual(await outcome(worker, { id: 1, node: "answer", phase: "run", shared: { notes: ["a", "b"] } }), {
      changes: { set: { answer: "a / b" } },
    });
    worker.send({ type: "node", id: 2, node: "wait_cancel", phase: "run", shared: {}, deadline_ms: 1000 });
    await sleep(50);
    worker.send({ type: "cancel", id: 2 });
    assert.equal((await worker.recv((m) => m.id === 2)).kind, "cancelled");
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
  });
});

describe("in-process runs", () => {
  function agentGraph() {
    const decide = node((s) => ((s.notes?.length ?? 0) < 2 ? "search" : "answer"));
    const search = node((s) => {
      (s.notes ??= []).push(`note ${s.notes.length}`);
    });
    const answer = node((s) => {
      s.answer = s.notes.join(" / ");
    });
    decide.on("search", search);
    decide.on("answer", answer);
    search.next(decide);
    return flow({ start: decide });
  }

  test("the README example answers note 0 / note 1", async () => {
    const shared = {};
    assert.equal(await agentGraph().run(shared), undefined);
    assert.deepStrictEqual(shared, { notes: ["note 0", "note 1"], answer: "note 0 / note 1" });
  });

  test("next and on return the target, so chains read left to right", async () => {
    const order = [];
    const step = (name, action) => node((s) => { order.push(name); return action; }, { name });
    const a = step("a");
    const b = step("b", "jump");
    const c = step("c");
    const d = step("d", "last");
    assert.equal(a.next(b).on("jump", c).next(d), d);
    assert.equal(await flow({ start: a }).run({}), "last");
    assert.deepStrictEqual(order, ["a", "b", "c", "d"]);
  });

  test("an onEvent hook that throws or rejects does not change the run", async () => {
    for (const kind of ["throws", "rejects"]) {
      const order = [];
      const step = (name, action) => node(() => { order.push(name); return action; });
      const a = step("a");
      const b = step("b", "last");
      a.next(b);
      const seen = [];
      const hook = kind === "throws"
        ? (e) => { seen.push(e.event); throw new Error("hook broke"); }
        : async (e) => { seen.push(e.event); throw new Error("hook broke"); };
      assert.equal(await flow({ start: a }).run({}, { onEvent: hook }), "last");
      assert.deepStrictEqual(order, ["a", "b"], kind);
      assert.ok(seen.length >= 1 && seen.length <= 4, `${kind}: ${seen}`);
    }
    await assert.rejects(flow({ start: node(() => {}) }).run({}, { onEvent: "no" }), TypeError);
  });

  test("a single node runs on its own", async () => {
    const shared = { x: 1 };
    assert.equal(await node((s) => { s.x++; return "more"; }).run(shared), "more");
    assert.deepStrictEqual(shared, { x: 2 });
  });

  test("retries with backoff; a failed attempt's changes are undone", async () => {
    let attempts = 0;
    const started = Date.now();
    const flaky = node((s) => {
      attempts++;
      s.list.push(attempts);
      s.seen = attempts;
      if (attempts < 3) throw new Error(`attempt ${attempts}`);
    }, { retries: 2, backoff: 20 });
    const shared = { list: [] };
    await flaky.run(shared);
    assert.equal(attempts, 3);
    assert.deepStrictEqual(shared, { list: [3], seen: 3 });
    assert.ok(Date.now() - started >= 60, "waited 20 ms, then 40 ms");
  });

  test("after the last failure the fallback runs with the error; without one the run fails", async () => {
    const failing = node(() => { throw new Error("boom"); }, {
      name: "failing",
      retries: 1,
      backoff: 1,
      fallback: (s, error) => {
        s.error = { kind: error.kind, message: error.message, cause: error.cause.message };
        return "fell back";
      },
    });
    const shared = {};
    assert.equal(await flow({ start: failing, name: "f" }).run(shared), "fell back");
    assert.deepStrictEqual(shared, { error: { kind: "tool_error", message: "node f/failing failed: Error: boom", cause: "boom" } });

    const plain = node(() => { throw new TypeError("no"); }, { name: "plain" });
    await assert.rejects(flow({ start: plain, name: "g" }).run({}), (err) => {
      assert.ok(err instanceof NodeError);
      assert.equal(err.kind, "tool_error");
      assert.equal(err.message, "node g/plain failed: TypeError: no");
      return true;
    });
  });

  test("a timeout stops the attempt and aborts its signal", async () => {
    let aborted = false;
    const slow = node((_s, ctx) => new Promise((resolve) => {
      ctx.signal.addEventListener("abort", () => { aborted = true; resolve(); });
    }), { name: "slow", timeout: 30 });
    await assert.rejects(slow.run({}), (err) => err instanceof NodeError && err.kind === "timeout" && /slow timed out after 30 ms/.test(err.message));
    assert.ok(aborted);
  });

  test("an attempt abandoned at its timeout cannot change the store afterwards", async () => {
    let attempt = 0;
    const late = node(async (s) => {
      attempt++;
      if (attempt === 1) {
        await sleep(60); // ignores ctx.signal, so it runs on past its timeout
        s.stale = true;
        s.list.push("stale");
        return;
      }
      s.list.push("fresh");
    }, { name: "late", timeout: 20, retries: 1, backoff: 1 });
    const shared = { list: [] };
    await flow({ start: late }).run(shared);
    await sleep(100); // the first attempt has finished by now
    assert.equal(attempt, 2);
    assert.deepStrictEqual(shared, { list: ["fresh"] });

    const alone = node(async (s) => { await sleep(40); s.late = true; }, { name: "alone", timeout: 10 });
    const store = { x: 1 };
    await assert.rejects(alone.run(store), (err) => err.kind === "timeout");
    await sleep(80);
    assert.deepStrictEqual(store, { x: 1 });
  });

  test("a batch node's prep changes count only when the whole node succeeds", async () => {
    class Half extends BatchNode {
      prep(shared) { shared.prepped = true; return [1, 2]; }
      exec(item) { if (item === 2) throw new Error("item 2 failed"); return item; }
      post(shared) { shared.posted = true; }
    }
    const shared = { x: 1 };
    await assert.rejects(new Half({ name: "half" }).run(shared), /node half\[1\] failed: Error: item 2 failed/);
    assert.deepStrictEqual(shared, { x: 1 });
  });

  test("a phase works on a copy: plain objects and arrays are copied, other values shared", async () => {
    class Counter { constructor() { this.n = 0; } }
    const counter = new Counter();
    const seen = [];
    const touch = node((s) => {
      seen.push(s.counter === counter, s.nested !== shared.nested);
      s.counter.n++;
      s.nested.list.push(2);
    }, { name: "touch" });
    const shared = { counter, nested: { list: [1] } };
    const nested = shared.nested;
    await touch.run(shared);
    assert.deepStrictEqual(seen, [true, true]);
    assert.equal(shared.counter, counter);
    assert.equal(counter.n, 1);
    assert.deepStrictEqual(shared.nested, { list: [1, 2] });
    assert.deepStrictEqual(nested, { list: [1] }, "the caller's object was not changed in place");
  });

  test("max_steps stops a loop", async () => {
    const loop = node(() => "again", { name: "loop" });
    loop.on("again", loop);
    await assert.rejects(flow({ start: loop, maxSteps: 5, name: "spin" }).run({}), (err) => {
      assert.equal(err.kind, "max_steps");
      assert.match(err.message, /the run passed its limit of 5 steps at spin\/loop/);
      return true;
    });
  });

  test("the deadline fails the run with timeout; a signal cancels it", async () => {
    const forever = node((_s, ctx) => new Promise((_resolve, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason))));
    await assert.rejects(flow({ start: forever, deadline: 30, name: "late" }).run({}), (err) => err.kind === "timeout" && /flow late passed its deadline of 30 ms/.test(err.message));
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    await assert.rejects(flow({ start: forever }).run({}, { signal: controller.signal }), (err) => err.kind === "cancelled");
  });

  test("class nodes: in-process retries, execFallback, currentContext", async () => {
    const seen = [];
    class Flaky extends Node {
      prep(shared) { return shared.n; }
      exec(n) {
        seen.push([this.curRetry, currentContext()?.tool]);
        if (this.curRetry < 2) throw new Error(`try ${this.curRetry}`);
        return n * 2;
      }
      post(shared, _n, doubled) { shared.doubled = doubled; return "ok"; }
    }
    const shared = { n: 21 };
    assert.equal(await new Flaky({ maxRetries: 3, name: "flaky" }).run(shared), "ok");
    assert.deepStrictEqual(shared, { n: 21, doubled: 42 });
    assert.deepStrictEqual(seen, [[0, "flaky"], [1, "flaky"], [2, "flaky"]]);

    class Stubborn extends Node {
      exec() { throw new Error("never"); }
      execFallback(_p, error) { return `fallback: ${error.message} after ${this.curRetry + 1}`; }
      post(shared, _p, e) { shared.result = e; }
    }
    const store = {};
    await new Stubborn({ maxRetries: 2, wait: 5 }).run(store);
    assert.deepStrictEqual(store, { result: "fallback: never after 2" });
    assert.equal(currentContext(), undefined);
  });

  test("batch nodes give post the results in item order", async () => {
    class Double extends BatchNode {
      prep(shared) { return shared.items; }
      async exec(item) { await sleep(5 - item); return item * 2; }
      post(shared, items, results) { shared.out = results; shared.count = items.length; }
    }
    const shared = { items: [1, 2, 3] };
    await new Double().run(shared);
    assert.deepStrictEqual(shared, { items: [1, 2, 3], out: [2, 4, 6], count: 3 });
    class Bad extends BatchNode {
      prep() { return "abc"; }
    }
    await assert.rejects(new Bad({ name: "bad" }).run({}), /prep\(\) of batch node "bad" returned string; it must return an array of items/);
  });

  test("parallel branches run on copies, merged in listed order", async () => {
    const a = node(async (s) => { await sleep(20); s.key = "a"; s.a = true; s.list.push("a"); delete s.drop; }, { name: "a" });
    const b = node((s) => { s.key = "b"; s.b = true; }, { name: "b" });
    const c = flow({ start: node((s) => { s.c = 1; return "more"; }, { name: "c1" }) });
    c.start.on("more", node((s) => { s.c++; }, { name: "c2" }));
    const shared = { list: [], drop: 1, key: "start" };
    const fan = parallel([a, b, c]);
    const after = node((s) => { s.after = Object.keys(s).sort(); });
    fan.next(after);
    await flow({ start: fan }).run(shared);
    assert.deepStrictEqual(shared, {
      list: ["a"],
      key: "b",
      a: true,
      b: true,
      c: 2,
      after: ["a", "b", "c", "key", "list"],
    });
  });

  test("a branch that fails cancels the others and fails the fan-out", async () => {
    let cancelled = false;
    const waits = node((_s, ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", () => { cancelled = true; resolve(); })));
    const fails = node(async () => { await sleep(10); throw new Error("branch failed"); }, { name: "fails" });
    const shared = { x: 1 };
    await assert.rejects(flow({ start: parallel([waits, fails]), name: "p" }).run(shared), /node p\/fails failed: Error: branch failed/);
    assert.ok(cancelled);
    assert.deepStrictEqual(shared, { x: 1 });
  });

  test("a nested flow hands its last action to its parent's edges", async () => {
    const inner = flow({ start: node(() => "inner-done", { name: "i" }) });
    const seen = [];
    inner.on("inner-done", node(() => { seen.push("followed"); }, { name: "after" }));
    await flow({ start: inner }).run({});
    assert.deepStrictEqual(seen, ["followed"]);
  });

  test("a return value that is not an action fails the run, naming the node", async () => {
    await assert.rejects(node(() => ({ not: "an action" }), { name: "odd" }).run({}), /node odd failed: TypeError: node "odd" returned an object; a node returns an action/);
  });
});
