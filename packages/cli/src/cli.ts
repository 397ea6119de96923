#!/usr/bin/env node
// The `modulora` executable.
import { main } from "./main.js";

process.exitCode = await main(process.argv.slice(2));
