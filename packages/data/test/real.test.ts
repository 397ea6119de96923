// Integration with the real tiny-llama tokenizer (imported by path: @modulora/data does not
// depend on @modulora/llama) and the fixture datasets.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { LlamaTokenizer } from "../../llama/src/tokenizer.js";
import { BatchSource, buildDataset, classificationCandidates, loadDataset, padIdOf, promptIds, rougeScores, specialIds, type Dataset, type TokenizerLike } from "../src/index.js";

import { FakeTokenizer } from "./fake-tokenizer.js";

const writeAndReturn = (path: string, text: string) => (writeFileSync(path, text), path);
const FIXTURES = new URL("../../../fixtures/", import.meta.url).pathname;
const DATA = join(FIXTURES, "data");
let tok: LlamaTokenizer;
let spamTrain: Dataset; // built with the fast character-level fake: the real tokenizer runs at ~0.3 MB/s
let spam: Dataset; // the validation split, real tokenizer, the training spec
beforeAll(() => {
  tok = LlamaTokenizer.fromDir(join(FIXTURES, "tiny-llama"));
  spamTrain = loadDataset(join(DATA, "spam", "train.jsonl"), { format: "classification", tokenizer: new FakeTokenizer(), seqLen: 256 });
  spam = loadDataset(join(DATA, "spam", "valid.jsonl"), { ...spamTrain.spec, tokenizer: tok });
});

describe("the fixture datasets", () => {
  it("spam train: every record, the label set {ham, spam} from the data", () => {
    expect(spamTrain.examples.length).toBe(4677);
    expect(spamTrain.stats.records).toBe(4677);
    expect(spamTrain.spec).toEqual({ format: "classification", seqLen: 256, templates: { prompt: "{text}\nLabel:", target: " {label}" }, labels: ["ham", "spam"] });
    expect(spamTrain.examples.filter((e) => e.record!["label"] === "spam").length).toBe(1387);
    expect(spamTrain.stats.truncatedPrompts).toBeGreaterThan(0); // 512-character emails, one token per character
    expect(spamTrain.stats.truncatedTargets).toBe(0);
  });

  it("manpage-summary train: every record", () => {
    const train = loadDataset(join(DATA, "manpage-summary", "train.jsonl"), { format: "summarization", tokenizer: new FakeTokenizer(), seqLen: 1024 });
    expect(train.examples.length).toBe(856);
    expect(train.spec.labels).toBeUndefined();
  });
});

