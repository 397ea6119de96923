// Chart rendering shared by the bench's plots and the CLI's loss curve: vega-lite → vega View →
// SVG text, then resvg → PNG bytes. The libraries load on first use, so importing the package
// costs nothing for callers that never draw.

/** The font every chart is drawn in (vega measures text with it; resvg falls back to it). */
export const PLOT_FONT = "DejaVu Sans";

/** The series colours, assigned in order of first appearance (the first five are the loss chart's). */
export const PLOT_PALETTE: readonly string[] = ["#4c78a8", "#e45756", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#eeca3b", "#ff9da6", "#9d755d", "#bab0ac"];

/**
 * A vega-lite colour scale that gives the series {@link PLOT_PALETTE}'s colours in the order
 * they are listed (first appearance), not alphabetically; past ten series the colours repeat.
 * @param series The series names; duplicates are dropped, the first occurrence keeps its place.
 */
export function paletteScale(series: Iterable<string>): { domain: string[]; range: string[] } {
  const domain = [...new Set(series)];
  return { domain, range: domain.map((_, i) => PLOT_PALETTE[i % PLOT_PALETTE.length]!) };
}

/**
 * Renders a vega-lite spec to SVG text (compiled by vega-lite, laid out by a headless vega View).
 * @param vlSpec A vega-lite (v6) spec with inline data.
 * @returns The SVG document, starting with `<svg`.
 */
export async function renderSvg(vlSpec: Record<string, unknown>): Promise<string> {
  const vl = await import("vega-lite");
  const vega = await import("vega");
  const spec = vl.compile(vlSpec as never).spec;
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Rasterizes SVG text to PNG bytes with resvg, on a white background, text in {@link PLOT_FONT}.
 * @param svg An SVG document (e.g. from {@link renderSvg}).
 * @param width The PNG's width in pixels (default 1400, about 2× a chart's SVG width, for legibility); the height keeps the aspect ratio.
 */
export async function svgToPng(svg: string, width = 1400): Promise<Uint8Array> {
  if (!Number.isInteger(width) || width < 1) throw new Error(`svgToPng: width must be a positive integer of pixels (got ${String(width)})`);
  const { Resvg } = await import("@resvg/resvg-js");
  const r = new Resvg(svg, { fitTo: { mode: "width", value: width }, background: "white", font: { loadSystemFonts: true, defaultFontFamily: PLOT_FONT } });
  return r.render().asPng();
}
