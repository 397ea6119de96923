import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { dispose, keep, matmul, mean, memory, randn, square, sub, tensor, tensorFrom, zeros, type Tensor } from "@modulora/tensor";
import { Trainer, learningRate, clipGradNorm, gradNorm, gradNormChecked, listCheckpoints, appendNoFollow, writeFileAtomic, LOCK_FILE, type DataSource, type TrainerEvent } from "../src/index.js";

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

  it("the norm of many gradients equals a plain f64 sum; non-finite gradients are told apart from overflowed squares", () => {
    const sizes = [1, 3, 17, 128, 257];
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 4;
    const values = sizes.map((n) => Float32Array.from({ length: n }, next));
    const params = values.map((v) => {
      const p = tensor(v, [v.length], { requiresGrad: true });
      p.grad = keep(tensor(v, [v.length]));
      return p;
    });
    const noGradParam = tensor([1, 2], [2], { requiresGrad: true });
    let ref = 0;
    for (const v of values) for (const x of v) ref += x * x;
    expect(Math.abs(gradNorm([...params, noGradParam]) - Math.sqrt(ref)) / Math.sqrt(ref)).toBeLessThan(1e-6);
    expect(gradNormChecked(params)).toEqual({ norm: gradNorm(params), finite: true });
    // Overwrites element 5 of the fourth gradient (a copy in through the transfer API).
    const setAt5 = (v: number) => {
      const host = params[3]!.grad!.dataSync() as Float32Array;
      host[5] = v;
      params[3]!.grad!.dispose();
      params[3]!.grad = keep(tensorFrom(host, { shape: [host.length] }));
    };
    setAt5(NaN);
    expect(gradNormChecked(params).finite).toBe(false);
    // Finite, and its square overflows f32 but not the f64 accumulation of gradNormStats: the norm is finite.
    setAt5(3e30);
    const big = gradNormChecked(params);
    expect(big.finite).toBe(true);
    expect(Math.abs(big.norm - 3e30) / 3e30).toBeLessThan(1e-6);
    setAt5(-Infinity);
    expect(gradNormChecked(params)).toEqual({ norm: Infinity, finite: false });
    dispose([...params, noGradParam]);
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
    const { code, out } = await signalAfterCheckpoint3(dir, "SIGINT");
    expect(code).toBe(0);
    const last = JSON.parse(out.trim().split("\n").pop()!);
    expect(last.result.stoppedBy).toBe("interrupted");
    expect(listCheckpoints(dir)[0]!.step).toBe(last.result.steps);
  }, 120_000);
});

/** Starts a long fresh run in a child, sends `signal` once checkpoint 3 is written, waits for the exit. */
async function signalAfterCheckpoint3(dir: string, signal: NodeJS.Signals): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, [child, dir, "100000", "fresh"], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const code = await new Promise<number | null>((resolve) => {
    let sent = false;
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!sent && /checkpoint 3\n/.test(out)) {
        sent = true;
        proc.kill(signal);
      }
    });
    proc.on("exit", (c) => resolve(c));
  });
  return { code, out };
}

/** A pid that cannot be a running process (above Linux's pid_max): temporaries named with it are stale. */
const DEAD = 99999999;

/** Runs the toy trainer to completion; returns its result and the warnings it emitted. */
async function toyRun(opts: Partial<ConstructorParameters<typeof Trainer<XB>>[0]>) {
  const warnings: string[] = [];
  const t = toy({ ...opts, onEvent: (e: TrainerEvent) => void (e.type === "warning" && warnings.push(e.message)) });
  try {
    return { result: await t.trainer.fit(), warnings };
  } finally {
    t.cleanup();
  }
}

const metricSteps = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; eval?: unknown });

