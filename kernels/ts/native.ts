import { loadAddonWithReport, type AddonAttempt, type AddonCandidate, type LoadedAddon } from "./loader.js";
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

let cached: LoadedAddon<RawAddon> | undefined;

function loaded(): LoadedAddon<RawAddon> {
  if (!cached) cached = loadAddonWithReport<RawAddon>();
  return cached;
}

/** The loaded addon (loaded on first use, so importing this package never touches the disk). */
export function native(): RawAddon {
  return loaded().addon;
}

/** Which addon this process loaded (loading it if needed), and what was tried before it. */
export interface AddonLoadReport {
  /** The candidate that loaded: its source (`override`, `cuda`, `source`, `prebuilt`) and path. */
  from: AddonCandidate;
  /** Every candidate tried, in order, the loaded one last. */
  attempts: AddonAttempt[];
}

/** Which addon this process loaded and what was tried before it (e.g. a CUDA build that failed to load). */
export function addonLoadReport(): AddonLoadReport {
  const { from, attempts } = loaded();
  return { from, attempts };
}
