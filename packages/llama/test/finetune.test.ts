import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { logSoftmax, memory, noGrad, tensor, tidy } from "@modulora/tensor";
import { batchLoss, evaluateClassification, evaluateLoss, generateText, loadLlama, newlineTokenIds, scoreCandidates } from "../src/index.js";

const dir = fileURLToPath(new URL("../../../fixtures/tiny-llama", import.meta.url));
const { model, tokenizer } = loadLlama(dir);

describe("fine-tuning glue", () => {
  const a = tokenizer.encode("The quick brown fox jumps over the lazy dog.");
  const b = tokenizer.encode("Packages are installed with apt.");
  const t = Math.max(a.length, b.length);
  const pad = (ids: number[], fill: number) => [...ids, ...new Array(t - ids.length).fill(fill)];
  const batch = {
    inputIds: Int32Array.from([...pad(a, 1), ...pad(b, 1)]),
    labels: Int32Array.from([...pad(a, -100), ...pad(b, -100)]),
    lengths: [a.length, b.length],
    tokens: a.length + b.length,
  };
  it("batchLoss is the model's shifted next-token loss; evaluateLoss weights batches by tokens", () => {
    const l = tidy(() => batchLoss(model, batch, { training: false }).item());
    const ref = tidy(() => model.loss(tensor(batch.inputIds, [2, t], { dtype: "i32" }), tensor(batch.labels, [2, t], { dtype: "i32" })).item());
    expect(l).toBeCloseTo(ref, 6);
    const e = evaluateLoss(model, [batch]);
    expect(e.tokens).toBe(a.length - 1 + b.length - 1);
    expect(e.loss).toBeCloseTo(l, 6);
    expect(e.perplexity).toBeCloseTo(Math.exp(l), 4);
  });
  it("scoreCandidates sums log p of the target span", () => {
    const ids = tokenizer.encode("Hello world, hello again");
    const [s] = scoreCandidates(model, [{ inputIds: ids, targetStart: 3, targetEnd: ids.length }]);
    const ref = noGrad(() =>
      tidy(() => {
        const lp = logSoftmax(model.forward(tensor(Int32Array.from(ids), [1, ids.length], { dtype: "i32" })).logits, -1).toFloat64Array();
        const v = model.config.vocabSize;
        let sum = 0;
        for (let p = 3; p < ids.length; p++) sum += lp[(p - 1) * v + ids[p]!]!;
        return sum;
      }),
    );
    expect(s).toBeCloseTo(ref, 4);
    // A batch of candidates of different lengths (padded to the longest) scores each as alone.
    const other = tokenizer.encode("Good morning");
    const batch = scoreCandidates(model, [{ inputIds: other, targetStart: 1, targetEnd: other.length }, { inputIds: ids, targetStart: 3, targetEnd: ids.length }, { inputIds: ids, targetStart: 5, targetEnd: 6 }]);
    const alone = [
      scoreCandidates(model, [{ inputIds: other, targetStart: 1, targetEnd: other.length }])[0]!,
      s!,
      scoreCandidates(model, [{ inputIds: ids, targetStart: 5, targetEnd: 6 }])[0]!,
    ];
    batch.forEach((x, i) => expect(x, `candidate ${i}`).toBeCloseTo(alone[i]!, 4));
    expect(() => scoreCandidates(model, [{ inputIds: ids, targetStart: 0, targetEnd: 2 }])).toThrow(/target span/);
  });
  it("classification picks the label with the highest target log-probability", () => {
    const before = memory().tensors;
    const prompt = tokenizer.encode("The capital of France is");
    const cand = (label: string) => {
      const target = tokenizer.encode(" " + label, { addSpecialTokens: false });
      return { label, inputIds: [...prompt, ...target], targetStart: prompt.length, targetEnd: prompt.length + target.length };
    };
    const scores = scoreCandidates(model, [cand("the"), cand("zzzz qqqq")]);
    const truth = scores[0]! > scores[1]! ? "the" : "zzzz qqqq";
    const r = evaluateClassification(model, [{ label: truth, candidates: [cand("the"), cand("zzzz qqqq")] }, { label: "nope", candidates: [cand("the"), cand("zzzz qqqq")] }]);
    expect(r).toMatchObject({ n: 2, correct: 1, accuracy: 0.5 });
    expect(memory().tensors).toBe(before);
  });
  it("generateText is greedy and stops at a newline or EOS", () => {
    const nl = newlineTokenIds(tokenizer);
    expect(nl.length).toBeGreaterThan(0);
    expect(nl.every((id) => tokenizer.decode([id]).includes("\n"))).toBe(true);
    const prompt = tokenizer.encode("NAME\n    ls - list directory contents\n\nSYNOPSIS");
    const text = generateText(model, tokenizer, prompt, { maxNewTokens: 40 });
    expect(text.includes("\n")).toBe(false);
    const long = generateText(model, tokenizer, prompt, { maxNewTokens: 40, stopAtNewline: false });
    expect(long.startsWith(text)).toBe(true);
  });
});
