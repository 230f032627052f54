// The graph-run vectors (protocol/vectors/graph_runs.json) against the
// in-process runner, flow.run(): nodes that play each case's script
// (sleeping for real) must give what the supervisor's runner gives: the same
// calls in the same order, the same final store, status and error kind, the
// same "Flow ends" warnings, and the same node events (onEvent), written as
// the Rust harness (vectors.rs) writes them.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AsyncBatchFlow, AsyncParallelBatchFlow, BatchNode, Flow, Node, NodeError, node, parallel } from "../dist/index.js";

const VECTORS = new URL("../../protocol/vectors/graph_runs.json", import.meta.url);
const CASES = JSON.parse(readFileSync(VECTORS, "utf8")).cases;
/** How much earlier than the vector's time a real clock may see an entry. */
const EARLY_MS = 5;

/** The failure a script step asks for: the only error that counts as tool_error. */
class ScriptedFailure extends Error {}

class Script {
  constructor(steps) {
    this.steps = steps;
    this.used = new Map();
    this.trace = [];
    this.began = performance.now();
  }

  now() {
    return performance.now() - this.began;
  }

  pick(key, params) {
    const steps = this.steps[key];
    if (!this.used.has(key)) this.used.set(key, new Set());
    const used = this.used.get(key);
    const fits = (s) => Object.entries(s.params ?? {}).every(([k, v]) => params[k] === v);
    const fitting = steps.map((s, i) => i).filter((i) => fits(steps[i]));
    const i = fitting.find((j) => !used.has(j)) ?? fitting[fitting.length - 1];
    used.add(i);
    return steps[i];
  }

  async play(key, params, store) {
    const step = this.pick(key, params);
    const keys = Object.keys(params).sort();
    const shown = keys.length ? ` ${JSON.stringify(Object.fromEntries(keys.map((k) => [k, params[k]])))}` : "";
    this.trace.push([this.now(), `start ${key}${shown}`]);
    await sleep(step.ms ?? 0);
    this.trace.push([this.now(), `end ${key}`]);
    if (store) {
      Object.assign(store, step.set ?? {});
      for (const k of step.delete ?? []) delete store[k];
    }
    if (step.fail) throw new ScriptedFailure(`${key} failed`);
    return step;
  }
}

function options(entry) {
  const out = { retries: entry.retries ?? 0 };
  if (entry.backoff_ms !== undefined) out.backoff = entry.backoff_ms;
  if (entry.timeout_ms !== undefined) out.timeout = entry.timeout_ms;
  if (entry.limit !== undefined) out.limit = entry.limit;
  return out;
}

function workerNode(name, spec, entry, script) {
  const opts = { name, ...options(entry) };
  if (spec.kind === "batch") {
    class Batch extends BatchNode {
      async prep(shared) {
        return (await script.play(`${name}.prep`, this.params, shared)).value;
      }
      async exec() {
        return (await script.play(`${name}.exec`, this.params, undefined)).value;
      }
      async post(shared) {
        return (await script.play(`${name}.post`, this.params, shared)).action;
      }
    }
    return new Batch(opts);
  }
  if (spec.fallback) {
    return node(async (shared) => (await script.play(name, {}, shared)).action, {
      ...opts,
      fallback: async (shared) => (await script.play(`${name}.fallback`, {}, shared)).action,
    });
  }
  class One extends Node {
    prep(shared) {
      return shared;
    }
    async exec(shared) {
      return await script.play(name, this.params, shared);
    }
    post(_shared, _prep, step) {
      return step.action;
    }
  }
  return new One(opts);
}

