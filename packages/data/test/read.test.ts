import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataError, loadDataset, readDataFile, readJsonl, readTextCorpus, readTextDocuments, streamJsonl } from "../src/index.js";
import { FakeTokenizer } from "./fake-tokenizer.js";

let tmp: string;
let n = 0;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "modulora-data-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
/** Writes `content` to a fresh file named `name` and returns its path. */
function file(name: string, content: string): string {
  const dir = join(tmp, `f${n++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}
/** The DataError `fn` throws. */
function errorOf(fn: () => unknown): DataError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    return err as DataError;
  }
  throw new Error("expected a DataError");
}
const tok = new FakeTokenizer();
const classify = (path: string) => loadDataset(path, { format: "classification", tokenizer: tok, seqLen: 64 });

describe("readJsonl", () => {
  it("parses objects, skips blank lines, tolerates a BOM and CRLF, keeps 1-based line numbers", () => {
    const path = file("a.jsonl", '\uFEFF{"text": "a", "label": "x"}\r\n\r\n  \n{"text": "b", "label": 2}\n');
    const recs = readJsonl(path);
    expect(recs.map((r) => r.value)).toEqual([{ text: "a", label: "x" }, { text: "b", label: 2 }]);
    expect(recs.map((r) => r.where)).toEqual([{ file: path, line: 1 }, { file: path, line: 4 }]);
  });

  it("names the file and line of malformed JSON (line 3)", () => {
    const path = file("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label": \n');
    const err = errorOf(() => readJsonl(path));
    expect(err.message).toMatch(new RegExp(`^${path.replace(/[.]/g, "\\.")}:3: invalid JSON`));
    expect(err.file).toBe(path);
    expect(err.line).toBe(3);
  });

  it("refuses a line that is not an object", () => {
    for (const [line, what] of [["[1, 2]", "an array"], ["null", "null"], ['"text"', "a string"], ["3", "a number"]] as const) {
      const path = file("x.jsonl", `{"text": "a", "label": "x"}\n${line}\n`);
      expect(() => readJsonl(path)).toThrow(`${path}:2: expected a JSON object, got ${what}`);
    }
  });

  it("refuses missing, empty and blank files and other file types", () => {
    const missing = join(tmp, "nope.jsonl");
    expect(() => readJsonl(missing)).toThrow(`${missing}: the file does not exist`);
    const empty = file("e.jsonl", "");
    expect(() => readJsonl(empty)).toThrow(`${empty}: the file is empty`);
    const blank = file("b.jsonl", "\uFEFF\n  \n\n");
    expect(() => readJsonl(blank)).toThrow(`${blank}: the file is empty`);
    expect(() => readJsonl(tmp)).toThrow(`${tmp}: not a regular file`);
    const csv = file("d.csv", "a,b\n");
    expect(() => readDataFile(csv)).toThrow(`${csv}: unsupported file type ".csv": use .jsonl or .txt`);
    const emptyTxt = file("e.txt", "\n\n");
    expect(() => readTextDocuments(emptyTxt)).toThrow(`${emptyTxt}: the file is empty`);
  });

  it("streamJsonl yields the same records and errors", async () => {
    const path = file("s.jsonl", '\uFEFF{"a": 1}\n\n{"a": 2}\r\n');
    const got = [];
    for await (const r of streamJsonl(path)) got.push(r);
    expect(got).toEqual(readJsonl(path));
    const bad = file("s.jsonl", '{"a": 1}\n{"a": 2}\n{oops}\n');
    await expect(async () => {
      for await (const _ of streamJsonl(bad)) void _;
    }).rejects.toThrow(`${bad}:3: invalid JSON`);
    const empty = file("s.jsonl", "\n");
    await expect(async () => {
      for await (const _ of streamJsonl(empty)) void _;
    }).rejects.toThrow(`${empty}: the file is empty`);
  });
});

describe("record validation names file and line", () => {
  it("missing field", () => {
    const path = file("m.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n');
    const err = errorOf(() => classify(path));
    expect(err.message).toBe(`${path}:2: missing field "label" (the classification format needs "text", "label")`);
    expect(err.line).toBe(2);
  });

  it("wrong type", () => {
    const text = file("t.jsonl", '{"text": 5, "label": "x"}\n');
    expect(() => classify(text)).toThrow(`${text}:1: field "text" must be a string, got a number`);
    const label = file("l.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "a", "label": true}\n');
    expect(() => classify(label)).toThrow(`${label}:3: field "label" must be a string or a number, got a boolean`);
    const summary = file("s.jsonl", '{"text": "a", "summary": ["x"]}\n');
    expect(() => loadDataset(summary, { format: "summarization", tokenizer: tok, seqLen: 64 })).toThrow(`${summary}:1: field "summary" must be a string, got an array`);
    const msgs = file("c.jsonl", '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n');
    expect(() => loadDataset(msgs, { format: "chat", tokenizer: tok, seqLen: 64 })).toThrow(`${msgs}:1: messages[1] has no "content"`);
  });

  it("not an object, through loadDataset", () => {
    const path = file("o.jsonl", '{"text": "a", "label": "x"}\n{"text": "a", "label": "x"}\n{"text": "a", "label": "x"}\n["a", "x"]\n');
    expect(() => classify(path)).toThrow(`${path}:4: expected a JSON object, got an array`);
  });

  it("missing file and wrong format name", () => {
    const missing = join(tmp, "absent.jsonl");
    expect(() => classify(missing)).toThrow(`${missing}: the file does not exist`);
    const path = file("ok.jsonl", '{"text": "a"}\n');
    expect(() => loadDataset(path, { format: "qa", tokenizer: tok, seqLen: 8 })).toThrow('unknown dataset format "qa": use one of text, instruct, chat, classification, summarization');
  });

  it("plain text is only for the text format", () => {
    const path = file("doc.txt", "some words\n");
    expect(() => classify(path)).toThrow(`${path}:1: plain text cannot be used by the classification format`);
  });
});

describe("readTextDocuments", () => {
  it("splits documents at blank lines and records their first line", () => {
    const path = file("c.txt", "\uFEFFline one\nline two\n\n\nsecond doc\r\n\nthird\n");
    expect(readTextDocuments(path)).toEqual([
      { text: "line one\nline two", where: { file: path, line: 1 } },
      { text: "second doc", where: { file: path, line: 5 } },
      { text: "third", where: { file: path, line: 7 } },
    ]);
  });
});

describe("readTextCorpus", () => {
  it("reads a .txt file raw or as documents, and a .jsonl file's text fields, joined by blank lines", () => {
    const txt = file("corpus.txt", "\uFEFFfirst line\nsame doc\n\n\n  \nsecond doc\n");
    expect(readTextCorpus(txt, { txt: "raw", what: "perplexity records" })).toBe("first line\nsame doc\n\n\n  \nsecond doc\n");
    expect(readTextCorpus(txt, { txt: "documents", what: "calibration records" })).toBe("first line\nsame doc\n\nsecond doc");
    const jsonl = file("corpus.jsonl", '{"text":"a b"}\n{"text":"c"}\n');
    expect(readTextCorpus(jsonl, { txt: "raw", what: "perplexity records" })).toBe("a b\n\nc");
  });
  it("names the record without a text field, and refuses an empty file", () => {
    const bad = file("bad.jsonl", '{"text":"ok"}\n{"body":"no text"}\n');
    const e = errorOf(() => readTextCorpus(bad, { txt: "raw", what: "calibration records" }));
    expect(e.message).toBe(`${bad}:2: calibration records need a string "text" field; use a .txt file, or records like {"text": "..."}`);
    expect(e.line).toBe(2);
    expect(errorOf(() => readTextCorpus(file("empty.txt", "\n \n"), { txt: "raw", what: "x" })).message).toBe(`${join(tmp, `f${n - 1}`, "empty.txt")}: the file is empty`);
  });
});
