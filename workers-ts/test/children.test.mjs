// Shared mode: cancelling a call kills the child processes it started, and
// only those; the worker lives on.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { alive, killSpawned, spawnWorker, waitDead } from "./helpers.mjs";

const strays = [];
after(() => {
  killSpawned();
  for (const pid of strays) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

/** Start `start_and_wait` as call `id`; resolves to the pids it reported. */
async function startChild(worker, id, how) {
  worker.send({ type: "call", id, tool: "start_and_wait", args: { how } });
  const progress = await worker.recv((m) => m.id === id && m.type === "progress");
  const pids = progress.message.split(" ").map(Number);
  strays.push(...pids);
  return pids;
}

describe("shared mode", () => {
  let worker;
  let nextId = 1;
  before(async () => {
    worker = spawnWorker("children.mjs", { env: { FLW_MODE: "shared" } });
    await worker.handshake();
  });
  after(async () => {
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
  });

  for (const how of ["spawn", "exec", "execFile", "promisified", "fork", "detached", "setsid", "daemon", "later"]) {
    test(`cancel kills the child a call started (${how})`, async () => {
      const id = nextId++;
      const pids = await startChild(worker, id, how);
      assert.ok(pids.every(alive), `not all of ${pids} run`);
      worker.send({ type: "cancel", id });
      const reply = await worker.recv((m) => m.id === id && m.type === "error");
      assert.equal(reply.kind, "cancelled");
      for (const pid of pids) assert.ok(await waitDead(pid, 3000), `pid ${pid} (${how}) outlived the cancel`);
      assert.ok(alive(worker.pid));
      assert.equal(await worker.result(nextId++, "echo", { text: "still serving" }), "still serving");
    });
  }

  test("a child that ignores SIGTERM gets SIGKILL after the grace period", async () => {
    const id = nextId++;
    const [pid] = await startChild(worker, id, "stubborn");
    const cancelled = Date.now();
    worker.send({ type: "cancel", id });
    assert.equal((await worker.recv((m) => m.id === id && m.type === "error", 5000)).kind, "cancelled");
    assert.ok(await waitDead(pid, 3000));
    const took = Date.now() - cancelled;
    assert.ok(took >= 400 && took < 3000, `the stubborn child died ${took} ms after the cancel`);
  });

  test("cancelling one call leaves the children of another alone", async () => {
    const a = nextId++;
    const b = nextId++;
    const [pidA] = await startChild(worker, a, "spawn");
    const [pidB] = await startChild(worker, b, "later");
    worker.send({ type: "cancel", id: a });
    assert.equal((await worker.recv((m) => m.id === a && m.type === "error")).kind, "cancelled");
    assert.ok(await waitDead(pidA));
    assert.ok(alive(pidB), "the other call's child was killed");
    worker.send({ type: "cancel", id: b });
    assert.equal((await worker.recv((m) => m.id === b && m.type === "error")).kind, "cancelled");
    assert.ok(await waitDead(pidB));
  });

  test("each child carries its call's tag, whatever environment the tool gave it", async () => {
    const first = await worker.result(nextId, "tag");
    const second = await worker.result(nextId + 1, "tag");
    assert.match(first, new RegExp(`^[0-9a-f]{16}\\.${nextId}$`));
    assert.equal(second, `${first.split(".")[0]}.${nextId + 1}`);
    nextId += 2;
  });

  test("the children of a call that ends normally live on", async () => {
    const pid = await worker.result(nextId++, "start_and_return");
    strays.push(pid);
    assert.ok(alive(pid));
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.ok(alive(pid), "a finished call's child was killed");
  });
});

for (const mode of ["isolated", "shared"]) {
  test(`when the channel ends, the worker kills what left its group (${mode})`, async () => {
    const worker = spawnWorker("children.mjs", { env: { FLW_MODE: mode } });
    await worker.handshake();
    const setsid = await startChild(worker, 1, "setsid");
    const daemon = await startChild(worker, 2, "daemon");
    worker.channel.destroy();
    assert.equal((await worker.wait(5000)).signal, "SIGKILL");
    for (const pid of [...setsid, ...daemon]) assert.ok(await waitDead(pid, 3000), `pid ${pid} outlived the worker`);
  });
}

test("isolated mode leaves children to the supervisor's group kill", async () => {
  const worker = spawnWorker("children.mjs");
  await worker.handshake();
  const [pid] = await startChild(worker, 1, "spawn");
  worker.send({ type: "cancel", id: 1 });
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.ok(alive(pid), "isolated mode: the SDK killed a child; that is the supervisor's job");
  assert.ok(!worker.messages.some((m) => m.id === 1 && m.type !== "progress"));
  worker.kill();
  assert.ok(await waitDead(pid));
});
