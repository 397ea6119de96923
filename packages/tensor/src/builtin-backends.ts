// The backends this package ships, declared in the device registry like any other backend.
import { setBackendRegistration } from "./backend.js";
import { registerCpuBackend } from "./cpu/backend.js";
import { registerCudaBackend } from "./cuda/backend.js";

let declared = false;

/**
 * Declares the registration of every backend this package ships (`cpu`, and `cuda`, which registers itself only where the addon was built with CUDA and sees a GPU), so that they are
 * entries of the same registry as backends registered from outside. The registry calls it
 * before its first lookup or declaration; calling it again is a no-op. Declaring is cheap: a
 * backend registers itself and its kernels only when one of its devices is first asked for.
 */
export function registerBuiltinBackends(): void {
  if (declared) return;
  declared = true;
  setBackendRegistration("cpu", registerCpuBackend);
  setBackendRegistration("cuda", registerCudaBackend);
}
