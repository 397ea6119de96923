// What the commands write, and what they must never touch: --out against the inputs, the lock on
// --out, recovery after a kill, links planted in --out, unwritable outputs, divergence, signals,
// and the options checked before anything loads. Each case runs the built dist/cli.js on
// tiny-llama for a step or two.
import { spawn } from "node:child_process";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { CLI, ROOT, TINY, runCli, runCliOk, type CliRun } from "./run-cli.js";
/** A pid above Linux's pid_max: temporaries and locks named with it belong to no running process. */
const DEAD = 99999999;

type Run = CliRun;
// (runCli's timeout turns a hang, a second run training on instead of being refused, into a failure.)
const cli = (args: readonly string[], options: { obeyPermissions?: boolean } = {}): Run => runCli(args, options);
const ok = (args: readonly string[]): Run => runCliOk(args);

/** Exit 1, nothing on stdout, and exactly one line on stderr (so: refused before anything loaded). */
function fails(args: readonly string[], pattern: RegExp | string, options: { obeyPermissions?: boolean } = {}, code = 1): string {
  const r = cli(args, options);
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^modulora ${args[0]}: `));
  if (typeof pattern === "string") expect(lines[0]).toContain(pattern);
  else expect(lines[0]).toMatch(pattern);
  return lines[0]!;
}

/** A usage error (the command line itself is wrong): as {@link fails}, with exit code 2. */
const failsUsage = (args: readonly string[], pattern: RegExp | string): string => fails(args, pattern, {}, 2);

/** Exit 1 after some progress: the last stderr line is the error. */
function failsLate(args: readonly string[]): string {
  const r = cli(args);
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe("");
  return r.stderr.trim().split("\n").pop()!;
}

let tmp: string;
let spam: string; // 8 examples, both labels
let hamOnly: string;

const sha = (path: string) => readFileSync(path).toString("base64");
const listing = (dir: string) => readdirSync(dir).sort();

beforeAll(() => {
  expect(existsSync(CLI), "build the CLI first (pnpm exec tsup)").toBe(true);
  tmp = mkdtempSync(join(tmpdir(), "modulora-outputs-"));
  chmodSync(tmp, 0o755); // the unwritable-output case runs the CLI as another user
  const lines = readFileSync(join(ROOT, "fixtures/data/spam/train.jsonl"), "utf8").split("\n").filter((l) => l.trim());
  const stride = Math.floor(lines.length / 8);
  spam = join(tmp, "spam.jsonl");
  writeFileSync(spam, lines.filter((_, i) => i % stride === 0).slice(0, 8).join("\n") + "\n");
  hamOnly = join(tmp, "ham.jsonl");
  writeFileSync(hamOnly, lines.filter((l) => (JSON.parse(l) as { label: string }).label === "ham").slice(0, 8).join("\n") + "\n");
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** finetune on tiny-llama: 2 examples per batch, 32 tokens, `steps` steps, a checkpoint every step. */
const finetune = (out: string, steps: number, ...more: string[]) => [
  "finetune", "--model", TINY, "--data", spam, "--format", "classification", "--out", out,
  "--steps", String(steps), "--batch-size", "2", "--seq-len", "32", "--save-every", "1", "--targets", "q_proj,v_proj", ...more,
];

describe("--out never is, contains or lies inside an input", () => {
  it("finetune refuses it even with --overwrite, comparing real paths; the model is untouched", () => {
    const nest = join(tmp, "nest");
    const model = join(nest, "m");
    mkdirSync(nest);
    cpSync(TINY, model, { recursive: true });
    const before = listing(model);
    const base = ["finetune", "--model", model, "--data", spam, "--format", "classification", "--steps", "1", "--overwrite"];
    fails([...base, "--out", model], `--out ${model} is the --model ${model} — choose an --out that is not one of the inputs`);
    fails([...base, "--out", nest], `--out ${nest} contains the --model ${model} (replacing --out would delete it) — choose an --out outside the inputs`);
    fails([...base, "--out", join(model, "run")], `--out ${join(model, "run")} lies inside the --model ${model}`);
    symlinkSync(model, join(tmp, "alias"));
    fails([...base, "--out", join(tmp, "alias")], `--out ${join(tmp, "alias")} is the --model ${model}`);
    fails(["finetune", "--model", TINY, "--data", spam, "--format", "classification", "--steps", "1", "--overwrite", "--out", tmp], `contains the --data ${spam}`);
    const cfgDir = join(tmp, "cfg");
    mkdirSync(cfgDir);
    writeFileSync(join(cfgDir, "run.json"), JSON.stringify({ model: TINY, data: spam, format: "classification", steps: 1 }));
    fails(["finetune", "--config", join(cfgDir, "run.json"), "--out", cfgDir, "--overwrite"], `--out ${cfgDir} contains the --config ${join(cfgDir, "run.json")}`);
    expect(listing(model)).toEqual(before);
    expect(statSync(join(model, "model.safetensors")).size).toBe(statSync(join(TINY, "model.safetensors")).size);
  });

  it("quantize and export refuse it too (model, calibration file, adapter)", () => {
    const nest = join(tmp, "qnest");
    const model = join(nest, "m");
    mkdirSync(nest);
    cpSync(TINY, model, { recursive: true });
    fails(["quantize", "--model", model, "--quantizer", "rtn", "--bits", "4", "--out", nest, "--overwrite"], `--out ${nest} contains the --model ${model}`);
    const calibDir = join(tmp, "calib");
    mkdirSync(calibDir);
    cpSync(join(ROOT, "fixtures/data/lm/calib-small.txt"), join(calibDir, "c.txt"));
    fails(["quantize", "--model", TINY, "--quantizer", "optq", "--bits", "4", "--calib", join(calibDir, "c.txt"), "--out", calibDir, "--overwrite"], `contains the --calib ${join(calibDir, "c.txt")}`);
    const adapterParent = join(tmp, "adapter-parent");
    const adapter = join(adapterParent, "a");
    ok(finetune(adapter, 1));
    fails(["export", "--model", TINY, "--adapter", adapter, "--out", adapterParent, "--overwrite"], `--out ${adapterParent} contains the --adapter ${adapter}`);
    fails(["export", "--model", model, "--adapter", adapter, "--out", join(model, "merged")], `lies inside the --model ${model}`);
    expect(listing(model)).toEqual(listing(TINY));
    expect(existsSync(join(adapter, "adapter_model.safetensors"))).toBe(true);
  });
});

describe("the lock on --out", () => {
  it("refuses a second fine-tune while the first runs; a stale lock is named and taken over", async () => {
    const out = join(tmp, "locked");
    const first = spawn(process.execPath, [CLI, ...finetune(out, 100000)], { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"] });
    for (let i = 0; i < 600 && !existsSync(join(out, "checkpoint-1")); i++) await new Promise((r) => setTimeout(r, 50));
    first.kill("SIGSTOP"); // alive and holding the lock, but not running
    try {
      fails(finetune(out, 100000, "--resume"), new RegExp(`^modulora finetune: --out ${out} is in use by process ${first.pid} \\(modulora finetune, since \\S+\\) — wait for that run to end, or choose another --out; if no such process runs, delete ${join(out, ".modulora.lock")}$`));
      // A quantize (or export) with --overwrite would swap the directory away under it: refused too.
      fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", out, "--overwrite"], `--out ${out} is in use by process ${first.pid} (modulora finetune`);
    } finally {
      first.kill("SIGKILL");
    }
    await new Promise((r) => first.on("exit", r));
    const steps = Math.max(...readdirSync(out).filter((n) => /^checkpoint-\d+$/.test(n)).map((n) => Number(n.slice(11)))) + 1;
    const r = ok(finetune(out, steps, "--resume"));
    expect(r.stderr).toContain(`warning: took over the stale lock ${join(out, ".modulora.lock")} of process ${first.pid}, which no longer runs`);
    expect(r.stdout).toContain(`trained ${steps} steps`);
    expect(existsSync(join(out, ".modulora.lock"))).toBe(false);
    expect(readdirSync(out).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("quantize cleans the temporaries of a killed run beside --out, and puts back an --out moved aside", () => {
    const parent = join(tmp, "qparent");
    mkdirSync(join(parent, `.q.tmp-${DEAD}-ab12`), { recursive: true });
    writeFileSync(join(parent, `.q.tmp-${DEAD}-ab12`, "model.safetensors"), "partial");
    const r = ok(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(parent, "q")]);
    expect(r.stderr).toContain(`note: removed ${join(parent, `.q.tmp-${DEAD}-ab12`)} (left by an interrupted run)`);
    expect(listing(parent)).toEqual(["q"]);
    // Killed between "old --out moved aside" and "new one moved in": the old one comes back (and
    // then exists, so without --overwrite the command stops there).
    renameSync(join(parent, "q"), join(parent, `.q.tmp-${DEAD}-cd34.old`));
    mkdirSync(join(parent, `.q.tmp-${DEAD}-cd34`));
    const r2 = cli(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(parent, "q")]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain(`note: restored ${join(parent, "q")} (a replacement of it was interrupted)`);
    expect(r2.stderr.trim().split("\n").pop()).toBe(`modulora quantize: output directory ${join(parent, "q")} already exists — pass --overwrite to replace it, or choose another --out`);
    expect(listing(parent)).toEqual(["q"]);
    expect(listing(join(parent, "q"))).toContain("model.safetensors");
  });
});

describe("divergence, resume and signals", () => {
  it("a diverged fine-tune (--lr 1e30) fails and leaves no adapter", () => {
    const out = join(tmp, "diverged");
    const last = failsLate(finetune(out, 3, "--lr", "1e30", "--save-every", "100"));
    expect(last).toMatch(/^modulora finetune: training failed: the run diverged: its last 2 steps \(up to step 3\) had a non-finite loss or gradient, so the parameters are not a result; lower the learning rate or check the data — lower --lr, or add --max-grad-norm 1$/);
    expect(existsSync(out)).toBe(false);
  });

  it("--resume after a kill during the final writes completes them (adapter, best/), without training again", () => {
    const out = join(tmp, "final-writes");
    const args = [...finetune(out, 2), "--valid", spam];
    ok(args);
    const metrics = readFileSync(join(out, "metrics.jsonl"), "utf8");
    // As a kill during the final writes leaves it: no adapter files, best/ moved aside by its replacement.
    for (const f of ["adapter_model.safetensors", "adapter_config.json", "modulora.json", "run.json", "loss.svg", "loss.png"]) rmSync(join(out, f));
    renameSync(join(out, "best"), join(out, `best.old-${DEAD}-ef56`));
    const r = ok([...args, "--resume"]);
    expect(r.stdout).toContain("training had finished at step 2 (its final checkpoint); completed the final writes");
    expect(r.stderr).toContain(`warning: restored ${join(out, "best")} (a replacement of it was interrupted)`);
    expect(sha(join(out, "adapter_model.safetensors"))).toBe(sha(join(out, "checkpoint-2", "adapter_model.safetensors")));
    expect(listing(out)).toEqual(["adapter_config.json", "adapter_model.safetensors", "best", "checkpoint-1", "checkpoint-2", "loss.png", "loss.svg", "metrics.jsonl", "modulora.json", "run.json"]);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toBe(metrics);
    // Asking for fewer steps than the checkpoint has is refused with the number to use.
    expect(failsLate([...finetune(out, 1), "--valid", spam, "--resume"])).toBe(`modulora finetune: --resume: ${join(out, "checkpoint-2")} is at step 2, past this run's 1 steps — raise --steps (or --epochs) to at least 2 steps, or start over with --overwrite`);
  });

  it("a corrupt newest checkpoint: --resume falls back to the older one and says so", () => {
    const out = join(tmp, "corrupt");
    ok(finetune(out, 2));
    truncateSync(join(out, "checkpoint-2", "parameters.safetensors"), 16);
    const r = ok(finetune(out, 3, "--resume"));
    expect(r.stderr).toMatch(new RegExp(`warning: checkpoint ${join(out, "checkpoint-2")} cannot be read \\(.+\\); moved it to ${join(out, "checkpoint-2")}\\.corrupt and resuming from the older ${join(out, "checkpoint-1")}`));
    expect(r.stderr).toContain("resumed from step 1");
  });

  it("a kill during the first checkpoint: --resume starts over instead of asking for --overwrite", () => {
    const out = join(tmp, "first-checkpoint");
    mkdirSync(join(out, `checkpoint-1.tmp-${DEAD}-77`), { recursive: true });
    writeFileSync(join(out, "metrics.jsonl"), '{"step":1,"loss":8}\n');
    writeFileSync(join(out, ".modulora.lock"), JSON.stringify({ pid: DEAD, hostname: "", started: "", command: "modulora finetune" }));
    const r = ok(finetune(out, 1, "--resume"));
    expect(r.stderr).toContain(`has no complete checkpoint (the run stopped before its first one): starting from step 0`);
    expect(r.stderr).toContain(`took over the stale lock ${join(out, ".modulora.lock")} of process ${DEAD}`);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8").trim().split("\n")).toHaveLength(1);
  });

  it("SIGTERM saves a checkpoint like Ctrl-C (exit 143)", async () => {
    const out = join(tmp, "sigterm");
    const proc = spawn(process.execPath, [CLI, ...finetune(out, 100000)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    for (let i = 0; i < 600 && !existsSync(join(out, "checkpoint-1")); i++) await new Promise((r) => setTimeout(r, 50));
    proc.kill("SIGTERM");
    const code = await new Promise<number | null>((r) => proc.on("exit", (c) => r(c)));
    expect(code, stderr).toBe(143);
    const m = /^interrupted at step (\d+); checkpoint (\S+) holds the adapter\n$/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    expect(m![2]).toBe(join(out, `checkpoint-${m![1]}`));
    expect(stderr).toContain("modulora finetune: interrupted (SIGTERM) — run the same command with --resume to continue");
    expect(existsSync(join(out, ".modulora.lock"))).toBe(false);
  });
});

