/**
 * The quantizer plugin contract, version 1.
 *
 * A plugin turns one full-precision weight matrix W [out, in] into a {@link QuantizedWeight}.
 * It declares which calibration statistics it needs; the model driver collects them (the
 * Hessian XᵀX of the layer's inputs, or per-input-channel activation scales) and passes them in.
 * Known formats (`affine`, `codebook`) are computed with by fused native kernels and serialized
 * by core; a `custom` format brings its own `materialize` (and `serialize`/`deserialize` on the
 * plugin), and trains through the generic path.
 * @module
 */
import type { Tensor } from "@modulora/tensor";
import type { QuantizedWeight } from "./formats/types.js";

/** The version of this contract. A plugin states the version it implements. */
export const QUANTIZER_SPEC_VERSION = 1 as const;

/**
 * Statistics a quantizer may ask for:
 * - `none`: weights only (RTN, NF4);
 * - `hessian`: H = Σ x xᵀ over the layer's calibration inputs (OPTQ/GPTQ), as an f64 [in, in] tensor;
 * - `activation-scales`: mean |x| per input channel (AWQ-style), as an f32 [in] tensor.
 */
export type CalibrationKind = "none" | "hessian" | "activation-scales";

/** Calibration statistics of one linear layer, collected by the driver. */
export interface CalibrationStats {
  /** Σ x xᵀ over `samples` input rows (f64 [in, in]); present for `hessian` plugins. */
  hessian?: Tensor;
  /** Mean |x| per input channel (f32 [in]); present for `activation-scales` plugins. */
  activationScales?: Tensor;
  /** Number of input rows (tokens) the statistics were computed from. */
  samples: number;
}

/** Options every quantizer understands; plugins may read more keys of their own. */
export interface QuantizeOptions {
  /** Bits per weight of the codes. */
  bits: number;
  /** Columns of `in` that share a scale and zero point, or `"row"` for one group per row. */
  groupSize: number | "row";
  /** Symmetric quantization (zero point fixed at the middle of the code range). */
  symmetric?: boolean;
  /** Plugin-specific options. */
  [key: string]: unknown;
}

/**
 * One option of a plugin's own, declared so that tools can offer it: the CLI makes a flag of it
 * (`--kebab-case-name`), lists it under the plugin in `--help`, checks values before the plugin
 * runs ({@link resolveQuantizerOptions}) and records the resolved values with the checkpoint.
 */
export interface QuantizerOptionSpec {
  /** The key in {@link QuantizeOptions} (camelCase, e.g. `actOrder`); the flag is its kebab-case form. */
  readonly name: string;
  /** The flag's name where it differs from the kebab-case key (e.g. `sym` for `symmetric`). */
  readonly flag?: string;
  /** How values are read: `int` is an integer `number`. */
  readonly type: "boolean" | "int" | "number" | "string";
  /** The value when none is given (also shown by `--help`); absent: the option is left out. */
  readonly default?: boolean | number | string;
  /** For `string` options: the allowed values. */
  readonly choices?: readonly string[];
  /** For numbers: inclusive bounds. */
  readonly min?: number;
  readonly max?: number;
  /** One line for `--help`. */
  readonly help: string;
  /**
   * The plugin's own check of a value that passed the type and bounds: return a message saying
   * what is wrong and what to use instead, or undefined when the value is fine.
   */
  check?(value: unknown, options: QuantizeOptions): string | undefined;
}

/** What a custom format's plugin writes to a checkpoint and reads back. */
export interface SerializedWeight {
  /** Named tensors (names are local to the layer; core prefixes them). */
  tensors: Record<string, Tensor>;
  /** JSON-serialisable metadata. */
  metadata: Record<string, unknown>;
}

/**
 * A quantizer plugin (spec version 1). Register it with `registerQuantizer(plugin)` or pass the
 * object where a quantizer is expected.
 */
export interface QuantizerPlugin {
  /** The spec version this plugin implements: 1. */
  readonly specVersion: typeof QUANTIZER_SPEC_VERSION;
  /** Unique name, e.g. `"rtn"`, `"optq"`, `"nf4"`. */
  readonly name: string;
  /** One line for `--help` and `modulora info`. */
  readonly description?: string;
  /** Which statistics `quantize` needs. */
  readonly calibration: CalibrationKind;
  /** Bit widths the plugin accepts (checked before `quantize` is called). */
  readonly supportedBits: readonly number[];
  /** The group (block) size tools use when the user gives none (default 128). */
  readonly defaultGroupSize?: number | "row";
  /**
   * The group sizes the plugin accepts, when it accepts only some (e.g. `["row"]` for levels
   * fitted per row). Absent: any divisor of the input features, and "row". Tools skip or refuse
   * the others before quantizing ({@link unsupportedGroupSize}).
   */
  readonly supportedGroupSizes?: readonly (number | "row")[];
  /** Whether `symmetric: true` means something to this plugin (default false: tools refuse it). */
  readonly supportsSymmetric?: boolean;
  /** The plugin's own options (beyond `bits`, `groupSize` and `symmetric`), for tools to offer and check. */
  readonly options?: readonly QuantizerOptionSpec[];
  /**
   * Quantizes W (f32 [out, in], contiguous). Must not keep a reference to `weight`, which the
   * caller may free. Bad options should throw an Error saying what was wrong.
   */
  quantize(weight: Tensor, options: QuantizeOptions, stats?: CalibrationStats): QuantizedWeight | Promise<QuantizedWeight>;
  /** For `custom` formats: the tensors and metadata that reproduce `qw` in {@link QuantizerPlugin.deserialize}. */
  serialize?(qw: QuantizedWeight): SerializedWeight;
  /** For `custom` formats: rebuilds a weight saved by {@link QuantizerPlugin.serialize}. */
  deserialize?(tensors: Record<string, Tensor>, metadata: Record<string, unknown>): QuantizedWeight;
}
