// modulora eval: perplexity (fixtures protocol), classification accuracy, or ROUGE of greedy generations.
import { existsSync } from "node:fs";
import { loadDataset, readTextCorpus, type Dataset, type DatasetFormat, type Templates } from "@modulora/data";
import { evaluatePerplexity, NON_FINITE_HINT, NonFiniteError, perplexityTokenIds, windowCount, type ModelDType } from "@modulora/llama";
import { CliError, stepSync } from "../errors.js";
import { accuracyOf, classificationItems, rougeOf, subset } from "@modulora/bench";
import type { CommandContext } from "../main.js";
import { checkDataFile, DATA_HINT } from "../data-files.js";
import { attachAdapter, checkContextLength, checkDevice, formatTransfers, loadModel, preflightAdapter, preflightModel, TransferCounter } from "../model.js";
import { setupQuantizers } from "../plugins.js";
import { Progress } from "../progress.js";

interface EvalArgs {
  model: string;
  adapter?: string;
  data: string;
  metric: "ppl" | "accuracy" | "rouge";
  format?: DatasetFormat;
  seqLen: number;
  stride?: number;
  maxWindows?: number;
  maxSamples?: number;
  maxNewTokens: number;
  seed: number;
  device: string;
  dtype: ModelDType;
  json: boolean;
  plugin?: string[];
}

const DEFAULT_FORMAT: Record<EvalArgs["metric"], DatasetFormat | null> = { ppl: null, accuracy: "classification", rouge: "summarization" };

/** The whole evaluation text (fixtures protocol: one string): a .txt file as is, or the `text` fields of a .jsonl file. */
const perplexityText = (path: string): string => stepSync("bad data in --data", DATA_HINT, () => readTextCorpus(path, { txt: "raw", what: "--metric ppl records" }));

