// A CommonJS file of the consumer: require() of our ESM packages (Node >= 20.19 loads ESM from
// require through the packages' "default" export condition). Prints each module's export names.
const names = (m) => Object.keys(m).filter((k) => k !== "__esModule" && k !== "module.exports").sort();
const core = require("@modulora/core");
const llama = require("@modulora/llama");
if (typeof core.ModuLoRALinear !== "function" || typeof llama.loadLlama !== "function") throw new Error("require() gave modules without their classes");
console.log(JSON.stringify({ "@modulora/core": names(core), "@modulora/llama": names(llama) }));
