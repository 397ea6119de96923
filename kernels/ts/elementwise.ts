/** Raw elementwise exports (filled in by its owner). */
export interface RawElementwise {}