export async function runEval(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as EvalArgs;
  const progress = new Progress(ctx.stderr);
  const device = checkDevice(a.device);
  if (a.maxWindows !== undefined && a.metric !== "ppl") throw new CliError("--max-windows is for --metric ppl", "use --max-samples to limit accuracy/rouge");
  if (a.stride !== undefined && a.metric !== "ppl") throw new CliError("--stride is for --metric ppl", "drop --stride");
  if (a.stride !== undefined && a.stride > a.seqLen) throw new CliError(`--stride ${a.stride} is longer than --seq-len ${a.seqLen}`, `pass --stride ${a.seqLen} or less (windows must overlap or touch)`);
  if (a.maxSamples !== undefined && a.metric === "ppl") throw new CliError("--max-samples is for --metric accuracy or rouge", "use --max-windows to limit ppl");
  const checked = preflightModel(a.model);
  // Every metric's sequences are at most --seq-len long (rouge keeps prompt + generation inside it).
  checkContextLength(checked.config, a.seqLen, `--seq-len ${a.seqLen}`, `lower --seq-len to ${checked.config.maxPositionEmbeddings} or less`);
  const meta = a.adapter ? preflightAdapter(a.adapter, checked) : null;
  const format = a.format ?? (a.metric !== "ppl" && typeof meta?.["task_format"] === "string" ? (meta["task_format"] as DatasetFormat) : DEFAULT_FORMAT[a.metric]);
  if (a.metric === "accuracy" && format !== "classification") throw new CliError(`--metric accuracy needs the classification format, not ${format}`, "pass --format classification");
  if (a.metric === "rouge" && format !== "summarization" && format !== "instruct") throw new CliError(`--metric rouge needs a prompt-target format (summarization or instruct), not ${format}`, "pass --format summarization");
  if (a.metric === "ppl") {
    if (!existsSync(a.data)) throw new CliError(`--data ${a.data} does not exist`, "pass --data a .txt file (or .jsonl with a text field)");
  } else checkDataFile(a.data, format!, "--data");
  await setupQuantizers(a.plugin);

  const loaded = await loadModel(a.model, progress, "--model", checked, device, a.dtype);
  const { model, tokenizer } = loaded;
  try {
    await evaluate();
    const transfers = new TransferCounter(device).report();
    if (transfers) progress.log(formatTransfers(transfers).trimEnd());
  } catch (err) {
    if (err instanceof NonFiniteError) throw new CliError(`${a.metric}: ${err.message}`, NON_FINITE_REMEDY, { cause: err });
    throw err;
  } finally {
    model.dispose();
  }

  async function evaluate(): Promise<void> {
    if (a.adapter) await attachAdapter(loaded, a.adapter, progress);
    let result: Record<string, unknown>;
    if (a.metric === "ppl") {
      const text = perplexityText(a.data);
      // With --max-windows, only as much of the text as those windows need is tokenized.
      const stride = a.stride ?? a.seqLen;
      const window = { seqLen: a.seqLen, stride, ...(a.maxWindows !== undefined ? { maxWindows: a.maxWindows } : {}) };
      const ids = perplexityTokenIds(tokenizer, text, window);
      const windows = Math.min(windowCount(ids.length, a.seqLen, stride), a.maxWindows ?? Infinity);
      if (windows < 1) throw new CliError(`${a.data} has ${ids.length} tokens, less than one window of --seq-len ${a.seqLen}`, "lower --seq-len or use a longer text");
      const bar = progress.bar("ppl", windows, { unit: "windows" });
      const r = evaluatePerplexity(model, ids, { ...window, onProgress: (d) => bar.update(d) });
      bar.stop();
      result = { metric: "ppl", value: r.perplexity, n: r.windows, nll: r.nll, tokens: r.tokens, seq_len: a.seqLen, stride };
    } else {
      // The adapter's template and label set (modulora.json) when it has them, else the data's.
      const templates = (meta?.["templates"] as Partial<Templates> | undefined) ?? (typeof meta?.["prompt_template"] === "string" ? { prompt: meta["prompt_template"] as string } : undefined);
      const labels = format === "classification" && Array.isArray(meta?.["labels"]) ? (meta["labels"] as string[]) : undefined;
      const dataset: Dataset = stepSync("bad data in --data", DATA_HINT, () =>
        loadDataset(a.data, { format: format!, tokenizer, seqLen: a.seqLen, ...(templates ? { templates } : {}), ...(labels ? { labels } : {}) }),
      );
      const examples = subset(dataset.examples, a.maxSamples, a.seed);
      if (a.metric === "accuracy") {
        const bar = progress.bar("accuracy", examples.length, { unit: "examples" });
        const r = accuracyOf(model, classificationItems(examples, dataset.spec, tokenizer), (d) => bar.update(d));
        bar.stop();
        result = { metric: "accuracy", value: r.accuracy, n: r.n, correct: r.correct, majority_baseline: r.majority, majority_label: r.majorityLabel, labels: dataset.spec.labels };
      } else {
        const bar = progress.bar("rouge", examples.length, { unit: "examples" });
        const r = rougeOf(model, tokenizer, { examples, spec: dataset.spec }, { maxNewTokens: a.maxNewTokens, onProgress: (d) => bar.update(d) });
        bar.stop();
        result = { metric: "rouge", value: r.rougeL, n: r.n, rouge1: r.rouge1, rouge2: r.rouge2, rougeL: r.rougeL };
      }
    }
    // Never print a number computed from NaN/Inf (JSON would show it as null, with exit 0).
    const bad = Object.entries(result).filter(([, x]) => typeof x === "number" && !Number.isFinite(x));
    if (bad.length) throw new CliError(`${a.metric} is not finite (${bad.map(([k, x]) => `${k} ${x}`).join(", ")}): ${NON_FINITE_HINT}`, NON_FINITE_REMEDY);
    if (a.json) ctx.stdout.write(`${JSON.stringify(result)}\n`);
    else {
      const v = result["value"] as number;
      const rest = Object.entries(result).filter(([k]) => !["metric", "value"].includes(k)).map(([k, x]) => `${k} ${typeof x === "number" && !Number.isInteger(x) ? x.toFixed(4) : Array.isArray(x) ? x.join(",") : String(x)}`);
      ctx.stdout.write(`${result["metric"]} ${v.toFixed(4)} (${rest.join(", ")})\n`);
    }
  }
}

/** What to do about a metric that is not finite. */
const NON_FINITE_REMEDY = "check the model with modulora info and evaluate it without --adapter; re-train an adapter whose loss diverged with a lower --lr";
