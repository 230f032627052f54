#!/usr/bin/env node
/**
 * The entry point the supervisor runs: `node dist/main.js SCRIPT [ARGS...]`.
 *
 * Takes the protocol channel and starts the watchdog, imports the script,
 * collects the tools, graph nodes and flows among its exports and serves
 * them until `shutdown`.
 */
export {};
