// The streaming generate(model, tokenizer, prompt, options) on tiny-llama (byte-level BPE) and
// small-llama (SentencePiece with <0x..> byte-fallback tokens): chunks hold whole characters and
// join to the decoding of all ids, an AbortSignal stops between tokens and frees everything, stop
// strings end the text exactly before them even across chunks, and a batch equals its prompts
// run alone.
import { afterAll, describe, expect, it } from "vitest";
import * as T from "@modulora/tensor";
import { generate, generateTokens, IncrementalDecoder, StopStringMatcher, type GenerateTextOptions, type TextGenerationResult } from "../src/generate.js";
import { loadLlama, type LlamaModel } from "../src/model.js";
import type { LlamaTokenizer } from "../src/tokenizer.js";
import { FIXTURES, smallLlamaDir } from "./fixtures.js";

interface Fixture { model: LlamaModel; tokenizer: LlamaTokenizer }
const loaded = new Map<string, Fixture>();
/** Loaded by the first test that needs it (a missing small-llama fails those tests, never skips them). */
function fixture(name: "tiny-llama" | "small-llama"): Fixture {
  let f = loaded.get(name);
  if (!f) {
    const { model, tokenizer } = loadLlama(name === "tiny-llama" ? `${FIXTURES}/tiny-llama` : smallLlamaDir());
    f = { model, tokenizer };
    loaded.set(name, f);
  }
  return f;
}
afterAll(() => {
  for (const f of loaded.values()) f.model.dispose();
});

/** Reads a stream to the end: its chunks and its result. */
async function collect(stream: AsyncIterable<string> & { result(): Promise<TextGenerationResult> }): Promise<{ chunks: string[]; result: TextGenerationResult }> {
  const chunks: string[] = [];
  for await (const c of stream) chunks.push(c);
  return { chunks, result: await stream.result() };
}

/** Valid UTF-8 text: no lone surrogate (which would not survive a UTF-8 round trip) and no U+FFFD. */
function expectWholeCharacters(chunks: readonly string[]): void {
  for (const [i, c] of chunks.entries()) {
    expect(c, `chunk ${i}`).not.toBe("");
    expect(Buffer.from(c, "utf8").toString("utf8"), `chunk ${i} ${JSON.stringify(c)}`).toBe(c);
    expect(c.includes("\uFFFD"), `chunk ${i} ${JSON.stringify(c)}`).toBe(false);
  }
}

/** The text the new ids add after the prompt: decoding everything at once, minus the prompt's decoding. */
function continuation(tokenizer: LlamaTokenizer, promptIds: readonly number[], ids: readonly number[]): string {
  const prompt = tokenizer.decode(promptIds);
  const all = tokenizer.decode([...promptIds, ...ids]);
  expect(all.startsWith(prompt)).toBe(true);
  return all.slice(prompt.length);
}

/** A logits processor that forces `ids`, one per step, after a prompt of `promptLength` tokens. */
const force = (ids: readonly number[], promptLength: number): GenerateTextOptions["logitsProcessor"] => (seen, logits) => {
  const want = ids[seen.length - promptLength]!;
  logits.fill(-Infinity);
  logits[want] = 0;
};

const NON_ASCII = "café 日本語 ✓ 🎉";

