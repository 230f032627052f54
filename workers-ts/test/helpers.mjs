// A real worker process, started as the supervisor starts it (fd 3, new process group).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LineReader } from "../dist/worker/channel.js";
import { decode, encode } from "../dist/worker/protocol.js";

export const MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));
export const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const spawned = [];

/** A worker process that killSpawned() kills (register it with after()). */
export function spawnWorker(script, options) {
  const worker = new WorkerProcess(script, options);
  spawned.push(worker);
  return worker;
}

/** Kills every worker spawnWorker started in this test file. */
export function killSpawned() {
  spawned.forEach((worker) => worker.kill());
}

export class WorkerProcess {
  constructor(script, { env = {}, channel = true, detached = true } = {}) {
    const base = { ...process.env, FLW_WORKER: "test", ...env };
    delete base.FLW_CHANNEL_FD;
    if (channel) base.FLW_CHANNEL_FD = "3";
    this.proc = spawn(process.execPath, [MAIN, fixture(script)], {
      stdio: channel ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"],
      detached, // a group of its own, as the supervisor starts workers
      env: base,
    });
    this.pid = this.proc.pid;
    this.messages = [];
    this.waiters = [];
    this.garbage = [];
    this.stdout = "";
    this.stderr = "";
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve({ code, signal })));
    const reader = new LineReader(64 * 1024 * 1024);
    this.channel = channel ? this.proc.stdio[3] : this.proc.stdin;
    const input = channel ? this.proc.stdio[3] : this.proc.stdout;
    input.on("data", (chunk) => {
      for (const item of reader.push(chunk)) {
        try {
          this.messages.push(decode(item, "worker", 64 * 1024 * 1024));
        } catch (err) {
          this.garbage.push(String(item));
        }
      }
      this.wake();
    });
    input.on("error", () => {});
    if (channel) this.proc.stdout.on("data", (chunk) => (this.stdout += chunk));
    this.proc.stderr.on("data", (chunk) => (this.stderr += chunk));
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Waits until stderr matches `pattern` (it comes on its own pipe, so it
   * may arrive after a reply on the channel that was written later). */
  async expectStderr(pattern, timeout = 5000) {
    const deadline = Date.now() + timeout;
    while (!pattern.test(this.stderr)) {
      if (Date.now() > deadline) {
        throw new Error(`stderr did not match ${pattern} within ${timeout} ms:\n${this.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The next message that fits `match` (any message by default), within `timeout` ms. */
  async recv(match = () => true, timeout = 5000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const index = this.messages.findIndex(match);
      if (index >= 0) return this.messages.splice(index, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message came in ${timeout} ms; stderr:\n${this.stderr}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(message) {
    this.channel.write(encode(message) + "\n");
  }

  sendRaw(data) {
    this.channel.write(data);
  }

  async handshake() {
    const hello = await this.recv();
    this.send({ type: "welcome", protocol: 1 });
    return hello;
  }

  /** Call a tool; every message of the call, the terminal reply last. */
  async call(id, tool, args = {}) {
    this.send({ type: "call", id, tool, args });
    const out = [];
    for (;;) {
      const message = await this.recv((m) => m.id === id);
      out.push(message);
      if (message.type === "result" || message.type === "error") return out;
    }
  }

  async result(id, tool, args = {}) {
    const messages = await this.call(id, tool, args);
    const last = messages.at(-1);
    if (last.type !== "result") throw new Error(`call ${id} failed: ${JSON.stringify(last)}`);
    return last.value;
  }

  async wait(timeout = 5000) {
    let timer;
    const result = await Promise.race([
      this.exited,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`worker still running; stderr:\n${this.stderr}`)), timeout))),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** Kill the worker's process group, if it is still there. */
  kill() {
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitDead(pid, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}
