/**
 * PEFT's module selectors (`target_modules`, `exclude_modules` of `adapter_config.json`) without
 * running an untrusted regular expression through a backtracking engine.
 *
 * PEFT's semantics (`check_target_module_exists`): a list matches a module name that equals an
 * entry or ends with `.entry`; a string is a regex that must match the whole name
 * (`re.fullmatch`). A string from a file is untrusted: `(([a-z_0-9.])+)+X` takes exponential time
 * in JavaScript's backtracking `RegExp` on a name that almost matches. So the pattern is parsed
 * here into a Thompson NFA and simulated over the name, one set of states per character: time is
 * O(pattern size × name length) whatever the pattern.
 *
 * The regex subset is what PEFT configs use: literals and escapes (`\.`, `\\`, …), `.`, classes
 * (`[a-z_0-9.]`, `[^.]`, `\d \w \s \D \W \S`), groups (`(…)`, `(?:…)`, `(?P<name>…)`),
 * alternation `|`, quantifiers `? * + {m} {m,} {m,n}` (and their lazy forms, which select the
 * same names under a full match), and the anchors `^ $` (Python's `\A \Z` too). Anything else —
 * back-references, look-around, inline flags, `\b` — is refused with an error naming it and its
 * position, never guessed at.
 * @module
 */

/** A pattern outside the supported subset, or malformed; the message gives the position. */
export class ModulePatternError extends Error {
  constructor(readonly pattern: string, readonly position: number, problem: string) {
    super(`regex ${JSON.stringify(pattern)}: ${problem} (at offset ${position})`);
    this.name = "ModulePatternError";
  }
}

/** Longest pattern accepted (PEFT's are a few hundred characters at most). */
export const MAX_MODULE_PATTERN_LENGTH = 4096;
/** Most NFA states a pattern may compile to (counted repetition expands: `a{1000}` is 1000 states). */
export const MAX_MODULE_PATTERN_STATES = 20000;

type CharTest = (c: number) => boolean;
type Node =
  | { t: "char"; test: CharTest }
  | { t: "cat"; items: Node[] }
  | { t: "alt"; items: Node[] }
  | { t: "rep"; node: Node; min: number; max: number }
  | { t: "bol" }
  | { t: "eol" };

