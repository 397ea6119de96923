// The fine-tuning loop: AdamW, schedules with warmup, gradient accumulation, global-norm
// clipping, evaluation with early stopping and best-checkpoint selection, a metrics log,
// checkpoints every N steps with exact resume, non-finite step skipping, and Ctrl-C handling.
// The output directory is locked while a run works in it, recovered from a killed run on start,
// and written without following links planted in it.
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { AdamW, add, assign, backward, cast, concat, dispose, keep, memory, noGrad, sub, sum, tidy, type Tensor } from "@modulora/tensor";
import { clipGradNorm, gradNormChecked } from "./clip.js";
import { appendNoFollow, isTempName, lexists, recoverOutDir, writeFileAtomic } from "./files.js";
import { acquireLock, LOCK_FILE, type DirectoryLock } from "./lock.js";
import { checkSchedule, learningRate, type ScheduleKind } from "./schedule.js";
import { listCheckpoints, readCheckpoint, writeCheckpoint, type TrainerState } from "./state.js";
import { agree, syncFromRoot, type TrainerDataParallel } from "./data-parallel.js";

/** A micro-batch: anything, plus its number of trained tokens (for tokens/s). */
export interface Batch {
  tokens: number;
}

/** Where batches come from: deterministic for (epoch, index), so training can resume exactly. */
export interface DataSource<B extends Batch> {
  /** Micro-batches per epoch. */
  readonly length: number;
  /** The micro-batches of `epoch` from position `startIndex` on. */
  epoch(epoch: number, startIndex: number): Iterable<B>;
}

/** Evaluation results: the metrics by name (e.g. `loss`, `accuracy`, `ppl`). */
export type EvalResult = Record<string, number>;

/** Trainer events, for progress bars and logs. */
export type TrainerEvent =
  | { type: "start"; totalSteps: number; resumedFrom: number | null }
  | { type: "step"; step: number; totalSteps: number; loss: number; lr: number; gradNorm: number; tokensPerSecond: number; elapsedSeconds: number }
  | { type: "skip"; step: number; reason: string; consecutive: number }
  | { type: "eval"; step: number; metrics: EvalResult; best: boolean }
  | { type: "checkpoint"; step: number; dir: string }
  /** Something the user should know that does not stop the run (a stale lock taken over, a checkpoint that could not be read...). */
  | { type: "warning"; message: string }
  | { type: "stop"; step: number; reason: "done" | "early-stopping" | "interrupted" };

/** Options of {@link Trainer}. */
export interface TrainerOptions<B extends Batch> {
  /** Trainable tensors by name (names key the checkpoints). */
  parameters: ReadonlyMap<string, Tensor>;
  /** The scalar loss of one micro-batch (recorded for autograd). */
  loss: (batch: B, ctx: { step: number; microStep: number }) => Tensor;
  data: DataSource<B>;
  /** Optimizer steps; default: `epochs` × ⌈batches / gradAccum⌉. */
  steps?: number;
  /** Epochs when `steps` is not given (default 1). */
  epochs?: number;
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  schedule?: ScheduleKind;
  warmupSteps?: number;
  minLrRatio?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccum?: number;
  /** Clip the global gradient norm to this (default: no clipping). */
  maxGradNorm?: number;
  evaluate?: () => EvalResult;
  /** Evaluate every N steps (and at the end). */
  evalEvery?: number;
  /** Metric that selects the best checkpoint and drives early stopping (default `loss`, min). */
  selectMetric?: { name: string; mode: "min" | "max" };
  /**
   * The compute dtype of the model the loss runs through (default `"f32"`): with `"bf16"` the
   * frozen base and the activations are bf16, while the trainable parameters, their gradients
   * and the optimizer state stay f32 (master weights; a bf16 parameter is refused). Recorded in
   * every checkpoint; resuming under the other dtype is refused.
   */
  dtype?: TrainerDType;
  /** Stop after this many evaluations without improvement. */
  earlyStoppingPatience?: number;
  /** Directory for checkpoints, `metrics.jsonl` and `best/`. */
  outDir?: string;
  /** Write a checkpoint every N steps. */
  saveEvery?: number;
  /** Keep at most this many `checkpoint-*` directories (default 2). */
  keepCheckpoints?: number;
  /** Continue from the newest complete checkpoint in `outDir`. */
  resume?: boolean;
  /** Allow a non-empty `outDir` without `resume` (its old contents are removed). */
  overwrite?: boolean;
  /** Adds files to every checkpoint and to `best/` (e.g. the adapter in PEFT's layout). */
  writeExtra?: (dir: string) => void;
  seed?: number;
  /** Abort after this many consecutive non-finite steps (default 5). */
  maxBadSteps?: number;
  /** Save a checkpoint and stop on SIGINT or SIGTERM (default: true when `outDir` is set). */
  handleSigint?: boolean;
  /** Recorded in the lock file of `outDir` (default `modulora trainer`). */
  lockOwner?: string;
  onEvent?: (e: TrainerEvent) => void;
  /** Extra fields written to the trainer state. */
  stateExtra?: Record<string, unknown>;
  /**
   * Data-parallel training over several processes (`@modulora/distributed`'s `dataParallel()`).
   * Every rank runs the same Trainer on the same data source; each optimizer step takes
   * `gradAccum × worldSize` micro-batches in the one seeded order a single process walks, rank r
   * computes micro-batches `r·gradAccum … (r+1)·gradAccum − 1` of them, and the gradients are
   * averaged over the ranks (bucket by bucket, during the backward of the last micro-batch). So
   * W ranks with `gradAccum` k train as one process with `gradAccum` W·k. Rank 0 alone locks and
   * writes `outDir` (checkpoints, `metrics.jsonl`, `best/`, `writeExtra`); at the start it sends
   * every rank its parameters, optimizer moments and (on resume) its state.
   */
  dataParallel?: TrainerDataParallel;
}

