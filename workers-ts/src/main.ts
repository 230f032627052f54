#!/usr/bin/env node
/**
 * The entry point the supervisor runs: `node dist/main.js SCRIPT [ARGS...]`.
 *
 * Takes the protocol channel and starts the watchdog, imports the script,
 * collects the tools, graph nodes and flows among its exports and serves
 * them until `shutdown`.
 */

import { existsSync } from "node:fs";
import { register } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { openChannel } from "./worker/channel.js";
import { collectGraph } from "./graph/manifest.js";
import { collectTools } from "./tool.js";
import { SDK_VERSION } from "./version.js";
import { Worker, note, settingsFromEnv } from "./worker/loop.js";

const USAGE = `usage: node dist/main.js SCRIPT [ARGS...]

Serves the tools SCRIPT exports (made with tool() from flw-worker), and its
graph nodes and flows (node(), Node, BatchNode, flow()), as an flw worker. The supervisor starts this with the protocol channel on
FLW_CHANNEL_FD; without it the worker speaks the protocol on stdin/stdout.
`;

async function main(argv: readonly string[]): Promise<{ code: number; worker?: Worker }> {
  const [script, ...rest] = argv;
  if (script === undefined || script === "-h" || script === "--help") {
    process.stderr.write(USAGE);
    return { code: script === undefined ? 2 : 0 };
  }
  if (script === "--version") {
    process.stdout.write(`flw-worker ${SDK_VERSION}\n`);
    return { code: 0 };
  }
  const settings = settingsFromEnv(process.env, path.basename(script));
  const label = settings.label;
  let worker: Worker;
  try {
    worker = new Worker(openChannel(process.env), settings);
  } catch (err) {
    note(label, `cannot open the protocol channel: ${(err as Error).message}`);
    return { code: 2 };
  }
  worker.start();
  worker.installHandlers();

  const full = path.resolve(script);
  if (!existsSync(full)) {
    process.stderr.write(`flw: cannot load ${script}: no such file\n`);
    return { code: 1 };
  }
  process.argv = [process.argv[0] ?? "node", full, ...rest];
  // The script's `import ... from "flw-worker"` gets this copy of the SDK.
  register("./resolve.js", import.meta.url);
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(full).href)) as Record<string, unknown>;
  } catch (err) {
    const text = err instanceof Error ? (err.stack ?? String(err)) : String(err);
    process.stderr.write(`flw: cannot load ${script}: the script threw an exception\n${text}\n`);
    return { code: 1 };
  }
  let tools;
  let graph;
  try {
    tools = collectTools(namespace);
    graph = collectGraph(namespace);
  } catch (err) {
    note(label, `cannot serve ${script}: ${(err as Error).message}`);
    return { code: 1 };
  }
  return { code: await worker.serve(tools, graph), worker };
}

const { code, worker } = await main(process.argv.slice(2));
if (worker !== undefined) await worker.close();
process.exit(code);
