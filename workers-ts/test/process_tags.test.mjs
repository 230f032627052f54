// The sweep of /proc for processes by the tag in their environment: it
// finds a call's tag, or every tag of a worker, and nothing that only looks
// like one.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { canSweep, killAllTagged, signalTagged } from "../dist/worker/process_tags.js";
import { alive, sleep, waitDead } from "./helpers.mjs";

const started = [];
after(() => started.forEach((child) => child.kill("SIGKILL")));

/** `sleep 300` with `env` as its whole environment. */
function sleeper(env) {
  const child = spawn("sleep", ["300"], { env: { PATH: process.env.PATH, ...env }, stdio: "ignore" });
  started.push(child);
  return child.pid;
}

test("a sweep signals the processes that carry the tag, and only those", { skip: !canSweep && "no /proc" }, async () => {
  const worker = randomBytes(8).toString("hex");
  const tagged = sleeper({ FLW_CALL_TAG: `${worker}.1` });
  const tagFirst = sleeper({ FLW_CALL_TAG: `${worker}.1`, OTHER: "x" });
  const longerId = sleeper({ FLW_CALL_TAG: `${worker}.12` });
  const inAValue = sleeper({ NOTE: `FLW_CALL_TAG=${worker}.1` });
  const cutShort = sleeper({ FLW_CALL_TAG: worker });
  await sleep(100); // each has exec'd sleep: its environment is its own
  assert.deepEqual(signalTagged([{ match: { tag: `${worker}.1` }, signal: "SIGKILL" }]), [2]);
  assert.ok(await waitDead(tagged));
  assert.ok(await waitDead(tagFirst));
  for (const pid of [longerId, inAValue, cutShort]) assert.ok(alive(pid), `pid ${pid} was signalled`);
});

test("one pass serves several matches, each with its own signal", { skip: !canSweep && "no /proc" }, async () => {
  const worker = randomBytes(8).toString("hex");
  const a = sleeper({ FLW_CALL_TAG: `${worker}.1` });
  const b = sleeper({ FLW_CALL_TAG: `${worker}.2` });
  await sleep(100);
  const found = signalTagged([
    { match: { tag: `${worker}.1` }, signal: "SIGTERM" },
    { match: { tag: `${worker}.2` }, signal: "SIGKILL" },
    { match: { tag: `${worker}.3` }, signal: "SIGKILL" },
  ]);
  assert.deepEqual(found, [1, 1, 0]);
  assert.ok(await waitDead(a));
  assert.ok(await waitDead(b));
});

test("killAllTagged takes every call's processes of one worker, not another worker's", { skip: !canSweep && "no /proc" }, async () => {
  const worker = randomBytes(8).toString("hex");
  const mine = [sleeper({ FLW_CALL_TAG: `${worker}.0` }), sleeper({ FLW_CALL_TAG: `${worker}.7` })];
  const other = sleeper({ FLW_CALL_TAG: `${worker}0.7` });
  await sleep(100);
  killAllTagged(worker);
  for (const pid of mine) assert.ok(await waitDead(pid), `pid ${pid} outlived the sweep`);
  assert.ok(alive(other), "another worker's process was killed");
});
