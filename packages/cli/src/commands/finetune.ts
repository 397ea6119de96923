// modulora finetune: LoRA on a full-precision or quantized model with the Trainer; the adapter,
// checkpoints, metrics.jsonl and the loss curve go to --out.
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { isTrainerEntry, listCheckpoints, LOCK_FILE, Trainer, writeFileAtomic, type EvalResult, type QuantizerPlugin, type TrainerEvent } from "@modulora/core";
import { memory, type Device } from "@modulora/tensor";
import { BatchSource, loadDataset, padIdOf, type Batch, type Dataset, type DatasetFormat } from "@modulora/data";
import { attachLoRA, batchLoss, quantizeModel, saveAdapter, type Adapter, type AdapterExtra, type LinearName, type ModelDType } from "@modulora/llama";
import { checkNotAFile, checkOutsideInputs, lockOutDirInPlace, nonEmptyDir, pluginAndConfigInputs } from "../atomic.js";
import { CliError, oneLine, step, stepSync, usageError } from "../errors.js";
import { accuracyOf, classificationItems, rougeOf, subset, validationLoss } from "@modulora/bench";
import type { CommandContext } from "../main.js";
import type { ParsedArgs } from "../args.js";
import { checkDataFile, DATA_HINT } from "../data-files.js";
import { checkContextLength, checkDevice, formatTransfers, loadModel, preflightModel, TransferCounter, type LoadedModel, type ModelPreflight } from "../model.js";
import { parseMetrics, writeLossPlots } from "../plot.js";
import { quantizerNamed, setupQuantizers } from "../plugins.js";
import { resolveGroupSize } from "./quantize.js";
import { describePluginOptions, pluginOptionValues } from "../plugin-options.js";
import { formatSeconds, Progress, type ProgressBar } from "../progress.js";
import { joinGroup, rankDevice, runRole, spawnRanks, type RankGroup, type RunRole } from "../distributed.js";
import { Writable } from "node:stream";

interface FinetuneArgs {
  model: string;
  data: string;
  format: DatasetFormat;
  out: string;
  valid?: string;
  steps?: number;
  epochs: number;
  batchSize: number;
  gradAccum: number;
  seqLen: number;
  lr: number;
  schedule: "constant" | "linear" | "cosine";
  warmup: number;
  maxGradNorm?: number;
  weightDecay: number;
  rank: number;
  alpha: number;
  dropout: number;
  targets: LinearName[];
  checkpointing: boolean;
  evalEvery?: number;
  evalSamples?: number;
  saveEvery?: number;
  resume: boolean;
  overwrite: boolean;
  seed: number;
  device: string;
  dtype: ModelDType;
  quantizer?: string;
  bits?: number;
  groupSize?: number | "row";
  plugin?: string[];
  json: boolean;
  devices?: number;
  distBackend: "auto" | "nccl" | "tcp";
  distTimeout: number;
}

/** ROUGE at the end of a summarization run is computed on at most this many validation examples (generation is slow). */
const FINAL_ROUGE_SAMPLES = 16;

function loadData(path: string, flag: string, options: Parameters<typeof loadDataset>[1]): Dataset {
  return stepSync(`bad data in ${flag}`, DATA_HINT, () => loadDataset(path, options));
}

