// The fine-tuning glue against independent references: the loss transformers computed on
// tiny-llama's reference windows (fixtures/tiny-llama/reference.json), and plain f64 TypeScript
// log-softmax, cross-entropy, scoring and greedy decoding written here from the model's logits
// (the forward itself is checked against transformers in model.test.ts).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { loadSafetensors, memory, noGrad, tensor, tidy } from "@modulora/tensor";
import { batchLoss, evaluateClassification, evaluateLoss, generateText, loadLlama, newlineTokenIds, scoreCandidates } from "../src/index.js";

const dir = fileURLToPath(new URL("../../../fixtures/tiny-llama/", import.meta.url));
const { model, tokenizer } = loadLlama(dir);
const V = model.config.vocabSize;

/** log p(· | ids[0..p]) for every position p of one unpadded sequence: plain f64 log-softmax of the logits. */
function refLogProbs(ids: readonly number[]): Float64Array[] {
  const logits = noGrad(() => tidy(() => Float64Array.from(model.forward(tensor(Int32Array.from(ids), [1, ids.length], { dtype: "i32" })).logits.dataSync() as Float32Array)));
  return ids.map((_, p) => {
    const row = logits.subarray(p * V, (p + 1) * V);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    const lse = max + Math.log(sum);
    return row.map((x) => x - lse);
  });
}

/** Σ −log p(ids[p] | ids[..p]) over p ≥ 1 of one sequence, and the number of predicted tokens. */
function refNll(ids: readonly number[]): { sum: number; n: number } {
  const lp = refLogProbs(ids);
  let sum = 0;
  for (let p = 1; p < ids.length; p++) sum -= lp[p - 1]![ids[p]!]!;
  return { sum, n: ids.length - 1 };
}

/** A padded batch of sequences (pad id 1, label −100 on the padding). */
function padded(seqs: number[][]) {
  const t = Math.max(...seqs.map((s) => s.length));
  const pad = (ids: number[], fill: number) => [...ids, ...new Array<number>(t - ids.length).fill(fill)];
  return {
    inputIds: Int32Array.from(seqs.flatMap((s) => pad(s, 1))),
    labels: Int32Array.from(seqs.flatMap((s) => pad(s, -100))),
    lengths: seqs.map((s) => s.length),
    tokens: seqs.reduce((n, s) => n + s.length, 0),
  };
}

