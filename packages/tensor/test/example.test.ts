import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const pkg = fileURLToPath(new URL("..", import.meta.url));

describe("the engine demo (README command 1's main job)", () => {
  it("fits low-rank factors with autograd and AdamW and the loss falls", () => {
    const r = spawnSync(process.execPath, ["examples/low-rank-fit.mjs"], {
      cwd: pkg,
      encoding: "utf8",
      env: { ...process.env, DEMO_M: "96", DEMO_N: "64", DEMO_RANK: "4", DEMO_STEPS: "150" },
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const losses = [...r.stdout.matchAll(/loss ([0-9.e+-]+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBeGreaterThan(3);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.01);
    expect(r.stdout).toMatch(/tensors alive/);
  });
});

describe("FinalizationRegistry safety net", () => {
  it("frees the storage of handles collected without dispose()", () => {
    const script = `
      import { zeros, memory } from "@modulora/tensor";
      const before = memory().bytes;
      for (let i = 0; i < 50; i++) zeros([1024]);
      const leaked = memory().bytes - before;
      await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < 5 && memory().bytes > before; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
      console.log(JSON.stringify({ leaked, after: memory().bytes - before }));
    `;
    const r = spawnSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], { cwd: pkg, encoding: "utf8", timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(out.leaked).toBe(50 * 4096);
    expect(out.after).toBe(0);
  });
});