function buildFlow(doc, kase, script) {
  const objs = {};
  for (const [id, entry] of Object.entries(doc.nodes)) {
    if (entry.node !== undefined) objs[id] = workerNode(entry.node, kase.nodes[entry.node], entry, script);
    // Named by its entry id, as the manifest names a nested flow.
    else if (entry.flow !== undefined) objs[id] = buildFlow({ ...entry.flow, name: id }, kase, script);
  }
  for (const [id, entry] of Object.entries(doc.nodes)) {
    if (entry.parallel !== undefined) {
      objs[id] = parallel(entry.parallel.map((b) => objs[b]), { name: id, limit: entry.limit });
    }
  }
  for (const edge of doc.edges ?? []) objs[edge.from].next(objs[edge.to], edge.action ?? "default");
  const options = { start: objs[doc.start], name: doc.name, maxSteps: doc.max_steps, deadline: doc.deadline_ms };
  const batch = doc.batch;
  if (batch === undefined) return new Flow(options);
  const key = batch.node;
  const Base = batch.concurrent ? AsyncParallelBatchFlow : AsyncBatchFlow;
  class Each extends Base {
    async prep(shared) {
      return (await script.play(`${key}.prep`, this.params, shared)).value;
    }
    async post(shared) {
      return (await script.play(`${key}.post`, this.params, shared)).action;
    }
  }
  return new Each({ ...options, limit: batch.limit });
}

/** An event as the vectors write it (as event_text in vectors.rs), or undefined. */
function eventText(e) {
  switch (e.event) {
    case "node_started":
    case "node_fallback":
    case "item_finished":
      return `${e.event} ${e.path}`;
    case "node_retry":
      return `${e.event} ${e.path} ${e.attempt}`;
    case "node_finished":
      return `${e.event} ${e.path} ${e.action}`;
    case "node_failed":
      return `${e.event} ${e.path} ${e.error.kind}`;
    case "batch_items":
      return `${e.event} ${e.path} ${e.total}`;
    case "merge_conflict":
      return `${e.event} ${e.path} ${e.keys.join(",")}`;
    default:
      return undefined;
  }
}

/** The kind the run failed with; the test fails on anything but a NodeError from the runner. */
function failureKind(err) {
  assert.ok(err instanceof NodeError, `run() threw ${err?.stack ?? err}, not a NodeError`);
  // A node's own error is wrapped as tool_error: only the script's failure may be.
  if (err.kind === "tool_error") assert.ok(err.cause instanceof ScriptedFailure, `tool_error not from the script: ${err.cause?.stack ?? err.stack}`);
  return err.kind;
}

function checkTrace(actual, expected) {
  const want = expected.map((e) => {
    const at = e.indexOf(" ");
    return [Number(e.slice(0, at)), e.slice(at + 1)];
  });
  const shown = `trace ${JSON.stringify(actual)}\nexpected ${JSON.stringify(expected)}`;
  assert.equal(actual.length, want.length, shown);
  for (let i = 0; i < want.length; ) {
    let j = i;
    while (j < want.length && want[j][0] === want[i][0]) j++;
    const got = actual.slice(i, j).map(([, s]) => s).sort();
    assert.deepEqual(got, want.slice(i, j).map(([, s]) => s).sort(), shown);
    for (const [t, s] of actual.slice(i, j)) assert.ok(t >= want[i][0] - EARLY_MS, `${s} at ${t} ms, expected ${want[i][0]} ms`);
    i = j;
  }
}

for (const kase of CASES) {
  test(`the TypeScript runner passes the graph-run vector ${kase.name}`, async () => {
    const script = new Script(kase.script);
    const flow = buildFlow(kase.flow, kase, script);
    const shared = JSON.parse(JSON.stringify(kase.shared));
    const expect = kase.expect;
    const lines = [];
    const write = process.stderr.write;
    process.stderr.write = (chunk, ...rest) => {
      lines.push(String(chunk));
      return write.call(process.stderr, chunk, ...rest);
    };
    let error;
    const events = [];
    script.began = performance.now();
    try {
      await flow.run(shared, { onEvent: (e) => events.push(e) });
    } catch (err) {
      error = failureKind(err);
    } finally {
      process.stderr.write = write;
    }
    assert.deepEqual([error ? "failed" : "succeeded", error], [expect.status, expect.error]);
    checkTrace(script.trace, expect.trace);
    assert.deepEqual(shared, expect.shared);
    const ends = lines.filter((l) => l.includes("Flow ends: '"));
    assert.equal(ends.length, expect.flow_ends, lines.join(""));
    assert.deepEqual(events.map(eventText).filter((t) => t !== undefined), expect.events);
  });
}