describe("the output directory", () => {
  it("is locked: a second run is refused while the first runs; a stale lock is named and taken over", async () => {
    const dir = join(tmp, "locked");
    const first = spawn(process.execPath, [child, dir, "100000", "fresh"], { stdio: ["ignore", "pipe", "pipe"] });
    await new Promise<void>((resolve) => {
      let buf = "";
      first.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        if (/checkpoint 3\n/.test(buf)) {
          first.kill("SIGSTOP"); // alive and holding the lock, but not running
          resolve();
        }
      });
    });
    const second = spawnSync(process.execPath, [child, dir, "100000", "resume"], { encoding: "utf8", timeout: 60_000 });
    expect(second.status).not.toBe(0);
    expect(second.stderr).toContain(`${join(dir, LOCK_FILE)} is held by process ${first.pid} (modulora trainer, since `);
    first.kill("SIGKILL");
    await new Promise((r) => first.on("exit", r));
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true); // a kill -9 cannot release it
    const steps = listCheckpoints(dir)[0]!.step + 3;
    const third = spawnSync(process.execPath, [child, dir, String(steps), "resume"], { encoding: "utf8", timeout: 60_000 });
    expect(third.status, third.stderr).toBe(0);
    expect(third.stdout).toContain(`warning took over the stale lock ${join(dir, LOCK_FILE)} of process ${first.pid}, which no longer runs`);
    expect(JSON.parse(third.stdout.trim().split("\n").pop()!).result.steps).toBe(steps);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false); // released at the end
  }, 120_000);

  it("SIGTERM saves a checkpoint and stops cleanly, like Ctrl-C", async () => {
    const dir = join(tmp, "sigterm");
    const { code, out } = await signalAfterCheckpoint3(dir, "SIGTERM");
    expect(code).toBe(0);
    const last = JSON.parse(out.trim().split("\n").pop()!);
    expect(last.result).toMatchObject({ stoppedBy: "interrupted", signal: "SIGTERM" });
    expect(listCheckpoints(dir)[0]!.step).toBe(last.result.steps);
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  }, 120_000);

  it("a diverged run fails, and writes no final checkpoint", async () => {
    // lr 1e30: step 1 moves w to ~1e30, so every later loss overflows to Inf and is skipped.
    const out = join(tmp, "diverged");
    await expect(toyRun({ steps: 3, lr: 1e30, outDir: out })).rejects.toThrow(/the run diverged: its last 2 steps \(up to step 3\) had a non-finite loss or gradient/);
    expect(listCheckpoints(out)).toEqual([]);
    // lr 1e39 overflows f32 in the update itself: the parameters are Inf after a finite step 1.
    const inf = join(tmp, "diverged-inf");
    await expect(toyRun({ steps: 1, lr: 1e39, outDir: inf })).rejects.toThrow(/the run diverged: the parameters hold NaN or Inf \(w\)/);
    expect(listCheckpoints(inf)).toEqual([]);
  });

  it("refuses a warmup longer than the run", () => {
    expect(() => toy({ steps: 2, warmupSteps: 5 })).toThrow(/warmup of 5 steps is longer than the run \(2 steps\), so the learning rate would never reach 0\.05/);
  });

  it("resuming a finished run completes without training or evaluating again", async () => {
    const out = join(tmp, "finished");
    let evals = 0;
    const evaluate = () => ({ loss: 10 - evals++ });
    await toyRun({ steps: 4, saveEvery: 2, evalEvery: 2, outDir: out, evaluate });
    expect(evals).toBe(2);
    const before = readFileSync(join(out, "metrics.jsonl"), "utf8");
    const { result } = await toyRun({ steps: 4, saveEvery: 2, evalEvery: 2, outDir: out, evaluate, resume: true });
    expect(result).toMatchObject({ steps: 4, resumedFrom: 4, stoppedBy: "done", tokens: 0, best: { step: 4, value: 9 }, lastEval: { loss: 9 } });
    expect(evals).toBe(2);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toBe(before);
  });

  it("a replacement of best/ or a checkpoint cut between its renames is undone, and stale temporaries are removed", async () => {
    const out = join(tmp, "recover");
    const evaluate = () => ({ loss: 1 });
    await toyRun({ steps: 2, saveEvery: 1, evalEvery: 1, outDir: out, evaluate });
    // As a kill leaves it: best/ moved aside, its successor half-written; a checkpoint half-written.
    renameSync(join(out, "best"), join(out, `best.old-${DEAD}-a1`));
    mkdirSync(join(out, `best.tmp-${DEAD}-b2`));
    writeFileSync(join(out, `best.tmp-${DEAD}-b2`, "parameters.safetensors"), "partial");
    mkdirSync(join(out, `checkpoint-3.tmp-${DEAD}-c3`));
    const { result, warnings } = await toyRun({ steps: 3, saveEvery: 1, evalEvery: 1, outDir: out, evaluate, resume: true });
    expect(result).toMatchObject({ steps: 3, resumedFrom: 2 });
    expect(warnings).toContain(`restored ${join(out, "best")} (a replacement of it was interrupted)`);
    expect(warnings).toContain(`removed ${join(out, `checkpoint-3.tmp-${DEAD}-c3`)} (left by an interrupted run)`);
    expect(readdirSync(out).sort()).toEqual(["best", "checkpoint-2", "checkpoint-3", "metrics.jsonl"]);
    expect(existsSync(join(out, "best", "trainer_state.json"))).toBe(true);
  });

  it("a corrupt newest checkpoint: resumes from the older one, saying so", async () => {
    const out = join(tmp, "corrupt");
    await toyRun({ steps: 4, saveEvery: 2, outDir: out });
    truncateSync(join(out, "checkpoint-4", "parameters.safetensors"), 20);
    const { result, warnings } = await toyRun({ steps: 6, saveEvery: 2, outDir: out, resume: true });
    expect(result).toMatchObject({ steps: 6, resumedFrom: 2 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^checkpoint ${join(out, "checkpoint-4")} cannot be read \\(.+\\); moved it to ${join(out, "checkpoint-4")}\\.corrupt and resuming from the older ${join(out, "checkpoint-2")}$`));
    expect(existsSync(join(out, "checkpoint-4.corrupt"))).toBe(true);
    expect(metricSteps(out).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("a run killed during its first checkpoint: resume starts it over", async () => {
    const out = join(tmp, "first-checkpoint");
    mkdirSync(out);
    writeFileSync(join(out, "metrics.jsonl"), '{"step":1,"loss":1}\n{"step":2,"loss":1}\n');
    mkdirSync(join(out, `checkpoint-3.tmp-${DEAD}-d4`));
    writeFileSync(join(out, `checkpoint-3.tmp-${DEAD}-d4`, "parameters.safetensors"), "partial");
    const { result, warnings } = await toyRun({ steps: 3, outDir: out, resume: true });
    expect(result).toMatchObject({ steps: 3, resumedFrom: null });
    expect(warnings).toContain(`${out} has no complete checkpoint (the run stopped before its first one): starting from step 0`);
    expect(metricSteps(out).map((m) => m.step)).toEqual([1, 2, 3]);
    expect(readdirSync(out).sort()).toEqual(["checkpoint-3", "metrics.jsonl"]);
  });

  it("never writes through a symbolic link planted in it", async () => {
    const out = join(tmp, "links");
    await toyRun({ steps: 2, saveEvery: 1, outDir: out });
    const victim = join(tmp, "victim.txt");
    writeFileSync(victim, "precious\n");
    cpSync(join(out, "metrics.jsonl"), join(tmp, "metrics-copy.jsonl"));
    rmSync(join(out, "metrics.jsonl"));
    symlinkSync(victim, join(out, "metrics.jsonl"));
    await expect(toyRun({ steps: 4, saveEvery: 1, outDir: out, resume: true })).rejects.toThrow(`${join(out, "metrics.jsonl")} is a symbolic link; refusing to write through it (remove it)`);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    // Appending refuses a link (O_NOFOLLOW); a whole-file write replaces the link instead of following it.
    expect(() => appendNoFollow(join(out, "metrics.jsonl"), "x\n")).toThrow(/is a symbolic link; refusing to write through it/);
    symlinkSync(victim, join(out, "run.json"));
    writeFileAtomic(join(out, "run.json"), "{}\n");
    expect(lstatSync(join(out, "run.json")).isSymbolicLink()).toBe(false);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
  });

  it("a failed append (ENOSPC) names the file", () => {
    expect(() => appendNoFollow("/dev/full", "x\n")).toThrow(/^cannot append to \/dev\/full: ENOSPC: no space left on device/);
  });
});