const isDigit: CharTest = (c) => c >= 48 && c <= 57;
const isWord: CharTest = (c) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isSpace: CharTest = (c) => c === 32 || (c >= 9 && c <= 13);
const CLASS_ESCAPES: Record<string, CharTest> = {
  d: isDigit, w: isWord, s: isSpace,
  D: (c) => !isDigit(c), W: (c) => !isWord(c), S: (c) => !isSpace(c),
};
const CONTROL_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, a: 7 };

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  fail(problem: string, at = this.i): never {
    throw new ModulePatternError(this.src, at, problem);
  }

  parse(): Node {
    const node = this.alternation();
    if (this.i < this.src.length) this.fail(this.src[this.i] === ")" ? "unbalanced ')'" : `unexpected ${JSON.stringify(this.src[this.i])}`);
    return node;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alternation(): Node {
    const items = [this.sequence()];
    while (this.peek() === "|") {
      this.i++;
      items.push(this.sequence());
    }
    return items.length === 1 ? items[0]! : { t: "alt", items };
  }

  private sequence(): Node {
    const items: Node[] = [];
    for (let c = this.peek(); c !== undefined && c !== "|" && c !== ")"; c = this.peek()) items.push(this.quantified());
    return items.length === 1 ? items[0]! : { t: "cat", items };
  }

  private quantified(): Node {
    const start = this.i;
    let node = this.atom();
    for (let times = 0; ; times++) {
      const c = this.peek();
      let min: number;
      let max: number;
      if (c === "*") [min, max] = [0, Infinity];
      else if (c === "+") [min, max] = [1, Infinity];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{" && this.countAhead()) [min, max] = this.count(); // steps over "{m,n}"
      else break;
      if (c !== "{") this.i++;
      if (node.t === "bol" || node.t === "eol") this.fail("a quantifier after an anchor is not supported", start);
      if (times > 0) this.fail("a quantifier after a quantifier (Python: multiple repeat)", this.i - 1);
      if (this.peek() === "?") this.i++; // lazy: the same set of full matches
      else if (this.peek() === "+") this.fail("possessive quantifiers are not supported");
      node = { t: "rep", node, min, max };
    }
    return node;
  }

  /** Whether a `{` here starts `{m}`, `{m,}`, `{m,n}` or `{,n}` (otherwise Python reads it as a literal). */
  private countAhead(): boolean {
    return /^\{(\d+(,\d*)?|,\d+)\}/.test(this.src.slice(this.i, this.i + 24));
  }

  private count(): [number, number] {
    const m = /^\{(\d*)(,?)(\d*)\}/.exec(this.src.slice(this.i))!;
    const min = m[1] ? Number(m[1]) : 0;
    const max = m[2] ? (m[3] ? Number(m[3]) : Infinity) : min;
    if (max < min) this.fail(`the repetition {${m[1]},${m[3]}} has max < min`);
    if (min > MAX_MODULE_PATTERN_STATES || (max !== Infinity && max > MAX_MODULE_PATTERN_STATES)) this.fail(`the repetition count ${Math.max(min, max === Infinity ? 0 : max)} is too large`);
    this.i += m[0].length;
    return [min, max];
  }

  private atom(): Node {
    const at = this.i;
    const c = this.src[this.i++]!;
    switch (c) {
      case "(":
        return this.group(at);
      case "[":
        return { t: "char", test: this.charClass(at) };
      case ".":
        return { t: "char", test: (x) => x !== 10 }; // Python's '.' without DOTALL
      case "^":
        return { t: "bol" };
      case "$":
        return { t: "eol" };
      case "\\":
        return this.escape(at);
      case "*":
      case "+":
      case "?":
        return this.fail(`nothing to repeat before ${JSON.stringify(c)}`, at);
      default: {
        const code = c.charCodeAt(0);
        return { t: "char", test: (x) => x === code };
      }
    }
  }

  private group(at: number): Node {
    if (this.peek() === "?") {
      const rest = this.src.slice(this.i, this.i + 3);
      if (rest.startsWith("?:")) this.i += 2;
      else if (rest.startsWith("?P<")) {
        const m = /^\?P<([A-Za-z_][A-Za-z0-9_]*)>/.exec(this.src.slice(this.i));
        if (!m) this.fail("a malformed named group", at);
        this.i += m[0].length;
      } else {
        const what = /^\?[=!]/.test(rest) ? "look-ahead" : /^\?<[=!]/.test(rest) ? "look-behind" : rest.startsWith("?P=") ? "a named back-reference" : rest.startsWith("?#") ? "a comment group" : "an inline flag or extension group";
        this.fail(`${what} is not supported`, at);
      }
    }
    const node = this.alternation();
    if (this.peek() !== ")") this.fail("missing ')'", at);
    this.i++;
    return node;
  }

  /** An escape outside a class. */
  private escape(at: number): Node {
    const c = this.src[this.i++];
    if (c === undefined) this.fail("a trailing backslash", at);
    const wrap = (test: CharTest): Node => ({ t: "char", test });
    if (c in CLASS_ESCAPES) return wrap(CLASS_ESCAPES[c]!);
    if (c in CONTROL_ESCAPES) {
      const code = CONTROL_ESCAPES[c]!;
      return wrap((x) => x === code);
    }
    if (c === "A") return { t: "bol" };
    if (c === "Z") return { t: "eol" };
    if (c === "x" || c === "u") {
      const len = c === "x" ? 2 : 4;
      const hex = this.src.slice(this.i, this.i + len);
      if (!new RegExp(`^[0-9A-Fa-f]{${len}}$`).test(hex)) this.fail(`\\${c} needs ${len} hex digits`, at);
      this.i += len;
      const code = parseInt(hex, 16);
      return wrap((x) => x === code);
    }
    if (/[0-9]/.test(c)) this.fail(c === "0" ? "octal escapes are not supported" : `the back-reference \\${c} is not supported`, at);
    if (/[A-Za-z]/.test(c)) this.fail(`the escape \\${c} is not supported`, at);
    const code = c.charCodeAt(0); // an escaped punctuation character stands for itself
    return wrap((x) => x === code);
  }

  private charClass(at: number): CharTest {
    const negate = this.peek() === "^";
    if (negate) this.i++;
    const tests: CharTest[] = [];
    let first = true;
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) this.fail("missing ']'", at);
      if (c === "]" && !first) {
        this.i++;
        break;
      }
      first = false;
      const lo = this.classAtom();
      if (this.peek() === "-" && this.src[this.i + 1] !== "]" && this.src[this.i + 1] !== undefined) {
        const dash = this.i++;
        const hi = this.classAtom();
        if (typeof lo !== "number" || typeof hi !== "number") this.fail("a range with a class escape at one end", dash);
        if (hi < lo) this.fail("a character range out of order", dash);
        tests.push((x) => x >= lo && x <= hi);
      } else tests.push(typeof lo === "number" ? (x) => x === lo : lo);
    }
    return negate ? (x) => !tests.some((t) => t(x)) : (x) => tests.some((t) => t(x));
  }

  /** One member of a class: a code unit, or a test for an escape such as `\d`. */
  private classAtom(): number | CharTest {
    const at = this.i;
    const c = this.src[this.i++]!;
    if (c === "[" && /^[:=.]/.test(this.peek() ?? "")) this.fail("POSIX classes ([:alpha:]) are not supported", at);
    if (c !== "\\") return c.charCodeAt(0);
    const e = this.src[this.i++];
    if (e === undefined) this.fail("a trailing backslash", at);
    if (e === "b") return 8; // backspace, inside a class
    if (e in CLASS_ESCAPES) return CLASS_ESCAPES[e]!;
    if (e in CONTROL_ESCAPES) return CONTROL_ESCAPES[e]!;
    if (e === "x" || e === "u") {
      const len = e === "x" ? 2 : 4;
      const hex = this.src.slice(this.i, this.i + len);
      if (!new RegExp(`^[0-9A-Fa-f]{${len}}$`).test(hex)) this.fail(`\\${e} needs ${len} hex digits`, at);
      this.i += len;
      return parseInt(hex, 16);
    }
    if (/[0-9A-Za-z]/.test(e)) this.fail(`the escape \\${e} is not supported in a class`, at);
    return e.charCodeAt(0); // an escaped punctuation character stands for itself
  }
}

