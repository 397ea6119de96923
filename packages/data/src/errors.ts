/** Where a dataset problem is: a file and, for JSONL, the 1-based line. */
export interface DataLocation {
  file: string;
  line?: number;
}

/**
 * A dataset that cannot be read or built. The message starts with `file:line:` (or `file:`) when
 * the problem is in a file; `file` and `line` are also set as properties.
 */
export class DataError extends Error {
  readonly file: string | undefined;
  readonly line: number | undefined;
  constructor(message: string, where?: DataLocation, options?: { cause?: unknown }) {
    super(where ? `${locationString(where)}: ${message}` : message, options);
    this.name = "DataError";
    this.file = where?.file;
    this.line = where?.line;
  }
}

/** `file:line`, or `file` when there is no line. */
export function locationString(where: DataLocation): string {
  return where.line === undefined ? where.file : `${where.file}:${where.line}`;
}
