/** Raw nn exports (filled in by its owner). */
export interface RawNn {}