/** Compute dtypes a training run can use (see {@link TrainerOptions.dtype}). */
export const TRAINER_DTYPES = ["f32", "bf16"] as const;
/** One of {@link TRAINER_DTYPES}. */
export type TrainerDType = (typeof TRAINER_DTYPES)[number];

/** What {@link Trainer.fit} returns. */
export interface TrainResult {
  steps: number;
  stoppedBy: "done" | "early-stopping" | "interrupted";
  /** The signal that interrupted the run (`stoppedBy: "interrupted"`). */
  signal?: "SIGINT" | "SIGTERM";
  /** The checkpoint step this run resumed from, or null. Equal to `steps` when the checkpoint was already final (nothing was trained). */
  resumedFrom: number | null;
  lastLoss: number;
  best: { step: number; value: number } | null;
  lastEval: EvalResult | null;
  seconds: number;
  tokens: number;
}

/** Thrown when training cannot go on (e.g. too many non-finite steps in a row). */
export class TrainingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TrainingError";
  }
}

/** Fine-tunes the given parameters. One instance runs one `fit()`. */
export class Trainer<B extends Batch> {
  readonly options: TrainerOptions<B>;
  private readonly names: string[];
  private readonly params: Tensor[];
  private readonly paramIndex: Map<Tensor, number>;
  private readonly optimizer: AdamW;
  /** The run's compute dtype ({@link TrainerOptions.dtype}). */
  readonly dtype: TrainerDType;
  /** The data-parallel group, or null for one process. */
  private readonly dp: TrainerDataParallel | null;
  /** Where this rank writes: `outDir` on rank 0 (or one process), nothing on the other ranks. */
  private readonly outDir: string | undefined;

