import { describe, expect, it } from "vitest";
import { buildDataset, DataError, fillTemplate, formatTraits, specialIds, templateFields, truncateKeepingTarget } from "../src/index.js";
import { BOS, EOS, FakeTokenizer, ids, masked } from "./fake-tokenizer.js";

const tok = new FakeTokenizer();
const noBos = new FakeTokenizer({ addBos: false });

describe("prompt-target formats mask exactly the prompt", () => {
  it("classification: [BOS] + '{text}\\nLabel:' masked, ' {label}' + EOS trained", () => {
    const { examples, spec, stats } = buildDataset([{ text: "ab", label: "x" }], { format: "classification", tokenizer: tok, seqLen: 64 });
    const prompt = [BOS, ...ids("ab\nLabel:")];
    const target = [...ids(" x"), EOS];
    expect(examples[0]!.inputIds).toEqual([...prompt, ...target]);
    expect(examples[0]!.labels).toEqual([...masked(prompt.length), ...target]);
    expect(examples[0]!.promptLength).toBe(prompt.length);
    expect(examples[0]!.record).toEqual({ text: "ab", label: "x" });
    expect(examples[0]!.source).toEqual({ file: "<records>", line: 1 });
    expect(spec).toEqual({ format: "classification", seqLen: 64, templates: { prompt: "{text}\nLabel:", target: " {label}" }, labels: ["x"] });
    expect(stats).toEqual({ records: 1, examples: 1, tokens: 13, labelTokens: 3, truncatedPrompts: 0, truncatedTargets: 0, droppedTokens: 0 });
  });

  it("summarization: '{text}\\nSummary:' masked, ' {summary}' + EOS trained; extra fields are ignored", () => {
    const { examples, spec } = buildDataset([{ name: "ls", text: "lists", summary: "list files" }], { format: "summarization", tokenizer: tok, seqLen: 64 });
    const prompt = [BOS, ...ids("lists\nSummary:")];
    const target = [...ids(" list files"), EOS];
    expect(examples[0]!.inputIds).toEqual([...prompt, ...target]);
    expect(examples[0]!.labels).toEqual([...masked(prompt.length), ...target]);
    expect(spec.templates).toEqual({ prompt: "{text}\nSummary:", target: " {summary}" });
    expect(spec.labels).toBeUndefined();
  });

  it("instruct: the Alpaca sections, the Input section only when input is non-empty", () => {
    const { examples } = buildDataset(
      [
        { instruction: "Add", input: "1 2", output: "3" },
        { instruction: "Hi", output: "Hello" },
        { instruction: "Hi", input: "", output: "Hello" },
      ],
      { format: "instruct", tokenizer: tok, seqLen: 128 },
    );
    const withInput = [BOS, ...ids("### Instruction:\nAdd\n\n### Input:\n1 2\n\n### Response:\n")];
    expect(examples[0]!.inputIds).toEqual([...withInput, ...ids("3"), EOS]);
    expect(examples[0]!.labels).toEqual([...masked(withInput.length), ...ids("3"), EOS]);
    const noInput = [BOS, ...ids("### Instruction:\nHi\n\n### Response:\n")];
    for (const ex of examples.slice(1)) {
      expect(ex.inputIds).toEqual([...noInput, ...ids("Hello"), EOS]);
      expect(ex.labels).toEqual([...masked(noInput.length), ...ids("Hello"), EOS]);
    }
  });

  it("no BOS when the tokenizer adds none", () => {
    expect(specialIds(noBos)).toEqual({ bos: null, eos: EOS, pad: 0 });
    const { examples } = buildDataset([{ text: "ab", label: "x" }], { format: "classification", tokenizer: noBos, seqLen: 64 });
    expect(examples[0]!.inputIds).toEqual([...ids("ab\nLabel:"), ...ids(" x"), EOS]);
    expect(examples[0]!.labels).toEqual([...masked(9), ...ids(" x"), EOS]);
  });

  it("pads with EOS when the tokenizer has no pad token", () => {
    expect(specialIds(new FakeTokenizer({ padTokenId: null })).pad).toBe(EOS);
  });
});

