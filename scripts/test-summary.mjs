#!/usr/bin/env node
// Sums vitest's JSON results (test-results.json) over every workspace package that has a test
// script and prints one plain closing line: "N passed, N failed". Exits 1 on any failure, on zero
// tests in total, and on a package that produced no results (it crashed or never ran).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const groups = ["kernels", "packages", "plugins", "benchmarks"];
const dirs = [];
for (const g of groups) {
  const p = join(root, g);
  if (!existsSync(p)) continue;
  if (existsSync(join(p, "package.json"))) dirs.push(p);
  else for (const d of readdirSync(p, { withFileTypes: true })) if (d.isDirectory()) dirs.push(join(p, d.name));
}

let passed = 0;
let failed = 0;
const problems = [];
for (const dir of dirs) {
  const pkgPath = join(dir, "package.json");
  if (!existsSync(pkgPath)) continue;
  const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
  if (!pkg.scripts?.test) continue;
  const resultsPath = join(dir, "test-results.json");
  if (!existsSync(resultsPath)) {
    failed++;
    problems.push(`${pkg.name}: no test-results.json (the test run crashed or did not run)`);
    continue;
  }
  let r;
  try {
    r = JSON.parse(readFileSync(resultsPath, "utf8"));
  } catch (e) {
    failed++;
    problems.push(`${pkg.name}: unreadable test-results.json (${e.message})`);
    continue;
  }
  const p = r.numPassedTests ?? 0;
  let f = r.numFailedTests ?? 0;
  // A test file that failed to load reports no tests: count it as one failure.
  for (const file of r.testResults ?? []) {
    if (file.status === "failed" && (file.assertionResults ?? []).length === 0) {
      f++;
      problems.push(`${pkg.name}: ${file.name} failed to run: ${String(file.message ?? "").split("\n")[0]}`);
    }
  }
  if (p + f === 0) {
    failed++;
    problems.push(`${pkg.name}: ran no tests`);
  }
  passed += p;
  failed += f;
  console.log(`${pkg.name}: ${p} passed, ${f} failed`);
}
for (const msg of problems) console.log(`problem: ${msg}`);
if (passed + failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