  constructor(options: TrainerOptions<B>) {
    this.options = options;
    this.names = [...options.parameters.keys()];
    this.params = [...options.parameters.values()];
    this.paramIndex = new Map(this.params.map((p, i) => [p, i]));
    if (this.params.length === 0) throw new RangeError("Trainer: no trainable parameters");
    const dtype = options.dtype ?? "f32";
    if (!(TRAINER_DTYPES as readonly unknown[]).includes(dtype)) throw new RangeError(`Trainer: dtype ${JSON.stringify(dtype)} is not a compute dtype; use one of ${TRAINER_DTYPES.join(", ")}`);
    this.dtype = dtype;
    // Master weights: under either dtype the optimizer updates f32 (or f64) tensors only.
    const low = this.names.filter((_, i) => this.params[i]!.dtype !== "f32" && this.params[i]!.dtype !== "f64");
    if (low.length) {
      throw new TypeError(
        `Trainer: trainable parameters must be f32 (master weights), got ${low.slice(0, 4).map((n) => `${n} (${options.parameters.get(n)!.dtype})`).join(", ")}${low.length > 4 ? ", …" : ""}; ` +
          `with dtype "${dtype}" keep the LoRA factors in f32 and cast where the bf16 model needs them`,
      );
    }
    const accum = options.gradAccum ?? 1;
    if (!Number.isInteger(accum) || accum < 1) throw new RangeError(`Trainer: gradAccum must be a positive integer, got ${accum}`);
    if (options.data.length < 1) throw new RangeError("Trainer: the data source has no batches");
    const dp = options.dataParallel ?? null;
    if (dp && (!Number.isInteger(dp.worldSize) || dp.worldSize < 1 || !Number.isInteger(dp.rank) || dp.rank < 0 || dp.rank >= dp.worldSize)) {
      throw new RangeError(`Trainer: dataParallel has rank ${dp.rank} of world size ${dp.worldSize}; the rank must be an integer in [0, worldSize)`);
    }
    this.dp = dp;
    this.outDir = !dp || dp.rank === 0 ? options.outDir : undefined;
    this.optimizer = new AdamW(this.params, { lr: options.lr, beta1: options.beta1, beta2: options.beta2, eps: options.eps, weightDecay: options.weightDecay });
    checkSchedule({ kind: options.schedule ?? "constant", lr: options.lr, warmupSteps: options.warmupSteps, totalSteps: this.totalSteps() });
    for (const [k, v] of [["saveEvery", options.saveEvery], ["evalEvery", options.evalEvery], ["steps", options.steps], ["epochs", options.epochs]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`Trainer: ${k} must be a positive integer, got ${v}`);
    }
  }

  /** Optimizer steps this run will take. */
  totalSteps(): number {
    const o = this.options;
    if (o.steps) return o.steps;
    return (o.epochs ?? 1) * Math.ceil(o.data.length / this.microBatchesPerStep());
  }

  /** Micro-batches of the data source each optimizer step takes, over all ranks: `gradAccum × worldSize`. */
  microBatchesPerStep(): number {
    return (this.options.gradAccum ?? 1) * (this.options.dataParallel?.worldSize ?? 1);
  }

  private warn(message: string): void {
    this.options.onEvent?.({ type: "warning", message });
  }