/** Writes the adapter's files (PEFT layout + modulora.json) into `dir`, each file renamed into place. */
function writeAdapterInto(adapter: Adapter, dir: string, options: Parameters<typeof saveAdapter>[2]): string[] {
  const tmp = join(dir, `.adapter.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    const { files } = saveAdapter(adapter, tmp, options);
    for (const f of files) renameSync(join(tmp, f), join(dir, f));
    return files;
  } finally {
    try {
      rmSync(tmp, { recursive: true, force: true });
    } catch {
      // a leftover temporary directory is removed by the next run; the write's own error matters
    }
  }
}

function checkFlags(a: FinetuneArgs, given: Set<string>): void {
  if (a.steps !== undefined && given.has("epochs")) throw usageError("--steps and --epochs exclude each other", "give one of them");
  if (a.quantizer === undefined && given.has("bits")) throw usageError("--bits is for on-the-fly quantization and needs --quantizer", "add --quantizer NAME, or drop --bits");
  if (a.quantizer !== undefined && a.bits === undefined) throw usageError("--quantizer needs --bits", "add --bits N");
  if (a.evalEvery !== undefined && !a.valid) throw usageError("--eval-every needs validation data", "add --valid FILE");
  if (a.resume && a.overwrite) throw usageError("--resume and --overwrite exclude each other", "--resume continues the run in --out; --overwrite starts it over");
  if (a.targets.length === 0) throw usageError("--targets is empty", "list linears, e.g. --targets q_proj,v_proj");
  // A warmup longer than the run never reaches --lr (with --epochs the Trainer checks it once the data is read).
  if (a.steps !== undefined && a.warmup > a.steps) throw usageError(`--warmup ${a.warmup} is longer than the run (--steps ${a.steps}): the learning rate would never reach --lr`, "use a --warmup of at most --steps");
  if (a.distBackend === "nccl" && !a.device.startsWith("cuda")) throw usageError("--dist-backend nccl needs --device cuda", "use --dist-backend tcp (or auto) for CPU processes");
}

/** A classification set with one label teaches nothing but that label: said before training. */
function warnSingleLabel(file: ReturnType<typeof checkDataFile>, path: string, progress: Progress): void {
  if (file.kind === "text") return;
  const labels = new Set(file.records.map((r) => JSON.stringify(r.value["label"])));
  if (labels.size === 1) progress.log(`warning: ${path} has a single label (${[...labels][0]}): the adapter can only learn to predict it; add examples of the other labels`);
}

/** On-the-fly quantization, checked: the plugin, its group size and its own options. */
interface OnTheFly {
  plugin: QuantizerPlugin;
  groupSize: number | "row";
  options: Record<string, unknown>;
}

/** The checks of --quantizer/--bits (and the plugin's own flags) against the plugin and the model, before anything loads. */
function checkOnTheFly(a: FinetuneArgs, checked: ModelPreflight, args: ParsedArgs): OnTheFly {
  const plugin = quantizerNamed(a.quantizer!);
  if (checked.quantization) throw new CliError(`--quantizer: ${a.model} is already quantized (${checked.quantization.method})`, "drop --quantizer/--bits, or pass the full-precision model");
  if (!plugin.supportedBits.includes(a.bits!)) throw new CliError(`quantizer '${plugin.name}' does not support --bits ${a.bits}`, `use one of ${plugin.supportedBits.join(", ")}`);
  if (plugin.calibration !== "none") throw new CliError(`quantizer '${plugin.name}' needs calibration data`, "quantize first with modulora quantize --calib FILE and pass that directory as --model");
  const options = pluginOptionValues(plugin, args, "finetune");
  return { plugin, groupSize: resolveGroupSize(plugin, a.groupSize, checked.config, a.model), options };
}

/** Quantizes a full-precision base in place with --quantizer/--bits/--group-size (checked by checkOnTheFly). */
async function quantizeOnTheFly(loaded: LoadedModel, a: FinetuneArgs, q: OnTheFly, progress: Progress): Promise<void> {
  const { plugin, groupSize } = q;
  const bar = progress.bar("quantize", loaded.model.layers.length * 7, { unit: "layers" });
  const r = await step(`quantizing with '${plugin.name}' failed`, `check --bits and --group-size (modulora finetune --quantizer ${plugin.name} --help)`, () =>
    quantizeModel(loaded.model, plugin, { ...q.options, bits: a.bits!, groupSize, measureError: false, onProgress: (e) => bar.update(e.done) }),
  );
  bar.stop();
  const settings = [`${a.bits}-bit`, `group ${groupSize}`, ...describePluginOptions(plugin, q.options)].join(", ");
  progress.log(`quantized on the fly: ${plugin.name} ${settings}, ${r.bitsPerWeight.toFixed(4)} bits/weight (${r.seconds.toFixed(1)} s)`);
  loaded.quantization = { method: "on-the-fly", bits: a.bits!, groupSize, symmetric: null, actOrder: null, quantizer: plugin.name };
}

/** The settings a run records in its checkpoints (trainer state `extra.cli`). */
function runSettings(a: FinetuneArgs): Record<string, unknown> {
  return { model: a.model, data: a.data, format: a.format, seqLen: a.seqLen, batchSize: a.batchSize, gradAccum: a.gradAccum, lr: a.lr, rank: a.rank, alpha: a.alpha, targets: a.targets.join(",") };
}

/** On --resume, says which settings differ from the checkpoint's (the batch order then differs from an uninterrupted run). */
function warnChangedSettings(out: string, a: FinetuneArgs, progress: Progress): void {
  const ck = listCheckpoints(out)[0];
  if (!ck) return;
  let saved: Record<string, unknown> | undefined;
  try {
    saved = (JSON.parse(readFileSync(join(ck.dir, "trainer_state.json"), "utf8")) as { extra?: { cli?: Record<string, unknown> } }).extra?.cli;
  } catch {
    return; // the Trainer reports an unreadable checkpoint itself
  }
  if (!saved) return;
  const now = runSettings(a);
  const diffs = Object.keys(now).filter((k) => k in saved! && JSON.stringify(saved![k]) !== JSON.stringify(now[k]));
  if (diffs.length) progress.log(`warning: resuming ${ck.dir} with settings that differ from its run: ${diffs.map((k) => `${k} ${JSON.stringify(saved![k])} → ${JSON.stringify(now[k])}`).join(", ")}`);
}

const fmt = (v: number) => (v === 0 ? "0" : Math.abs(v) >= 0.01 && Math.abs(v) < 1000 ? v.toFixed(4) : v.toExponential(3));
export const formatMetrics = (m: EvalResult) => Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");

/** A stream that drops what it is given: the progress of data-parallel ranks other than 0. */
const discard = () => new Writable({ write: (_c, _e, cb) => cb() }) as unknown as NodeJS.WriteStream;

export async function runFinetune(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as FinetuneArgs;
  checkFlags(a, ctx.args.given);
  const role = await runRole(a);
  // Data parallel: rank 0 does what one process does; the other ranks train their shares and write nothing.
  const writer = role.kind !== "rank" || role.rank === 0;
  const progress = new Progress(writer ? ctx.stderr : discard());
  const device = checkDevice(rankDevice(a.device, role, a.distBackend));
  const out = resolve(a.out);
  if (writer) checkOutDir(ctx, a, out, progress);
  // Everything cheap is checked before the model loads: a bad file fails at once, in one line.
  const trainFile = checkDataFile(a.data, a.format, "--data");
  if (a.format === "classification" && role.kind !== "spawn") warnSingleLabel(trainFile, a.data, progress);
  if (a.valid) checkDataFile(a.valid, a.format, "--valid");
  await setupQuantizers(a.plugin);
  const checked = preflightModel(a.model);
  // Training sequences are at most --seq-len long; longer than the context they would be computed wrong.
  checkContextLength(checked.config, a.seqLen, `--seq-len ${a.seqLen}`, `lower --seq-len to ${checked.config.maxPositionEmbeddings} or less`);
  const onTheFly = a.quantizer ? checkOnTheFly(a, checked, ctx.args) : null;
  if (role.kind === "spawn") {
    // --devices N on one host: everything cheap was checked once, here; the ranks do the rest.
    if (a.device.startsWith("cuda")) checkGpuCount(a.device, role.ranks, a.distBackend);
    ctx.exitCode = await spawnRanks(role.ranks, ctx.argv, ctx.stdout, ctx.stderr);
    return;
  }
  // A data-parallel rank other than 0 touches nothing on disk: no lock, no output.
  if (!writer) return trainAndWrite(ctx, a, out, checked, onTheFly, progress, device, role);

  // The lock proves --out writable before anything heavy runs, and keeps a second run out of it.
  const { lock, created } = lockOutDirInPlace(out, "modulora finetune");
  if (lock.tookOver) progress.log(`warning: took over the stale lock ${lock.path} of process ${lock.tookOver.pid}, which no longer runs`);
  let succeeded = false;
  try {
    await trainAndWrite(ctx, a, out, checked, onTheFly, progress, device, role);
    succeeded = true;
  } finally {
    lock.release();
    // A directory this run created and left with nothing in it goes again.
    if (!succeeded && created) {
      try {
        if (existsSync(out) && readdirSync(out).every((n) => n === LOCK_FILE)) rmSync(out, { recursive: true, force: true });
      } catch {
        // never let cleanup hide the error that got us here
      }
    }
  }
}

/** The checks of --out against --resume/--overwrite and the inputs (rank 0 or a single process only). */
function checkOutDir(ctx: CommandContext, a: FinetuneArgs, out: string, progress: Progress): void {
  checkNotAFile(out);
  checkOutsideInputs(out, [
    { flag: "--model", path: a.model }, { flag: "--data", path: a.data }, { flag: "--valid", path: a.valid },
    ...pluginAndConfigInputs(ctx.args.values),
  ]);
  const existed = nonEmptyDir(out);
  if (existed && !a.resume && !a.overwrite) {
    throw new CliError(`output directory ${a.out} already exists`, "pass --resume to continue its training, --overwrite to replace it, or choose another --out");
  }
  if (a.resume && existed && listCheckpoints(out).length === 0) {
    // A run killed before its first checkpoint leaves only its own files: --resume starts it over.
    const foreign = readdirSync(out).filter((n) => !isTrainerEntry(n));
    if (foreign.length) throw new CliError(`--resume: ${a.out} holds no checkpoint to resume from, and holds ${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""}`, "run without --resume (with --overwrite to replace the directory)");
  }
  // Written by appending: a link there would be followed, so it is refused (the other files are renamed into place).
  const metricsPath = join(out, "metrics.jsonl");
  if (existsSync(out) && lexistsLink(metricsPath)) throw new CliError(`${metricsPath} is a symbolic link`, "remove it (modulora writes its own metrics.jsonl and never writes through a link)");
  if (a.resume && existed) warnChangedSettings(out, a, progress);
}

/** --devices N on CUDA: plain `cuda` (rank r on cuda:r) and N GPUs on this host, or `cuda:K` shared over TCP. */
function checkGpuCount(device: string, n: number, backend: FinetuneArgs["distBackend"]): void {
  if (device !== "cuda") {
    if (backend === "tcp") return; // the ranks share --device cuda:K (checked already)
    throw usageError(`--devices ${n} with --device ${device}: each rank picks its own GPU`, "use --device cuda: rank r trains on cuda:r (or --dist-backend tcp to share that GPU)");
  }
  const exists = (d: string) => {
    try {
      checkDevice(d);
      return true;
    } catch {
      return false;
    }
  };
  let count = 1; // --device cuda was checked: cuda:0 is there
  while (count < n && exists(`cuda:${count}`)) count++;
  if (count < n) throw new CliError(`--devices ${n}, but this host has ${count} CUDA device${count === 1 ? "" : "s"}`, `use --devices ${count} or fewer`);
}

function lexistsLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

async function trainAndWrite(ctx: CommandContext, a: FinetuneArgs, out: string, checked: ModelPreflight, onTheFly: OnTheFly | null, progress: Progress, device: Device, role: RunRole): Promise<void> {
  // The group is joined first: a rank that cannot reach the others fails before the model loads.
  const group: RankGroup | null = role.kind === "rank" ? await joinGroup(role, a, device) : null;
  const writer = !group || group.dataParallel.rank === 0;
  try {
    await trainInGroup(ctx, a, out, checked, onTheFly, progress, device, group, writer);
  } finally {
    await group?.close();
  }
}

async function trainInGroup(ctx: CommandContext, a: FinetuneArgs, out: string, checked: ModelPreflight, onTheFly: OnTheFly | null, progress: Progress, device: Device, group: RankGroup | null, writer: boolean): Promise<void> {
  const loaded = await loadModel(a.model, progress, "--model", checked, device, a.dtype);
  // On `sim`: the transfers of each optimizer step (the batch in, the loss and norm out).
  const transfers = new TransferCounter(device);
  const { model, tokenizer } = loaded;
  try {
    if (onTheFly) await quantizeOnTheFly(loaded, a, onTheFly, progress);
    const t0 = performance.now();
    const train = loadData(a.data, "--data", { format: a.format, tokenizer, seqLen: a.seqLen });
    const s = train.stats;
    progress.log(
      `training data: ${s.examples} examples, ${s.tokens} tokens (${s.labelTokens} trained)` +
        `${s.truncatedPrompts ? `, ${s.truncatedPrompts} prompts cut to --seq-len ${a.seqLen}` : ""}${train.spec.labels ? `, labels ${train.spec.labels.join(", ")}` : ""} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    const valid = a.valid ? loadData(a.valid, "--valid", { format: a.format, tokenizer, seqLen: a.seqLen, templates: train.spec.templates, ...(train.spec.labels ? { labels: train.spec.labels } : {}) }) : null;
    const validExamples = valid ? subset(valid.examples, a.evalSamples, a.seed) : [];
    if (valid) progress.log(`validation data: ${valid.examples.length} examples${validExamples.length < valid.examples.length ? `, evaluating a seeded subset of ${validExamples.length}` : ""}`);

    const adapter = attachLoRA(model, { r: a.rank, alpha: a.alpha, dropout: a.dropout, targets: a.targets, seed: a.seed });
    const parameters = new Map([...adapter.layers].flatMap(([name, l]) => [[`${name}.lora_A`, l.loraA], [`${name}.lora_B`, l.loraB]] as const));
    const source = new BatchSource(train.examples, { batchSize: a.batchSize, padId: padIdOf(tokenizer), seed: a.seed });
    const extra: AdapterExtra = {
      ...(loaded.quantization?.quantizer ? { quantizer: loaded.quantization.quantizer } : {}),
      taskFormat: a.format,
      ...(train.spec.templates ? { promptTemplate: train.spec.templates.prompt, templates: train.spec.templates } : {}),
      ...(train.spec.labels ? { labels: train.spec.labels } : {}),
      seq_len: a.seqLen,
      ...(onTheFly ? { quantized_on_the_fly: { quantizer: onTheFly.plugin.name, bits: a.bits, group_size: onTheFly.groupSize, ...(Object.keys(onTheFly.options).length ? { options: onTheFly.options } : {}) } } : {}),
    };
    const saveOptions = { baseModelNameOrPath: resolve(a.model), extra };

    // Evaluation: accuracy for classification, loss/perplexity otherwise (+ ROUGE at the end of summarization runs).
    const items = valid && a.format === "classification" ? classificationItems(validExamples, valid.spec, tokenizer) : [];
    let lastStep = 0;
    let totalSteps = 0;
    let bar: ProgressBar | null = null;
    const evaluate = valid
      ? (): EvalResult => {
          const m: EvalResult = {};
          if (a.format === "classification") m["accuracy"] = accuracyOf(model, items).accuracy;
          else {
            const r = validationLoss(model, validExamples, tokenizer, a.batchSize);
            m["loss"] = r.loss;
            m["ppl"] = r.ppl;
            if (a.format === "summarization" && lastStep === totalSteps) {
              const rs = rougeOf(model, tokenizer, { examples: validExamples.slice(0, FINAL_ROUGE_SAMPLES), spec: valid.spec }, { maxNewTokens: 64 });
              Object.assign(m, { rouge1: rs.rouge1, rouge2: rs.rouge2, rougeL: rs.rougeL });
            }
          }
          return m;
        }
      : undefined;

    let lastEval: EvalResult | null = null;
    const onEvent = (e: TrainerEvent) => {
      if (e.type === "start") {
        transfers.start();
        totalSteps = e.totalSteps;
        progress.log(
          `training ${e.totalSteps} steps (batch ${a.batchSize} × accumulation ${a.gradAccum}${group ? ` × ${group.dataParallel.worldSize} ranks (${group.backend})` : ""}, seq-len ≤ ${a.seqLen}, lr ${a.lr} ${a.schedule}${a.warmup ? ` after ${a.warmup} warmup` : ""}, LoRA r ${a.rank} alpha ${a.alpha} on ${a.targets.join(",")})` +
            (e.resumedFrom !== null ? `, resumed from step ${e.resumedFrom}` : ""),
        );
        bar = progress.bar("train", e.totalSteps, { fields: ["loss", "lr", "tok/s"], unit: "steps" });
        if (e.resumedFrom) bar.update(e.resumedFrom);
      } else if (e.type === "step") {
        transfers.step();
        lastStep = e.step;
        bar?.update(e.step, { loss: e.loss.toFixed(4), lr: e.lr.toExponential(2), "tok/s": Math.round(e.tokensPerSecond) });
      } else if (e.type === "eval") {
        lastEval = e.metrics;
        bar?.log(`eval at step ${e.step}: ${formatMetrics(e.metrics)}${e.best ? " (best)" : ""}`);
      } else if (e.type === "skip") {
        transfers.step();
        bar?.log(`step ${e.step} skipped: ${e.reason} (${e.consecutive} in a row)`);
      } else if (e.type === "warning") {
        if (bar) bar.log(`warning: ${e.message}`);
        else progress.log(`warning: ${e.message}`);
      } else if (e.type === "stop") {
        bar?.stop();
      }
    };

    const trainer = stepSync("invalid training settings", "check --steps, --warmup, --lr and --grad-accum (modulora finetune --help)", () => new Trainer<Batch>({
      parameters,
      dtype: a.dtype,
      loss: (batch, c) => batchLoss(model, batch, { step: c.step, training: true, checkpointing: a.checkpointing }),
      data: source,
      ...(a.steps !== undefined ? { steps: a.steps } : { epochs: a.epochs }),
      lr: a.lr,
      weightDecay: a.weightDecay,
      schedule: a.schedule,
      warmupSteps: a.warmup,
      gradAccum: a.gradAccum,
      ...(a.maxGradNorm !== undefined ? { maxGradNorm: a.maxGradNorm } : {}),
      ...(evaluate ? { evaluate, selectMetric: a.format === "classification" ? { name: "accuracy", mode: "max" as const } : { name: "loss", mode: "min" as const } } : {}),
      ...(a.evalEvery !== undefined ? { evalEvery: a.evalEvery } : {}),
      outDir: out,
      ...(a.saveEvery !== undefined ? { saveEvery: a.saveEvery } : {}),
      resume: a.resume,
      overwrite: a.overwrite,
      writeExtra: (dir) => void writeAdapterInto(adapter, dir, saveOptions),
      seed: a.seed,
      onEvent,
      stateExtra: { cli: runSettings(a) },
      lockOwner: "modulora finetune",
      ...(group ? { dataParallel: group.dataParallel } : {}),
    }));
    const newest = a.resume && writer ? listCheckpoints(out)[0] : undefined;
    if (newest && newest.step > trainer.totalSteps()) {
      trainer.dispose();
      throw new CliError(`--resume: ${newest.dir} is at step ${newest.step}, past this run's ${trainer.totalSteps()} steps`, `raise --steps (or --epochs) to at least ${newest.step} steps, or start over with --overwrite`);
    }
    let result;
    try {
      result = await trainer.fit();
    } catch (err) {
      (bar as ProgressBar | null)?.stop();
      const msg = oneLine(err);
      if (!writer) throw new CliError(`training failed on rank ${group!.dataParallel.rank}: ${msg}`, "rank 0's message says what to do", { cause: err });
      let ckpts: ReturnType<typeof listCheckpoints> = [];
      let cleanup = "";
      try {
        ckpts = existsSync(out) ? listCheckpoints(out) : [];
        // Nothing to resume from: leave no half-written output behind.
        if (ckpts.length === 0 && existsSync(out) && !a.resume) rmSync(out, { recursive: true, force: true });
      } catch (cleanupErr) {
        cleanup = ` (and ${a.out} could not be removed: ${oneLine(cleanupErr)})`;
      }
      const hint = /non-finite|diverged|NaN or Inf/.test(msg)
        ? "lower --lr, or add --max-grad-norm 1"
        : /can be read/.test(msg)
          ? "start over with --overwrite"
          : /ENOSPC/.test(msg)
            ? `free space on the disk of --out${ckpts.length ? `, then --resume continues from ${ckpts[0]!.dir}` : ""}`
            : ckpts.length && !/symbolic link|cannot (append|open|write)/.test(msg) ? `--resume continues from ${ckpts[0]!.dir}` : "run with --verbose for the stack trace";
      throw new CliError(`training failed: ${msg}${cleanup}`, hint, { cause: err });
    } finally {
      trainer.dispose();
    }

    if (!writer) {
      // Rank 0 writes the adapter, the plots and run.json, and reports; this rank's exit code says how it ended.
      if (result.stoppedBy === "interrupted") ctx.exitCode = result.signal === "SIGTERM" ? 143 : 130;
      return;
    }
    if (result.stoppedBy === "interrupted") {
      const ck = listCheckpoints(out)[0];
      ctx.stdout.write(a.json ? `${JSON.stringify({ out: a.out, interrupted: true, steps: result.steps, checkpoint: ck?.dir ?? null })}\n` : `interrupted at step ${result.steps}${ck ? `; checkpoint ${ck.dir} holds the adapter` : ""}\n`);
      ctx.stderr.write(`modulora finetune: interrupted${result.signal === "SIGTERM" ? " (SIGTERM)" : ""} — run the same command with --resume to continue\n`);
      ctx.exitCode = result.signal === "SIGTERM" ? 143 : 130;
      return;
    }
    // Resumed from the final checkpoint: the training was done; what follows completes the final writes.
    const alreadyDone = result.resumedFrom !== null && result.resumedFrom === result.steps;
    const files = stepSync(`cannot write the adapter into ${a.out}`, "check that the directory is writable", () => writeAdapterInto(adapter, out, saveOptions));
    const metricsPath = join(out, "metrics.jsonl");
    const written = [...files, "metrics.jsonl"];
    try {
      const metrics = parseMetrics(readFileSync(metricsPath, "utf8"));
      await writeLossPlots(out, metrics, `LoRA fine-tuning (${a.format}) of ${a.model}`);
      written.push("loss.svg", "loss.png");
    } catch (err) {
      // The adapter is saved; a missing plot should not fail the run, but it is reported.
      ctx.stderr.write(`modulora finetune: warning: could not draw the loss curve: ${oneLine(err)}\n`);
    }

    // Text lines, or with --json one object, at the end (after run.json is written).
    const lines: string[] = [];
    if (alreadyDone) lines.push(`training had finished at step ${result.steps} (its final checkpoint); completed the final writes, last loss ${result.lastLoss.toFixed(4)}`);
    else lines.push(`trained ${result.steps} steps in ${formatSeconds(result.seconds)} (${Math.round(result.tokens / Math.max(result.seconds, 1e-9))} tokens/s), last loss ${result.lastLoss.toFixed(4)}`);
    const finalEval = result.lastEval ?? lastEval;
    if (finalEval) lines.push(`validation (${validExamples.length} examples): ${formatMetrics(finalEval)}${result.best ? ` — best ${fmt(result.best.value)} at step ${result.best.step}` : ""}`);
    // Peak memory of the whole run: the process's resident set and the engine's tensor storage.
    const peakRssMiB = process.resourceUsage().maxRSS / 1024;
    const peakTensorMiB = memory().nativePeakBytes / 2 ** 20;
    lines.push(`peak memory: ${peakRssMiB.toFixed(0)} MiB resident, ${peakTensorMiB.toFixed(0)} MiB native tensor storage`);
    const transferReport = transfers.report();
    if (transferReport) lines.push(formatTransfers(transferReport).trimEnd());
    // Renamed into place: a link planted at run.json is replaced, never written through.
    const seconds = alreadyDone ? null : result.seconds;
    const tokens = alreadyDone ? null : result.tokens;
    const run = {
      steps: result.steps, seconds, tokens, lastLoss: result.lastLoss, lastEval: finalEval ?? null, peakRssMiB, peakTensorMiB, device, dtype: a.dtype,
      ...(group ? { dataParallel: { worldSize: group.dataParallel.worldSize, backend: group.backend, globalBatch: a.batchSize * a.gradAccum * group.dataParallel.worldSize } } : {}),
      ...(transferReport ? { transfers: transferReport } : {}),
    };
    stepSync(`cannot write ${join(a.out, "run.json")}`, "check that the directory is writable and has space", () =>
      writeFileAtomic(join(out, "run.json"), `${JSON.stringify(run, null, 2)}\n`));
    written.push("run.json");
    const checkpoints = readdirSync(out).some((f) => f.startsWith("checkpoint-"));
    lines.push(`wrote ${a.out}: ${written.join(", ")}${checkpoints ? " (+ checkpoints)" : ""}`);
    if (a.json) {
      ctx.stdout.write(`${JSON.stringify({ out: a.out, ...run, tokensPerSecond: tokens !== null && seconds ? tokens / seconds : null, validationExamples: validExamples.length, best: result.best, resumedFrom: result.resumedFrom, files: written, checkpoints })}\n`);
    } else {
      ctx.stdout.write(`${lines.join("\n")}\n`);
    }
  } finally {
    model.dispose();
  }
}