describe("fine-tuning glue", () => {
  const a = tokenizer.encode("The quick brown fox jumps over the lazy dog.");
  const b = tokenizer.encode("Packages are installed with apt.");

  it("batchLoss on the reference windows equals transformers' reference_loss", () => {
    const ref = loadSafetensors(`${dir}reference.safetensors`, { names: ["input_ids"] });
    const ids = Int32Array.from(ref.get("input_ids")!.dataSync() as Int32Array); // [3, 48]
    ref.get("input_ids")!.dispose();
    const { reference_loss: refLoss } = JSON.parse(readFileSync(`${dir}reference.json`, "utf8")) as { reference_loss: number };
    const l = tidy(() => batchLoss(model, { inputIds: ids, labels: ids, lengths: [48, 48, 48], tokens: 144 }, { training: false }).item());
    expect(Math.abs(l - refLoss)).toBeLessThan(2e-5); // the fixtures' measured tolerance for tiny-llama
  });

  it("batchLoss of a padded batch is the mean NLL of each sequence alone (padding and −100 ignored)", () => {
    const ra = refNll(a);
    const rb = refNll(b);
    const l = tidy(() => batchLoss(model, padded([a, b]), { training: false }).item());
    expect(Math.abs(l - (ra.sum + rb.sum) / (ra.n + rb.n))).toBeLessThan(1e-5);
  });

  it("evaluateLoss weights batches by predicted tokens", () => {
    const c = tokenizer.encode("Run the command again with the verbose flag to see more.");
    const ra = refNll(a);
    const rb = refNll(b);
    const rc = refNll(c);
    // batches of very different sizes: a plain mean of batch losses would differ from the token-weighted one
    const e = evaluateLoss(model, [padded([a]), padded([b, c])]);
    const expected = (ra.sum + rb.sum + rc.sum) / (ra.n + rb.n + rc.n);
    expect(e.tokens).toBe(ra.n + rb.n + rc.n);
    expect(Math.abs(e.loss - expected)).toBeLessThan(1e-5);
    expect(Math.abs(e.perplexity / Math.exp(expected) - 1)).toBeLessThan(1e-5);
  });

  it("scoreCandidates sums log p of the target span; a padded batch scores each candidate as alone", () => {
    const ids = tokenizer.encode("Hello world, hello again");
    const other = tokenizer.encode("Good morning");
    const span = (s: readonly number[], from: number, to: number) => {
      const lp = refLogProbs(s);
      let sum = 0;
      for (let p = from; p < to; p++) sum += lp[p - 1]![s[p]!]!;
      return sum;
    };
    const got = scoreCandidates(model, [
      { inputIds: other, targetStart: 1, targetEnd: other.length },
      { inputIds: ids, targetStart: 3, targetEnd: ids.length },
      { inputIds: ids, targetStart: 5, targetEnd: 6 },
    ]);
    const expected = [span(other, 1, other.length), span(ids, 3, ids.length), span(ids, 5, 6)];
    got.forEach((x, i) => expect(Math.abs(x - expected[i]!), `candidate ${i}`).toBeLessThan(1e-4));
    expect(() => scoreCandidates(model, [{ inputIds: ids, targetStart: 0, targetEnd: 2 }])).toThrow(/target span/);
  });

  it("classification predicts, per item, the label whose target has the highest reference log-probability", () => {
    const before = memory().tensors;
    const cand = (prompt: string, label: string) => {
      const p = tokenizer.encode(prompt);
      const target = tokenizer.encode(" " + label, { addSpecialTokens: false });
      return { label, inputIds: [...p, ...target], targetStart: p.length, targetEnd: p.length + target.length };
    };
    const prompts = ["The capital of France is", "To install a package, run", "The file was not"];
    const labels = ["the", "apt", "found", "zzzz qqqq"];
    const refScore = (c: ReturnType<typeof cand>) => {
      const lp = refLogProbs(c.inputIds);
      let s = 0;
      for (let p = c.targetStart; p < c.targetEnd; p++) s += lp[p - 1]![c.inputIds[p]!]!;
      return s;
    };
    const refPredictions = prompts.map((p) => {
      const scores = labels.map((l) => refScore(cand(p, l)));
      return labels[scores.indexOf(Math.max(...scores))]!;
    });
    // item 0 is labelled with the reference's prediction, the others with a label it did not pick
    const items = prompts.map((p, i) => ({
      label: i === 0 ? refPredictions[0]! : labels.find((l) => l !== refPredictions[i])!,
      candidates: labels.map((l) => cand(p, l)),
    }));
    const r = evaluateClassification(model, items);
    expect(r.predictions).toEqual(refPredictions);
    expect(r).toMatchObject({ n: 3, correct: 1 });
    expect(r.accuracy).toBeCloseTo(1 / 3, 12);
    expect(memory().tensors).toBe(before);
  });

  it("generateText equals a plain greedy loop (full forward per token, no KV cache) that stops at a newline or EOS", () => {
    // Independent of decoding: in tokenizer.json's byte-level vocabulary the newline byte is "Ċ"
    // (GPT-2's byte-to-unicode map sends 0x0A to U+010A); no added token holds a newline.
    const tokJson = JSON.parse(readFileSync(`${dir}tokenizer.json`, "utf8")) as { model: { vocab: Record<string, number> } };
    const nl = new Set(Object.entries(tokJson.model.vocab).filter(([piece]) => piece.includes("\u010a")).map(([, id]) => id));
    expect(nl.size).toBeGreaterThan(0);
    expect(new Set(newlineTokenIds(tokenizer))).toEqual(nl);
    const eos = new Set([...model.config.eosTokenIds, ...(tokenizer.eosTokenId !== null ? [tokenizer.eosTokenId] : [])]);
    /** Greedy decoding by argmax of the last position's logits; the text before the stop. */
    const greedy = (prompt: number[], max: number, stopAtNewline: boolean): string => {
      const seq = [...prompt];
      const out: number[] = [];
      for (let i = 0; i < max; i++) {
        const lp = refLogProbs(seq);
        const last = lp[seq.length - 1]!;
        let best = 0;
        for (let v = 1; v < V; v++) if (last[v]! > last[best]!) best = v;
        if (eos.has(best)) break;
        if (stopAtNewline && nl.has(best)) return tokenizer.decode(out, { skipSpecialTokens: true }) + tokenizer.decode([best]).split("\n")[0]!;
        out.push(best);
        seq.push(best);
      }
      return out.length ? tokenizer.decode(out, { skipSpecialTokens: true }) : "";
    };
    // stops at a newline after ", and the fish of the earth."; without the stop it goes on past it
    const prompt = tokenizer.encode("The quick brown fox");
    const text = generateText(model, tokenizer, prompt, { maxNewTokens: 40 });
    expect(text).toBe(greedy(prompt, 40, true));
    expect(text.length).toBeGreaterThan(0);
    expect(text.includes("\n")).toBe(false);
    const long = generateText(model, tokenizer, prompt, { maxNewTokens: 24, stopAtNewline: false });
    expect(long).toBe(greedy(prompt, 24, false));
    expect(long.includes("\n")).toBe(true);
    // runs into maxNewTokens before any newline
    const other = tokenizer.encode("DESCRIPTION\n       The");
    expect(generateText(model, tokenizer, other, { maxNewTokens: 20 })).toBe(greedy(other, 20, true));
  });
});
