// f16 conversions on the host, through the tensor package's cast kernel on the cpu device (so
// they round exactly as storing a tensor as f16 does on every backend).
import { bitsToNumber16, cast, tensorFrom } from "@modulora/tensor";

/** f32 values → f16 bit patterns, round to nearest even. */
export function toF16Bits(values: Float32Array): Uint16Array {
  if (values.length === 0) return new Uint16Array(0);
  const f = tensorFrom(values, { dtype: "f32" });
  const h = cast(f, "f16");
  try {
    return h.dataSync() as Uint16Array;
  } finally {
    h.dispose();
    f.dispose();
  }
}

/** f16 bit patterns → f32 values (exact). */
export function fromF16Bits(bits: Uint16Array): Float32Array {
  return Float32Array.from(bits, (b) => bitsToNumber16(b, "f16"));
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
    table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) table[i] = bitsToNumber16(i, "f16");
  }
  return table;
}
