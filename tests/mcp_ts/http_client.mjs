// The official MCP TypeScript SDK client against `flw serve` over MCP
// Streamable HTTP: initializes a session, lists the tools, calls steps with
// progress, cancels a spawn_sleep call (the SDK sends
// notifications/cancelled when its AbortSignal fires), calls echo again and
// ends the session. Prints one JSON object with what it saw;
// tests/test_serve_mcp.py checks it and that the cancelled call's processes
// are gone.
//
//   node http_client.mjs URL PIDFILE
import { existsSync, readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, pidfile] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "flw-e2e-http", version: "1.0.0" });
await client.connect(transport);

const seen = {};
seen.protocolVersion = transport.protocolVersion;
seen.sessionId = transport.sessionId ?? null;
seen.server = client.getServerVersion()?.name;
seen.tools = (await client.listTools()).tools.map((t) => t.name).sort();
const progress = [];
const steps = await client.callTool({ name: "steps", arguments: { count: 3 } }, undefined, {
  onprogress: (p) => progress.push([p.progress, p.total, p.message]),
});
seen.steps = steps.content[0].text;
seen.progress = progress;

const abort = new AbortController();
const pending = client
  .callTool({ name: "spawn_sleep", arguments: { pidfile } }, undefined, { signal: abort.signal })
  .then(
    () => "finished",
    (err) => `rejected: ${err.name}`,
  );
while (!(existsSync(pidfile) && readFileSync(pidfile, "utf8").endsWith("\n"))) {
  await new Promise((r) => setTimeout(r, 20));
}
seen.pids = readFileSync(pidfile, "utf8").trim().split(" ").map(Number);
abort.abort("the test cancels");
seen.cancelled = await pending;

const again = await client.callTool({ name: "echo", arguments: { text: "again" } });
seen.again = again.content[0].text;
await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(seen) + "\n");
