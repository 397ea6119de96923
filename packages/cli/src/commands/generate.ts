// modulora generate: sample from a model (and adapter), printing text as it streams from
// @modulora/llama's generate (whole characters only, however the tokens split them), or one JSON
// object at the end with --json. Ctrl-C (or SIGTERM) stops between two tokens: the text so far
// is printed and the exit code is 130 (143).
import { generate, NonFiniteError, type ModelDType, type TextGenerationResult } from "@modulora/llama";
import { CliError, step, stepSync, usageError } from "../errors.js";
import type { CommandContext } from "../main.js";
import { attachAdapter, checkContextLength, checkDevice, formatTransfers, loadModel, preflightAdapter, preflightModel, TransferCounter } from "../model.js";
import { setupQuantizers } from "../plugins.js";
import { Progress } from "../progress.js";

interface GenerateArgs {
  model: string;
  adapter?: string;
  prompt: string;
  chat: boolean;
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP: number;
  seed: number;
  device: string;
  dtype: ModelDType;
  plugin?: string[];
  json: boolean;
}

export async function runGenerate(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as GenerateArgs;
  const progress = new Progress(ctx.stderr);
  const device = checkDevice(a.device);
  if (!(a.topP > 0 && a.topP <= 1)) throw usageError(`--top-p must be in (0, 1], got ${a.topP}`, "e.g. --top-p 0.9");
  await setupQuantizers(a.plugin);
  const checked = preflightModel(a.model);
  if (a.adapter) preflightAdapter(a.adapter, checked);
  const loaded = await loadModel(a.model, progress, "--model", checked, device, a.dtype);
  const { model, tokenizer, config } = loaded;
  try {
    if (a.adapter) await attachAdapter(loaded, a.adapter, progress);
    const promptIds = a.chat
      ? stepSync("--chat", "drop --chat: this model has no chat template", () => tokenizer.applyChatTemplate([{ role: "user", content: a.prompt }], { addGenerationPrompt: true, tokenize: true }))
      : tokenizer.encode(a.prompt);
    if (promptIds.length === 0) throw new CliError("the prompt is empty", "pass --prompt TEXT");
    const room = config.maxPositionEmbeddings - promptIds.length;
    if (room < 1) checkContextLength(config, promptIds.length + 1, `the prompt (${promptIds.length} tokens) plus one new token`, "shorten --prompt");
    checkContextLength(config, promptIds.length + a.maxNewTokens, `the prompt (${promptIds.length} tokens) plus --max-new-tokens ${a.maxNewTokens}`, `lower --max-new-tokens to ${room} or less`);
    const stopTokens = [...new Set([...config.eosTokenIds, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])])];
    // Ctrl-C / SIGTERM abort between two tokens (the stream frees the KV cache and rejects).
    const controller = new AbortController();
    let signal: NodeJS.Signals | null = null;
    const stop = (s: NodeJS.Signals) => () => {
      signal = s;
      controller.abort();
    };
    const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, stop(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    const t0 = performance.now();
    let first = 0;
    let newTokens = 0;
    let text = "";
    let result: TextGenerationResult | null = null;
    try {
      const stream = generate(model, tokenizer, promptIds, {
        maxNewTokens: a.maxNewTokens,
        temperature: a.temperature,
        topP: a.topP,
        ...(a.topK !== undefined ? { topK: a.topK } : {}),
        seed: a.seed,
        stopTokens,
        signal: controller.signal,
        onToken: () => {
          if (!first) first = performance.now();
          newTokens++;
        },
      });
      result = await step("generation failed", (err) => (err instanceof NonFiniteError ? "check the model with modulora info, and generate without --adapter; re-train an adapter whose loss diverged" : "check --max-new-tokens against the model's context length"), async () => {
        try {
          for await (const chunk of stream) {
            text += chunk;
            if (!a.json) ctx.stdout.write(chunk);
          }
          return await stream.result();
        } catch (err) {
          if (controller.signal.aborted) return null; // interrupted: what came so far is printed below
          throw err;
        }
      });
    } finally {
      for (const [s, h] of handlers) process.off(s, h);
    }
    const secs = (performance.now() - t0) / 1000;
    const decodeSecs = first ? (performance.now() - first) / 1000 : 0;
    const tokensPerSecond = newTokens > 1 && decodeSecs > 0 ? (newTokens - 1) / decodeSecs : null;
    const stoppedBy = result?.stoppedBy ?? "interrupted";
    if (a.json) ctx.stdout.write(`${JSON.stringify({ text, promptTokens: promptIds.length, newTokens, stoppedBy, seconds: secs, tokensPerSecond })}\n`);
    else ctx.stdout.write("\n");
    progress.log(`${newTokens} tokens in ${secs.toFixed(2)} s (${tokensPerSecond !== null ? tokensPerSecond.toFixed(1) : "-"} tokens/s after the first), stopped by ${stoppedBy}`);
    if (signal !== null) {
      ctx.stderr.write(`modulora generate: interrupted${signal === "SIGTERM" ? " (SIGTERM)" : ""}\n`);
      ctx.exitCode = signal === "SIGTERM" ? 143 : 130;
    }
    const transfers = new TransferCounter(device).report();
    if (transfers) progress.log(formatTransfers(transfers).trimEnd());
  } finally {
    model.dispose();
  }
}
