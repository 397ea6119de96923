// The commands' interfaces: names, flags and defaults. Help, parsing and --config read these
// tables; the implementations live in commands/ and are loaded only when a command runs.
import type { CommandSpec, OptionSpec } from "./args.js";

const DEVICE: OptionSpec = {
  name: "device", type: "string", default: "cpu",
  description: "where to compute: cpu, cuda or cuda:N (a CUDA build of the addon on an NVIDIA GPU), sim (the simulated test device that counts host↔device transfers; needs MODULORA_DEVICE_SIM=1)",
};
const DTYPE: OptionSpec = {
  name: "dtype", type: "string", choices: ["f32", "bf16"], default: "f32",
  description: "compute dtype (bf16: the frozen base weights and the activations in bf16 with f32 accumulation; LoRA factors, optimizer state and the loss stay f32)",
};
const SEED: OptionSpec = { name: "seed", type: "int", min: 0, default: 0, description: "seed of every random choice" };
const PLUGIN: OptionSpec = {
  name: "plugin", type: "list", repeatable: true, arg: "MODULE",
  description: "load quantizer plugins from a module (a path or a package; it exports `default`, `plugin` or `quantizer`: an object or an array); repeatable",
};
const OVERWRITE: OptionSpec = { name: "overwrite", type: "boolean", default: false, description: "replace an existing --out" };
const JSON_OUT: OptionSpec = { name: "json", type: "boolean", default: false, description: "print one JSON object on stdout" };
/** A model a command only reads: full precision or a quantized checkpoint. */
const MODEL_EITHER: OptionSpec = { name: "model", type: "string", arg: "DIR", required: true, description: "model directory (full precision or quantized)" };
/** `--revision` and `--download`: what `--model ORG/NAME` (a Hugging Face id) resolves to in the local Hugging Face cache. */
const REVISION: OptionSpec = { name: "revision", type: "string", arg: "REV", description: "with --model ORG/NAME (a Hugging Face id, found in HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub): a branch, tag or commit hash (default main)" };
const DOWNLOAD: OptionSpec = { name: "download", type: "boolean", default: false, description: "with --model ORG/NAME: fetch the files the cache lacks from the Hub (token HF_TOKEN, address HF_ENDPOINT)" };
const adapterOption = (description: string, required = false): OptionSpec => ({ name: "adapter", type: "string", arg: "DIR", ...(required ? { required } : {}), description });
const outOption = (description: string): OptionSpec => ({ name: "out", type: "string", arg: "DIR", required: true, description });
const GROUP_SIZE: OptionSpec = {
  name: "group-size", type: "group", description: 'input columns per scale/zero group (block), or "row"; default: the quantizer\'s (128 where it names none)',
};
const FORMATS = ["text", "instruct", "chat", "classification", "summarization"] as const;
const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

export const QUANTIZE: CommandSpec = {
  name: "quantize",
  summary: "quantize a Hugging Face LLaMA model with a quantizer plugin",
  usage: "quantize --model DIR --quantizer NAME --bits N --out DIR [options]",
  options: [
    { name: "model", type: "string", arg: "DIR", required: true, description: "full-precision Hugging Face model directory" },
    REVISION,
    DOWNLOAD,
    { name: "quantizer", type: "string", arg: "NAME", required: true, description: "quantizer plugin name (listed below; its own flags come with it)" },
    { name: "bits", type: "int", min: 1, required: true, description: "bits per weight of the codes" },
    GROUP_SIZE,
    { name: "sym", type: "boolean", default: false, description: "symmetric quantization (quantizers that have a symmetric mode)" },
    { name: "true-sequential", type: "boolean", default: true, description: "calibrate a block's linears group by group (k,v,q; o; up,gate; down), each on the outputs of those already quantized; --no-true-sequential: all on full-precision inputs" },
    { name: "calib", type: "string", arg: "FILE", description: "calibration text (.txt, or .jsonl with a text field) for quantizers that need it" },
    { name: "calib-samples", type: "int", min: 1, default: 128, description: "calibration windows" },
    { name: "calib-seq-len", type: "int", min: 2, default: 512, description: "tokens per calibration window" },
    SEED,
    DEVICE,
    DTYPE,
    PLUGIN,
    outOption("where to write the quantized checkpoint"),
    OVERWRITE,
    { ...JSON_OUT, description: 'print one JSON object {"out", "bitsPerWeight", "seconds", "layers": [...], ...} on stdout instead of the table' },
  ],
  notes: "Writes a quantized checkpoint directory (config.json with quantization_config, model.safetensors, tokenizer files)\nand prints each layer's bits per weight and time.",
};

