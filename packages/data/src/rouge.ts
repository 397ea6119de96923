// ROUGE-1, ROUGE-2 and ROUGE-L F1 (Lin, 2004), with the tokenization of Google's rouge-score
// package without stemming: lowercase, every run of characters other than a-z and 0-9 is a
// separator. ROUGE-L uses the longest common subsequence of the two token lists.

/** Precision, recall and F1 of one ROUGE variant. */
export interface RougeScore {
  precision: number;
  recall: number;
  f1: number;
}

/** F1 of ROUGE-1, ROUGE-2 and ROUGE-L. */
export interface RougeScores {
  rouge1: number;
  rouge2: number;
  rougeL: number;
}

/** Lowercased alphanumeric tokens. */
export function rougeTokens(text: string): string[] {
  return text.toLowerCase().split(/[^a-z0-9]+/).filter((t) => t !== "");
}

function score(overlap: number, predicted: number, reference: number): RougeScore {
  if (overlap === 0) return { precision: 0, recall: 0, f1: 0 };
  // F1 = 2PR / (P + R) = 2·overlap / (predicted + reference), written the exact way.
  return { precision: overlap / predicted, recall: overlap / reference, f1: (2 * overlap) / (predicted + reference) };
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(" ");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** ROUGE-N: clipped n-gram overlap. 0 when either side has no n-gram. */
export function rougeN(prediction: string, reference: string, n: number): RougeScore {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`rougeN: n must be an integer ≥ 1, got ${n}`);
  const p = ngramCounts(rougeTokens(prediction), n);
  const r = ngramCounts(rougeTokens(reference), n);
  let overlap = 0;
  for (const [gram, c] of p) overlap += Math.min(c, r.get(gram) ?? 0);
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return score(overlap, total(p), total(r));
}

/** Length of the longest common subsequence (two-row dynamic programme, O(mn) time). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** ROUGE-L: LCS over the whole token lists (not the summary-level ROUGE-Lsum). */
export function rougeL(prediction: string, reference: string): RougeScore {
  const p = rougeTokens(prediction);
  const r = rougeTokens(reference);
  return score(lcsLength(p, r), p.length, r.length);
}

/** ROUGE-1, ROUGE-2 and ROUGE-L F1 of one prediction against one reference. */
export function rougeScores(prediction: string, reference: string): RougeScores {
  return { rouge1: rougeN(prediction, reference, 1).f1, rouge2: rougeN(prediction, reference, 2).f1, rougeL: rougeL(prediction, reference).f1 };
}

/** Mean ROUGE F1 over prediction/reference pairs (0 for no pairs). */
export function meanRougeScores(pairs: readonly { prediction: string; reference: string }[]): RougeScores {
  const sum = { rouge1: 0, rouge2: 0, rougeL: 0 };
  for (const { prediction, reference } of pairs) {
    const s = rougeScores(prediction, reference);
    sum.rouge1 += s.rouge1;
    sum.rouge2 += s.rouge2;
    sum.rougeL += s.rougeL;
  }
  const n = Math.max(pairs.length, 1);
  return { rouge1: sum.rouge1 / n, rouge2: sum.rouge2 / n, rougeL: sum.rougeL / n };
}