  /**
   * Locks and prepares `outDir`: recovers it from a killed run, then empties it (overwrite),
   * refuses it (not empty, neither resume nor overwrite) or restores the newest readable
   * checkpoint (resume). Returns the restored state, or null for a fresh start.
   */
  private prepareOutDir(lockRef: { lock: DirectoryLock | null }): TrainerState | null {
    const o = this.options;
    if (!o.outDir) {
      if (o.resume) throw new Error("Trainer: resume needs an output directory");
      return null;
    }
    if (!this.outDir) return null; // a data-parallel rank other than 0: rank 0 sends the state
    const out = o.outDir;
    if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`output directory ${out} is a file, not a directory`);
    mkdirSync(out, { recursive: true });
    const lock = acquireLock(join(out, LOCK_FILE), o.lockOwner ?? "modulora trainer");
    lockRef.lock = lock;
    if (lock.tookOver) this.warn(`took over the stale lock ${lock.path} of process ${lock.tookOver.pid}, which no longer runs`);
    for (const note of recoverOutDir(out)) this.warn(note);
    const entries = readdirSync(out).filter((n) => n !== LOCK_FILE);
    if (o.resume) {
      const ckpts = listCheckpoints(out);
      if (ckpts.length === 0) {
        // Killed before its first checkpoint: what is there (the log, best/) is this run's own; start over.
        const foreign = entries.filter((n) => !RUN_LEFTOVERS.includes(n) && !isTempName(n));
        if (foreign.length) throw new Error(`${out} holds no complete checkpoint to resume from (nothing named checkpoint-N with a trainer_state.json), and it holds ${foreign.slice(0, 3).join(", ")}${foreign.length > 3 ? ", ..." : ""}`);
        if (entries.length) this.warn(`${out} has no complete checkpoint (the run stopped before its first one): starting from step 0`);
        for (const n of entries) rmSync(join(out, n), { recursive: true, force: true });
        return null;
      }
      return this.restoreNewest(ckpts);
    }
    if (entries.length) {
      if (!o.overwrite) throw new Error(`output directory ${out} already exists and is not empty; pass resume to continue it or overwrite to replace it`);
      for (const n of entries) rmSync(join(out, n), { recursive: true, force: true });
    }
    return null;
  }

  /** Restores the newest checkpoint that can be read; an unreadable one is moved aside (`.corrupt`) with a warning. */
  private restoreNewest(ckpts: readonly { dir: string; step: number }[]): TrainerState {
    const failures: string[] = [];
    for (const c of ckpts) {
      let read: ReturnType<typeof readCheckpoint>;
      try {
        read = readCheckpoint(c.dir);
      } catch (err) {
        failures.push(`${c.dir}: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      for (const bad of ckpts.slice(0, failures.length)) {
        let aside = `${bad.dir}.corrupt`;
        if (lexists(aside)) aside = `${aside}-${Date.now().toString(36)}`;
        renameSync(bad.dir, aside);
        this.warn(`checkpoint ${bad.dir} cannot be read (${failures[ckpts.indexOf(bad)]!.slice(bad.dir.length + 2)}); moved it to ${aside} and resuming from the older ${c.dir}`);
      }
      return this.restore(c.dir, read);
    }
    throw new Error(`no checkpoint in ${this.options.outDir} can be read: ${failures.join("; ")}`);
  }

  private restore(dir: string, { state, params, optimizer }: ReturnType<typeof readCheckpoint>): TrainerState {
    try {
      const missing = this.names.filter((n) => !params.has(n));
      const extra = [...params.keys()].filter((n) => !this.names.includes(n));
      if (missing.length || extra.length) {
        throw new Error(`checkpoint ${dir} does not match the trainable parameters: missing ${missing.join(", ") || "none"}; unexpected ${extra.join(", ") || "none"}`);
      }
      noGrad(() => {
        this.names.forEach((n, i) => {
          const src = params.get(n)!;
          const dst = this.params[i]!;
          if (src.size !== dst.size || src.dtype !== dst.dtype) throw new Error(`checkpoint ${dir}: ${n} is ${src.dtype} [${src.shape}], expected ${dst.dtype} [${dst.shape}]`);
          // Copy in on the parameter's device (the checkpoint was read onto the host device).
          const onDevice = src.device === dst.device ? src : src.to(dst.device);
          const shaped = onDevice.reshape(dst.shape);
          try {
            assign(dst, shaped);
          } finally {
            shaped.dispose();
            if (onDevice !== src) onDevice.dispose();
          }
        });
      });
      const m = this.names.map((n) => optimizer.get(`${n}.exp_avg`)!);
      const v = this.names.map((n) => optimizer.get(`${n}.exp_avg_sq`)!);
      if (m.some((t) => !t) || v.some((t) => !t)) throw new Error(`checkpoint ${dir}: optimizer state is incomplete`);
      this.optimizer.loadState(state.optimizerSteps, m, v);
      return state;
    } finally {
      dispose([...params.values(), ...optimizer.values()]);
    }
  }

  /** Names of trainable tensors holding NaN or ±Inf: one probe Σ(p − p) per tensor on the device, read once. */
  private nonFiniteParameters(): string[] {
    const floats = this.params.map((p, i) => [p, i] as const).filter(([p]) => p.dtype === "f32" || p.dtype === "f64");
    if (floats.length === 0) return [];
    const probes = noGrad(() => tidy(() => concat(floats.map(([p]) => cast(sum(sub(p, p)), "f64").reshape([1]))).toFloat64Array()));
    return floats.filter((_, k) => probes[k] !== 0).map(([, i]) => this.names[i]!);
  }

  private save(state: TrainerState, dir: string): void {
    const bad = this.nonFiniteParameters();
    if (bad.length) throw new TrainingError(`the parameters hold NaN or Inf (${bad.slice(0, 3).join(", ")}${bad.length > 3 ? ", ..." : ""}) at step ${state.step}; not writing ${dir}: lower the learning rate or check the data`);
    writeCheckpoint(dir, state, this.params, this.optimizer.state(), this.options.writeExtra);
  }

  /** Runs training to the end (or early stopping, or Ctrl-C / SIGTERM). */
  async fit(): Promise<TrainResult> {
    const lockRef: { lock: DirectoryLock | null } = { lock: null };
    try {
      return await this.fitLocked(lockRef);
    } finally {
      lockRef.lock?.release();
    }
  }

  private async fitLocked(lockRef: { lock: DirectoryLock | null }): Promise<TrainResult> {
    const o = this.options;
    const total = this.totalSteps();
    const accum = o.gradAccum ?? 1;
    const seed = o.seed ?? 0;
    const maxBad = o.maxBadSteps ?? 5;
    const select = o.selectMetric ?? { name: "loss", mode: "min" as const };
    const dp = this.dp;
    const fresh = (): TrainerState => ({
      version: 1, step: 0, optimizerSteps: 0, epoch: 0, index: 0, seed, badSteps: 0, best: null, sinceBest: 0, parameterNames: this.names, computeDType: this.dtype, extra: o.stateExtra,
    });
    let restored = this.prepareOutDir(lockRef);
    const resumedDType = restored ? (restored.computeDType ?? "f32") : this.dtype;
    if (resumedDType !== this.dtype) throw new Error(`checkpoint was made with dtype ${resumedDType}, this run uses ${this.dtype}: pass the same dtype to resume (Trainer option dtype; --dtype on the command line), or the losses would not continue the run's`);
    if (restored && restored.seed !== seed) throw new Error(`checkpoint was made with seed ${restored.seed}, this run uses ${seed}: pass the same seed to resume`);
    if (restored && restored.step > total) throw new Error(`the newest checkpoint is at step ${restored.step}, past this run's ${total} steps: raise steps (or epochs) to at least ${restored.step}`);
    // Every rank starts from rank 0's numbers: its parameters, optimizer moments and (resumed) state.
    if (dp) {
      const { m, v } = this.optimizer.state();
      restored = await syncFromRoot(dp, restored, fresh(), [...this.params, ...m, ...v]);
    }
    if (dp && restored && dp.rank !== 0) this.optimizer.stepCount = restored.optimizerSteps; // the moments came with the broadcast
    const resumedFrom = restored ? restored.step : null; // `state` below is `restored` itself, and moves on
    const state: TrainerState = restored ?? fresh();
    state.computeDType = this.dtype;
    // A final checkpoint of this length: the run had finished; only the caller's final writes may be missing.
    const finished = !!restored?.done && restored.step === total;
    if (restored && !finished) state.done = false;
    const metricsPath = this.outDir ? join(this.outDir, "metrics.jsonl") : null;
    state.metricsLines = metricsPath && restored ? truncateMetrics(metricsPath, restored) : 0;
    const logMetrics = (line: Record<string, unknown>) => {
      if (!metricsPath) return;
      appendNoFollow(metricsPath, JSON.stringify(line) + "\n");
      state.metricsLines = (state.metricsLines ?? 0) + 1;
    };
    const emit = (e: TrainerEvent) => o.onEvent?.(e);
    emit({ type: "start", totalSteps: total, resumedFrom });
    const t0 = performance.now();
    if (finished) {
      emit({ type: "stop", step: state.step, reason: "done" });
      return { steps: state.step, stoppedBy: "done", resumedFrom: state.step, lastLoss: state.lastLoss ?? NaN, best: state.best, lastEval: state.lastEval ?? null, seconds: 0, tokens: 0 };
    }

    let interrupted: "SIGINT" | "SIGTERM" | null = null;
    const onSigint = () => {
      interrupted = "SIGINT";
    };
    const onSigterm = () => {
      interrupted = "SIGTERM";
    };
    const sigint = o.handleSigint ?? !!o.outDir;
    if (sigint) {
      process.on("SIGINT", onSigint);
      process.on("SIGTERM", onSigterm);
    }

    // A cursor over (epoch, index) that restarts epochs deterministically.
    let iter: Iterator<B> | null = null;
    const nextBatch = (): B => {
      for (let guard = 0; guard < 2; guard++) {
        if (!iter) iter = o.data.epoch(state.epoch, state.index)[Symbol.iterator]();
        const r = iter.next();
        if (!r.done) {
          state.index++;
          return r.value;
        }
        state.epoch++;
        state.index = 0;
        iter = null;
      }
      throw new TrainingError("the data source produced an empty epoch");
    };

    let tokens = 0;
    let lastLoss = restored?.lastLoss ?? NaN;
    let lastEval: EvalResult | null = null;
    let stoppedBy: TrainResult["stoppedBy"] = "done";
    const runEval = (): boolean => {
      if (!o.evaluate) return false;
      const metrics = o.evaluate();
      lastEval = metrics;
      const value = metrics[select.name];
      let improved = false;
      if (value !== undefined && Number.isFinite(value)) {
        improved = !state.best || (select.mode === "min" ? value < state.best.value : value > state.best.value);
        if (improved) {
          state.best = { step: state.step, value };
          state.sinceBest = 0;
          if (this.outDir) this.save({ ...state }, join(this.outDir, "best"));
        } else {
          state.sinceBest++;
        }
      }
      emit({ type: "eval", step: state.step, metrics, best: improved });
      logMetrics({ step: state.step, eval: metrics });
      return !!o.earlyStoppingPatience && state.sinceBest >= o.earlyStoppingPatience;
    };

    try {
      while (state.step < total) {
        const step = state.step + 1;
        const lr = learningRate({ kind: o.schedule ?? "constant", lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: total, minLrRatio: o.minLrRatio }, step);
        const stepStart = performance.now();
        // The losses of the micro-batches are added on the device and read once, with the
        // gradient norm (one host read per step); a non-finite loss makes the step skipped.
        let lossSum: Tensor | null = null;
        let stepTokens = 0;
        // Data parallel: the step's W·accum micro-batches are read by every rank (the same order, the
        // same (epoch, index) everywhere); this rank computes its own accum of them.
        const perStep = accum * (dp?.worldSize ?? 1);
        const first = (dp?.rank ?? 0) * accum;
        let lossValue: number;
        let norm = NaN;
        let finite: boolean;
        try {
          for (let micro = 0; micro < perStep; micro++) {
            const batch = nextBatch();
            stepTokens += batch.tokens;
            if (micro < first || micro >= first + accum) continue;
            const last = micro === first + accum - 1;
            tidy(() => {
              const loss = o.loss(batch, { step, microStep: micro });
              const value = noGrad(() => cast(loss.detach(), "f64"));
              const next = lossSum ? noGrad(() => add(lossSum!, value)) : value;
              lossSum?.dispose();
              lossSum = keep(next);
              // mean over micro-batches: each contributes loss / accum (and the ranks' gradients are averaged)
              const scaled = accum === 1 ? loss : loss.scale(1 / accum);
              if (dp && last) {
                dp.beginStep(this.params);
                backward(scaled, { onLeafReady: (leaf) => { const i = this.paramIndex.get(leaf); if (i !== undefined) dp.gradientReady(i); } });
              } else {
                backward(scaled);
              }
            });
          }
          if (dp) {
            await dp.finishGradients();
            await dp.allReduceSum([lossSum!]); // Σ over every micro-batch of the step
          }
          ({ norm, finite, value: lossValue } = gradNormChecked(this.params, lossSum!));
        } finally {
          (lossSum as Tensor | null)?.dispose();
        }
        finite &&= Number.isFinite(lossValue);
        if (!finite) norm = Number.isFinite(lossValue) ? norm : NaN;
        if (finite) {
          if (o.maxGradNorm) clipGradNorm(this.params, o.maxGradNorm, norm);
          this.optimizer.lr = lr;
          this.optimizer.step();
          state.badSteps = 0;
          lastLoss = lossValue / perStep;
        } else {
          state.badSteps++;
          emit({ type: "skip", step, reason: "non-finite loss or gradient", consecutive: state.badSteps });
          process.emitWarning(`step ${step}: non-finite loss or gradient, step skipped (${state.badSteps} in a row)`, "ModuloraTrainingWarning");
          if (state.badSteps >= maxBad) {
            throw new TrainingError(`aborting: ${state.badSteps} consecutive steps had a non-finite loss or gradient (last at step ${step}); lower the learning rate or check the data`);
          }
          // the optimizer's update count stays; the schedule and the data advance with the step
        }
        this.optimizer.zeroGrad();
        state.step = step;
        state.optimizerSteps = this.optimizer.stepCount;
        state.lastLoss = Number.isFinite(lastLoss) ? lastLoss : null;
        tokens += stepTokens;
        const elapsed = (performance.now() - t0) / 1000;
        const tps = stepTokens / Math.max(1e-9, (performance.now() - stepStart) / 1000);
        if (finite) emit({ type: "step", step, totalSteps: total, loss: lastLoss, lr, gradNorm: norm, tokensPerSecond: tps, elapsedSeconds: elapsed });
        logMetrics({ step, loss: finite ? lastLoss : null, lr, grad_norm: Number.isFinite(norm) ? norm : null, tokens_per_second: Math.round(tps), skipped: !finite });
        let stop = false;
        if (o.evalEvery && step % o.evalEvery === 0 && step < total) stop = runEval();
        if (this.outDir && o.saveEvery && step % o.saveEvery === 0) this.checkpoint(state);
        // Let signals (Ctrl-C, SIGTERM) in between steps.
        await new Promise((r) => setImmediate(r));
        if (dp) {
          // The ranks decide together: rank 0's early stop, and a signal that reached any rank.
          const [stops, signal] = await agree(dp, [stop && dp.rank === 0 ? 1 : 0, interrupted === "SIGTERM" ? 2 : interrupted === "SIGINT" ? 1 : 0], this.params[0]!.device);
          stop = stops! > 0;
          if (!interrupted && signal! > 0) interrupted = signal! >= 2 ? "SIGTERM" : "SIGINT";
        }
        if (stop) {
          stoppedBy = "early-stopping";
          break;
        }
        if (interrupted) {
          stoppedBy = "interrupted";
          if (this.outDir) this.checkpoint(state);
          break;
        }
      }
      if (stoppedBy !== "interrupted") {
        // A run whose last steps were skipped, or whose parameters overflowed, has diverged: it ends
        // in an error, not in a final checkpoint that looks like a result.
        if (state.badSteps > 0) {
          throw new TrainingError(`the run diverged: its last ${state.badSteps === 1 ? "step" : `${state.badSteps} steps`} (up to step ${state.step}) had a non-finite loss or gradient, so the parameters are not a result; lower the learning rate or check the data`);
        }
        const bad = this.nonFiniteParameters();
        if (bad.length) throw new TrainingError(`the run diverged: the parameters hold NaN or Inf (${bad.slice(0, 3).join(", ")}); lower the learning rate or check the data`);
      }
      if (stoppedBy === "done" && o.evaluate) runEval();
      if (this.outDir && stoppedBy !== "interrupted") {
        state.done = true;
        state.lastEval = lastEval;
        this.checkpoint(state);
      }
    } finally {
      if (sigint) {
        process.off("SIGINT", onSigint);
        process.off("SIGTERM", onSigterm);
      }
    }
    emit({ type: "stop", step: state.step, reason: stoppedBy });
    void memory;
    return {
      steps: state.step, stoppedBy, ...(interrupted ? { signal: interrupted } : {}), resumedFrom,
      lastLoss, best: state.best, lastEval, seconds: (performance.now() - t0) / 1000, tokens,
    };
  }

  private checkpoint(state: TrainerState): void {
    const o = this.options;
    const dir = join(this.outDir!, `checkpoint-${state.step}`);
    this.save({ ...state }, dir);
    this.options.onEvent?.({ type: "checkpoint", step: state.step, dir });
    const keep = o.keepCheckpoints ?? 2;
    for (const old of listCheckpoints(this.outDir!).slice(keep)) rmSync(old.dir, { recursive: true, force: true });
  }

  /** Frees the optimizer state (parameters belong to the caller). */
  dispose(): void {
    this.optimizer.dispose();
  }
}

/** What a run leaves in its output directory before its first checkpoint (a resume then starts over). */
const RUN_LEFTOVERS = ["metrics.jsonl", "best"];

/** Whether `name` in an output directory is the Trainer's own (lock, log, checkpoints, temporaries). */
export function isTrainerEntry(name: string): boolean {
  return name === LOCK_FILE || RUN_LEFTOVERS.includes(name) || /^checkpoint-\d+$/.test(name) || isTempName(name);
}

/**
 * On resume, keeps the metric lines logged up to the checkpoint (they will not be logged again):
 * the first `state.metricsLines` lines, or (checkpoints without that count) the lines of steps up
 * to the checkpoint's. Rewritten through a temporary file (a link at `path` is replaced, not
 * followed). Returns the lines kept.
 */
function truncateMetrics(path: string, state: TrainerState): number {
  if (!lexists(path)) return 0;
  if (lstatSync(path).isSymbolicLink()) throw new Error(`${path} is a symbolic link; refusing to write through it (remove it)`);
  const all = readFileSync(path, "utf8").split("\n").filter((l) => l.trim());
  const kept = state.metricsLines !== undefined
    ? all.slice(0, state.metricsLines)
    : all.filter((l) => {
        try {
          return (JSON.parse(l) as { step: number }).step <= state.step;
        } catch {
          return false;
        }
      });
  writeFileAtomic(path, kept.map((l) => l + "\n").join(""));
  return kept.length;
}
