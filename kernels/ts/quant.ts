/** Raw quant exports (filled in by its owner). */
export interface RawQuant {}
