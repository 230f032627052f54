// The official MCP TypeScript SDK client against `flw mcp SCRIPT`: lists the
// tools, calls echo with progress, cancels a spawn_sleep call (the SDK
// sends notifications/cancelled when its AbortSignal fires), then calls
// echo again. Prints one JSON object with what it saw; tests/test_parity.py
// checks it and that the cancelled call's processes are gone.
//
//   node client.mjs FLW SCRIPT PIDFILE
import { existsSync, readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [flw, script, pidfile] = process.argv.slice(2);
const transport = new StdioClientTransport({ command: flw, args: ["mcp", script], stderr: "ignore" });
const client = new Client({ name: "flw-e2e", version: "1.0.0" });
await client.connect(transport);

const seen = {};
seen.tools = (await client.listTools()).tools.map((t) => t.name).sort();
const progress = [];
const echo = await client.callTool(
  { name: "slow", arguments: { seconds: 0.2, steps: 2 } },
  undefined,
  { onprogress: (p) => progress.push([p.progress, p.total, p.message]) },
);
seen.slow = echo.content[0].text;
seen.progress = progress;

const abort = new AbortController();
const pending = client
  .callTool({ name: "spawn_sleep", arguments: { pidfile } }, undefined, { signal: abort.signal })
  .then(() => "finished", (err) => `rejected: ${err.name}`);
while (!(existsSync(pidfile) && readFileSync(pidfile, "utf8").endsWith("\n"))) {
  await new Promise((r) => setTimeout(r, 20));
}
seen.pids = readFileSync(pidfile, "utf8").trim().split(" ").map(Number);
abort.abort("the test cancels");
seen.cancelled = await pending;

const again = await client.callTool({ name: "echo", arguments: { text: "again" } });
seen.again = again.content[0].text;
await client.close();
process.stdout.write(JSON.stringify(seen) + "\n");