// ---- Thompson NFA -------------------------------------------------------------------------------

const CHAR = 0;
const SPLIT = 1;
const BOL = 2;
const EOL = 3;
const MATCH = 4;

interface State {
  kind: number;
  test: CharTest | null;
  out: number;
  out2: number;
}

/** A compiled pattern: whole-name matching in time linear in the name. */
class Nfa {
  readonly states: State[] = [];
  readonly start: number;

  constructor(root: Node, private readonly pattern: string) {
    const frag = this.build(root);
    const match = this.add(MATCH, null);
    this.patch(frag.outs, match);
    this.start = frag.start;
  }

  private add(kind: number, test: CharTest | null): number {
    if (this.states.length >= MAX_MODULE_PATTERN_STATES) {
      throw new ModulePatternError(this.pattern, 0, `the pattern needs more than ${MAX_MODULE_PATTERN_STATES} states (counted repetitions expand)`);
    }
    this.states.push({ kind, test, out: -1, out2: -1 });
    return this.states.length - 1;
  }

  /** Dangling exits are (state, which) pairs: which 1 = out, 2 = out2. */
  private patch(outs: [number, 1 | 2][], to: number): void {
    for (const [s, w] of outs) {
      if (w === 1) this.states[s]!.out = to;
      else this.states[s]!.out2 = to;
    }
  }

  private build(n: Node): { start: number; outs: [number, 1 | 2][] } {
    switch (n.t) {
      case "char":
      case "bol":
      case "eol": {
        const s = this.add(n.t === "char" ? CHAR : n.t === "bol" ? BOL : EOL, n.t === "char" ? n.test : null);
        return { start: s, outs: [[s, 1]] };
      }
      case "cat": {
        if (n.items.length === 0) return this.empty();
        let first = this.build(n.items[0]!);
        for (const item of n.items.slice(1)) {
          const next = this.build(item);
          this.patch(first.outs, next.start);
          first = { start: first.start, outs: next.outs };
        }
        return first;
      }
      case "alt": {
        const parts = n.items.map((item) => this.build(item));
        let acc = parts[parts.length - 1]!;
        for (let i = parts.length - 2; i >= 0; i--) {
          const s = this.add(SPLIT, null);
          this.states[s]!.out = parts[i]!.start;
          this.states[s]!.out2 = acc.start;
          acc = { start: s, outs: [...parts[i]!.outs, ...acc.outs] };
        }
        return acc;
      }
      case "rep": {
        // x{m,n} = x…x (m copies) then (n − m) nested optional copies, or x* when n is unbounded.
        const pieces: { start: number; outs: [number, 1 | 2][] }[] = [];
        for (let i = 0; i < n.min; i++) pieces.push(this.build(n.node));
        if (n.max === Infinity) pieces.push(this.star(n.node));
        else for (let i = n.min; i < n.max; i++) pieces.push(this.optional(n.node));
        if (pieces.length === 0) return this.empty();
        let acc = pieces[0]!;
        for (const p of pieces.slice(1)) {
          this.patch(acc.outs, p.start);
          acc = { start: acc.start, outs: p.outs };
        }
        return acc;
      }
    }
  }