describe.each(["tiny-llama", "small-llama"] as const)("multi-byte characters (%s)", (name) => {
  it("a forced sequence whose characters are split across tokens streams whole characters, joining to the decoding of all ids", async () => {
    const { model, tokenizer } = fixture(name);
    const forced = tokenizer.encode(NON_ASCII, { addSpecialTokens: false });
    // The premise: some tokens are parts of a character (decoded alone they give U+FFFD), so
    // decoding token by token (the old docs example) garbles the text.
    expect(forced.some((id) => tokenizer.decode([id]).includes("\uFFFD"))).toBe(true);
    expect(forced.map((id) => tokenizer.decode([id])).join("")).toContain("\uFFFD");
    const promptIds = tokenizer.encode("Text:");
    const before = T.memory();
    const { chunks, result } = await collect(generate(model, tokenizer, promptIds, { maxNewTokens: forced.length, stopTokens: [], logitsProcessor: force(forced, promptIds.length) }));
    expect(result.ids).toEqual(forced);
    expectWholeCharacters(chunks);
    expect(chunks.length).toBeLessThan(forced.length); // byte tokens of one character make one chunk
    const want = continuation(tokenizer, promptIds, forced);
    expect(want.trimStart()).toBe(NON_ASCII);
    expect(chunks.join("")).toBe(want);
    expect(result).toEqual({ text: want, ids: forced, promptTokens: promptIds.length, stoppedBy: "max-tokens" });
    expect(T.memory().tensors).toBe(before.tensors);
    expect(T.memory().bytes).toBe(before.bytes);
  });

  it("the greedy continuation of a non-ASCII prompt: whole characters, the ids of generateTokens, the text of decoding them at once", async () => {
    const { model, tokenizer } = fixture(name);
    const { chunks, result } = await collect(generate(model, tokenizer, NON_ASCII, { maxNewTokens: 24, stopTokens: [] }));
    const promptIds = tokenizer.encode(NON_ASCII);
    expect(result.ids).toEqual(generateTokens(model, promptIds, { maxNewTokens: 24, stopTokens: [] }).ids);
    const want = continuation(tokenizer, promptIds, result.ids);
    expect(chunks.join("")).toBe(want);
    for (const c of chunks) expect(Buffer.from(c, "utf8").toString("utf8")).toBe(c);
    // U+FFFD only where decoding all ids at once has one (the model may emit invalid bytes).
    expect(chunks.some((c) => c.includes("\uFFFD"))).toBe(want.includes("\uFFFD"));
  });

  it("IncrementalDecoder: one id at a time, an incomplete character at the end comes out on flush as decoding does", () => {
    const { tokenizer } = fixture(name);
    const ids = tokenizer.encode(NON_ASCII, { addSpecialTokens: false });
    // Cut inside the last character that spans several tokens.
    let cut = ids.length - 1;
    while (cut > 0 && !tokenizer.decode([ids[cut]!]).includes("\uFFFD")) cut--;
    const partial = ids.slice(0, cut);
    expect(tokenizer.decode(partial)).toMatch(/\uFFFD$/);
    const context = tokenizer.encode("Text:");
    const d = new IncrementalDecoder(tokenizer, context);
    const chunks = partial.map((id) => d.push(id));
    expect(chunks.at(-1)).toBe(""); // held: its bytes are incomplete
    const tail = d.flush();
    expect(tail).toMatch(/\uFFFD$/);
    expect(chunks.join("") + tail).toBe(continuation(tokenizer, context, partial));
    expect(d.flush()).toBe("");
    // Without context the leading space goes, as decoding the ids alone drops it.
    const alone = new IncrementalDecoder(tokenizer);
    expect(ids.map((id) => alone.push(id)).join("") + alone.flush()).toBe(tokenizer.decode(ids));
  });
});

describe("AbortSignal (tiny-llama)", () => {
  it("aborting after the second chunk stops at once, rejects with the AbortError, and frees every tensor", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const before = T.memory();
    const controller = new AbortController();
    let tokens = 0;
    let tokensAtAbort = -1;
    const chunks: string[] = [];
    const stream = generate(model, tokenizer, "The quick brown", { maxNewTokens: 100, stopTokens: [], signal: controller.signal, onToken: () => tokens++ });
    const read = async () => {
      for await (const c of stream) {
        chunks.push(c);
        if (chunks.length === 2) {
          tokensAtAbort = tokens;
          controller.abort();
        }
      }
    };
    const err = await read().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(DOMException);
    expect((err as DOMException).name).toBe("AbortError");
    expect(err).toBe(controller.signal.reason);
    expect(chunks).toHaveLength(2);
    expect(tokens).toBe(tokensAtAbort); // no token after the abort
    await expect(stream.result()).rejects.toBe(controller.signal.reason);
    expect(T.memory().tensors).toBe(before.tensors);
    expect(T.memory().bytes).toBe(before.bytes);
  });

  it("an abort from outside the loop (a macrotask) lands before the next token", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const before = T.memory();
    const controller = new AbortController();
    let tokens = 0;
    const onToken = () => {
      if (++tokens === 3) setImmediate(() => controller.abort(new Error("enough")));
    };
    const stream = generate(model, tokenizer, "The quick brown", { maxNewTokens: 100, stopTokens: [], signal: controller.signal, onToken });
    await expect(stream.result()).rejects.toThrow("enough");
    expect(tokens).toBe(3);
    expect(T.memory().tensors).toBe(before.tensors);
  });

  it("a signal aborted before reading rejects at the first read, having run nothing", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    let tokens = 0;
    const stream = generate(model, tokenizer, "Hello", { maxNewTokens: 8, signal: AbortSignal.abort(), onToken: () => tokens++ });
    await expect(stream[Symbol.asyncIterator]().next()).rejects.toMatchObject({ name: "AbortError" });
    expect(tokens).toBe(0);
  });

  it("leaving the loop early stops generation and frees every tensor; result() then rejects with an AbortError", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const before = T.memory();
    let tokens = 0;
    let tokensAtBreak = -1;
    const stream = generate(model, tokenizer, "The quick brown", { maxNewTokens: 100, stopTokens: [], onToken: () => tokens++ });
    for await (const chunk of stream) {
      expect(chunk).not.toBe("");
      tokensAtBreak = tokens;
      break;
    }
    expect(tokens).toBe(tokensAtBreak);
    expect(tokens).toBeLessThan(100);
    expect(T.memory().tensors).toBe(before.tensors);
    await expect(stream.result()).rejects.toMatchObject({ name: "AbortError" });
    expect(() => stream[Symbol.asyncIterator]()).toThrow(/iterated only once/);
  });
});

