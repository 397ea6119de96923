#!/usr/bin/env node
// Root entry of the `modulora` command. The CLI (@modulora/cli) lands with the CLI issue; until
// then this prints the planned usage.
const usage = `modulora — fine-tune LoRA adapters on quantized LLMs (ModuLoRA-TS)

Usage: modulora <command> [options]

Commands (arriving with @modulora/cli):
  quantize   quantize a Hugging Face model with a quantizer plugin
  finetune   train a LoRA adapter on a (quantized) model
  eval       perplexity, accuracy or ROUGE of a model and adapter
  generate   sample text from a model and adapter
  export     merge an adapter into a Hugging Face checkpoint
  info       describe a model, quantized checkpoint or adapter directory

The CLI is not built yet in this version. Today you can run the engine demo:
  npm run demo
`;
process.stdout.write(usage);
process.exit(process.argv.length > 2 && !["-h", "--help", "help"].includes(process.argv[2]) ? 1 : 0);
