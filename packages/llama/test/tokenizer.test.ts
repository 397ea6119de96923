import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyTokenizerFiles } from "../src/load.js";
import { LlamaTokenizer, TokenizerError, type ChatMessage } from "../src/tokenizer.js";
import { smallLlamaDir } from "./fixtures.js";

const FIXTURES = new URL("../../../fixtures/", import.meta.url).pathname;
const TINY = join(FIXTURES, "tiny-llama");

interface Vectors {
  cases: { text: string; ids: number[]; ids_no_special: number[]; decoded: string }[];
  chat: { messages: ChatMessage[]; rendered: string; generation_prompt: string };
}
const readVectors = (dir: string) => JSON.parse(readFileSync(join(dir, "tokenizer_vectors.json"), "utf8")) as Vectors;

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-tok-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});
let dirCount = 0;
/** A copy of the tiny-llama tokenizer files, with tokenizer_config.json edited by `edit`. */
function tinyCopy(edit: (cfg: Record<string, unknown>) => void = () => undefined): string {
  const dir = join(tmp, `t${dirCount++}`);
  mkdirSync(dir);
  for (const f of ["tokenizer.json", "special_tokens_map.json"]) copyFileSync(join(TINY, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(TINY, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  edit(cfg);
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
  return dir;
}

/** Checks every case of tokenizer_vectors.json, and the chat rendering, exactly. */
function checkVectors(dir: string): void {
  const tok = LlamaTokenizer.fromDir(dir);
  const v = readVectors(dir);
  expect(v.cases.length).toBeGreaterThan(5);
  for (const c of v.cases) {
    expect(tok.encode(c.text), c.text).toEqual(c.ids);
    expect(tok.encode(c.text, { addSpecialTokens: false }), c.text).toEqual(c.ids_no_special);
    expect(tok.decode(c.ids_no_special), c.text).toBe(c.decoded);
  }
  expect(tok.applyChatTemplate(v.chat.messages)).toBe(v.chat.rendered);
  // The generation prompt is rendered from the conversation before the assistant answers.
  expect(tok.applyChatTemplate(v.chat.messages.slice(0, -1), { addGenerationPrompt: true })).toBe(v.chat.generation_prompt);
  const ids = tok.applyChatTemplate(v.chat.messages, { tokenize: true });
  expect(ids).toEqual(tok.encode(v.chat.rendered, { addSpecialTokens: false }));
  expect(tok.decode(ids)).toBe(v.chat.rendered);
}

describe("tiny-llama tokenizer (byte-level BPE)", () => {
  it("matches every case of tokenizer_vectors.json and the chat rendering exactly", () => checkVectors(TINY));

  it("special tokens and sizes", () => {
    const tok = LlamaTokenizer.fromDir(TINY);
    expect(tok.bosTokenId).toBe(0);
    expect(tok.eosTokenId).toBe(1);
    expect(tok.padTokenId).toBe(2);
    expect(tok.unkTokenId).toBe(null);
    expect(tok.bosToken).toBe("<|begin_of_text|>");
    expect(tok.eosToken).toBe("<|end_of_text|>");
    expect(tok.vocabSize).toBe(4096);
    expect(tok.hasChatTemplate).toBe(true);
  });

  it("decode: empty list, special tokens, ids out of range", () => {
    const tok = LlamaTokenizer.fromDir(TINY);
    expect(tok.decode([])).toBe("");
    const ids = [...tok.encode("Hello world"), 1];
    expect(tok.decode(ids)).toBe("<|begin_of_text|>Hello world<|end_of_text|>");
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("Hello world");
    expect(() => tok.decode([5000])).toThrow(RangeError);
    expect(() => tok.decode([1.5])).toThrow(/1\.5/);
  });

  it("add_bos_token / add_eos_token from the config decide the special tokens", () => {
    const both = LlamaTokenizer.fromDir(tinyCopy((c) => (c["add_eos_token"] = true)));
    expect(both.encode("Hello world")).toEqual([0, 1311, 303, 81, 1161, 1]);
    expect(both.encode("Hello world", { addSpecialTokens: false })).toEqual([1311, 303, 81, 1161]);
    const none = LlamaTokenizer.fromDir(tinyCopy((c) => (c["add_bos_token"] = false)));
    expect(none.encode("Hello world")).toEqual([1311, 303, 81, 1161]);
    // Neither flag: the post-processor of tokenizer.json adds BOS.
    const post = LlamaTokenizer.fromDir(tinyCopy((c) => delete c["add_bos_token"] && delete c["add_eos_token"]));
    expect(post.encode("Hello world")).toEqual([0, 1311, 303, 81, 1161]);
  });

  it("chat templates: named lists, chat_template.jinja, extra context, errors", () => {
    const tpl = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}{{ extra }}";
    const listed = LlamaTokenizer.fromDir(tinyCopy((c) => (c["chat_template"] = [{ name: "default", template: tpl }, { name: "tool_use", template: "T" }])));
    const msgs = [{ role: "user", content: "hi" }];
    expect(listed.applyChatTemplate(msgs, { addGenerationPrompt: true, context: { extra: "!" } })).toBe("<|begin_of_text|>[user] hi[assistant]!");
    expect(listed.applyChatTemplate(msgs, { templateName: "tool_use" })).toBe("T");
    expect(() => listed.applyChatTemplate(msgs, { templateName: "rag" })).toThrow(/no chat template named "rag".*"default", "tool_use"/);

    const dir = tinyCopy();
    writeFileSync(join(dir, "chat_template.jinja"), "{% for m in messages %}<{{ m.content }}>{% endfor %}");
    expect(LlamaTokenizer.fromDir(dir).applyChatTemplate(msgs)).toBe("<hi>");

    const none = LlamaTokenizer.fromDir(tinyCopy((c) => delete c["chat_template"]));
    expect(none.hasChatTemplate).toBe(false);
    expect(() => none.applyChatTemplate(msgs)).toThrow(/no chat template/);
    const raising = LlamaTokenizer.fromDir(tinyCopy((c) => (c["chat_template"] = "{{ raise_exception('roles must alternate') }}")));
    expect(() => raising.applyChatTemplate(msgs)).toThrow(/chat template failed: roles must alternate/);
    const broken = LlamaTokenizer.fromDir(tinyCopy((c) => (c["chat_template"] = "{% for m in messages %}")));
    expect(() => broken.applyChatTemplate(msgs)).toThrow(TokenizerError);
  });

  it("missing files and malformed JSON name the file", () => {
    const empty = join(tmp, "empty");
    mkdirSync(empty);
    expect(() => LlamaTokenizer.fromDir(empty)).toThrow(TokenizerError);
    expect(() => LlamaTokenizer.fromDir(empty)).toThrow(`${join(empty, "tokenizer.json")}: the file does not exist`);
    const noConfig = tinyCopy();
    rmSync(join(noConfig, "tokenizer_config.json"));
    expect(() => LlamaTokenizer.fromDir(noConfig)).toThrow(`${join(noConfig, "tokenizer_config.json")}: the file does not exist`);
    const bad = tinyCopy();
    writeFileSync(join(bad, "tokenizer_config.json"), "{ bad");
    expect(() => LlamaTokenizer.fromDir(bad)).toThrow(/tokenizer_config\.json: the file is not valid JSON/);
    const notTok = tinyCopy();
    writeFileSync(join(notTok, "tokenizer.json"), "[]");
    expect(() => LlamaTokenizer.fromDir(notTok)).toThrow(/tokenizer\.json must be a JSON object with a "model"/);
    const unknownBos = tinyCopy((c) => (c["bos_token"] = "<nope>"));
    expect(() => LlamaTokenizer.fromDir(unknownBos)).toThrow(`bos_token "<nope>" is not in the vocabulary`);
  });

  it("copyTokenizerFiles copies the tokenizer files (and only those)", () => {
    const dst = join(tmp, "copy", "nested");
    const copied = copyTokenizerFiles(TINY, dst);
    expect(copied).toEqual(["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]);
    expect(readdirSync(dst).sort()).toEqual([...copied].sort());
    for (const f of copied) expect(readFileSync(join(dst, f)).equals(readFileSync(join(TINY, f))), f).toBe(true);
    expect(LlamaTokenizer.fromDir(dst).encode("Hello world")).toEqual([0, 1311, 303, 81, 1161]);
    expect(() => copyTokenizerFiles(join(tmp, "empty"), join(tmp, "copy2"))).toThrow(/tokenizer\.json does not exist/);
  });
});

describe("small-llama tokenizer (SentencePiece-style BPE, byte fallback)", () => {
  it("matches every case of tokenizer_vectors.json and the chat rendering exactly", () => checkVectors(smallLlamaDir()));

  it("special tokens", () => {
    const tok = LlamaTokenizer.fromDir(smallLlamaDir());
    expect([tok.unkTokenId, tok.bosTokenId, tok.eosTokenId, tok.padTokenId]).toEqual([0, 1, 2, null]);
    expect(tok.vocabSize).toBe(8192);
    // Byte-fallback tokens are special in this tokenizer.json: skipping special tokens drops them, as in transformers.
    const ids = tok.encode("🦙", { addSpecialTokens: false });
    expect(ids.every((id) => tok.idToToken(id)!.startsWith("<0x") || tok.idToToken(id) === "▁")).toBe(true);
    expect(tok.decode(ids)).toBe("🦙");
    expect(tok.decode(ids, { skipSpecialTokens: true })).not.toContain("🦙");
  });
});