export const FINETUNE: CommandSpec = {
  name: "finetune",
  summary: "train a LoRA adapter on a full-precision or quantized model",
  usage: "finetune --model DIR --data FILE --format FORMAT --out DIR [options]",
  options: [
    { name: "model", type: "string", arg: "DIR", required: true, description: "model directory: full precision, or a quantized checkpoint (modulora quantize)" },
    REVISION,
    DOWNLOAD,
    { name: "data", type: "string", arg: "FILE", required: true, description: "training data (.jsonl; .txt for the text format)" },
    { name: "format", type: "string", choices: FORMATS, required: true, description: "dataset format" },
    outOption("output directory: adapter, checkpoints, metrics.jsonl, loss.svg/png"),
    { name: "valid", type: "string", arg: "FILE", description: "validation data (built with the training data's templates and labels)" },
    { name: "steps", type: "int", min: 1, description: "optimizer steps (instead of --epochs)" },
    { name: "epochs", type: "int", min: 1, default: 1, description: "passes over the training data when --steps is not given" },
    { name: "batch-size", type: "int", min: 1, default: 8, description: "examples per micro-batch" },
    { name: "grad-accum", type: "int", min: 1, default: 1, description: "micro-batches per optimizer step" },
    { name: "seq-len", type: "int", min: 2, default: 512, description: "maximum tokens per example" },
    { name: "lr", type: "number", min: ">0", default: 2e-4, description: "peak learning rate" },
    { name: "schedule", type: "string", choices: ["constant", "linear", "cosine"], default: "constant", description: "learning-rate schedule after warmup" },
    { name: "warmup", type: "int", min: 0, default: 0, description: "warmup steps" },
    { name: "max-grad-norm", type: "number", min: ">0", description: "clip the global gradient norm to this" },
    { name: "weight-decay", type: "number", min: 0, default: 0, description: "AdamW weight decay" },
    { name: "rank", type: "int", min: 1, default: 8, description: "LoRA rank r" },
    { name: "alpha", type: "number", min: ">0", default: 16, description: "LoRA alpha (scaling alpha / r)" },
    { name: "dropout", type: "number", min: 0, below: 1, default: 0.05, description: "LoRA dropout probability, in [0, 1)" },
    { name: "targets", type: "list", arg: "NAMES", choices: TARGETS, default: TARGETS, description: "linears that get an adapter" },
    { name: "checkpointing", type: "boolean", default: false, description: "gradient checkpointing (recompute blocks in backward: less memory)" },
    { name: "eval-every", type: "int", min: 1, description: "evaluate on --valid every N steps (and always at the end)" },
    { name: "eval-samples", type: "int", min: 1, description: "evaluate on a seeded random subset of N validation examples (default: all)" },
    { name: "save-every", type: "int", min: 1, description: "write a checkpoint (checkpoint-N, with the adapter) every N steps" },
    { name: "resume", type: "boolean", default: false, description: "continue from the newest checkpoint in --out" },
    OVERWRITE,
    SEED,
    DEVICE,
    DTYPE,
    { name: "quantizer", type: "string", arg: "NAME", description: "quantize a full-precision --model on the fly with this plugin" },
    { name: "bits", type: "int", min: 1, description: "bits for --quantizer" },
    { ...GROUP_SIZE, description: `group size for --quantizer (${GROUP_SIZE.description})` },
    PLUGIN,
    { ...JSON_OUT, description: 'print one JSON object {"out", "steps", "lastLoss", "lastEval", "files", ...} on stdout when training ends' },
    { name: "devices", type: "int", min: 1, description: "data parallel on this host: N processes, one per GPU (--device cuda: rank r on cuda:r) or N CPU processes; each optimizer step takes batch-size × grad-accum × N examples (under torchrun, Slurm or a training operator their variables are read instead)" },
    { name: "dist-backend", type: "string", choices: ["auto", "nccl", "tcp"], default: "auto", description: "how data-parallel ranks average gradients: NCCL (GPUs), TCP (CPU processes); auto picks by --device" },
    { name: "dist-timeout", type: "int", min: 1, default: 600, description: "seconds a data-parallel rank waits for the others (joining, each collective) before failing with the missing rank's name" },
  ],
  notes:
    "Evaluation: classification → accuracy; other formats → validation loss and perplexity (summarization: + ROUGE at the end).\n" +
    "The adapter (PEFT layout + modulora.json) is written into --out when training ends; Ctrl-C or SIGTERM saves a checkpoint (--resume continues).\n" +
    "--out is locked while a run works in it, and may not be, contain or lie inside an input; a diverged run (non-finite losses or weights) fails.\n" +
    "Data parallel (--devices N, or launched by torchrun/Slurm): every rank reads the same seeded batch order and trains its share of each step; rank 0 alone writes --out (docs/multi-gpu.md).",
};

