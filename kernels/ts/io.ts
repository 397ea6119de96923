/** Raw io exports (filled in by its owner). */
export interface RawIo {}