describe("stop strings", () => {
  it("StopStringMatcher holds back only a tail that could start a stop string, across any number of chunks", () => {
    const m = new StopStringMatcher(["world peace", "xyz"]);
    expect(m.push("Hello wor")).toEqual({ text: "Hello ", stop: null });
    expect(m.push("ld")).toEqual({ text: "", stop: null }); // "world" is still a prefix of "world peace"
    expect(m.push(" war")).toEqual({ text: "world war", stop: null });
    expect(m.push(" x")).toEqual({ text: " ", stop: null });
    expect(m.flush()).toBe("x");
    const n = new StopStringMatcher(["END", "STOP"]);
    expect(n.push("a ST")).toEqual({ text: "a ", stop: null });
    expect(n.push("OP b END")).toEqual({ text: "", stop: "STOP" }); // the earliest match wins
    const single = new StopStringMatcher("\n\n");
    expect(single.push("one\n")).toEqual({ text: "one", stop: null });
    expect(single.push("\ntwo")).toEqual({ text: "", stop: "\n\n" });
    expect(new StopStringMatcher(undefined).push("any")).toEqual({ text: "any", stop: null });
    expect(() => new StopStringMatcher([""])).toThrow(/every stop string must be a non-empty string, got ""/);
    expect(() => new StopStringMatcher(["a", 3 as unknown as string])).toThrow(/got 3/);
  });

  it("generation stops exactly before a stop string that spans two chunks; the stop text is not emitted", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const opts = { maxNewTokens: 40, stopTokens: [] };
    const ref = await collect(generate(model, tokenizer, "The quick brown", opts));
    const i = ref.chunks.findIndex((c, k) => k > 2 && c.length >= 2 && (ref.chunks[k + 1]?.length ?? 0) >= 2);
    expect(i).toBeGreaterThan(0);
    const stop = ref.chunks[i]!.slice(-2) + ref.chunks[i + 1]!.slice(0, 2);
    const full = ref.result.text;
    const want = full.slice(0, full.indexOf(stop));
    const before = T.memory();
    const { chunks, result } = await collect(generate(model, tokenizer, "The quick brown", { ...opts, stop: [stop, "\u0001never"] }));
    expect(T.memory().tensors).toBe(before.tensors);
    expect(chunks.join("")).toBe(want);
    expect(result.text).toBe(want);
    expect(result.stoppedBy).toBe("stop-string");
    // The ids are the reference's up to the token that completed the stop string.
    expect(result.ids).toEqual(ref.result.ids.slice(0, result.ids.length));
    expect(tokenizer.decode(result.ids)).toContain(stop);
    expect(tokenizer.decode(result.ids.slice(0, -1))).not.toContain(stop);
  });

  it("a stop string that never matches changes no chunk (only a possible start is held back)", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const opts = { maxNewTokens: 24, stopTokens: [] };
    const ref = await collect(generate(model, tokenizer, "The quick brown", opts));
    const other = await collect(generate(model, tokenizer, "The quick brown", { ...opts, stop: "\u0001" }));
    expect(other.chunks).toEqual(ref.chunks);
    expect(other.result).toEqual(ref.result);
  });
});