export const EVAL: CommandSpec = {
  name: "eval",
  summary: "perplexity, accuracy or ROUGE of a model (and adapter)",
  usage: "eval --model DIR [--adapter DIR] --data FILE --metric ppl|accuracy|rouge [options]",
  options: [
    MODEL_EITHER,
    REVISION,
    DOWNLOAD,
    adapterOption("LoRA adapter directory (its template and label set are used)"),
    { name: "data", type: "string", arg: "FILE", required: true, description: "evaluation data (.txt or .jsonl)" },
    { name: "metric", type: "string", choices: ["ppl", "accuracy", "rouge"], required: true, description: "what to measure" },
    { name: "format", type: "string", choices: FORMATS, description: "dataset format (default: the adapter's, else classification for accuracy, summarization for rouge)" },
    { name: "seq-len", type: "int", min: 2, default: 512, description: "window length (ppl) or maximum tokens per example" },
    { name: "stride", type: "int", min: 1, description: "ppl: tokens between window starts (default --seq-len: non-overlapping windows; smaller: overlapping windows, each scoring only its last N tokens)" },
    { name: "max-windows", type: "int", min: 1, description: "ppl: score only the first N windows" },
    { name: "max-samples", type: "int", min: 1, description: "accuracy/rouge: a seeded random subset of N examples" },
    { name: "max-new-tokens", type: "int", min: 1, default: 64, description: "rouge: generated tokens at most (stops at EOS or newline)" },
    SEED,
    DEVICE,
    DTYPE,
    { ...JSON_OUT, description: 'print one JSON object {"metric", "value", "n", ...} on stdout' },
    PLUGIN,
  ],
};

export const GENERATE: CommandSpec = {
  name: "generate",
  summary: "generate text from a model (and adapter), streaming tokens",
  usage: "generate --model DIR [--adapter DIR] --prompt TEXT [options]",
  options: [
    MODEL_EITHER,
    REVISION,
    DOWNLOAD,
    adapterOption("LoRA adapter directory"),
    { name: "prompt", type: "string", arg: "TEXT", required: true, description: "the prompt" },
    { name: "chat", type: "boolean", default: false, description: "wrap the prompt as a user message with the model's chat template" },
    { name: "max-new-tokens", type: "int", min: 1, default: 128, description: "new tokens at most" },
    { name: "temperature", type: "number", min: 0, default: 0.7, description: "sampling temperature (0: greedy)" },
    { name: "top-k", type: "int", min: 1, description: "sample among the k most likely tokens" },
    { name: "top-p", type: "number", min: ">0", max: 1, default: 0.9, description: "nucleus sampling mass, in (0, 1]" },
    SEED,
    DEVICE,
    DTYPE,
    PLUGIN,
    { ...JSON_OUT, description: 'print one JSON object {"text", "promptTokens", "newTokens", "stoppedBy", ...} at the end instead of streaming the text' },
  ],
};

