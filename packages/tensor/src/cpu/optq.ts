// The CPU kernel of the `optqSolve` op (see ../optq.ts): the addon's f64 OPTQ solver, reading W
// from the tensor's storage and writing the codes, scales, zeros and g_idx into new tensors.
import { native } from "@modulora/kernels";
import { registerKernel, type Device } from "../backend.js";
import { OpError } from "../errors.js";
import { OPTQ_SOLVE_OP, type OptqSolveAttrs } from "../optq.js";
import { Tensor } from "../tensor.js";
import { hostView } from "./host.js";

/** Registers the `optqSolve` kernel for the host-memory device `device`. */
export function registerCpuOptq(device: Device): void {
  registerKernel<OptqSolveAttrs>(OPTQ_SOLVE_OP, device, (inputs, a) => {
    const [w, h] = inputs as [Tensor, Tensor];
    if (w.dtype !== "f32" || w.shape.length !== 2) throw new OpError(OPTQ_SOLVE_OP, `W must be f32 [out, in], got ${w.dtype} [${w.shape}]`, inputs);
    const [out, inF] = w.shape as [number, number];
    if (h.dtype !== "f64" || h.shape.length !== 2 || h.shape[0] !== inF || h.shape[1] !== inF) {
      throw new OpError(OPTQ_SOLVE_OP, `H must be f64 [${inF}, ${inF}] for W [${out}, ${inF}], got ${h.dtype} [${h.shape}]`, inputs);
    }
    const groups = Number.isInteger(a.groupSize) && a.groupSize > 0 && inF % a.groupSize === 0 ? inF / a.groupSize : 0;
    // The solver overwrites H (dead inputs): it gets a scaled copy; W is only read.
    const hv = hostView(h) as Float64Array;
    const hs = new Float64Array(hv.length);
    for (let i = 0; i < hv.length; i++) hs[i] = hv[i]! * a.hessianScale;
    const outputs = [Tensor.empty([out, inF], "u8", device), Tensor.empty([out, groups], "f32", device), Tensor.empty([out, groups], "u8", device), Tensor.empty([inF], "i32", device)];
    const [codes, scales, zeros, gIdx] = outputs.map((t) => hostView(t)) as [Uint8Array, Float32Array, Uint8Array, Int32Array];
    const args = [
      hostView(w) as Float32Array, hs, out, inF, a.bits, a.groupSize, a.symmetric, a.actOrder, a.staticGroups, a.percdamp, a.blockSize, codes, scales, zeros, gIdx,
    ] as const;
    try {
      if (a.onDone) {
        const done = a.onDone;
        native().optqQuantizeAsync(...args).then(() => done(null), (err: unknown) => done(err instanceof Error ? err : new Error(String(err))));
      } else native().optqQuantize(...args);
    } catch (err) {
      for (const t of outputs) t.dispose();
      throw err;
    }
    return outputs;
  });
}
