import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { dispose, keep, matmul, mean, memory, randn, square, sub, tensor, zeros, type Tensor } from "@modulora/tensor";
import { Trainer, learningRate, clipGradNorm, gradNorm, listCheckpoints, type DataSource } from "../src/index.js";

const child = fileURLToPath(new URL("./fixtures/train-child.mjs", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "modulora-trainer-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface XB { x: Tensor; tokens: number }
function toyData(n = 4): DataSource<XB> {
  return {
    length: n,
    *epoch(epoch, start) {
      for (let i = start; i < n; i++) yield { x: randn([4, 6], { seed: 100 + epoch * 17 + i }), tokens: 4 };
    },
  };
}

function toy(opts: Partial<ConstructorParameters<typeof Trainer<XB>>[0]> = {}) {
  const w = keep(randn([3, 6], { seed: 1, std: 0.1, requiresGrad: true }));
  const target = keep(randn([3, 6], { seed: 2 }));
  const trainer = new Trainer<XB>({
    parameters: new Map([["w", w]]),
    loss: (b) => {
      const l = mean(square(sub(matmul(b.x, w, { transB: true }), matmul(b.x, target, { transB: true }))));
      b.x.dispose();
      return l;
    },
    data: toyData(),
    lr: 0.05,
    ...opts,
  });
  return { w, target, trainer, cleanup: () => { trainer.dispose(); dispose([w, target]); } };
}

describe("learning-rate schedules", () => {
  it("warmup then constant, linear and cosine decay", () => {
    const base = { lr: 1, warmupSteps: 4, totalSteps: 14 };
    expect([1, 2, 4].map((s) => learningRate({ ...base, kind: "constant" }, s))).toEqual([0.25, 0.5, 1]);
    expect(learningRate({ ...base, kind: "constant" }, 14)).toBe(1);
    expect(learningRate({ ...base, kind: "linear" }, 9)).toBeCloseTo(0.5, 12);
    expect(learningRate({ ...base, kind: "linear" }, 14)).toBe(0);
    expect(learningRate({ ...base, kind: "cosine" }, 9)).toBeCloseTo(0.5, 12);
    expect(learningRate({ ...base, kind: "cosine", minLrRatio: 0.1 }, 14)).toBeCloseTo(0.1, 12);
  });
});

describe("gradient clipping", () => {
  it("scales gradients to the global norm, as clip_grad_norm_", () => {
    const a = tensor([3, 0], [2], { requiresGrad: true });
    const b = tensor([0, 4], [2], { requiresGrad: true });
    a.grad = keep(tensor([3, 0], [2]));
    b.grad = keep(tensor([0, 4], [2]));
    expect(gradNorm([a, b])).toBe(5);
    expect(clipGradNorm([a, b], 1)).toBe(5);
    expect(gradNorm([a, b])).toBeCloseTo(1, 5);
    dispose([a, b]);
  });
});

describe("Trainer", () => {
  it("reduces the loss, accumulates gradients, logs metrics and leaves no tensors behind", async () => {
    const out = join(tmp, "basic");
    const before = memory();
    const { trainer, cleanup } = toy({ steps: 30, gradAccum: 2, schedule: "cosine", warmupSteps: 3, outDir: out, evaluate: undefined });
    const events: string[] = [];
    (trainer.options as { onEvent?: unknown }).onEvent = (e: { type: string }) => events.push(e.type);
    const r = await trainer.fit();
    expect(r.steps).toBe(30);
    expect(r.stoppedBy).toBe("done");
    const lines = readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.length).toBe(30);
    expect(lines[0]).toMatchObject({ step: 1 });
    expect(lines[29].loss).toBeLessThan(lines[0].loss * 0.5);
    expect(typeof lines[5].lr).toBe("number");
    expect(events).toContain("checkpoint");
    expect(listCheckpoints(out)[0]!.step).toBe(30);
    cleanup();
    expect(memory().tensors).toBe(before.tensors);
  });
  it("is deterministic for a seed", async () => {
    const run = async () => {
      const { w, trainer, cleanup } = toy({ steps: 8, seed: 3 });
      await trainer.fit();
      const v = w.toArray();
      cleanup();
      return v;
    };
    expect(await run()).toEqual(await run());
  });
  it("evaluates, keeps the best checkpoint, and stops early", async () => {
    const out = join(tmp, "early");
    let calls = 0;
    const { trainer, cleanup } = toy({
      steps: 50, evalEvery: 2, earlyStoppingPatience: 2, outDir: out,
      evaluate: () => ({ loss: [5, 4, 3, 3.5, 3.6, 3.7, 1][calls++] ?? 9 }),
    });
    const r = await trainer.fit();
    expect(r.stoppedBy).toBe("early-stopping");
    expect(r.best).toEqual({ step: 6, value: 3 });
    expect(r.steps).toBe(10);
    expect(existsSync(join(out, "best", "parameters.safetensors"))).toBe(true);
    cleanup();
  });
  it("skips non-finite steps with a warning and aborts after several in a row", async () => {
    let n = 0;
    const w = keep(randn([2, 2], { seed: 1, requiresGrad: true }));
    const trainer = new Trainer<XB>({
      parameters: new Map([["w", w]]),
      loss: (b) => {
        b.x.dispose();
        n++;
        return mean(matmul(tensor([[n % 2 ? NaN : 1, 1]]), w));
      },
      data: toyData(),
      steps: 20,
      lr: 0.1,
      maxBadSteps: 3,
    });
    const warnings: string[] = [];
    const onWarn = (w: Error) => warnings.push(w.message);
    process.on("warning", onWarn);
    await expect(trainer.fit()).resolves.toMatchObject({ steps: 20 });
    const always = new Trainer<XB>({
      parameters: new Map([["w", w]]),
      loss: (b) => {
        b.x.dispose();
        return mean(matmul(tensor([[Infinity, 1]]), w));
      },
      data: toyData(),
      steps: 20,
      lr: 0.1,
      maxBadSteps: 3,
    });
    await expect(always.fit()).rejects.toThrow(/aborting: 3 consecutive steps had a non-finite loss or gradient \(last at step 3\)/);
    await new Promise((r) => setTimeout(r, 10));
    process.off("warning", onWarn);
    expect(warnings.some((m) => /non-finite loss or gradient, step skipped/.test(m))).toBe(true);
    trainer.dispose();
    always.dispose();
    w.dispose();
  });
  it("refuses an existing output directory without resume or overwrite", async () => {
    const out = join(tmp, "exists");
    const a = toy({ steps: 2, outDir: out });
    await a.trainer.fit();
    a.cleanup();
    const b = toy({ steps: 2, outDir: out });
    await expect(b.trainer.fit()).rejects.toThrow(/already exists and is not empty; pass resume to continue it or overwrite to replace it/);
    b.cleanup();
    const c = toy({ steps: 2, outDir: out, overwrite: true });
    await expect(c.trainer.fit()).resolves.toMatchObject({ steps: 2 });
    c.cleanup();
    writeFileSync(join(tmp, "junk.txt"), "x");
    const d = toy({ steps: 2, outDir: tmp, resume: true });
    await expect(d.trainer.fit()).rejects.toThrow(/holds no complete checkpoint to resume from/);
    d.cleanup();
  });
});

describe("checkpoint and resume", () => {
  it("a run killed with kill -9 right after a checkpoint, then resumed, ends with the same weights as an uninterrupted run", async () => {
    const steps = 12;
    const full = spawnSync(process.execPath, [child, join(tmp, "full"), String(steps), "fresh"], { encoding: "utf8", timeout: 120_000 });
    expect(full.status, full.stderr).toBe(0);
    const reference = JSON.parse(full.stdout.trim().split("\n").pop()!);

    const dir = join(tmp, "killed");
    const proc = spawn(process.execPath, [child, dir, String(steps), "fresh"], { stdio: ["ignore", "pipe", "pipe"] });
    const killedAt = await new Promise<number>((resolve, reject) => {
      let buf = "";
      proc.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        const m = /checkpoint 6\n/.exec(buf);
        if (m) {
          proc.kill("SIGKILL");
          resolve(6);
        }
      });
      proc.on("exit", (code, signal) => (signal === "SIGKILL" ? undefined : reject(new Error(`child exited early: ${code}`))));
    });
    await new Promise((r) => proc.on("exit", r));
    expect(killedAt).toBe(6);
    expect(listCheckpoints(dir)[0]!.step).toBeGreaterThanOrEqual(6);
    expect(readdirSync(dir).some((n) => n.includes(".tmp-"))).toBe(false);

    const resumed = spawnSync(process.execPath, [child, dir, String(steps), "resume"], { encoding: "utf8", timeout: 120_000 });
    expect(resumed.status, resumed.stderr).toBe(0);
    const out = JSON.parse(resumed.stdout.trim().split("\n").pop()!);
    const maxDiff = Math.max(...out.W.map((v: number, i: number) => Math.abs(v - reference.W[i])), ...out.b.map((v: number, i: number) => Math.abs(v - reference.b[i])));
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
    const metrics = readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step);
    expect(metrics).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
  }, 120_000);
  it("Ctrl-C (SIGINT) saves a checkpoint and exits cleanly", async () => {
    const dir = join(tmp, "sigint");
    const proc = spawn(process.execPath, [child, dir, "100000", "fresh"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const code = await new Promise<number | null>((resolve) => {
      let sent = false;
      proc.stdout.on("data", (d: Buffer) => {
        out += d.toString();
        if (!sent && /checkpoint 3\n/.test(out)) {
          sent = true;
          proc.kill("SIGINT");
        }
      });
      proc.on("exit", (c) => resolve(c));
    });
    expect(code).toBe(0);
    const last = JSON.parse(out.trim().split("\n").pop()!);
    expect(last.result.stoppedBy).toBe("interrupted");
    expect(listCheckpoints(dir)[0]!.step).toBe(last.result.steps);
  }, 120_000);
});