export const EXPORT: CommandSpec = {
  name: "export",
  summary: "merge an adapter into a Hugging Face checkpoint (bf16)",
  usage: "export --model DIR --adapter DIR --out DIR [options]",
  options: [
    { name: "model", type: "string", arg: "DIR", required: true, description: "the base the adapter was trained on (full precision or quantized)" },
    REVISION,
    DOWNLOAD,
    adapterOption("LoRA adapter directory", true),
    outOption("where to write the merged model"),
    OVERWRITE,
    { name: "reference", type: "boolean", default: false, description: "also write modulora_reference.safetensors (ids and our logits) for scripts/check_export.py" },
    PLUGIN,
    { ...JSON_OUT, description: 'print one JSON object {"out", "bytes", "seconds", "files"} on stdout' },
  ],
  notes: "The merged weights are the dequantized base plus the LoRA update, stored as bf16 under Hugging Face names;\nconfig.json loses quantization_config and gets torch_dtype bfloat16; the tokenizer files are copied.",
};

export const INFO: CommandSpec = {
  name: "info",
  summary: "describe a model, quantized checkpoint, adapter directory or .safetensors file",
  usage: "info PATH [--json]",
  positionals: [{ name: "PATH", description: "a directory or a .safetensors file" }],
  options: [JSON_OUT],
};

/** Every command, in help order. */
/** Defaults of `bench` as @modulora/bench has them (a test checks they agree; the specs load no package code). */
export const BENCH_DEFAULTS = { bits: ["2", "3", "4"], groupSizes: ["128", "row"], tasks: ["ppl", "classify", "summarize"], pplSeqLen: 512, pplMaxWindows: 64, steps: 100, lr: 3e-3, batchSize: 8, seqLen: 64, warmup: 10, rank: 8, alpha: 16, maxNewTokens: 32, classifySamples: 200, summarizeSamples: 50, calibSamples: 128, calibSeqLen: 512 } as const;

