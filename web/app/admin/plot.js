// Small live plots for the dashboard: the last few minutes of a few numbers, drawn as one SVG
// path per series. Hand-rolled: a line plot over a fixed window is some sixty lines, less than
// the glue any charting library would need, and nothing is loaded that the page does not use.

const SVG = 'http://www.w3.org/2000/svg';

/** A fixed-size window of timed samples, oldest first. */
export class Series {
  /**
   * @param {string} label what the series is, for the legend and screen readers
   * @param {string} className the CSS class that colours its line (`ops.css`)
   * @param {number} capacity how many samples to keep
   */
  constructor(label, className, capacity = 300) {
    this.label = label;
    this.className = className;
    this.capacity = capacity;
    /** @type {{ t: number, v: number }[]} */
    this.points = [];
  }

  /**
   * @param {number} t unix ms
   * @param {number} v
   */
  push(t, v) {
    this.points.push({ t, v });
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
  }

  /** The latest value, or `null`. */
  last() {
    return this.points.length ? this.points[this.points.length - 1].v : null;
  }

  clear() {
    this.points = [];
  }
}

/**
 * A plot of some series over the last `windowMs`, in an `<svg>` with a `viewBox` of 300×80.
 * Each series keeps one `<path>`; a repaint rewrites only their `d` and the scale's labels.
 */
export class Plot {
  /**
   * @param {SVGSVGElement} svg an empty `<svg>` in the page
   * @param {Series[]} series
   * @param {{ windowMs?: number, unit?: string }} [options]
   */
  constructor(svg, series, { windowMs = 300_000, unit = '' } = {}) {
    this.svg = svg;
    this.series = series;
    this.windowMs = windowMs;
    this.unit = unit;
    svg.setAttribute('viewBox', '0 0 300 80');
    svg.setAttribute('preserveAspectRatio', 'none');
    const grid = document.createElementNS(SVG, 'path');
    grid.setAttribute('class', 'plot-grid');
    // The scale's bottom, middle and top; lines keep 4 units off the edges, so a series at
    // the top of the scale (a cap, a constant rate) is not hidden by the border.
    grid.setAttribute('d', 'M0 76H300M0 40H300M0 4H300');
    svg.append(grid);
    this.paths = series.map((s) => {
      const path = document.createElementNS(SVG, 'path');
      path.setAttribute('class', `plot-line ${s.className}`);
      svg.append(path);
      return path;
    });
    /** The largest value the scale shows, for the page's legend. */
    this.top = 0;
    /** How much time the axis spans, ms. */
    this.span = 0;
  }

  /**
   * Redraws every series against a common scale. The time axis spans the samples there are,
   * from one minute up to the whole window, so a page just opened does not draw a sliver.
   */
  paint(now = Date.now()) {
    let oldest = now;
    for (const s of this.series) if (s.points.length) oldest = Math.min(oldest, s.points[0].t);
    const span = Math.min(this.windowMs, Math.max(60_000, now - oldest));
    const from = now - span;
    this.span = span;
    let top = 0;
    for (const s of this.series) for (const p of s.points) if (p.t >= from) top = Math.max(top, p.v);
    // A scale of 1, 2 or 5 times a power of ten, so the labels are round numbers.
    const magnitude = 10 ** Math.floor(Math.log10(top || 1));
    this.top = [1, 2, 5, 10].map((m) => m * magnitude).find((m) => m >= top) ?? top;
    const x = (/** @type {number} */ t) => (((t - from) / span) * 300).toFixed(1);
    const y = (/** @type {number} */ v) => (76 - (v / (this.top || 1)) * 72).toFixed(1);
    this.series.forEach((s, i) => {
      const visible = s.points.filter((p) => p.t >= from);
      this.paths[i].setAttribute('d', visible.map((p, j) => `${j ? 'L' : 'M'}${x(p.t)} ${y(p.v)}`).join(''));
    });
  }
}
