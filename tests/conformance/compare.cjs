// Compares the results of a conformance run with expected-failures.txt; run
// by run.sh as: node compare.cjs RESULTS_DIR EXPECTED_FILE SPEC_VERSION...
// RESULTS_DIR holds suite-VERSION.log and VERSION/server-SCENARIO-TIME/checks.json
// for each version. A scenario fails when one of its checks has status
// FAILURE. Prints a summary and what differs from the file; exits 0 when
// nothing differs, 1 when something does, 2 when the input is broken.
"use strict";
const fs = require("fs");
const path = require("path");
const [work, expectedFile, ...versions] = process.argv.slice(2);
const RANK = { FAILURE: 3, SUCCESS: 2, WARNING: 1, INFO: 0, SKIPPED: 0 };
const bad = (msg) => { console.error(`conformance: ${msg}`); process.exit(2); };

// results[version][scenario] = { verdicts: Map(check id -> status), failed: [check] }
const results = {};
for (const v of versions) {
  results[v] = {};
  const log = fs.readFileSync(path.join(work, `suite-${v}.log`), "utf8");
  const planned = Number((log.match(/^Running .* \((\d+) scenarios\)/m) || [])[1]);
  const dirs = fs.readdirSync(path.join(work, v));
  if (dirs.length !== planned) bad(`${v}: the suite planned ${planned} scenarios but wrote results for ${dirs.length}`);
  for (const dir of dirs) {
    const m = dir.match(/^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    if (!m) bad(`unexpected results directory ${dir}`);
    const checks = JSON.parse(fs.readFileSync(path.join(work, v, dir, "checks.json"), "utf8"));
    const verdicts = new Map();
    for (const c of checks) {
      const seen = verdicts.get(c.id);
      if (seen === undefined || (RANK[c.status] ?? 0) > (RANK[seen] ?? 0)) verdicts.set(c.id, c.status);
    }
    results[v][m[1]] = { verdicts, failed: checks.filter((c) => c.status === "FAILURE") };
  }
}

// Entries: "VERSION SCENARIO  # reason" or "VERSION SCENARIO:CHECK-ID  # reason".
const whole = new Set();
const perCheck = new Map(); // "v scenario" -> Set(check id)
const entries = [];
fs.readFileSync(expectedFile, "utf8").split("\n").forEach((line, i) => {
  const hash = line.indexOf("#");
  const body = (hash < 0 ? line : line.slice(0, hash)).trim();
  if (!body) return;
  const where = `${path.basename(expectedFile)}:${i + 1}`;
  const fields = body.split(/\s+/);
  if (fields.length !== 2) bad(`${where}: expected "SPEC_VERSION SCENARIO  # reason", got: ${line}`);
  if (hash < 0 || !line.slice(hash + 1).trim()) bad(`${where}: give the reason after a #`);
  const [v, entry] = fields;
  if (!versions.includes(v)) bad(`${where}: spec version ${v} is not one of ${versions.join(", ")}`);
  const [scenario, check] = entry.split(/:(.*)/s);
  const key = `${v} ${scenario}`;
  if (entries.some((e) => e.v === v && e.entry === entry)) bad(`${where}: ${v} ${entry} is listed twice`);
  entries.push({ v, entry, scenario, check });
  if (check === undefined) whole.add(key);
  else perCheck.set(key, (perCheck.get(key) || new Set()).add(check));
});
for (const key of whole) if (perCheck.has(key)) bad(`${key} is listed both whole and by check`);

const unexpected = [];
const stale = [];
const notRun = [];
for (const v of versions) {
  const names = Object.keys(results[v]).sort();
  let passed = 0;
  for (const scenario of names) {
    const { failed } = results[v][scenario];
    if (failed.length === 0) passed++;
    const key = `${v} ${scenario}`;
    if (whole.has(key)) continue;
    const allowed = perCheck.get(key) || new Set();
    const missed = failed.filter((c) => !allowed.has(c.id));
    if (missed.length) unexpected.push({ key, missed });
  }
  console.log(`conformance: ${v}: ${passed} of ${names.length} scenarios pass`);
}
for (const { v, entry, scenario, check } of entries) {
  const r = results[v][scenario];
  if (!r) notRun.push(`${v} ${entry}`);
  else if (check === undefined ? r.failed.length === 0 : r.verdicts.get(check) === "SUCCESS" || (!r.verdicts.has(check) && r.failed.length === 0)) stale.push(`${v} ${entry}`);
}

if (unexpected.length) {
  console.log("\nFAILING, NOT IN tests/conformance/expected-failures.txt:");
  for (const { key, missed } of unexpected) {
    console.log(`  ${key}`);
    const lines = new Set(missed.map((c) => `${c.id}: ${(c.errorMessage || c.description || "").split("\n")[0].slice(0, 300)}`));
    for (const l of lines) console.log(`      ${l}`);
  }
}
if (stale.length) {
  console.log("\nPASSING NOW, REMOVE FROM tests/conformance/expected-failures.txt:");
  for (const s of stale) console.log(`  ${s}`);
}
if (notRun.length) {
  console.log("\nLISTED IN tests/conformance/expected-failures.txt BUT NOT RUN (a renamed or removed scenario, or a typo):");
  for (const s of notRun) console.log(`  ${s}`);
}
if (unexpected.length || stale.length || notRun.length) process.exit(1);
console.log(`conformance: every failure is expected (${entries.length} entries)`);
