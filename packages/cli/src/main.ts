// The `modulora` command: dispatch to a subcommand, print errors as one line, return the exit code:
// 0 success, 1 a runtime error, 2 a usage error (the command line itself is wrong: unknown command
// or flag, missing or malformed value, missing required flag), as getopt-style tools do.
// Subcommands are imported only when they run, so `--help` and usage errors stay instant.
import { closest, helpText, parseArgs, type CommandSpec, type ParsedArgs } from "./args.js";
import { CliError, oneLine, usageError } from "./errors.js";
import { COMMANDS } from "./specs.js";

/** The context a command runs in. */
export interface CommandContext {
  args: ParsedArgs;
  /** Results (and --json) go here. */
  stdout: NodeJS.WriteStream;
  /** Progress and messages go here. */
  stderr: NodeJS.WriteStream;
  /** A command that ends without an error but not successfully (e.g. interrupted) sets this. */
  exitCode: number;
  /** The command line as given to {@link main} (the command name first): what `finetune --devices N` starts each rank with. */
  argv: readonly string[];
}

type Runner = (ctx: CommandContext) => Promise<void>;

const RUNNERS: Record<string, () => Promise<Runner>> = {
  quantize: async () => (await import("./commands/quantize.js")).runQuantize,
  finetune: async () => (await import("./commands/finetune.js")).runFinetune,
  eval: async () => (await import("./commands/eval.js")).runEval,
  generate: async () => (await import("./commands/generate.js")).runGenerate,
  export: async () => (await import("./commands/export.js")).runExport,
  info: async () => (await import("./commands/info.js")).runInfo,
  bench: async () => (await import("./commands/bench.js")).runBench,
};

/** `modulora --help`. */
export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 3;
  return [
    "modulora — fine-tune LoRA adapters on quantized LLaMA models (ModuLoRA-TS)",
    "",
    "Usage: modulora <command> [options]",
    "",
    "Commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    'Run "modulora <command> --help" for a command\'s options and defaults.',
    "Every command also takes --config FILE (JSON with the long flags as keys) and --verbose.",
    "",
  ].join("\n");
}

/** Exit codes of {@link main}. */
export const EXIT = { ok: 0, error: 1, usage: 2 } as const;

/** Runs the CLI on `argv` (without `node` and the script). Returns the exit code: 0, 1 for a runtime error, 2 for a usage error. */
export async function main(argv: readonly string[], io: { stdout?: NodeJS.WriteStream; stderr?: NodeJS.WriteStream } = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const verbose = argv.includes("--verbose");
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    if (name === "help" && rest[0]) return main([rest[0], "--help"], io);
    // No command is a usage error: the help goes to stderr, stdout stays empty.
    (name === undefined ? stderr : stdout).write(mainHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version" || name === "-v") {
    stdout.write("modulora 0.1.0\n");
    return 0;
  }
  let spec: CommandSpec | undefined = COMMANDS.find((c) => c.name === name);
  let label = "modulora";
  try {
    if (!spec) {
      const near = closest(name, COMMANDS.map((c) => c.name));
      const what = name.startsWith("-") ? `unknown option ${name} before the command` : `unknown command '${name}'`;
      throw usageError(what, `${near && !name.startsWith("-") ? `did you mean '${near}'? ` : ""}commands: ${COMMANDS.map((c) => c.name).join(", ")} (modulora --help)`);
    }
    label = `modulora ${spec.name}`;
    // A command that takes --quantizer learns that quantizer's own flags before parsing.
    const quantizers = spec.options.some((o) => o.name === "quantizer") ? await import("./plugin-options.js") : null;
    if (quantizers) spec = await quantizers.prepareQuantizerSpec(spec, rest);
    const args = parseArgs(spec, rest);
    if (args.values["help"]) {
      stdout.write(helpText(spec));
      if (quantizers) stdout.write(`\n${quantizers.quantizersHelp(spec.name)}`);
      return 0;
    }
    // --model ORG/NAME: the Hugging Face cache's snapshot (fetched with --download) is what the command reads.
    if (typeof args.values["model"] === "string" && spec.options.some((o) => o.name === "revision")) {
      const { resolveModelArg } = await import("./model.js");
      const { Progress } = await import("./progress.js");
      args.values["model"] = await resolveModelArg(args.values["model"], args.values as { revision?: string; download?: boolean }, new Progress(stderr));
    }
    const run = await (RUNNERS[spec.name] as () => Promise<Runner>)();
    const ctx: CommandContext = { args, stdout, stderr, exitCode: 0, argv };
    await run(ctx);
    return ctx.exitCode;
  } catch (err) {
    const line = err instanceof CliError ? err.message : `${oneLine(err)} — run again with --verbose for the stack trace`;
    stderr.write(`${label}: ${line}\n`);
    if (verbose) {
      let e: unknown = err;
      while (e instanceof Error) {
        stderr.write(`${e.stack ?? e.message}\n`);
        e = e.cause;
        if (e) stderr.write("caused by: ");
      }
    }
    return err instanceof CliError && err.usage ? EXIT.usage : EXIT.error;
  }
}
