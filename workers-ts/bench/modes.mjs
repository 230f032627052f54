#!/usr/bin/env node
// Measures the two ways a TypeScript pool can hold many waiting calls
// (issue 17): one Node process per call (`isolated`), or many calls on the
// event loop of one process (`shared`).
//
//   node workers-ts/bench/modes.mjs                 # the SDK's worker alone
//   FLW_BIN=target/release/flw node workers-ts/bench/modes.mjs   # and through flw mcp
//
// Options: --calls N (default 256), --wait-ms MS (default 1000), --starts N
// (sequential starts measured, default 10). Linux only (PSS and CPU time
// come from /proc). The isolated runs hold N Node processes at once: about
// 26 MiB each, 6.5 GiB for 256.
//
// What it prints:
// - one worker started: the time from spawn to its `hello`, the CPU time
//   it took (user + system, all threads), its PSS once it has answered one
//   call;
// - isolated, on demand: N workers started at once, each given one call
//   that awaits WAIT_MS: the wall time from the first spawn to the last
//   result, and the total PSS of the N workers;
// - shared: one worker given N (and 1,000) such calls at once, 3 times:
//   the median wall time, the PSS before and at its peak, and the CPU time
//   the calls cost;
// - with FLW_BIN, the same N calls through `flw mcp` with `mode = "shared"`
//   and with `mode = "isolated"` and N instances, twice: right after the
//   first worker answered (the other isolated workers still start), then
//   again once they all run; the wall times and the peak total PSS of
//   flw's process tree.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { LineReader } from "../dist/worker/channel.js";
import { decode, encode } from "../dist/worker/protocol.js";

const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const TICK_MS = 10; // USER_HZ is 100 on Linux

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const CALLS = option("--calls", 256);
const WAIT_MS = option("--wait-ms", 1000);
const STARTS = option("--starts", 10);

const TOOL = `
import { setTimeout as sleep } from "node:timers/promises";
import { tool } from "flw-worker";

export const wait = tool({
  description: "Await some milliseconds, as a tool that waits on a model does.",
  input: { type: "object", properties: { ms: { type: "number" } }, required: ["ms"] },
  run: async ({ ms }, ctx) => {
    await sleep(ms, undefined, { signal: ctx.signal });
    return "waited";
  },
});
`;

const dir = mkdtempSync(path.join(tmpdir(), "flw-modes-"));
const script = path.join(dir, "wait.mjs");
writeFileSync(script, TOOL);

// -- /proc -------------------------------------------------------------------

function pssKiB(pid) {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS; // utime, stime
}

/** pid and every process under it. */
function tree(pid) {
  const parents = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (!parents.has(ppid)) parents.set(ppid, []);
      parents.get(ppid).push(Number(entry));
    } catch {
      // gone
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(parents.get(out[i]) ?? []));
  return out;
}

const MiB = (kib) => `${(kib / 1024).toFixed(1)} MiB`;
const sec = (ms) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// -- the SDK's worker, spawned as the supervisor spawns it ---------------------

class Worker {
  constructor(env = {}) {
    this.proc = spawn(process.execPath, [MAIN, script], {
      stdio: ["ignore", "ignore", "inherit", "pipe"],
      detached: true,
      env: { ...process.env, FLW_CHANNEL_FD: "3", FLW_WORKER: "bench", ...env },
    });
    this.pid = this.proc.pid;
    this.waiters = new Map();
    this.hello = new Promise((resolve) => this.waiters.set("hello", resolve));
    const reader = new LineReader(1 << 24);
    this.proc.stdio[3].on("data", (chunk) => {
      for (const line of reader.push(chunk)) {
        const message = decode(line, "worker", 1 << 24);
        const key = message.type === "hello" ? "hello" : message.id;
        if (message.type === "hello" || message.type === "result" || message.type === "error") {
          this.waiters.get(key)?.(message);
          this.waiters.delete(key);
        }
      }
    });
    this.proc.stdio[3].on("error", () => {});
  }

  send(message) {
    this.proc.stdio[3].write(`${encode(message)}\n`);
  }

  async start() {
    await this.hello;
    this.send({ type: "welcome", protocol: 1 });
  }

  call(id, ms) {
    const reply = new Promise((resolve) => this.waiters.set(id, resolve));
    this.send({ type: "call", id, tool: "wait", args: { ms } });
    return reply.then((m) => {
      if (m.type !== "result") throw new Error(`call ${id}: ${JSON.stringify(m)}`);
    });
  }

  async stop() {
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.send({ type: "shutdown" });
    await exited;
  }
}

async function oneStart() {
  const t0 = performance.now();
  const w = new Worker();
  await w.start();
  const startMs = performance.now() - t0;
  const cpu = cpuMs(w.pid);
  await w.call(1, 0);
  const pss = pssKiB(w.pid);
  await w.stop();
  return { startMs, cpu, pss };
}

