/**
 * `@modulora/cli`: the `modulora` command (quantize, finetune, eval, generate, export, info).
 * `main(argv)` runs it in-process and returns the exit code.
 * @packageDocumentation
 */
export { main, mainHelp, EXIT, type CommandContext } from "./main.js";
export { COMMANDS, QUANTIZE, FINETUNE, EVAL, GENERATE, EXPORT, INFO, BENCH } from "./specs.js";
export { parseArgs, helpText, GLOBAL_OPTIONS, type CommandSpec, type OptionSpec, type OptionType, type ParsedArgs } from "./args.js";
export { CliError } from "./errors.js";