describe("with the tiny-llama tokenizer", () => {
  it("LlamaTokenizer satisfies TokenizerLike structurally", () => {
    const like: TokenizerLike = tok; // a type error here would fail typecheck
    const bos = tok.tokenToId("<|begin_of_text|>")!;
    const eos = tok.tokenToId("<|end_of_text|>")!;
    expect(specialIds(like)).toEqual({ bos, eos, pad: tok.tokenToId("<|pad|>") });
    expect(padIdOf(like)).toBe(tok.padTokenId);
  });

  it("the spam validation set loads with the training spec; targets masked exactly", () => {
    expect(spam.examples.length).toBe(572);
    expect(spam.spec).toEqual(spamTrain.spec);
    expect(spam.examples.filter((e) => e.record!["label"] === "spam").length).toBe(191);
    const eos = tok.eosTokenId!;
    for (const ex of spam.examples) {
      expect(ex.inputIds[0]).toBe(tok.bosTokenId);
      expect(ex.inputIds.length).toBeLessThanOrEqual(256);
      const target = ex.inputIds.slice(ex.promptLength);
      expect(ex.labels.slice(0, ex.promptLength).every((l) => l === -100)).toBe(true);
      expect(ex.labels.slice(ex.promptLength)).toEqual(target);
      expect(tok.decode(target)).toBe(` ${ex.record!["label"]}<|end_of_text|>`);
      expect(target.at(-1)).toBe(eos);
    }
  });

  it("the manpage-summary validation set loads; the prompt ids for generation are the examples' prompts", () => {
    const valid = loadDataset(join(DATA, "manpage-summary", "valid.jsonl"), { format: "summarization", tokenizer: tok, seqLen: 512 });
    expect(valid.examples.length).toBe(97);
    const ex = valid.examples.find((e) => e.promptLength + 3 < e.inputIds.length && e.inputIds.length < 500 && e.promptLength > 8)!;
    expect(promptIds(ex, valid.spec, tok)).toEqual(ex.inputIds.slice(0, ex.promptLength));
    expect(tok.decode(ex.inputIds.slice(ex.promptLength), { skipSpecialTokens: true })).toBe(` ${ex.record!["summary"]}`);
    const short = promptIds(ex, valid.spec, tok, { maxLength: 8 });
    expect(short).toEqual([tok.bosTokenId, ...ex.inputIds.slice(ex.promptLength - 7, ex.promptLength)]);
    expect(rougeScores(ex.record!["summary"] as string, ex.record!["summary"] as string).rougeL).toBe(1);
  });

  it("classificationCandidates: one sequence per label, sharing the prompt, target = ' label' + EOS", () => {
    const ex = spam.examples[0]!;
    const cands = classificationCandidates(ex, spam.spec.labels!, tok, { templates: spam.spec.templates, seqLen: spam.spec.seqLen });
    expect(cands.map((c) => c.label)).toEqual(["ham", "spam"]);
    const own = cands.find((c) => c.label === ex.record!["label"])!;
    expect(own.inputIds).toEqual(ex.inputIds);
    expect(own.labels).toEqual(ex.labels);
    for (const c of cands) {
      expect(tok.decode(c.inputIds.slice(c.targetStart, c.targetEnd))).toBe(` ${c.label}<|end_of_text|>`);
      expect(c.labels.slice(0, c.targetStart).every((l) => l === -100)).toBe(true);
      expect(c.targetEnd).toBe(c.inputIds.length);
    }
    const fromRecord = classificationCandidates({ text: "Subject: hello" }, ["ham", "spam"], tok);
    expect(tok.decode(fromRecord[1]!.inputIds)).toBe("<|begin_of_text|>Subject: hello\nLabel: spam<|end_of_text|>");
  });

  it("chat on the fixture's template: loss on the assistant contents and their EOS only", () => {
    const messages = [
      { role: "system", content: "You answer in one word." },
      { role: "user", content: "Colour of the sky?" },
      { role: "assistant", content: "Blue." },
      { role: "user", content: "And grass?" },
      { role: "assistant", content: "Green." },
    ];
    const { examples } = buildDataset([{ messages }], { format: "chat", tokenizer: tok, seqLen: 256 });
    const ex = examples[0]!;
    expect(tok.decode(ex.inputIds)).toBe(tok.applyChatTemplate(messages));
    // Trained spans, as text: each assistant content with the EOS the template writes after it.
    const spans: string[] = [];
    let cur: number[] = [];
    ex.labels.forEach((l, t) => {
      if (l !== -100) cur.push(ex.inputIds[t]!);
      else if (cur.length) (spans.push(tok.decode(cur)), (cur = []));
    });
    if (cur.length) spans.push(tok.decode(cur));
    expect(spans).toEqual(["Blue.<|end_of_text|>", "Green.<|end_of_text|>"]);
    expect(tok.decode(ex.inputIds.slice(0, ex.promptLength))).toBe(tok.applyChatTemplate(messages.slice(0, 2), { addGenerationPrompt: true }));
  });

  it("text packing of the corpus's documents, and batches of real examples", () => {
    const docs = ["The first document.", "The second one, a little longer than the first."];
    const { examples, stats } = buildDataset(docs, { format: "text", tokenizer: tok, seqLen: 8 });
    const stream = docs.flatMap((d) => [tok.bosTokenId!, ...tok.encode(d, { addSpecialTokens: false }), tok.eosTokenId!]);
    expect(examples.flatMap((e) => e.inputIds)).toEqual(stream.slice(0, examples.length * 8));
    expect(stats.droppedTokens).toBe(stream.length % 8);
    // The first 40 documents of the corpus's validation text (documents are separated by blank lines).
    const head = readFileSync(join(DATA, "lm", "valid.txt"), "utf8").split("\n\n").slice(0, 40).join("\n\n");
    const dir = mkdtempSync(join(tmpdir(), "modulora-data-lm-"));
    const lm = loadDataset(writeAndReturn(join(dir, "head.txt"), head), { format: "text", tokenizer: tok, seqLen: 128 });
    rmSync(dir, { recursive: true, force: true });
    expect(lm.stats.records).toBe(40);
    expect(lm.examples.every((e) => e.inputIds.length === 128)).toBe(true);

    const src = new BatchSource(spam.examples, { batchSize: 8, padId: padIdOf(tok), seed: 1 });
    expect(src.length).toBe(Math.ceil(572 / 8));
    const b = src.batch({ epoch: 0, index: 0 });
    expect(b.inputIds.length).toBe(b.batchSize * b.seqLen);
    for (let r = 0; r < b.batchSize; r++) {
      for (let t = b.lengths[r]!; t < b.seqLen; t++) {
        expect(b.inputIds[r * b.seqLen + t]).toBe(tok.padTokenId);
        expect(b.labels[r * b.seqLen + t]).toBe(-100);
      }
    }
  });

  it("the chat format on a tokenizer without a template fails clearly", () => {
    const config = JSON.parse(readFileSync(join(FIXTURES, "tiny-llama", "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
    delete config["chat_template"];
    const bare = LlamaTokenizer.fromJSON(JSON.parse(readFileSync(join(FIXTURES, "tiny-llama", "tokenizer.json"), "utf8")), config);
    const messages = [{ role: "user", content: "a" }, { role: "assistant", content: "b" }];
    expect(() => buildDataset([{ messages }], { format: "chat", tokenizer: bare, seqLen: 64 })).toThrow(/^<records>:1: the chat format needs the tokenizer's chat template, which failed: .*no chat template/);
  });
});
