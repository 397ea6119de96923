// `modulora finetune` data parallel on the CPU, through the built CLI: --devices 2 (two processes
// over the TCP communicator) trains the adapter one process trains with --grad-accum 2; ranks
// started by hand with torchrun's variables do the same; a rank that dies makes rank 0 fail with
// its name and leaves the last checkpoint, from which --resume finishes the same adapter.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "@modulora/distributed";
import { loadSafetensors } from "@modulora/tensor";
import { CLI, ROOT, runCli, runCliOk, TINY } from "./run-cli.js";

let tmp = "";
let data = "";

beforeAll(() => {
  expect(existsSync(CLI), "build the CLI first (pnpm exec tsup)").toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-dp-cli-"));
  // Both labels (the file is sorted by label): every 80th line of the spam training set.
  const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
  data = join(tmp, "spam.jsonl");
  writeFileSync(data, lines.filter((_, i) => i % 80 === 0).join("\n") + "\n");
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The common flags: tiny-llama, 6 steps of 2-example micro-batches, LoRA dropout on (its masks follow step and micro-step). */
const base = (out: string, extra: string[] = []) => [
  "finetune", "--model", TINY, "--data", data, "--format", "classification", "--out", out,
  "--steps", "6", "--batch-size", "2", "--seq-len", "48", "--lr", "2e-3", "--dropout", "0.1", "--device", "cpu", ...extra,
];

/** The adapter's tensors by name, as f64 arrays. */
function adapter(dir: string): Map<string, Float64Array> {
  const t = loadSafetensors(join(dir, "adapter_model.safetensors"));
  const out = new Map([...t].map(([k, v]) => [k, v.toFloat64Array()]));
  for (const v of t.values()) v.dispose();
  return out;
}

/** max |a − b| over every tensor, and max |b| (the scale). */
function diff(a: Map<string, Float64Array>, b: Map<string, Float64Array>): { max: number; scale: number } {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let max = 0;
  let scale = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    for (let i = 0; i < x.length; i++) {
      max = Math.max(max, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(y[i]!));
    }
  }
  return { max, scale };
}

const losses = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss: number }).filter((m) => "loss" in m).map((m) => m.loss);

/** Starts one rank the way torchrun would (its variables set), without waiting. */
function startRank(rank: number, port: number, args: string[]) {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, FORCE_COLOR: "0", RANK: String(rank), WORLD_SIZE: "2", LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port) },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  child.stdout.resume();
  const done = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { child, done, stderr: () => stderr };
}

describe("modulora finetune, data parallel on the CPU", () => {
  let reference: Map<string, Float64Array>;
  let refLosses: number[];

  beforeAll(() => {
    const out = join(tmp, "accum");
    runCliOk(base(out, ["--grad-accum", "2"]));
    reference = adapter(out);
    refLosses = losses(out);
  }, 300_000);

  it("--devices 2 trains the adapter that one process trains with --grad-accum 2", () => {
    const out = join(tmp, "devices2");
    const r = runCliOk(base(out, ["--devices", "2", "--json"]));
    expect(r.stderr).toContain("× 2 ranks (tcp)");
    const got = diff(adapter(out), reference);
    expect(got.scale).toBeGreaterThan(1e-3);
    // Halving the sum of two gradients is exact in binary floating point: the same bits are expected; 1e-6 of the scale allows for a reordering.
    expect(got.max).toBeLessThanOrEqual(1e-6 * got.scale);
    expect(losses(out)).toEqual(refLosses.map((l) => expect.closeTo(l, 6)));
    const run = JSON.parse(readFileSync(join(out, "run.json"), "utf8"));
    expect(run.dataParallel).toEqual({ worldSize: 2, backend: "tcp", globalBatch: 4 });
    const printed = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(printed.steps).toBe(6);
    expect(printed.tokens).toBe(JSON.parse(readFileSync(join(tmp, "accum", "run.json"), "utf8")).tokens); // the whole global batch's tokens
  }, 300_000);

  it("control: one process without accumulation trains another adapter", () => {
    const out = join(tmp, "plain");
    runCliOk(base(out));
    const got = diff(adapter(out), reference);
    expect(got.max).toBeGreaterThan(1e-4 * got.scale);
  }, 300_000);

  it("ranks started with torchrun's variables; a rank that dies makes rank 0 fail naming it, and --resume finishes the same adapter", async () => {
    const out = join(tmp, "killed");
    const port = await findFreePort();
    const args = base(out, ["--save-every", "2", "--dist-timeout", "30"]);
    const r0 = startRank(0, port, args);
    const r1 = startRank(1, port, args);
    // Kill rank 1 once rank 0 has written its checkpoint of step 2.
    const t0 = Date.now();
    while (!existsSync(join(out, "checkpoint-2", "trainer_state.json")) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
    r1.child.kill("SIGKILL");
    const [code0] = await Promise.all([r0.done, r1.done]);
    expect(code0).toBe(1);
    expect(r0.stderr()).toMatch(/training failed: .*rank 1/);
    expect(Date.now() - t0).toBeLessThan(60_000);
    const ckpts = readdirSync(out).filter((n) => n.startsWith("checkpoint-")).sort();
    expect(ckpts.length).toBeGreaterThan(0);
    for (const c of ckpts) expect(existsSync(join(out, c, "trainer_state.json"))).toBe(true);
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(false); // no final adapter from a failed run
    // --resume, this time through --devices 2: the run ends as the uninterrupted one.
    const resumed = runCliOk([...base(out, ["--save-every", "2"]), "--resume", "--devices", "2"]);
    expect(resumed.stderr).toMatch(/resumed from step [2-6]/);
    const got = diff(adapter(out), reference);
    expect(got.max).toBeLessThanOrEqual(1e-6 * got.scale);
  }, 300_000);

  it("bad combinations are usage errors, said once", () => {
    const r = runCli(base(join(tmp, "bad"), ["--devices", "2", "--dist-backend", "nccl"]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--dist-backend nccl needs --device cuda/);
    const launched = runCli(base(join(tmp, "bad2"), ["--devices", "3"]), { env: { RANK: "0", WORLD_SIZE: "2", LOCAL_WORLD_SIZE: "2", MASTER_ADDR: "127.0.0.1", MASTER_PORT: "1" } });
    expect(launched.code).toBe(2);
    expect(launched.stderr).toMatch(/--devices 3 but the launcher \(torchrun\) started 2 processes on this host/);
    const gpu = runCli(base(join(tmp, "bad3"), ["--devices", "2"]).map((x) => (x === "cpu" ? "cuda:1" : x)));
    expect(gpu.code).not.toBe(0);
    expect(gpu.stderr).toMatch(/--device cuda:1/);
  });
});
