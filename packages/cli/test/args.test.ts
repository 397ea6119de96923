// The parser's conventions, in process: --no-FLAG for every boolean (and nothing else), the
// --[no-]flag form in --help, and exit code 2 for every kind of usage error (1 for the rest).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { helpText, optionLine, parseArgs, type CommandSpec } from "../src/args.js";
import { CliError } from "../src/errors.js";
import { EXIT, main } from "../src/main.js";
import { BENCH, COMMANDS, QUANTIZE } from "../src/specs.js";

const SPEC: CommandSpec = {
  name: "demo",
  summary: "a test command",
  usage: "demo [options]",
  options: [
    { name: "sym", type: "boolean", default: false, description: "off by default" },
    { name: "fp", type: "boolean", default: true, description: "on by default" },
    { name: "true-sequential", type: "boolean", default: true, description: "two words" },
    { name: "bits", type: "int", min: 1, description: "a number" },
    { name: "name", type: "string", required: true, description: "required" },
  ],
};
const parse = (argv: string[]) => parseArgs(SPEC, ["--name", "x", ...argv]).values;
const usageFailure = (argv: string[]): CliError => {
  try {
    parseArgs(SPEC, argv);
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).usage).toBe(true);
    return err as CliError;
  }
  throw new Error(`parseArgs accepted ${argv.join(" ")}`);
};

const tmp = mkdtempSync(join(tmpdir(), "modulora-args-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("--no-FLAG", () => {
  it("turns any boolean off, whatever its default; --flag and --flag=false still work", () => {
    expect(parse([])).toMatchObject({ sym: false, fp: true, trueSequential: true });
    expect(parse(["--sym", "--no-fp", "--no-true-sequential"])).toMatchObject({ sym: true, fp: false, trueSequential: false });
    expect(parse(["--no-sym"])).toMatchObject({ sym: false });
    expect(parse(["--fp=false", "--true-sequential=0"])).toMatchObject({ fp: false, trueSequential: false });
    expect(parse(["--no-fp", "--fp"])).toMatchObject({ fp: true }); // the last one wins
    expect(parseArgs(SPEC, ["--name", "x", "--no-fp"]).given.has("fp")).toBe(true);
  });

  it("wins over a --config file, as every flag does", () => {
    const cfg = join(tmp, "c.json");
    writeFileSync(cfg, JSON.stringify({ sym: true, fp: true }));
    expect(parse(["--config", cfg, "--no-sym", "--no-fp"])).toMatchObject({ sym: false, fp: false });
  });

  it("is refused for options that take a value, with a value, and for unknown names", () => {
    expect(usageFailure(["--name", "x", "--no-bits"]).message).toMatch(/^unknown option --no-bits — only on\/off flags have a --no- form; --bits takes a value/);
    expect(usageFailure(["--name", "x", "--no-fp=true"]).message).toMatch(/^--no-fp takes no value — use --fp=true or --no-fp alone/);
    expect(usageFailure(["--name", "x", "--no-such"]).message).toMatch(/^unknown option --no-such/);
  });

  it("--help shows booleans as --[no-]name and how to turn a default-true one off", () => {
    expect(optionLine(SPEC.options[0]!)).toEqual(["--[no-]sym", "off by default"]);
    expect(optionLine(SPEC.options[1]!)).toEqual(["--[no-]fp", "on by default (default: true; --no-fp turns it off)"]);
    expect(optionLine(SPEC.options[3]!)[0]).toBe("--bits N");
    const help = helpText(QUANTIZE);
    expect(help).toContain("--[no-]true-sequential");
    expect(help).toContain("(default: true; --no-true-sequential turns it off)");
    expect(help).toContain("--[no-]json");
    expect(help).toMatch(/\n {2}--help /); // the global switches are shown plain
    expect(help).toMatch(/\n {2}--verbose /);
    for (const o of BENCH.options.filter((x) => x.type === "boolean")) expect(helpText(BENCH)).toContain(`--[no-]${o.name}`);
  });

  it("every boolean of every command parses as --no-NAME", () => {
    for (const spec of COMMANDS) {
      for (const o of spec.options.filter((x) => x.type === "boolean")) {
        const required = spec.options.filter((x) => x.required).flatMap((x) => [`--${x.name}`, x.choices?.[0] ?? (x.type === "int" ? "4" : "v")]);
        const camel = o.name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
        expect(parseArgs(spec, [...required, `--no-${o.name}`]).values[camel], `${spec.name} --no-${o.name}`).toBe(false);
      }
    }
  });
});

/** Runs main() in process: exit code, stdout, stderr. */
async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const sink = (f: (s: string) => void) => ({ write: (s: string) => (f(s), true) }) as unknown as NodeJS.WriteStream;
  const code = await main(argv, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) });
  return { code, stdout, stderr };
}

describe("exit codes: 2 for usage errors, 1 for runtime errors", () => {
  it.each([
    ["no command", [], /Usage: modulora <command>/],
    ["an unknown command", ["quantise"], /unknown command 'quantise' — did you mean 'quantize'\?/],
    ["an option before the command", ["--bits", "4"], /unknown option --bits before the command/],
    ["an unknown flag", ["eval", "--model", "m", "--data", "d", "--metric", "ppl", "--bitz", "4"], /unknown option --bitz/],
    ["a flag without its value", ["eval", "--model", "m", "--data", "d", "--metric"], /--metric needs a value/],
    ["a value of the wrong type", ["eval", "--model", "m", "--data", "d", "--metric", "ppl", "--seq-len", "many"], /--seq-len must be an integer, got "many"/],
    ["a value out of range", ["generate", "--model", "m", "--prompt", "p", "--top-p", "1.5"], /--top-p must be at most 1/],
    ["a value not among the choices", ["eval", "--model", "m", "--data", "d", "--metric", "bleu"], /--metric must be one of ppl, accuracy, rouge/],
    ["a missing required flag", ["eval", "--data", "d", "--metric", "ppl"], /--model is required/],
    ["a missing argument", ["info"], /PATH is missing/],
    ["an unexpected argument", ["eval", "stray", "--model", "m"], /unexpected argument 'stray'/],
    ["--no- on a flag with a value", ["eval", "--model", "m", "--data", "d", "--metric", "ppl", "--no-seq-len"], /only on\/off flags have a --no- form/],
  ])("%s → 2", async (_, argv, pattern) => {
    const r = await run(argv as string[]);
    expect(r.code, r.stderr).toBe(EXIT.usage);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(pattern as RegExp);
  });

  it("a runtime error (a model directory that does not exist) → 1; --help → 0", async () => {
    const r = await run(["info", join(tmp, "missing")]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^modulora info: /);
    expect((await run(["info", "--help"])).code).toBe(0);
    expect((await run(["--help"])).code).toBe(0);
  });
});
