// Stop strings over streamed text. A stop string may arrive split across chunks, so the tail of
// the text that could be the start of one is held back until the next chunk decides; nothing
// else is delayed. An emitted character can therefore never be the start of a match.

/** What {@link StopStringMatcher.push} lets through. */
export interface StopStringStep {
  /** Text that is safe to emit (before any stop string). */
  text: string;
  /** The stop string found (generation ends; it and what follows are not emitted), or null. */
  stop: string | null;
}

/** Finds the first occurrence of any of a set of stop strings in text that arrives in chunks. */
export class StopStringMatcher {
  private readonly stops: readonly string[];
  private readonly longest: number;
  private held = "";

  /** @throws TypeError for a stop string that is not a non-empty string. */
  constructor(stops: string | readonly string[] | undefined) {
    const list = stops === undefined ? [] : typeof stops === "string" ? [stops] : stops;
    if (!Array.isArray(list)) throw new TypeError(`generate: stop must be a string or an array of strings, got ${typeof stops}`);
    for (const s of list) {
      if (typeof s !== "string" || s === "") throw new TypeError(`generate: every stop string must be a non-empty string, got ${JSON.stringify(s)}`);
    }
    this.stops = [...new Set(list)];
    this.longest = Math.max(0, ...this.stops.map((s) => s.length));
  }

  /** Adds a chunk; returns what can be emitted and whether a stop string was found. */
  push(chunk: string): StopStringStep {
    if (this.stops.length === 0) return { text: chunk, stop: null };
    const text = this.held + chunk;
    let at = -1;
    let stop: string | null = null;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) [at, stop] = [i, s];
    }
    if (stop !== null) {
      this.held = "";
      return { text: text.slice(0, at), stop };
    }
    // Hold the longest tail that is a proper prefix of a stop string.
    let hold = Math.min(text.length, this.longest - 1);
    while (hold > 0 && !this.stops.some((s) => s.startsWith(text.slice(text.length - hold)))) hold--;
    this.held = text.slice(text.length - hold);
    return { text: text.slice(0, text.length - hold), stop: null };
  }

  /** The held tail, at the end of the text (it matched no stop string). */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }
}