export const BENCH: CommandSpec = {
  name: "bench",
  summary: "cross-quantizer benchmark: quantizers × bits × group sizes, perplexity and fine-tuning tasks, with plots",
  usage: "bench --model DIR --out DIR [--quantizers LIST] [--bits LIST] [--group-size LIST] [--tasks LIST] [options]",
  options: [
    { name: "model", type: "string", arg: "DIR", required: true, description: "full-precision Hugging Face LLaMA-family model directory" },
    REVISION,
    DOWNLOAD,
    outOption("results directory: results.json, results.md, the plots (SVG and PNG) and the finished cells (cells/)"),
    { name: "quantizers", type: "list", arg: "LIST", description: "quantizers to run (default: every registered one, --plugin modules included); a variant is NAME:option=value[:option=value], e.g. hqq:optimize-scale=true" },
    { name: "bits", type: "list", arg: "LIST", default: [...BENCH_DEFAULTS.bits], description: "bit widths; each quantizer runs the ones it supports" },
    { name: "group-size", type: "list", arg: "LIST", default: [...BENCH_DEFAULTS.groupSizes], description: 'group sizes (N or "row"); each quantizer runs the ones it supports, the rest are listed as skipped' },
    { name: "tasks", type: "list", arg: "LIST", choices: [...BENCH_DEFAULTS.tasks], default: [...BENCH_DEFAULTS.tasks], description: "ppl: perplexity; classify: LoRA fine-tune, then accuracy; summarize: LoRA fine-tune, then ROUGE-1/2/L" },
    { name: "ppl-data", type: "string", arg: "FILE", description: "perplexity text (.txt, or .jsonl with a text field; default: the bundled LM validation text)" },
    { name: "ppl-seq-len", type: "int", min: 2, default: BENCH_DEFAULTS.pplSeqLen, description: "perplexity window length (as modulora eval --seq-len)" },
    { name: "stride", type: "int", min: 1, description: "tokens between perplexity windows (default --ppl-seq-len: non-overlapping)" },
    { name: "max-windows", type: "string", arg: "N|all", default: String(BENCH_DEFAULTS.pplMaxWindows), description: "score only the first N perplexity windows, or all of the text" },
    { name: "classify-train", type: "string", arg: "FILE", description: "classification training JSONL (default: the bundled spam data)" },
    { name: "classify-valid", type: "string", arg: "FILE", description: "classification validation JSONL (default: the bundled spam data)" },
    { name: "classify-samples", type: "int", min: 1, default: BENCH_DEFAULTS.classifySamples, description: "accuracy on a seeded subset of N validation examples" },
    { name: "summarize-train", type: "string", arg: "FILE", description: "summarization training JSONL (default: the bundled man-page data)" },
    { name: "summarize-valid", type: "string", arg: "FILE", description: "summarization validation JSONL (default: the bundled man-page data)" },
    { name: "summarize-samples", type: "int", min: 1, default: BENCH_DEFAULTS.summarizeSamples, description: "ROUGE on a seeded subset of N validation examples" },
    { name: "steps", type: "int", min: 1, default: BENCH_DEFAULTS.steps, description: "fine-tuning steps per task and cell" },
    { name: "lr", type: "number", min: ">0", default: BENCH_DEFAULTS.lr, description: "fine-tuning learning rate" },
    { name: "batch-size", type: "int", min: 1, default: BENCH_DEFAULTS.batchSize, description: "examples per fine-tuning step" },
    { name: "seq-len", type: "int", min: 2, default: BENCH_DEFAULTS.seqLen, description: "maximum tokens per fine-tuning / evaluation example" },
    { name: "rank", type: "int", min: 1, default: BENCH_DEFAULTS.rank, description: "LoRA rank r (every linear of every block)" },
    { name: "alpha", type: "number", min: ">0", default: BENCH_DEFAULTS.alpha, description: "LoRA alpha" },
    { name: "dropout", type: "number", min: 0, below: 1, default: 0, description: "LoRA dropout" },
    { name: "warmup", type: "int", min: 0, default: BENCH_DEFAULTS.warmup, description: "warmup steps (then a cosine schedule)" },
    { name: "max-new-tokens", type: "int", min: 1, default: BENCH_DEFAULTS.maxNewTokens, description: "summarize: generated tokens at most per example" },
    { name: "calib", type: "string", arg: "FILE", description: "calibration text for quantizers that need it (default: the bundled calibration text)" },
    { name: "calib-samples", type: "int", min: 1, default: BENCH_DEFAULTS.calibSamples, description: "calibration windows" },
    { name: "calib-seq-len", type: "int", min: 2, default: BENCH_DEFAULTS.calibSeqLen, description: "tokens per calibration window" },
    { name: "fp", type: "boolean", default: true, description: "include the full-precision row" },
    { name: "baseline", type: "boolean", default: true, description: "include the majority-label / lead-summary baseline row" },
    { name: "resume", type: "boolean", default: false, description: "keep the finished cells in --out and run the missing ones" },
    OVERWRITE,
    SEED,
    DEVICE,
    DTYPE,
    { ...JSON_OUT, description: "print results.json on stdout when done" },
    PLUGIN,
  ],
  notes:
    "Each cell: load the model, quantize it (time, true bits per weight), the tasks (perplexity; accuracy or ROUGE before and after a LoRA fine-tune, tokens/s), peak device memory.\n" +
    "A finished cell is written to --out/cells at once: after an interruption, run the same command with --resume.\n" +
    "The perplexity of a cell equals modulora eval --metric ppl of the same quantized model (same --seq-len, --stride, --max-windows).",
};

export const COMMANDS: readonly CommandSpec[] = [QUANTIZE, FINETUNE, EVAL, GENERATE, EXPORT, INFO, BENCH];
