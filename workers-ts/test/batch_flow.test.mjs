// PocketFlow's batch flows (BatchFlow, AsyncBatchFlow, AsyncParallelBatchFlow):
// the manifest (a node of kind batch_flow, a document with "batch"), their
// phases and params over the channel, and in-process runs.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AsyncBatchFlow, AsyncParallelBatchFlow, BatchFlow, Node, NodeError, currentContext, flow } from "../dist/index.js";
import { collectGraph } from "../dist/graph/manifest.js";
import { killSpawned, sleep, spawnWorker } from "./helpers.mjs";

after(killSpawned);

/** A class node that records `this.params` and adds them to `shared.seen`. */
class Record extends Node {
  prep(shared) {
    return shared;
  }
  async exec(shared) {
    await sleep(this.params.ms ?? 0);
    (shared.seen ??= []).push({ ...this.params });
  }
}

/** A batch flow whose prep returns `shared[this.params.from ?? "sets"]`. */
class Sets extends BatchFlow {
  prep(shared) {
    return shared[this.params.from ?? "sets"];
  }
  post(shared, sets) {
    shared.posted = (shared.posted ?? 0) + sets.length;
    return "posted";
  }
}

describe("manifest", () => {
  test("a batch flow is a document with batch and a node of kind batch_flow", () => {
    const graph = collectGraph({
      each: new Sets({ start: new Record({ name: "record" }), description: "Each set." }),
      overlap: new AsyncParallelBatchFlow({ start: new Record({ name: "record2" }), limit: 2 }),
    });
    assert.deepStrictEqual(
      graph.manifest.map((n) => [n.name, n.kind]).sort(),
      [["each", "batch_flow"], ["overlap", "batch_flow"], ["record", "node"], ["record2", "node"]],
    );
    assert.deepStrictEqual(graph.flows, [
      {
        name: "each",
        description: "Each set.",
        batch: { node: "each", concurrent: false },
        start: "record",
        nodes: { record: { node: "record" } },
        edges: [],
      },
      {
        name: "overlap",
        batch: { node: "overlap", concurrent: true, limit: 2 },
        start: "record2",
        nodes: { record2: { node: "record2" } },
        edges: [],
      },
    ]);
    assert.deepStrictEqual([...graph.nodes.keys()].sort(), ["each", "overlap", "record", "record2"]);
  });

  test("a node named as a batch flow is a definition error", () => {
    const each = new Sets({ start: new Record({ name: "each" }) });
    assert.throws(
      () => collectGraph({ each }),
      /batch flow "each" \(flow "each"\) needs a node of its name for its prep and post, but a Record node \(the start of flow "each"\) has it; rename one of them/,
    );
  });

  test("limit is checked", () => {
    assert.throws(() => new AsyncParallelBatchFlow({ start: new Record(), limit: 0 }), /AsyncParallelBatchFlow: limit must be an integer of 1 or more, got 0/);
    assert.throws(() => new BatchFlow({}), /BatchFlow: start must be a node, flow or parallel/);
  });
});

describe("phases over the channel", () => {
  // The batch flows tests/test_graphs.py runs with flw run.
  const script = "../../../tests/fixtures/graphs/batch_flows.mjs";
  let worker;
  let nextId = 1;
  const id = () => nextId++;
  before(async () => {
    worker = spawnWorker(script, { env: { FLW_MODE: "shared" } });
    const hello = await worker.handshake();
    assert.deepStrictEqual(hello.nodes.find((n) => n.name === "per_key"), { name: "per_key", kind: "batch_flow", description: "" });
    const docs = Object.fromEntries(hello.flows.map((f) => [f.name, f]));
    assert.deepStrictEqual(docs.batch_flow.nodes.per_key, { flow: "per_key" });
    assert.deepStrictEqual(docs.per_key.batch, { node: "per_key", concurrent: false });
    assert.deepStrictEqual(docs.overlapping.batch, { node: "overlapping", concurrent: true, limit: 2 });
  });
  after(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
  });

  async function reply(message) {
    worker.send({ type: "node", ...message });
    return await worker.recv((m) => m.id === message.id && (m.type === "result" || m.type === "error"));
  }

  test("prep gives the parameter sets", async () => {
    const r = await reply({ id: id(), node: "per_key", phase: "prep", shared: { inputs: { b: 2, a: 1 } }, params: { run: 1 } });
    assert.deepStrictEqual(r.value, { value: [{ key: "a" }, { key: "b" }] });
  });

  test("post gets prep's value and gives the action", async () => {
    const r = await reply({ id: id(), node: "per_key", phase: "post", shared: {}, prep: [{ key: "a" }, { key: "b" }] });
    assert.deepStrictEqual(r.value, { action: "tallied", changes: { set: { keys: 2 } } });
  });

  test("a class node reads the message's params in this.params", async () => {
    const r = await reply({ id: id(), node: "load", phase: "run", shared: { inputs: { a: 4 } }, params: { key: "a" } });
    assert.deepStrictEqual(r.value, { changes: { set: { loaded: { a: 40 } } } });
  });

  test("a batch flow has no run or exec phase", async () => {
    const r = await reply({ id: id(), node: "per_key", phase: "run", shared: {} });
    assert.equal(r.kind, "invalid_arguments");
    assert.equal(r.message, 'node "per_key" is a batch flow with the phases prep, post, not run');
  });
});

