/** Raw loss exports (filled in by its owner). */
export interface RawLoss {}