describe("labels", () => {
  it("the label set comes from the data: unique, sorted, numbers as strings", () => {
    const recs = [{ text: "a", label: "spam" }, { text: "b", label: 2 }, { text: "c", label: "ham" }, { text: "d", label: "spam" }];
    const { spec, examples } = buildDataset(recs, { format: "classification", tokenizer: tok, seqLen: 64 });
    expect(spec.labels).toEqual(["2", "ham", "spam"]);
    expect(tok.decode(examples[1]!.inputIds.slice(examples[1]!.promptLength))).toBe(" 2</s>");
  });

  it("a given label set is kept as given and checked", () => {
    const { spec } = buildDataset([{ text: "a", label: "b" }], { format: "classification", tokenizer: tok, seqLen: 64, labels: ["b", "a", "b"] });
    expect(spec.labels).toEqual(["b", "a"]);
    expect(() => buildDataset([{ text: "a", label: "a" }, { text: "a", label: "c" }], { format: "classification", tokenizer: tok, seqLen: 64, labels: ["a", "b"], source: "valid.jsonl" })).toThrow(
      'valid.jsonl:2: label "c" is not in the label set ("a", "b")',
    );
    expect(() => buildDataset([{ text: "a", summary: "b" }], { format: "summarization", tokenizer: tok, seqLen: 64, labels: ["a"] })).toThrow("labels are for classification");
  });

  it("a spec plus a tokenizer rebuilds evaluation data the same way", () => {
    const train = buildDataset([{ text: "a", label: "y" }, { text: "b", label: "n" }], { format: "classification", tokenizer: tok, seqLen: 32, templates: { prompt: "Q: {text} A:" } });
    const valid = buildDataset([{ text: "c", label: "n" }], { ...train.spec, tokenizer: tok });
    expect(valid.spec).toEqual(train.spec);
    expect(valid.examples[0]!.inputIds).toEqual([BOS, ...ids("Q: c A:"), ...ids(" n"), EOS]);
  });
});

describe("templates", () => {
  it("overrides replace the defaults they name; the spec returns the templates in use", () => {
    const { examples, spec } = buildDataset([{ text: "hi", label: "x", name: "n1" }], {
      format: "classification",
      tokenizer: tok,
      seqLen: 64,
      templates: { prompt: "[{name}] {{raw}} {text} =>" },
    });
    expect(spec.templates).toEqual({ prompt: "[{name}] {{raw}} {text} =>", target: " {label}" });
    const prompt = [BOS, ...ids("[n1] {raw} hi =>")];
    expect(examples[0]!.inputIds).toEqual([...prompt, ...ids(" x"), EOS]);
    expect(examples[0]!.labels).toEqual([...masked(prompt.length), ...ids(" x"), EOS]);
  });

  it("fillTemplate and templateFields", () => {
    expect(fillTemplate("{a}-{b}{{c}}{ d }{", { a: "x", b: 3 })).toBe("x-3{c}{ d }{");
    expect(fillTemplate("{a}", { a: "{b}", b: "no" })).toBe("{b}");
    expect(templateFields("{text}\n{label} {text} {{x}}")).toEqual(["text", "label"]);
  });

  it("refuses templates that cannot be used, naming the record for a missing field", () => {
    const opts = { format: "classification", tokenizer: tok, seqLen: 64, source: "d.jsonl" } as const;
    expect(() => buildDataset([{ text: "a", label: "x" }], { ...opts, templates: { prompt: "{title}: {text}" } })).toThrow('d.jsonl:1: the template uses {title} but the record has no "title" field');
    expect(() => buildDataset([{ text: "a", label: "x", title: null }], { ...opts, templates: { prompt: "{title}" } })).toThrow('d.jsonl:1: the template uses {title} but "title" is null, not a string');
    expect(() => buildDataset([{ text: "a", label: "x" }], { ...opts, templates: { promptNoInput: "x" } })).toThrow('the classification format has no "promptNoInput" template (it has prompt, target)');
    expect(() => buildDataset(["doc"], { format: "text", tokenizer: tok, seqLen: 2, templates: { prompt: "x" } })).toThrow("the text format takes no templates (got prompt)");
  });
});

