// PEFT's target_modules / exclude_modules matching: the linear-time NFA against JavaScript's
// RegExp (as the reference for patterns it runs in reasonable time), the pathological pattern of
// the reliability review, and the refusals outside the subset.
import { describe, expect, it } from "vitest";
import { compileModulePattern, loraModuleName, LINEAR_NAMES, moduleSelector, ModulePatternError } from "../src/index.js";

/** Module names of a 3-block model, plus a few that are not linears, to test misses too. */
const NAMES = [
  ...[0, 1, 2, 10].flatMap((b) => LINEAR_NAMES.map((n) => loraModuleName(b, n))),
  "model.embed_tokens", "lm_head", "model.layers.0.self_attn", "model.layers.0.mlp.act_fn", "", "q_proj", "xq_proj",
];

/** Patterns as PEFT users write them (docs, model cards, configs found in the wild). */
const PATTERNS = [
  ".*\\.(q_proj|v_proj)",
  ".*(q_proj|k_proj|v_proj|o_proj)$",
  "^model\\.layers\\.(0|1)\\..*_proj$",
  "model\\.layers\\.\\d+\\.self_attn\\.[qkv]_proj",
  "model.layers.[0-9]+.mlp.(gate|up|down)_proj",
  ".*layers.*(self_attn|mlp).*(q|k|v|o)_proj$",
  ".*\\.layers\\.\\d{1,2}\\.(self_attn|mlp)\\.\\w+",
  "(?:.*\\.)?(q|v)_proj",
  "(?P<blk>model\\.layers\\.1)\\.self_attn\\.(q|k)_proj",
  "[^.]*\\.layers\\.[^02]\\..*",
  "model\\.layers\\.(1|10)\\.mlp\\.down_proj|lm_head",
  "m+o?del.*proj{1,}",
  "model\\.layers\\.\\d{2}\\..*",
  "model\\.layers\\.\\d{,1}\\.mlp\\.up_proj",
  "[a-z_0-9.]+",
  ".*[-.]q_proj",
  "(|model\\.)layers.*",
  "a{2}|model.*k_proj",
  "\\Amodel.*o_proj\\Z",
];

describe("compileModulePattern (PEFT's re.fullmatch on a Thompson NFA)", () => {
  for (const p of PATTERNS) {
    it(`matches what RegExp matches: ${p}`, () => {
      const ours = compileModulePattern(p);
      // The reference: a full match, with Python's named group and \A \Z spelled for JS.
      const js = new RegExp(`^(?:${p.replace(/\(\?P</g, "(?<").replace(/\\A/g, "^").replace(/\\Z/g, "$").replace(/\{,/g, "{0,")})$`);
      const mismatches = NAMES.filter((n) => ours(n) !== js.test(n));
      expect(mismatches).toEqual([]);
      expect(NAMES.some((n) => ours(n))).toBe(true); // each pattern selects something
    });
  }

  it("the pathological pattern of the review finishes at once on long names (RegExp backtracks for minutes)", () => {
    const evil = "(([a-z_0-9.])+)+X";
    const m = compileModulePattern(evil);
    const long = "model.layers.123.self_attn.q_proj".repeat(8); // 264 characters, no X
    expect(m(long)).toBe(false);
    expect(m(`${long}X`)).toBe(true);
    for (const n of NAMES) expect(m(n)).toBe(false);
  });

  it("nested and counted repetitions stay linear; too many states is refused", () => {
    const m = compileModulePattern("((a|aa)*)*(b{2,3}|c)*");
    expect(m(`${"a".repeat(2000)}bbbc`)).toBe(true);
    expect(m(`${"a".repeat(2000)}bd`)).toBe(false);
    expect(() => compileModulePattern("((a{100}){100}){100}")).toThrow(/more than 20000 states/);
    expect(() => compileModulePattern("a".repeat(5000))).toThrow(/5000 characters long/);
  });

  it("treats a brace that is not a count as a literal, as Python does", () => {
    expect(compileModulePattern("a{x}")("a{x}")).toBe(true);
    expect(compileModulePattern("a{2}")("aa")).toBe(true);
  });

  const refused: [string, RegExp][] = [
    ["(a)\\1", /the back-reference \\1 is not supported \(at offset 3\)/],
    ["(?=q)q_proj", /look-ahead is not supported \(at offset 0\)/],
    ["(?<!k)_proj", /look-behind/],
    ["(?i)Q_PROJ", /an inline flag or extension group/],
    ["\\bq_proj", /the escape \\b is not supported/],
    ["(q_proj", /missing '\)'/],
    ["q_proj)", /unbalanced '\)'/],
    ["[a-", /missing '\]'/],
    ["*q", /nothing to repeat/],
    ["a{3,1}", /max < min/],
    ["q++", /possessive quantifiers are not supported/],
    ["q**", /a quantifier after a quantifier \(Python: multiple repeat\) \(at offset 2\)/],
    ["q{2}{3}", /multiple repeat/],
  ];
  for (const [p, msg] of refused) {
    it(`refuses ${JSON.stringify(p)} with a message naming why and where`, () => {
      expect(() => compileModulePattern(p)).toThrow(ModulePatternError);
      expect(() => compileModulePattern(p)).toThrow(msg);
    });
  }
});

describe("moduleSelector (PEFT's check_target_module_exists)", () => {
  it("a list matches exact names and dotted suffixes only", () => {
    const s = moduleSelector(["q_proj", "mlp.down_proj"]);
    expect(s("model.layers.3.self_attn.q_proj")).toBe(true);
    expect(s("q_proj")).toBe(true);
    expect(s("model.layers.3.self_attn.xq_proj")).toBe(false);
    expect(s("model.layers.3.mlp.down_proj")).toBe(true);
    expect(s("model.layers.3.self_attn.o_proj")).toBe(false);
  });
  it('"all-linear" selects every linear; a string is a full match, not a search', () => {
    expect(moduleSelector("all-linear")("model.layers.0.mlp.up_proj")).toBe(true);
    expect(moduleSelector("q_proj")("model.layers.0.self_attn.q_proj")).toBe(false);
    expect(moduleSelector(".*q_proj")("model.layers.0.self_attn.q_proj")).toBe(true);
  });
});
