// The device address of a CUDA tensor, for code that hands tensors to native libraries (NCCL).
import { parseDevice } from "../backend.js";
import type { Tensor } from "../tensor.js";
import { ptr } from "./util.js";

/**
 * The device address of `t`'s first element (its storage's address plus its offset, in bytes), as
 * a number, for passing a `cuda` / `cuda:N` tensor to a native library such as NCCL. The address
 * is valid while `t` is alive; work that uses it must be queued on the device's stream (the addon's
 * stream, as NCCL collectives of `@modulora/kernels` are).
 *
 * @throws TypeError when `t` is not on a CUDA device; Error when it was disposed.
 */
export function cudaAddress(t: Tensor): number {
  if (parseDevice(t.device).family !== "cuda") {
    throw new TypeError(`cudaAddress: tensor #${t.id} is on ${t.device}, not on a CUDA device`);
  }
  return ptr(t);
}