  private empty(): { start: number; outs: [number, 1 | 2][] } {
    const s = this.add(SPLIT, null); // a split whose two exits go to the same place
    return { start: s, outs: [[s, 1], [s, 2]] };
  }

  private optional(node: Node): { start: number; outs: [number, 1 | 2][] } {
    const body = this.build(node);
    const s = this.add(SPLIT, null);
    this.states[s]!.out = body.start;
    return { start: s, outs: [...body.outs, [s, 2]] };
  }

  private star(node: Node): { start: number; outs: [number, 1 | 2][] } {
    const body = this.build(node);
    const s = this.add(SPLIT, null);
    this.states[s]!.out = body.start;
    this.patch(body.outs, s);
    return { start: s, outs: [[s, 2]] };
  }

  /** Whether the whole of `text` matches (Python's `re.fullmatch`). */
  fullMatch(text: string): boolean {
    const n = this.states.length;
    let current = new Int32Array(n);
    let next = new Int32Array(n);
    let nc = 0;
    let nn = 0;
    const mark = new Int32Array(n).fill(-1);
    const stack: number[] = [];
    // Adds s and everything reachable from it without reading a character at position pos.
    const addState = (list: Int32Array, count: number, s0: number, pos: number, gen: number): number => {
      stack.push(s0);
      while (stack.length) {
        const s = stack.pop()!;
        if (s < 0 || mark[s] === gen) continue;
        mark[s] = gen;
        const st = this.states[s]!;
        if (st.kind === SPLIT) {
          stack.push(st.out2, st.out);
        } else if (st.kind === BOL) {
          if (pos === 0) stack.push(st.out);
        } else if (st.kind === EOL) {
          if (pos === text.length) stack.push(st.out);
        } else list[count++] = s;
      }
      return count;
    };
    let gen = 0;
    nc = addState(current, 0, this.start, 0, gen);
    for (let pos = 0; pos < text.length; pos++) {
      const code = text.charCodeAt(pos);
      gen++;
      nn = 0;
      for (let i = 0; i < nc; i++) {
        const st = this.states[current[i]!]!;
        if (st.kind === CHAR && st.test!(code)) nn = addState(next, nn, st.out, pos + 1, gen);
      }
      [current, next] = [next, current];
      nc = nn;
      if (nc === 0) return false;
    }
    for (let i = 0; i < nc; i++) if (this.states[current[i]!]!.kind === MATCH) return true;
    return false;
  }
}

/** Compiles a pattern for whole-string matching; throws {@link ModulePatternError} outside the subset. */
export function compileModulePattern(pattern: string): (name: string) => boolean {
  if (pattern.length > MAX_MODULE_PATTERN_LENGTH) throw new ModulePatternError(pattern.slice(0, 40) + "…", 0, `the pattern is ${pattern.length} characters long, more than ${MAX_MODULE_PATTERN_LENGTH}`);
  const nfa = new Nfa(new Parser(pattern).parse(), pattern);
  return (name) => nfa.fullMatch(name);
}

/**
 * PEFT's module selector: a list matches a name equal to an entry or ending with `.entry`; a
 * string is a full-match regex (compiled by {@link compileModulePattern}); `"all-linear"`
 * selects every linear.
 */
export function moduleSelector(spec: string | readonly string[]): (name: string) => boolean {
  if (typeof spec !== "string") {
    const list = [...spec];
    return (name) => list.some((t) => name === t || name.endsWith(`.${t}`));
  }
  if (spec === "all-linear") return () => true;
  return compileModulePattern(spec);
}
