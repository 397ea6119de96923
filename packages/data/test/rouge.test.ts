import { describe, expect, it } from "vitest";
import { lcsLength, meanRougeScores, rougeL, rougeN, rougeScores, rougeTokens } from "../src/index.js";

describe("rougeTokens", () => {
  it("lowercases and splits on every non-alphanumeric run (non-ASCII letters are separators, as in rouge-score)", () => {
    expect(rougeTokens("Hello, WORLD!! x-y  42")).toEqual(["hello", "world", "x", "y", "42"]);
    expect(rougeTokens("café")).toEqual(["caf"]);
    expect(rougeTokens(" ,. ")).toEqual([]);
  });
});

describe("rougeScores (hand-computed)", () => {
  it("identical → 1, disjoint → 0, empty → 0", () => {
    expect(rougeScores("The cat sat.", "the cat sat")).toEqual({ rouge1: 1, rouge2: 1, rougeL: 1 });
    expect(rougeScores("red fox", "blue whale")).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
    expect(rougeScores("", "blue whale")).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
    expect(rougeScores("a", "a")).toEqual({ rouge1: 1, rouge2: 0, rougeL: 1 }); // no bigram at all
  });

  it("the cat sat on the mat / the cat is on the mat", () => {
    // unigrams: the×2, cat, on, mat shared = 5 of 6 each side; bigrams: "the cat", "on the",
    // "the mat" = 3 of 5; LCS "the cat on the mat" = 5 of 6.
    const s = rougeScores("the cat sat on the mat", "the cat is on the mat");
    expect(s.rouge1).toBeCloseTo(5 / 6, 12);
    expect(s.rouge2).toBeCloseTo(3 / 5, 12);
    expect(s.rougeL).toBeCloseTo(5 / 6, 12);
  });

  it("different lengths: precision and recall differ", () => {
    // a b c vs a b c d e f: R1 P=1, R=1/2 → F=2/3; R2 P=2/2, R=2/5 → F=4/7; LCS 3 → F=2/3.
    expect(rougeN("a b c", "a b c d e f", 1)).toEqual({ precision: 1, recall: 0.5, f1: 2 / 3 });
    const r2 = rougeN("a b c", "a b c d e f", 2);
    expect(r2.precision).toBe(1);
    expect(r2.recall).toBeCloseTo(0.4, 12);
    expect(r2.f1).toBeCloseTo(4 / 7, 12);
    expect(rougeL("a b c", "a b c d e f").f1).toBeCloseTo(2 / 3, 12);
  });

  it("clips repeated n-grams and finds non-contiguous subsequences", () => {
    // the the the vs the cat: overlap min(3, 1) = 1 → P 1/3, R 1/2, F 0.4
    expect(rougeN("the the the", "the cat", 1).f1).toBeCloseTo(0.4, 12);
    // police killed the gunman / police kill the gunman: R1 3/4, R2 1/3, RL 3/4
    const s = rougeScores("police killed the gunman", "police kill the gunman");
    expect(s.rouge1).toBeCloseTo(0.75, 12);
    expect(s.rouge2).toBeCloseTo(1 / 3, 12);
    expect(s.rougeL).toBeCloseTo(0.75, 12);
    // a x b y c / a b c: LCS 3 → P 3/5, R 1, F 0.75 (ROUGE-2: no shared bigram)
    expect(rougeL("a x b y c", "a b c")).toEqual({ precision: 0.6, recall: 1, f1: 0.75 });
    expect(rougeN("a x b y c", "a b c", 2).f1).toBe(0);
    expect(lcsLength(["a", "b", "c", "b", "d", "a", "b"], ["b", "d", "c", "a", "b", "a"])).toBe(4);
  });

  it("means over pairs", () => {
    const m = meanRougeScores([{ prediction: "a b", reference: "a b" }, { prediction: "x", reference: "y" }]);
    expect(m).toEqual({ rouge1: 0.5, rouge2: 0.5, rougeL: 0.5 });
    expect(meanRougeScores([])).toEqual({ rouge1: 0, rouge2: 0, rougeL: 0 });
  });
});
