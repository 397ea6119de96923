// Trainer checkpoints: a directory per checkpoint, written atomically (temp dir, then rename; an
// existing directory of the same name is replaced only once its successor is complete).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadSafetensors, saveSafetensors, type Tensor } from "@modulora/tensor";
import { replaceDir } from "./files.js";

/** What a checkpoint records besides the tensors. */
export interface TrainerState {
  /** Format version of this file. */
  version: 1;
  /** Training steps completed (including skipped ones). */
  step: number;
  /** Optimizer updates applied (skipped steps excluded; AdamW's bias correction counts these). */
  optimizerSteps: number;
  /** Data position of the next micro-batch. */
  epoch: number;
  index: number;
  /** Seed of the run (all randomness derives from seed, epoch and step). */
  seed: number;
  /** Consecutive skipped (non-finite) steps. */
  badSteps: number;
  /** Best evaluation so far. */
  best: { step: number; value: number } | null;
  /** Evaluations without improvement (early stopping). */
  sinceBest: number;
  /** Names of the trainable tensors, in order. */
  parameterNames: string[];
  /** The run's compute dtype (absent in checkpoints written before bf16 compute: f32). */
  computeDType?: "f32" | "bf16";
  /** Free-form fields of the caller (schedule, options...). */
  extra?: Record<string, unknown>;
  /** Lines of `metrics.jsonl` when the checkpoint was written (a resume truncates the log to these). */
  metricsLines?: number;
  /** Set on the final checkpoint of a finished run (after the final evaluation). */
  done?: boolean;
  /** Loss of the last optimizer step and the last evaluation (so that a finished run can be reported again). */
  lastLoss?: number | null;
  lastEval?: Record<string, number> | null;
}

const STATE_FILE = "trainer_state.json";

/** `checkpoint-{step}` directories in `outDir` that are complete (their state file exists), newest first. */
export function listCheckpoints(outDir: string): { dir: string; step: number }[] {
  if (!existsSync(outDir)) return [];
  const out: { dir: string; step: number }[] = [];
  for (const name of readdirSync(outDir)) {
    const m = /^checkpoint-(\d+)$/.exec(name);
    if (m && existsSync(join(outDir, name, STATE_FILE))) out.push({ dir: join(outDir, name), step: Number(m[1]) });
  }
  return out.sort((a, b) => b.step - a.step);
}

/**
 * Writes a checkpoint directory atomically: everything goes into a temp directory, the state file
 * last, then one rename. `writeExtra` may add files (e.g. the adapter in PEFT's layout).
 */
export function writeCheckpoint(
  dir: string,
  state: TrainerState,
  params: readonly Tensor[],
  moments: { m: readonly Tensor[]; v: readonly Tensor[] },
  writeExtra?: (tmpDir: string) => void,
): void {
  const tmp = `${dir}.tmp-${process.pid}-${Date.now().toString(36)}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const named = new Map<string, Tensor>();
    state.parameterNames.forEach((n, i) => named.set(n, params[i]!));
    saveSafetensors(join(tmp, "parameters.safetensors"), named, { format: "modulora-trainer" });
    const opt = new Map<string, Tensor>();
    state.parameterNames.forEach((n, i) => {
      opt.set(`${n}.exp_avg`, moments.m[i]!);
      opt.set(`${n}.exp_avg_sq`, moments.v[i]!);
    });
    saveSafetensors(join(tmp, "optimizer.safetensors"), opt, { format: "modulora-trainer" });
    writeExtra?.(tmp);
    writeFileSync(join(tmp, STATE_FILE), JSON.stringify(state, null, 2) + "\n");
    replaceDir(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Reads a checkpoint written by {@link writeCheckpoint}; the caller disposes the tensors. */
export function readCheckpoint(dir: string): { state: TrainerState; params: Map<string, Tensor>; optimizer: Map<string, Tensor> } {
  const statePath = join(dir, STATE_FILE);
  if (!existsSync(statePath)) throw new Error(`${dir} is not a complete checkpoint (no ${STATE_FILE})`);
  let state: TrainerState;
  try {
    state = JSON.parse(readFileSync(statePath, "utf8")) as TrainerState;
  } catch (e) {
    throw new Error(`${statePath}: not valid JSON (${(e as Error).message})`);
  }
  if (state.version !== 1 || !Array.isArray(state.parameterNames)) throw new Error(`${statePath}: unsupported trainer state (version ${String(state.version)})`);
  const params = loadSafetensors(join(dir, "parameters.safetensors"));
  const optimizer = loadSafetensors(join(dir, "optimizer.safetensors"));
  return { state, params, optimizer };
}