describe("in-process runs", () => {
  test("BatchFlow runs its graph once per set, in turn, then post", async () => {
    const a = new Record({ name: "a" });
    const b = new Record({ name: "b" });
    a.next(b);
    const each = new Sets({ start: a, name: "each" });
    const shared = { sets: [{ n: 1, ms: 10 }, { n: 2 }] };
    assert.equal(await each.run(shared), "posted");
    assert.deepStrictEqual(shared.seen, [{ n: 1, ms: 10 }, { n: 1, ms: 10 }, { n: 2 }, { n: 2 }]);
    assert.equal(shared.posted, 2);
  });

  test("nested batch flows add their sets to the params in force; the top flow's setParams reach every node", async () => {
    const inner = new Sets({ start: new Record({ name: "leaf" }), name: "inner" });
    inner.setParams({ from: "inner_sets" });
    class Outer extends AsyncBatchFlow {
      prep() {
        return [{ outer: "x" }, { outer: "y", from: "inner_sets" }];
      }
    }
    const top = flow({ start: new Outer({ start: inner, name: "outer" }) });
    top.setParams({ top: true, from: "sets" });
    const shared = { sets: [{ i: 1 }], inner_sets: [{ i: 2 }, { i: 3 }] };
    await top.run(shared);
    assert.deepStrictEqual(shared.seen, [
      { top: true, from: "sets", outer: "x", i: 1 },
      { top: true, from: "inner_sets", outer: "y", i: 2 },
      { top: true, from: "inner_sets", outer: "y", i: 3 },
    ]);
    assert.deepStrictEqual(inner.params, { from: "inner_sets" }, "outside a run: what setParams set");
  });

  test("a batch flow with no sets runs prep and post only", async () => {
    const shared = {};
    assert.equal(await new Sets({ start: new Record() }).run(shared), "posted");
    assert.deepStrictEqual(shared, { posted: 0 });
  });

  test("AsyncParallelBatchFlow overlaps its runs, at most limit at once, on one store", async () => {
    let inFlight = 0;
    let most = 0;
    class Work extends Node {
      prep(shared) {
        return shared;
      }
      async exec(shared) {
        inFlight++;
        most = Math.max(most, inFlight);
        await sleep(20);
        inFlight--;
        shared.done = { ...shared.done, [this.params.id]: true }; // a member each: all kept
        shared.last = this.params.id;
      }
    }
    class All extends AsyncParallelBatchFlow {
      prep(shared) {
        return shared.ids.map((id) => ({ id }));
      }
      post(shared) {
        shared.count = Object.keys(shared.done).length;
      }
    }
    const shared = { ids: [1, 2, 3, 4, 5], done: {} };
    const began = Date.now();
    await new All({ start: new Work({ name: "work" }), limit: 2 }).run(shared);
    assert.equal(most, 2);
    assert.ok(Date.now() - began >= 60, "5 runs of 20 ms, 2 at once");
    assert.deepStrictEqual(shared.done, { 1: true, 2: true, 3: true, 4: true, 5: true });
    assert.equal(shared.count, 5);
    assert.equal(shared.last, 5);
  });

  test("the first run that fails stops the others and fails the flow", async () => {
    let stopped = false;
    class Step extends Node {
      prep(shared) {
        return shared;
      }
      async exec(shared) {
        shared[`ran_${this.params.id}`] = true;
        if (this.params.id === 2) {
          await sleep(10);
          throw new Error("run 2 failed");
        }
        await new Promise((resolve) => currentContext().signal.addEventListener("abort", resolve));
        stopped = true;
      }
    }
    class Two extends AsyncParallelBatchFlow {
      prep() {
        return [{ id: 1 }, { id: 2 }];
      }
    }
    const shared = { x: 1 };
    await assert.rejects(new Two({ start: new Step({ name: "step" }), name: "two" }).run(shared), (err) => {
      assert.ok(err instanceof NodeError);
      assert.equal(err.kind, "tool_error");
      assert.equal(err.message, "node two[1]/step failed: Error: run 2 failed");
      return true;
    });
    assert.ok(stopped);
    assert.deepStrictEqual(shared, { x: 1 });
  });

  test("prep must return an array of parameter objects", async () => {
    await assert.rejects(new Sets({ start: new Record(), name: "bad" }).run({ sets: [1, 2] }), /prep\(\) of batch flow "bad" returned \[1,2\]; it must return an array of parameter objects/);
  });
});