describe("truncation keeps the target", () => {
  it("cuts the prompt from the left, keeping BOS", () => {
    const { examples, stats } = buildDataset([{ text: "abcdefgh", label: "x" }], { format: "classification", tokenizer: tok, seqLen: 8 });
    // [BOS] + "abcdefgh\nLabel:" (16 tokens) + " x" + EOS (3): 19 > 8, keep BOS + the last 7.
    expect(examples[0]!.inputIds).toEqual([BOS, ...ids("bel:"), ...ids(" x"), EOS]);
    expect(examples[0]!.labels).toEqual([...masked(5), ...ids(" x"), EOS]);
    expect(examples[0]!.promptLength).toBe(5);
    expect(stats.truncatedPrompts).toBe(1);
    expect(stats.truncatedTargets).toBe(0);
  });

  it("cuts the target's end when the target alone does not fit, and counts it", () => {
    const { examples, stats } = buildDataset([{ text: "t", summary: "abcdefghijklmnopqrst" }, { text: "t", summary: "ok" }], { format: "summarization", tokenizer: tok, seqLen: 8 });
    expect(examples[0]!.inputIds).toEqual([BOS, ...ids(" abcdef")]);
    expect(examples[0]!.labels).toEqual([-100, ...ids(" abcdef")]);
    expect(examples[0]!.promptLength).toBe(1);
    expect(stats.truncatedTargets).toBe(1);
    expect(stats.truncatedPrompts).toBe(1); // the second: [BOS] + "t\nSummary:" + " ok" + EOS = 15 tokens
    expect(examples[1]!.inputIds).toEqual([BOS, ...ids("ry:"), ...ids(" ok"), EOS]);
  });

  it("without BOS nothing is kept at the left", () => {
    const out = truncateKeepingTarget([10, 11, 12, 13, 14], [-100, -100, -100, 13, 14], 3, 3, false);
    expect(out).toEqual({ inputIds: [12, 13, 14], labels: [-100, 13, 14], promptLength: 1, truncation: "prompt" });
    const fits = truncateKeepingTarget([10, 11], [-100, 11], 1, 3, true);
    expect(fits).toEqual({ inputIds: [10, 11], labels: [-100, 11], promptLength: 1, truncation: "none" });
  });

  it("seqLen must be an integer ≥ 2", () => {
    for (const seqLen of [1, 0, 2.5, NaN]) expect(() => buildDataset([{ text: "a", label: "x" }], { format: "classification", tokenizer: tok, seqLen })).toThrow(`seqLen must be an integer ≥ 2, got ${seqLen}`);
  });
});

describe("text format packs documents", () => {
  it("[BOS] doc [EOS] concatenated, cut into seqLen windows, the last partial one dropped; every token a label", () => {
    const { examples, stats, spec } = buildDataset(["abc", { text: "de" }], { format: "text", tokenizer: tok, seqLen: 4 });
    // stream: BOS a b c EOS BOS d e EOS (9 tokens) → 2 windows, 1 dropped
    expect(examples.map((e) => e.inputIds)).toEqual([
      [BOS, ...ids("abc")],
      [EOS, BOS, ...ids("de")],
    ]);
    for (const ex of examples) {
      expect(ex.labels).toEqual(ex.inputIds);
      expect(ex.promptLength).toBe(0);
    }
    expect(stats.droppedTokens).toBe(1);
    expect(stats.labelTokens).toBe(8);
    expect(spec).toEqual({ format: "text", seqLen: 4, templates: null });
  });

  it("without BOS only EOS separates documents", () => {
    const { examples } = buildDataset(["ab", "cd"], { format: "text", tokenizer: noBos, seqLen: 3 });
    expect(examples.map((e) => e.inputIds)).toEqual([[...ids("ab"), EOS], [...ids("cd"), EOS]]);
  });

  it("too little text is an error", () => {
    expect(() => buildDataset(["ab"], { format: "text", tokenizer: tok, seqLen: 8 })).toThrow("the text makes no full window: 4 tokens < seqLen 8");
  });

  it("JSONL records need a string text", () => {
    expect(() => buildDataset([{ body: "x" }], { format: "text", tokenizer: tok, seqLen: 2 })).toThrow('<records>:1: missing field "text" (the text format needs "text")');
  });
});

describe("format table", () => {
  it("names every format in the error for an unknown one", () => {
    expect(() => formatTraits("alpaca")).toThrow(DataError);
    expect(() => formatTraits("toString")).toThrow('unknown dataset format "toString": use one of text, instruct, chat, classification, summarization');
  });
});