async function isolatedOnDemand(n) {
  const t0 = performance.now();
  const workers = Array.from({ length: n }, () => new Worker());
  let pss = 0;
  let cpu = 0;
  await Promise.all(
    workers.map(async (w) => {
      await w.start();
      await w.call(1, WAIT_MS);
    }),
  );
  const wall = performance.now() - t0;
  for (const w of workers) {
    pss += pssKiB(w.pid);
    cpu += cpuMs(w.pid);
  }
  await Promise.all(workers.map((w) => w.stop()));
  return { wall, pss, cpu };
}

async function shared(n) {
  const w = new Worker({ FLW_MODE: "shared" });
  await w.start();
  await w.call(1, 0);
  const before = pssKiB(w.pid);
  const cpu0 = cpuMs(w.pid);
  const t0 = performance.now();
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, pssKiB(w.pid))), 100);
  await Promise.all(Array.from({ length: n }, (_, i) => w.call(i + 2, WAIT_MS)));
  const wall = performance.now() - t0;
  clearInterval(sampler);
  const cpu = cpuMs(w.pid) - cpu0;
  await w.stop();
  return { wall, before, peak, cpu };
}

// -- through flw mcp -----------------------------------------------------------

async function throughFlw(flw, pool, n) {
  const config = path.join(dir, "flw.toml");
  writeFileSync(config, `[pools.wait]\nscript = "wait.mjs"\n${pool}\n`);
  const proc = spawn(flw, ["mcp", "--no-watch", "--config", config], { stdio: ["pipe", "pipe", "ignore"] });
  const waiters = new Map();
  let buffered = "";
  proc.stdout.on("data", (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const message = JSON.parse(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      waiters.get(message.id)?.(message);
      waiters.delete(message.id);
    }
  });
  const request = (id, method, params) => {
    const reply = new Promise((resolve) => waiters.set(id, resolve));
    proc.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    return reply;
  };
  await request(0, "initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "bench", version: "1" } });
  proc.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })}\n`);
  // One call first: the pool has a worker up (isolated: the others still start).
  await request(1, "tools/call", { name: "wait", arguments: { ms: 0 } });
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, tree(proc.pid).reduce((sum, pid) => sum + pssKiB(pid), 0));
  }, 200);
  const walls = [];
  const replies = [];
  for (let round = 0; round < 2; round++) {
    const t0 = performance.now();
    const base = 2 + round * n;
    replies.push(
      ...(await Promise.all(
        Array.from({ length: n }, (_, i) => request(base + i, "tools/call", { name: "wait", arguments: { ms: WAIT_MS } })),
      )),
    );
    walls.push(performance.now() - t0);
  }
  clearInterval(sampler);
  const failed = replies.filter((r) => r.error || r.result?.isError).length;
  proc.stdin.end();
  await new Promise((resolve) => proc.once("exit", resolve));
  return { walls, peak, failed };
}

// -- the run -------------------------------------------------------------------

try {
  const starts = [];
  for (let i = 0; i < STARTS; i++) starts.push(await oneStart());
  console.log(`node ${process.versions.node}, ${CALLS} calls that await ${WAIT_MS} ms`);
  console.log(
    `one worker, started alone (median of ${STARTS}): hello after ${median(starts.map((s) => s.startMs)).toFixed(0)} ms, ` +
      `${median(starts.map((s) => s.cpu))} ms CPU, PSS ${MiB(median(starts.map((s) => s.pss)))}`,
  );

  // Shared first: the isolated run leaves the machine busy for a while as its 256 processes go.
  for (const n of [CALLS, 1000]) {
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await shared(n));
    const sh = runs.sort((a, b) => a.wall - b.wall)[1];
    console.log(
      `shared, one worker, ${n} calls (median of 3): ${sec(sh.wall)} (${(sh.wall / WAIT_MS).toFixed(2)}x one call), ` +
        `${sh.cpu} ms CPU, PSS ${MiB(sh.before)} idle, ${MiB(sh.peak)} at most (${((sh.peak - sh.before) / n).toFixed(1)} KiB per call)`,
    );
  }

  const iso = await isolatedOnDemand(CALLS);
  console.log(
    `isolated, ${CALLS} workers started on demand: ${sec(iso.wall)} (${(iso.wall / WAIT_MS).toFixed(2)}x one call), ` +
      `${iso.cpu} ms CPU, PSS ${MiB(iso.pss)} in all (${MiB(iso.pss / CALLS)} each)`,
  );

  const flw = process.env.FLW_BIN;
  if (flw) {
    for (const [name, pool] of [
      ['mode = "shared"', 'mode = "shared"'],
      [`mode = "isolated", instances = ${CALLS}`, `mode = "isolated"\ninstances = ${CALLS}`],
    ]) {
      const r = await throughFlw(flw, pool, CALLS);
      const [first, second] = r.walls.map((wall) => `${sec(wall)} (${(wall / WAIT_MS).toFixed(2)}x one call)`);
      console.log(
        `flw mcp, ${name}: ${CALLS} calls ${first} as the pool starts, then ${second}; ${r.failed} failed; ` +
          `peak PSS of flw's tree ${MiB(r.peak)}`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
