import { castArray } from "@modulora/kernels";

const F32 = 0;
const F16 = 3;

/** f32 values → f16 bit patterns, round to nearest even (native cast kernel). */
export function toF16Bits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  if (values.length) castArray(values, F32, out, F16, values.length);
  return out;
}

/** f16 bit patterns → f32 values (exact). */
export function fromF16Bits(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  if (bits.length) castArray(bits, F16, out, F32, bits.length);
  return out;
}

/** Rounds f32 values to the nearest f16 value, in place (what storing as f16 does). */
export function roundToF16(values: Float32Array): Float32Array {
  const r = fromF16Bits(toF16Bits(values));
  values.set(r);
  return values;
}

let table: Float32Array | null = null;

/** f32 value of every f16 bit pattern (built once, 256 KiB), for reference decoders. */
export function f16Table(): Float32Array {
  if (!table) {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    table = fromF16Bits(all);
  }
  return table;
}
