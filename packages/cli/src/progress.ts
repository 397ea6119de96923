// Progress on stderr (so stdout stays clean for results and --json): cli-progress bars on a TTY,
// plain throttled lines otherwise.
import cliProgress from "cli-progress";

/** One task's progress. */
export interface ProgressBar {
  /** Sets the done count and the payload fields shown after the bar. */
  update(done: number, fields?: Record<string, string | number>): void;
  /** Prints a message line without garbling the bar. */
  log(line: string): void;
  /** Changes the total (when it is known only once the work starts). */
  setTotal(total: number): void;
  /** Finishes the bar (prints the final line when not on a TTY). */
  stop(): void;
}

/** Formats seconds as m:ss or h:mm:ss. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Writes progress to a stream: bars when it is a TTY, lines when it is not. */
export class Progress {
  readonly tty: boolean;
  constructor(readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = !!stream.isTTY && process.env["TERM"] !== "dumb";
  }

  /** A plain message line. */
  log(message: string): void {
    this.stream.write(`${message}\n`);
  }

  /**
   * A bar for `total` units. `fields` names payload values shown after the counts
   * (e.g. loss, lr); `unit` labels the counts in plain mode.
   */
  bar(label: string, total: number, options: { fields?: readonly string[]; unit?: string } = {}): ProgressBar {
    const fields = options.fields ?? [];
    // cli-progress placeholders are word characters only: "tok/s" is shown as the label of key "tok_s".
    const key = (f: string) => f.replace(/\W/g, "_");
    const extra = fields.map((f) => `${f} {${key(f)}}`).join(" | ");
    if (this.tty) {
      const bar = new cliProgress.SingleBar(
        {
          stream: this.stream,
          format: `${label.padEnd(10)} [{bar}] {value}/{total}${extra ? ` | ${extra}` : ""} | ETA {eta_formatted}`,
          barsize: 24,
          hideCursor: true,
          clearOnComplete: false,
          etaBuffer: 20,
          fps: 10,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, Object.fromEntries(fields.map((f) => [key(f), "-"])));
      return {
        update: (done, values) => bar.update(done, Object.fromEntries(Object.entries(values ?? {}).map(([k, v]) => [key(k), v]))),
        setTotal: (n) => bar.setTotal(n),
        log: (line) => {
          this.stream.write(`\r\x1b[2K${line}\n`);
          bar.render();
        },
        stop: () => bar.stop(),
      };
    }
    // Plain lines: the first, then one per 10% of the work (at most one a second, at least one every 10 s), and the last.
    const t0 = performance.now();
    let lastShown = -1;
    let lastTime = 0;
    let last: { done: number; values: Record<string, string | number> } = { done: 0, values: {} };
    const show = (done: number, values: Record<string, string | number>) => {
      const elapsed = (performance.now() - t0) / 1000;
      const eta = done > 0 && done < total ? ` | ETA ${formatSeconds((elapsed / done) * (total - done))}` : "";
      const payload = fields.filter((f) => values[f] !== undefined).map((f) => ` | ${f} ${values[f]}`).join("");
      this.stream.write(`${label} ${done}/${total}${options.unit ? ` ${options.unit}` : ""}${payload} | ${formatSeconds(elapsed)}${eta}\n`);
      lastShown = done;
      lastTime = performance.now();
    };
    let step = Math.max(1, Math.ceil(total / 10));
    return {
      log: (line) => this.log(line),
      setTotal: (n) => {
        total = n;
        step = Math.max(1, Math.ceil(total / 10));
      },
      update: (done, values = {}) => {
        last = { done, values };
        const since = performance.now() - lastTime;
        // (A payload-only update, e.g. calibration inside one layer step, shows at most every 10 s.)
        if (lastShown < 0 || (done >= total && lastShown < total) || (done - lastShown >= step && since > 1000) || since > 10_000) show(done, values);
      },
      stop: () => {
        if (last.done !== lastShown) show(last.done, last.values);
      },
    };
  }
}