describe("maxNewTokens, stop tokens and the result (tiny-llama)", () => {
  it("maxNewTokens bounds the new ids; 0 generates nothing", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const { chunks, result } = await collect(generate(model, tokenizer, "The quick brown", { maxNewTokens: 5, stopTokens: [] }));
    expect(result.ids).toHaveLength(5);
    expect(result.stoppedBy).toBe("max-tokens");
    expect(chunks.join("")).toBe(continuation(tokenizer, tokenizer.encode("The quick brown"), result.ids));
    expect(await collect(generate(model, tokenizer, "The quick brown", { maxNewTokens: 0 }))).toEqual({ chunks: [], result: { text: "", ids: [], promptTokens: tokenizer.encode("The quick brown").length, stoppedBy: "max-tokens" } });
  });

  it("an EOS id ends generation: it is in the ids, not in the text", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const greedy = generateTokens(model, tokenizer.encode("The quick brown"), { maxNewTokens: 10, stopTokens: [] }).ids;
    const eos = model.config.eosTokenIds;
    model.config.eosTokenIds = [greedy[2]!]; // pretend the third greedy token is EOS
    try {
      const { result } = await collect(generate(model, tokenizer, "The quick brown", { maxNewTokens: 10 }));
      expect(result.ids).toEqual(greedy.slice(0, 3));
      expect(result.stoppedBy).toBe("eos");
      expect(result.text).toBe(continuation(tokenizer, tokenizer.encode("The quick brown"), greedy.slice(0, 2)));
    } finally {
      model.config.eosTokenIds = eos;
    }
    const { result } = await collect(generate(model, tokenizer, "The quick brown", { maxNewTokens: 10, stopTokens: [greedy[2]!] }));
    expect(result.stoppedBy).toBe("stop-token");
  });

  it("result() without iterating runs the stream to the end", async () => {
    const { model, tokenizer } = fixture("tiny-llama");
    const opts = { maxNewTokens: 12, temperature: 0.8, seed: 5, stopTokens: [] };
    const read = await collect(generate(model, tokenizer, "Once", opts));
    expect(await generate(model, tokenizer, "Once", opts).result()).toEqual(read.result);
    expect(read.result.text).toBe(read.chunks.join(""));
  });

  it("checks the options at the call", () => {
    const { model, tokenizer } = fixture("tiny-llama");
    expect(() => generate(model, tokenizer, "x", { maxNewTokens: 4, temperature: -1 })).toThrow(/temperature must be a finite number ≥ 0/);
    expect(() => generate(model, tokenizer, "x", { maxNewTokens: 4, stop: [""] })).toThrow(/non-empty string/);
    expect(() => generate(model, tokenizer, "x", { maxNewTokens: 4, signal: {} as AbortSignal })).toThrow(/signal must be an AbortSignal/);
    expect(() => generate(model, tokenizer, [], { maxNewTokens: 4 })).toThrow(/prompt is empty/);
    expect(() => generate(model, tokenizer, "x", { maxNewTokens: 2000 })).toThrow(/plus maxNewTokens \(2000\) is .* longer than the model's context/);
    expect(() => (generate as unknown as (...a: unknown[]) => unknown)(model, tokenizer, "x")).toThrow(/options are required/);
  });
});

describe("a batch of prompts (run one after another, each with its own KV cache)", () => {
  it.each(["tiny-llama", "small-llama"] as const)("%s: greedy results equal the prompts run one by one, read in turn or together", async (name) => {
    const { model, tokenizer } = fixture(name);
    const prompts = ["The quick brown", NON_ASCII, tokenizer.encode("Once upon a time")];
    const opts = { maxNewTokens: 10, stopTokens: [] };
    const alone = [];
    for (const p of prompts) alone.push(await collect(generate(model, tokenizer, p, opts)));
    const before = T.memory();
    const streams = generate(model, tokenizer, prompts, opts);
    expect(streams).toHaveLength(3);
    const inTurn = [];
    for (const s of streams) inTurn.push(await collect(s));
    expect(inTurn).toEqual(alone);
    const together = await Promise.all(generate(model, tokenizer, prompts, opts).map(collect));
    expect(together).toEqual(alone);
    expect(T.memory().tensors).toBe(before.tensors);
    for (const [i, r] of alone.entries()) {
      const ids = typeof prompts[i] === "string" ? tokenizer.encode(prompts[i]) : (prompts[i] as number[]);
      expect(r.result.ids).toEqual(generateTokens(model, ids, opts).ids);
    }
  });
});
