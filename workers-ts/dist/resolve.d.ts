/**
 * A module resolution hook, registered by `main.ts` before the script is
 * imported: the script's bare `flw-worker` import resolves to this copy of
 * the SDK, wherever the script lives and whatever its `node_modules` holds.
 * (ESM ignores `NODE_PATH`, so this is how a worker script in any folder
 * runs without an `npm install` of the SDK, as Python workers do.)
 */
interface Resolved {
    url: string;
    format?: string | null;
    shortCircuit?: boolean;
}
type NextResolve = (specifier: string, context: unknown) => Promise<Resolved>;
/** Node's `resolve` hook. */
export declare function resolve(specifier: string, context: unknown, nextResolve: NextResolve): Promise<Resolved>;
export {};
