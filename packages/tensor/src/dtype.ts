/**
 * Element types a {@link Tensor} can hold. Ops compute in `f32`, `f64` and `bf16` (bf16 values are
 * computed in f32 and rounded to bf16, with f32 accumulation); `f16` is a storage type only: cast
 * it to compute.
 */
export type DType = "f32" | "f64" | "bf16" | "f16" | "i32" | "i8" | "u8" | "u32";

/** Every dtype, in the order of the native dtype codes. */
export const DTYPES: readonly DType[] = ["f32", "f64", "bf16", "f16", "i32", "i8", "u8", "u32"];

/** Traits of one dtype. */
export interface DTypeInfo {
  readonly name: DType;
  /** Code shared with the native addon. */
  readonly code: number;
  /** Bytes per element. */
  readonly size: number;
  /** The typed array that views this dtype's storage (bf16/f16 as raw `Uint16Array` bits). */
  readonly array: Float32ArrayConstructor | Float64ArrayConstructor | Uint16ArrayConstructor | Int32ArrayConstructor | Int8ArrayConstructor | Uint8ArrayConstructor | Uint32ArrayConstructor;
  /** Whether the dtype holds real numbers (and so can carry gradients). */
  readonly isFloat: boolean;
  /** The dtype's name in safetensors headers. */
  readonly safetensors: string;
}

/** Traits of every dtype, by name. */
export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = {
  f32: { name: "f32", code: 0, size: 4, array: Float32Array, isFloat: true, safetensors: "F32" },
  f64: { name: "f64", code: 1, size: 8, array: Float64Array, isFloat: true, safetensors: "F64" },
  bf16: { name: "bf16", code: 2, size: 2, array: Uint16Array, isFloat: true, safetensors: "BF16" },
  f16: { name: "f16", code: 3, size: 2, array: Uint16Array, isFloat: true, safetensors: "F16" },
  i32: { name: "i32", code: 4, size: 4, array: Int32Array, isFloat: false, safetensors: "I32" },
  i8: { name: "i8", code: 5, size: 1, array: Int8Array, isFloat: false, safetensors: "I8" },
  u8: { name: "u8", code: 6, size: 1, array: Uint8Array, isFloat: false, safetensors: "U8" },
  u32: { name: "u32", code: 7, size: 4, array: Uint32Array, isFloat: false, safetensors: "U32" },
};

/** The typed array type that views storage of dtype `D`. */
export type ArrayFor<D extends DType> = D extends "f32"
  ? Float32Array
  : D extends "f64"
    ? Float64Array
    : D extends "bf16" | "f16"
      ? Uint16Array
      : D extends "i32"
        ? Int32Array
        : D extends "i8"
          ? Int8Array
          : D extends "u8"
            ? Uint8Array
            : Uint32Array;

/** Any typed array a tensor's storage can be viewed as. */
export type AnyTypedArray = Float32Array | Float64Array | Uint16Array | Int32Array | Int8Array | Uint8Array | Uint32Array;

/** Returns true if `x` names a dtype. */
export function isDType(x: unknown): x is DType {
  return typeof x === "string" && Object.prototype.hasOwnProperty.call(DTYPE_INFO, x);
}

/** Looks up a dtype's traits; unknown names fail with the list of known ones. */
export function dtypeInfo(dtype: DType): DTypeInfo {
  const info = isDType(dtype) ? DTYPE_INFO[dtype] : undefined;
  if (!info) throw new TypeError(`unknown dtype '${String(dtype)}'; known dtypes: ${DTYPES.join(", ")}`);
  return info;
}

/** The value of 16-bit float bits. */
export function bitsToNumber16(bits: number, dtype: "bf16" | "f16"): number {
  if (dtype === "bf16") {
    const u = new Uint32Array([bits << 16]);
    return new Float32Array(u.buffer)[0]!;
  }
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >>> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}
