/**
 * A module resolution hook, registered by `main.ts` before the script is
 * imported: the script's bare `flw-worker` import resolves to this copy of
 * the SDK, wherever the script lives and whatever its `node_modules` holds.
 * (ESM ignores `NODE_PATH`, so this is how a worker script in any folder
 * runs without an `npm install` of the SDK, as Python workers do.)
 */

import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SDK = new URL("./index.js", import.meta.url).href;

interface Resolved {
  url: string;
  format?: string | null;
  shortCircuit?: boolean;
}

type NextResolve = (specifier: string, context: unknown) => Promise<Resolved>;

/**
 * Whether this Node strips TypeScript types itself: `process.features.typescript`
 * (Node 22.10 and later, on by default since 22.18) or the flag flw passes
 * on Node 22.6 to 22.9.
 */
const NODE_STRIPS_TYPES =
  typeof (process.features as { typescript?: unknown }).typescript === "string" ||
  process.execArgv.some((arg) => arg === "--experimental-strip-types" || arg === "--experimental-transform-types");

/** Node's `resolve` hook. */
export async function resolve(
  specifier: string,
  context: unknown,
  nextResolve: NextResolve,
): Promise<Resolved> {
  if (specifier === "flw-worker") {
    return { url: SDK, format: "module", shortCircuit: true };
  }
  const resolved = await nextResolve(specifier, context);
  // A .ts script with no package.json saying "type": "module" would run as
  // CommonJS, where its `import` of flw-worker fails: scripts written for
  // flw are ES modules. (A package.json that says "commonjs" is obeyed.)
  if (!resolved.url.endsWith(".ts") || saysCommonJs(resolved.url)) return resolved;
  if (resolved.format === "commonjs-typescript") {
    return { ...resolved, format: "module-typescript" }; // Node's own type stripping
  }
  if (resolved.format === "commonjs" || resolved.format == null) {
    // Newer Node leaves the format of a .ts file to its loader (null here):
    // when Node strips types itself, say it is TypeScript; else a loader
    // (tsx) compiles what it is told is a module.
    return { ...resolved, format: NODE_STRIPS_TYPES ? "module-typescript" : "module" };
  }
  return resolved;
}

/** Whether the nearest package.json above `url` says `"type": "commonjs"`. */
function saysCommonJs(url: string): boolean {
  if (!url.startsWith("file:")) return false;
  let dir = path.dirname(fileURLToPath(url));
  for (;;) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      try {
        return (JSON.parse(readFileSync(file, "utf8")) as { type?: unknown }).type === "commonjs";
      } catch {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}
