import { describe, expect, it } from "vitest";
import { buildDataset, type ChatMessage } from "../src/index.js";
import { EOS, FakeTokenizer, ids, masked, simpleChatTemplate } from "./fake-tokenizer.js";

const tok = new FakeTokenizer();
const chat = (messages: ChatMessage[], tokenizer = tok, seqLen = 256) => buildDataset([{ messages }], { format: "chat", tokenizer, seqLen, source: "chat.jsonl" });

describe("chat format", () => {
  it("trains on each assistant turn's content and EOS, not on the template's separator", () => {
    const messages = [
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "user", content: "ok" },
      { role: "assistant", content: "k" },
    ];
    const { examples, spec, stats } = chat(messages);
    const parts: [string, boolean][] = [
      ["<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n", false],
      ["yo", true],
      ["</s>", true],
      ["\n<|user|>\nok\n<|assistant|>\n", false],
      ["k", true],
      ["</s>", true],
      ["\n", false],
    ];
    const want = parts.map(([text, trained]) => {
      const t = text === "</s>" ? [EOS] : ids(text);
      return { ids: t, labels: trained ? t : masked(t.length) };
    });
    expect(examples[0]!.inputIds).toEqual(want.flatMap((w) => w.ids));
    expect(examples[0]!.labels).toEqual(want.flatMap((w) => w.labels));
    expect(examples[0]!.inputIds).toEqual(tok.encode(simpleChatTemplate(messages, false), { addSpecialTokens: false }));
    expect(examples[0]!.promptLength).toBe(want[0]!.ids.length);
    expect(spec).toEqual({ format: "chat", seqLen: 256, templates: null });
    expect(stats.labelTokens).toBe(5);
  });

  it("a token merged across the boundary is trained (longest common prefix, not the prefix's length)", () => {
    const merging = new FakeTokenizer({ merges: ["\ny"] });
    const { examples } = chat([{ role: "user", content: "a" }, { role: "assistant", content: "yo" }], merging);
    const ex = examples[0]!;
    // "<|user|>\na\n<|assistant|>" then the merged "\ny", "o", EOS, "\n"
    const prefix = ids("<|user|>\na\n<|assistant|>");
    expect(ex.inputIds).toEqual([...prefix, 100000, ...ids("o"), EOS, ...ids("\n")]);
    expect(ex.labels).toEqual([...masked(prefix.length), 100000, ...ids("o"), EOS, -100]);
  });

  it("a turn the template does not end with EOS is trained up to the next message", () => {
    const plain = new FakeTokenizer({ chatTemplate: (ms, gen) => ms.map((m) => `${m.role}: ${m.content}\n`).join("") + (gen ? "assistant: " : "") });
    const { examples } = chat([{ role: "user", content: "a" }, { role: "assistant", content: "b" }], plain);
    expect(examples[0]!.labels).toEqual([...masked(ids("user: a\nassistant: ").length), ...ids("b\n")]);
  });

  it("truncation keeps the last assistant turn's start", () => {
    const messages = [{ role: "user", content: "x".repeat(40) }, { role: "assistant", content: "yes" }];
    const { examples, stats } = chat(messages, tok, 10);
    // the last 10 tokens (this template writes no BOS): "nt|>\n" of the prompt, then the turn
    expect(examples[0]!.inputIds).toEqual([...ids("nt|>\n"), ...ids("yes"), EOS, ...ids("\n")]);
    expect(examples[0]!.promptLength).toBe(5);
    expect(examples[0]!.labels.filter((l) => l !== -100)).toEqual([...ids("yes"), EOS]);
    expect(stats.truncatedPrompts).toBe(1);
    const cut = chat([{ role: "user", content: "q" }, { role: "assistant", content: "a".repeat(30) }], tok, 10);
    expect(cut.examples[0]!.inputIds).toEqual(ids("a".repeat(10)));
    expect(cut.stats.truncatedTargets).toBe(1);
  });

  it("refuses conversations without an assistant turn, tokenizers without a template and templates that are not prefix-stable", () => {
    expect(() => chat([{ role: "user", content: "hi" }])).toThrow('chat.jsonl:1: no "assistant" message: nothing to train on');
    expect(() => chat([{ role: "user", content: "a" }, { role: "assistant", content: "b" }], new FakeTokenizer({ chatTemplate: null }))).toThrow("the chat format needs a tokenizer with a chat template");
    const failing = new FakeTokenizer({
      chatTemplate: () => {
        throw new Error("no chat template configured");
      },
    });
    expect(() => chat([{ role: "user", content: "a" }, { role: "assistant", content: "b" }], failing)).toThrow("chat.jsonl:1: the chat format needs the tokenizer's chat template, which failed: no chat template configured");
    const counting = new FakeTokenizer({ chatTemplate: (ms, gen) => `${ms.length} messages\n` + simpleChatTemplate(ms, gen) });
    expect(() => chat([{ role: "user", content: "a" }, { role: "assistant", content: "b" }], counting)).toThrow("chat.jsonl:1: the chat template is not prefix-stable");
  });
});
