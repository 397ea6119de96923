/** Raw gemm exports (filled in by its owner). */
export interface RawGemm {}
