#!/usr/bin/env node
// Sums vitest's JSON results (test-results.json) over every workspace package that has a test
// script, prints one line per package and, always last, the plain line "N passed, N failed, N skipped".
// Exits 1 on any failure, on zero tests in total, on a package that produced no results (it crashed
// or never ran), and on any skipped or todo test that is not on the allow-list below.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

// Skips that are allowed, keyed by package and full test name (describe titles and the test's own,
// joined by " > "). Keep this list short: every entry says why the test cannot run in CI. Anything
// else that skips fails the run (a test that needs a file takes its path from a variable and fails
// when the file is missing; docs/getting-started.md, "Test conventions").
const ALLOWED_SKIPS = [
  // Empty: every test runs. An entry is { pkg, test: "describe > name", reason }, for a test that
  // cannot run on CI's machine for a stated reason; keep the list short and each reason concrete.
];

const root = new URL("..", import.meta.url).pathname;
const groups = ["kernels", "packages", "plugins", "benchmarks"];
const dirs = [];
for (const g of groups) {
  const p = join(root, g);
  if (!existsSync(p)) continue;
  if (existsSync(join(p, "package.json"))) dirs.push(p);
  else for (const d of readdirSync(p, { withFileTypes: true })) if (d.isDirectory()) dirs.push(join(p, d.name));
}

const SKIPPED = new Set(["skipped", "pending", "todo", "disabled"]);
const allowed = new Map(ALLOWED_SKIPS.map((a) => [`${a.pkg}: ${a.test}`, a.reason]));

let passed = 0;
let failed = 0;
let skipped = 0;
const problems = [];
const allowedSeen = [];
for (const dir of dirs) {
  const pkgPath = join(dir, "package.json");
  if (!existsSync(pkgPath)) continue;
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
  if (!pkg.scripts?.test) continue;
  const resultsPath = join(dir, "test-results.json");
  if (!existsSync(resultsPath)) {
    failed++;
    problems.push(`${pkg.name}: no test-results.json (the test run crashed or did not run)`);
    console.log(`${pkg.name}: no results`);
    continue;
  }
  let r;
  try {
    r = JSON.parse(readFileSync(resultsPath, "utf8"));
  } catch (e) {
    failed++;
    problems.push(`${pkg.name}: unreadable test-results.json (${e.message})`);
    console.log(`${pkg.name}: no results`);
    continue;
  }
  const p = r.numPassedTests ?? 0;
  let f = r.numFailedTests ?? 0;
  let s = 0;
  for (const file of r.testResults ?? []) {
    const assertions = file.assertionResults ?? [];
    // A test file that failed to load reports no tests: count it as one failure.
    if (file.status === "failed" && assertions.length === 0) {
      f++;
      problems.push(`${pkg.name}: ${relative(root, file.name)} failed to run: ${String(file.message ?? "").split("\n")[0]}`);
    }
    // A failed hook (beforeAll, afterAll) fails the file while vitest reports its tests as skipped
    // (or passed): count it as one failure.
    if (file.status === "failed" && assertions.length > 0 && !assertions.some((a) => a.status === "failed")) {
      f++;
      problems.push(`${pkg.name}: ${relative(root, file.name)} failed outside its tests (a beforeAll/afterAll hook; see its output above)`);
    }
    for (const a of assertions) {
      if (!SKIPPED.has(a.status)) continue;
      s++;
      const name = [...(a.ancestorTitles ?? []), a.title].join(" > ");
      const key = `${pkg.name}: ${name}`;
      if (allowed.has(key)) allowedSeen.push(`${key} (${allowed.get(key)})`);
      else problems.push(`${pkg.name}: skipped and not on the allow-list in scripts/test-summary.mjs: ${relative(root, file.name)}: ${name}`);
    }
  }
  // The counts vitest reports must agree with what the per-test statuses say.
  const reportedSkips = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  if (reportedSkips > s) {
    problems.push(`${pkg.name}: vitest reports ${reportedSkips} skipped or todo tests, ${s} found by name`);
    s = reportedSkips;
  }
  if (p + f + s === 0) {
    failed++;
    problems.push(`${pkg.name}: ran no tests`);
  }
  passed += p;
  failed += f;
  skipped += s;
  console.log(`${pkg.name}: ${p} passed, ${f} failed, ${s} skipped`);
}
for (const msg of allowedSeen) console.log(`allowed skip: ${msg}`);
for (const msg of problems) console.log(`problem: ${msg}`);
if (passed + failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || problems.length > 0 ? 1 : 0);
