/** Raw attention exports (filled in by its owner). */
export interface RawAttention {}