describe("links planted in --out are never written through", () => {
  it("run.json and loss.svg links are replaced; a metrics.jsonl link is refused before loading", () => {
    const out = join(tmp, "links");
    ok(finetune(out, 1));
    const victim = join(tmp, "victim.txt");
    writeFileSync(victim, "precious\n");
    for (const f of ["run.json", "loss.svg"]) {
      rmSync(join(out, f));
      symlinkSync(victim, join(out, f));
    }
    ok(finetune(out, 2, "--resume"));
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    for (const f of ["run.json", "loss.svg"]) expect(lstatSync(join(out, f)).isSymbolicLink(), f).toBe(false);
    rmSync(join(out, "metrics.jsonl"));
    symlinkSync(victim, join(out, "metrics.jsonl"));
    fails(finetune(out, 3, "--resume"), `${join(out, "metrics.jsonl")} is a symbolic link — remove it`);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
  });
});

describe("outputs checked before anything loads", () => {
  it("an unwritable existing --out, and an --out below a file", () => {
    // chmod does not stop root: as root, the CLI runs without CAP_DAC_OVERRIDE, so it does.
    const options = { obeyPermissions: true };
    const out = join(tmp, "readonly");
    mkdirSync(out);
    chmodSync(out, 0o555);
    try {
      fails(finetune(out, 1), `modulora finetune: cannot write into --out ${out}: permission denied — choose an --out you can write to`, options);
      fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", join(out, "q")], `cannot write into the parent directory of --out ${join(out, "q")}: permission denied`, options);
    } finally {
      chmodSync(out, 0o755);
    }
    expect(listing(out)).toEqual([]);
    const file = join(tmp, "plain-file");
    writeFileSync(file, "x");
    fails(finetune(join(file, "sub"), 1), `cannot write --out ${join(file, "sub")}: a part of the path is a file, not a directory`);
    fails(finetune(file, 1, "--overwrite"), `--out ${file} is a file, not a directory — pass --out a directory path (new or existing), not a file`);
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--out", file, "--overwrite"], `--out ${file} is a file, not a directory`);
    expect(readFileSync(file, "utf8")).toBe("x");
  });

  it("numeric options: --dropout, --warmup, --top-p, --bits and --group-size against the quantizer and the model", () => {
    const out = join(tmp, "never");
    failsUsage(finetune(out, 1, "--dropout", "2"), `--dropout must be less than 1, got "2"`);
    failsUsage(finetune(out, 1, "--dropout", "1"), `--dropout must be less than 1, got "1"`);
    failsUsage(finetune(out, 2, "--warmup", "10"), "--warmup 10 is longer than the run (--steps 2): the learning rate would never reach --lr — use a --warmup of at most --steps");
    fails(finetune(out, 1, "--quantizer", "rtn", "--bits", "5"), "quantizer 'rtn' does not support --bits 5 — use one of 2, 3, 4, 8");
    failsUsage(["generate", "--model", TINY, "--prompt", "hi", "--top-p", "1.5"], `--top-p must be at most 1, got "1.5"`);
    const groups = `--group-size 100 does not divide the input sizes of ${TINY}'s linear layers (256, 768) — use a divisor of 256 (e.g. 128) or "row"`;
    fails(["quantize", "--model", TINY, "--quantizer", "rtn", "--bits", "4", "--group-size", "100", "--out", out], groups);
    fails(finetune(out, 1, "--quantizer", "rtn", "--bits", "4", "--group-size", "100"), groups);
    expect(existsSync(out)).toBe(false);
    // With --epochs the length is known once the data is read: 8 examples in batches of 2 are 4 steps.
    const epochs = finetune(out, 1, "--warmup", "10").filter((_, i, all) => all[i] !== "--steps" && all[i - 1] !== "--steps");
    expect(failsLate(epochs)).toBe("modulora finetune: invalid training settings: warmup of 10 steps is longer than the run (4 steps), so the learning rate would never reach 0.0002 — check --steps, --warmup, --lr and --grad-accum (modulora finetune --help)");
    expect(existsSync(out)).toBe(false);
  });

  it("a classification set with a single label trains with a warning", () => {
    const r = ok(["finetune", "--model", TINY, "--data", hamOnly, "--format", "classification", "--out", join(tmp, "ham-run"), "--steps", "1", "--batch-size", "2", "--seq-len", "32"]);
    expect(r.stderr).toContain(`warning: ${hamOnly} has a single label ("ham"): the adapter can only learn to predict it; add examples of the other labels`);
  });
});

describe("plugins", () => {
  it("a quantizer named only inside modulora.json is never loaded as a module: --plugin is asked for", () => {
    const adapter = join(tmp, "fly-adapter");
    ok(finetune(adapter, 1));
    // A module that would leave a mark if anything imported it.
    const canary = join(tmp, "canary.mjs");
    writeFileSync(canary, `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(join(tmp, "canary-ran"))}, "imported");\nexport default {};\n`);
    const metaPath = join(adapter, "modulora.json");
    const meta = JSON.parse(readFileSync(metaPath, "utf8")) as Record<string, unknown>;
    writeFileSync(metaPath, JSON.stringify({ ...meta, quantized_on_the_fly: { quantizer: canary, bits: 4, group_size: 128 } }));
    const last = failsLate(["eval", "--model", TINY, "--adapter", adapter, "--data", spam, "--metric", "accuracy", "--seq-len", "32"]);
    expect(last).toBe(`modulora eval: ${metaPath} names quantizer '${canary}', which is not registered (registered: hqq, nf4, optq, rtn) — modulora never loads code named in a file: pass --plugin MODULE with the module that provides '${canary}'`);
    expect(existsSync(join(tmp, "canary-ran"))).toBe(false);
  });
});
