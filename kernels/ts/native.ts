import { loadAddon } from "./loader.js";
import type { RawElementwise } from "./elementwise.js";
import type { RawGemm } from "./gemm.js";
import type { RawIo } from "./io.js";
import type { RawStorage } from "./storage.js";
import type { RawAttention } from "./attention.js";
import type { RawNn } from "./nn.js";
import type { RawLoss } from "./loss.js";
import type { RawQuant } from "./quant.js";
import type { RawOptq } from "./optq.js";

/** The raw addon: one interface mirroring every native export (see each module's `Raw*` type). */
export type RawAddon = RawStorage & RawGemm & RawElementwise & RawIo & RawAttention & RawNn & RawLoss & RawQuant & RawOptq & { readonly abiVersion: number };

let cached: RawAddon | undefined;

/** The loaded addon (loaded on first use, so importing this package never touches the disk). */
export function native(): RawAddon {
  if (!cached) cached = loadAddon<RawAddon>();
  return cached;
}
