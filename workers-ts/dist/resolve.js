/**
 * A module resolution hook, registered by `main.ts` before the script is
 * imported: the script's bare `flw-worker` import resolves to this copy of
 * the SDK, wherever the script lives and whatever its `node_modules` holds.
 * (ESM ignores `NODE_PATH`, so this is how a worker script in any folder
 * runs without an `npm install` of the SDK, as Python workers do.)
 */
const SDK = new URL("./index.js", import.meta.url).href;
/** Node's `resolve` hook. */
export async function resolve(specifier, context, nextResolve) {
    if (specifier === "flw-worker") {
        return { url: SDK, format: "module", shortCircuit: true };
    }
    return nextResolve(specifier, context);
}
