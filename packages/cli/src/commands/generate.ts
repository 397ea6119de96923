// modulora generate: sample from a model (and adapter), printing text as the tokens come.
import { generate, NonFiniteError, type LlamaTokenizer, type ModelDType } from "@modulora/llama";
import { CliError, stepSync } from "../errors.js";
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
}

/**
 * Incremental decoding: the text of all ids so far is decoded each time and only what is new is
 * returned. Text ending in U+FFFD (a character whose bytes have not all arrived) is held back.
 */
export class StreamDecoder {
  private readonly ids: number[] = [];
  private printed = "";
  constructor(private readonly tokenizer: LlamaTokenizer, private readonly skip: ReadonlySet<number>) {}

  push(id: number): string {
    if (this.skip.has(id)) return "";
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids);
    if (text.endsWith("\uFFFD")) return "";
    return this.take(text);
  }

  /** Whatever is left (a dangling partial character included). */
  flush(): string {
    return this.ids.length ? this.take(this.tokenizer.decode(this.ids)) : "";
  }

  private take(text: string): string {
    // Decoding more ids can change earlier text (cleanup of spaces): print from the common prefix.
    let i = 0;
    while (i < this.printed.length && i < text.length && this.printed[i] === text[i]) i++;
    const fresh = text.slice(i);
    this.printed = text;
    return fresh;
  }
}

export async function runGenerate(ctx: CommandContext): Promise<void> {
  const a = ctx.args.values as unknown as GenerateArgs;
  const progress = new Progress(ctx.stderr);
  const device = checkDevice(a.device);
  if (!(a.topP > 0 && a.topP <= 1)) throw new CliError(`--top-p must be in (0, 1], got ${a.topP}`, "e.g. --top-p 0.9");
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
    const stops = [...new Set([...config.eosTokenIds, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])])];
    const special = new Set([...stops, ...[tokenizer.bosTokenId, tokenizer.padTokenId].filter((x): x is number => x !== null)]);
    const decoder = new StreamDecoder(tokenizer, special);
    const t0 = performance.now();
    let first = 0;
    const r = stepSync("generation failed", (err) => (err instanceof NonFiniteError ? "check the model with modulora info, and generate without --adapter; re-train an adapter whose loss diverged" : "check --max-new-tokens against the model's context length"), () =>
      generate(model, promptIds, {
        maxNewTokens: a.maxNewTokens,
        temperature: a.temperature,
        topP: a.topP,
        ...(a.topK !== undefined ? { topK: a.topK } : {}),
        seed: a.seed,
        stopTokens: stops,
        onToken: (id) => {
          if (!first) first = performance.now();
          const text = decoder.push(id);
          if (text) ctx.stdout.write(text);
        },
      }),
    );
    ctx.stdout.write(`${decoder.flush()}\n`);
    const secs = (performance.now() - t0) / 1000;
    const decodeSecs = first ? (performance.now() - first) / 1000 : 0;
    progress.log(`${r.ids.length} tokens in ${secs.toFixed(2)} s (${r.ids.length > 1 && decodeSecs > 0 ? ((r.ids.length - 1) / decodeSecs).toFixed(1) : "-"} tokens/s after the first), stopped by ${r.stoppedBy}`);
    const transfers = new TransferCounter(device).report();
    if (transfers) progress.log(formatTransfers(transfers).trimEnd());
  } finally {
    model.dispose();
  }
}
