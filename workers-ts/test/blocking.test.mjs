// The reader thread: heartbeats and the watchdog do not wait for a tool that
// blocks the event loop with synchronous work.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { alive, killSpawned, sleep, spawnWorker, waitDead } from "./helpers.mjs";

after(killSpawned);

for (const mode of ["isolated", "shared"]) {
  test(`heartbeats are answered while a tool blocks the event loop (${mode})`, async () => {
    const worker = spawnWorker("blocking.mjs", { env: { FLW_MODE: mode } });
    await worker.handshake();
    worker.send({ type: "call", id: 1, tool: "block", args: { ms: 2500 } });
    await sleep(300); // the tool is spinning now
    const waits = [];
    for (let seq = 1; seq <= 5; seq++) {
      const sent = Date.now();
      worker.send({ type: "heartbeat", seq });
      assert.deepStrictEqual(await worker.recv((m) => m.type === "heartbeat", 1000), { type: "heartbeat", seq });
      waits.push(Date.now() - sent);
      await sleep(200);
    }
    // Every echo came while the call was still running, each within a second.
    assert.ok(!worker.messages.some((m) => m.id === 1), `the call ended before the heartbeats: ${JSON.stringify(worker.messages)}`);
    assert.ok(Math.max(...waits) < 1000, `heartbeat round trips: ${waits}`);
    assert.deepStrictEqual(await worker.recv((m) => m.id === 1, 10_000), { type: "result", id: 1, value: 2500 });
    worker.send({ type: "shutdown" });
    assert.equal((await worker.wait()).code, 0);
  });
}

test("lines stay whole while both threads write: heartbeats among a flood of progress", async () => {
  const worker = spawnWorker("tools.mjs", { env: { FLW_MODE: "shared" } });
  await worker.handshake();
  const ids = Array.from({ length: 20 }, (_, i) => i + 1);
  for (const id of ids) worker.send({ type: "call", id, tool: "stream", args: { n: 500 } });
  for (let seq = 1; seq <= 50; seq++) worker.send({ type: "heartbeat", seq });
  for (const id of ids) assert.deepStrictEqual((await worker.recv((m) => m.id === id && m.type === "result")).value, { count: 500 });
  for (let seq = 1; seq <= 50; seq++) await worker.recv((m) => m.type === "heartbeat" && m.seq === seq);
  assert.deepStrictEqual(worker.garbage, []);
  worker.send({ type: "shutdown" });
  assert.equal((await worker.wait()).code, 0);
});

test("the watchdog kills the group while a tool blocks the event loop", async () => {
  const worker = spawnWorker("blocking.mjs");
  await worker.handshake();
  worker.send({ type: "call", id: 1, tool: "spawn_then_block", args: { ms: 60_000 } });
  const progress = await worker.recv((m) => m.type === "progress");
  const child = Number(progress.message);
  assert.ok(alive(child));
  await sleep(200);
  const closed = Date.now();
  worker.channel.destroy();
  assert.equal((await worker.wait(5000)).signal, "SIGKILL");
  assert.ok(Date.now() - closed < 3000, "the worker was not killed while its tool was still spinning");
  assert.ok(await waitDead(child), "sleep 300 outlived the worker");
  await worker.expectStderr(/the channel reached end-of-file; the supervisor is gone, killing the process group/);
});

test("without a process group to kill, the watchdog ends the worker with status 1", async () => {
  const worker = spawnWorker("tools.mjs", { detached: false });
  await worker.handshake();
  worker.channel.destroy();
  assert.deepStrictEqual(await worker.wait(), { code: 1, signal: null });
  await worker.expectStderr(/the channel reached end-of-file; the supervisor is gone/);
});

test("without a process group, the watchdog kills the worker itself while a tool blocks the event loop", async () => {
  const worker = spawnWorker("blocking.mjs", { detached: false });
  await worker.handshake();
  worker.send({ type: "call", id: 1, tool: "block", args: { ms: 60_000 } });
  await sleep(300);
  const closed = Date.now();
  worker.channel.destroy();
  assert.equal((await worker.wait(6000)).signal, "SIGKILL");
  const took = Date.now() - closed;
  assert.ok(took >= 1500 && took < 5000, `the worker died ${took} ms after the channel closed`);
});

test("the end of the channel after shutdown is not the watchdog's business", async () => {
  const worker = spawnWorker("tools.mjs");
  await worker.handshake();
  worker.send({ type: "call", id: 1, tool: "slow", args: { seconds: 0.4, steps: 2 } });
  await worker.recv((m) => m.type === "progress");
  worker.send({ type: "shutdown" });
  await sleep(50);
  worker.channel.end(); // half-close: the worker can still answer
  assert.equal((await worker.recv((m) => m.id === 1 && m.type === "result")).value, "done");
  assert.deepStrictEqual(await worker.wait(), { code: 0, signal: null });
});
