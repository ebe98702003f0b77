// The seat map on a canvas: every seat from the static layout, in the state the live map says,
// with zoom and pan. A full draw batches seats by look (one path per colour and shape), so
// 50,000 seats draw in a few tens of milliseconds; a delta repaints only the seats it names
// (each clipped to its own square, neighbours redrawn inside it), so a delta costs
// microseconds per seat whatever the map's size.
//
// The canvas is a picture for sighted pointer users. The keyboard and screen-reader path
// (section → row → seat) is the picker beside it (picker.js), fed from the same state.

import { FLAG, nearestSeat, seatsIn } from './layout.js';

/** Category colours, in the event's category order (dearest first): distinct for most colour vision. */
export const PALETTE = ['#1f5fd6', '#c96a00', '#0d8a55', '#b0308f', '#0a7f99', '#b23a0b', '#5d7f12', '#6d3fd9'];
/** A seat whose category the page does not know. */
export const NO_CATEGORY = '#8b939c';
const INK = '#111827';
const HELD = '#6b7480';
const HELD_TINY = '#c5cad1';
const SOLD = '#39414b';
const BACKGROUND = '#ffffff';
const STAGE = '#2b3340';

/** How a seat looks. Free seats have their category's colour; the rest differ in shape too. */
export const LOOK = /** @type {const} */ ({ FREE: 0, HELD: 1, SOLD: 2, NONE: 3, SELECTED: 4, MINE: 5 });

/** Marks the page puts on seats beside their live state. */
export const MARK = /** @type {const} */ ({ SELECTED: 1, MINE: 2 });

/** Beyond this many seats a delta is drawn by a full redraw instead of seat by seat. */
const FULL_REDRAW_OVER = 2500;

/**
 * @typedef {object} CanvasCallbacks
 * @property {(seat: number) => void} [onPick] a click (or tap) on a seat
 * @property {(seat: number) => void} [onHover] the seat under the pointer (-1: none)
 */

export class SeatCanvas {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {import('./layout.js').Layout} layout
   * @param {CanvasCallbacks} [callbacks]
   */
  constructor(canvas, layout, callbacks = {}) {
    this.canvas = canvas;
    this.layout = layout;
    this.callbacks = callbacks;
    const ctx = canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('this browser draws no 2D canvas');
    this.ctx = ctx;
    /** Seat states as drawn (docs/protocol.md §7: 0 free, 1 held, 2 sold, 3 unused). */
    this.states = new Uint8Array(layout.size);
    /** {@link MARK} bits per seat. */
    this.marks = new Uint8Array(layout.size);
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.width = 0;
    this.height = 0;
    this.dpr = 1;
    this.fitted = false;
    /** @type {number | null} */
    this.frame = null;
    this.abort = new AbortController();
    this.#listen();
    this.resize();
  }

  /** Stops listening to the canvas and the window. */
  destroy() {
    this.abort.abort();
    if (this.frame !== null) cancelAnimationFrame(this.frame);
  }

  /** Follows the canvas's CSS size (and the screen's pixel ratio). */
  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const width = Math.max(1, Math.round(rect.width));
    const height = Math.max(1, Math.round(rect.height));
    const dpr = Math.min(3, window.devicePixelRatio || 1);
    if (width === this.width && height === this.height && dpr === this.dpr && this.fitted) return;
    const previous = this.width;
    this.width = width;
    this.height = height;
    this.dpr = dpr;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    if (!this.fitted || previous === 0) this.fit(false);
    this.draw();
  }

  /**
   * Shows the whole map.
   * @param {boolean} [redraw]
   */
  fit(redraw = true) {
    const { bounds, pitch } = this.layout;
    const margin = pitch * 2;
    const w = bounds.maxX - bounds.minX + 2 * margin;
    const h = bounds.maxY - bounds.minY + 2 * margin + pitch * 2;
    this.scale = Math.max(1e-3, Math.min(this.width / w, this.height / h));
    this.minScale = this.scale * 0.5;
    this.maxScale = Math.max(this.scale * 2, 48 / pitch);
    this.tx = this.width / 2 - ((bounds.minX + bounds.maxX) / 2) * this.scale;
    this.ty = this.height / 2 - ((bounds.minY - pitch * 2 + bounds.maxY) / 2) * this.scale;
    this.fitted = true;
    if (redraw) this.requestDraw();
  }

  /**
   * Zooms by `factor` around a point of the canvas (CSS pixels; the centre by default).
   * @param {number} factor
   * @param {number} [sx]
   * @param {number} [sy]
   */
  zoomAt(factor, sx = this.width / 2, sy = this.height / 2) {
    const next = Math.min(this.maxScale ?? Infinity, Math.max(this.minScale ?? 0, this.scale * factor));
    const applied = next / this.scale;
    this.tx = sx - (sx - this.tx) * applied;
    this.ty = sy - (sy - this.ty) * applied;
    this.scale = next;
    this.requestDraw();
  }

  /**
   * @param {number} dx CSS pixels
   * @param {number} dy
   */
  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.requestDraw();
  }

  /**
   * Brings a seat into view (the keyboard path does, when it picks one).
   * @param {number} seat
   */
  reveal(seat) {
    const sx = this.layout.xs[seat] * this.scale + this.tx;
    const sy = this.layout.ys[seat] * this.scale + this.ty;
    const margin = 24;
    if (sx >= margin && sx <= this.width - margin && sy >= margin && sy <= this.height - margin) return;
    this.tx += this.width / 2 - sx;
    this.ty += this.height / 2 - sy;
    this.requestDraw();
  }

  /**
   * The seat at a point of the canvas (CSS pixels), or -1.
   * @param {number} sx
   * @param {number} sy
   */
  seatAt(sx, sy) {
    const x = (sx - this.tx) / this.scale;
    const y = (sy - this.ty) / this.scale;
    // At least a few pixels of reach, so tiny seats can still be hit.
    const radius = Math.max(this.layout.pitch * 0.6, 6 / this.scale);
    return nearestSeat(this.layout, x, y, radius);
  }

  /** Draws on the next frame (many pans and zooms in one frame draw once). */
  requestDraw() {
    if (this.frame !== null) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.draw();
    });
  }

  /**
   * How seat `i` looks now.
   * @param {number} i
   */
  look(i) {
    const state = this.states[i];
    const marks = this.marks[i];
    if (state === 3) return LOOK.NONE;
    if (marks & MARK.MINE) return LOOK.MINE;
    if (state === 1) return LOOK.HELD;
    if (state === 2) return LOOK.SOLD;
    return marks & MARK.SELECTED ? LOOK.SELECTED : LOOK.FREE;
  }

  /** The seat radius on screen, CSS pixels. */
  radius() {
    return this.layout.pitch * this.scale * 0.42;
  }

  /** Draws the whole map. */
  draw() {
    if (this.frame !== null) {
      cancelAnimationFrame(this.frame);
      this.frame = null;
    }
    const { ctx, layout } = this;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.width, this.height);
    this.#drawStage();
    const r = this.radius();
    // Only what is in view: the world rectangle under the canvas, one seat of margin.
    const pad = layout.pitch;
    const x0 = -this.tx / this.scale - pad;
    const y0 = -this.ty / this.scale - pad;
    const x1 = (this.width - this.tx) / this.scale + pad;
    const y1 = (this.height - this.ty) / this.scale + pad;
    /** @type {Map<number, number[]>} */
    const buckets = new Map();
    const all = x0 <= layout.bounds.minX && y0 <= layout.bounds.minY && x1 >= layout.bounds.maxX && y1 >= layout.bounds.maxY;
    const add = (/** @type {number} */ i) => {
      const look = this.look(i);
      if (look === LOOK.NONE) return;
      const key = (look * 256 + layout.category[i]) * 2 + (layout.flags[i] & FLAG.ACCESSIBLE);
      const list = buckets.get(key);
      if (list) list.push(i);
      else buckets.set(key, [i]);
    };
    if (all) for (let i = 0; i < layout.size; i += 1) add(i);
    else seatsIn(layout, x0, y0, x1, y1, add);
    for (const [key, seats] of buckets) this.#drawBucket(key, seats, r);
    if (r >= 3) this.#drawRestricted(all ? null : [x0, y0, x1, y1], r);
    this.#drawSectionNames(r);
  }

  /**
   * Repaints the given seats only (after a delta, a selection, a hold).
   * @param {Iterable<number>} seats
   */
  paint(seats) {
    const list = Array.isArray(seats) ? seats : [...seats];
    if (list.length > FULL_REDRAW_OVER || this.frame !== null) {
      this.requestDraw();
      return;
    }
    const { ctx, layout } = this;
    const r = this.radius();
    const reach = r + Math.max(1.5, r * 0.45) + 1.5; // the seat, its outline, antialiasing
    const worldReach = reach / this.scale;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    for (const i of list) {
      if (i < 0 || i >= layout.size) continue;
      const sx = layout.xs[i] * this.scale + this.tx;
      const sy = layout.ys[i] * this.scale + this.ty;
      if (sx < -reach || sy < -reach || sx > this.width + reach || sy > this.height + reach) continue;
      ctx.save();
      ctx.beginPath();
      ctx.rect(sx - reach, sy - reach, 2 * reach, 2 * reach);
      ctx.clip();
      ctx.fillStyle = BACKGROUND;
      ctx.fillRect(sx - reach, sy - reach, 2 * reach, 2 * reach);
      // Neighbours whose drawing reaches into the square are drawn again inside it.
      const wx = layout.xs[i];
      const wy = layout.ys[i];
      seatsIn(layout, wx - 2 * worldReach, wy - 2 * worldReach, wx + 2 * worldReach, wy + 2 * worldReach, (n) => {
        const look = this.look(n);
        if (look === LOOK.NONE) return;
        this.#drawBucket((look * 256 + layout.category[n]) * 2 + (layout.flags[n] & FLAG.ACCESSIBLE), [n], r);
        if (r >= 3 && layout.flags[n] & FLAG.RESTRICTED) this.#slash([n], r);
      });
      ctx.restore();
    }
  }

  /**
   * Draws seats that look the same in one path.
   * @param {number} key (look × 256 + category) × 2 + accessible
   * @param {number[]} seats
   * @param {number} r
   */
  #drawBucket(key, seats, r) {
    const { ctx, layout } = this;
    const square = (key & 1) === 1;
    const category = (key >> 1) & 255;
    const look = key >> 9;
    const colour = category === 255 ? NO_CATEGORY : PALETTE[category % PALETTE.length];
    const tiny = r < 2;
    const path = new Path2D();
    // Sold seats are small dots, held ones rings: the shape tells them apart, not the colour only.
    const size = look === LOOK.SOLD ? r * 0.5 : r;
    for (const i of seats) {
      const sx = layout.xs[i] * this.scale + this.tx;
      const sy = layout.ys[i] * this.scale + this.ty;
      if (tiny) {
        const side = Math.max(1, 2 * r);
        path.rect(sx - side / 2, sy - side / 2, side, side);
      } else if (square && look !== LOOK.SOLD) {
        path.rect(sx - size, sy - size, 2 * size, 2 * size);
      } else {
        path.moveTo(sx + size, sy);
        path.arc(sx, sy, size, 0, Math.PI * 2);
      }
    }
    if (tiny) {
      ctx.fillStyle =
        look === LOOK.FREE ? colour : look === LOOK.HELD ? HELD_TINY : look === LOOK.SOLD ? SOLD : INK;
      ctx.fill(path);
      return;
    }
    const line = Math.max(1.25, r * 0.3);
    switch (look) {
      case LOOK.FREE:
        ctx.fillStyle = colour;
        ctx.fill(path);
        break;
      case LOOK.HELD:
        ctx.fillStyle = BACKGROUND;
        ctx.fill(path);
        ctx.strokeStyle = HELD;
        ctx.lineWidth = line;
        ctx.stroke(path);
        break;
      case LOOK.SOLD:
        ctx.fillStyle = SOLD;
        ctx.fill(path);
        break;
      case LOOK.SELECTED:
        ctx.fillStyle = colour;
        ctx.fill(path);
        ctx.strokeStyle = INK;
        ctx.lineWidth = Math.max(1.5, r * 0.45);
        ctx.stroke(path);
        break;
      case LOOK.MINE: {
        ctx.fillStyle = INK;
        ctx.fill(path);
        // A dot of the category's colour: yours, and which category.
        const dots = new Path2D();
        for (const i of seats) {
          const sx = layout.xs[i] * this.scale + this.tx;
          const sy = layout.ys[i] * this.scale + this.ty;
          dots.moveTo(sx + r * 0.45, sy);
          dots.arc(sx, sy, r * 0.45, 0, Math.PI * 2);
        }
        ctx.fillStyle = colour;
        ctx.fill(dots);
        break;
      }
      default:
        break;
    }
  }

  /**
   * A white slash across restricted-view seats that are free or picked.
   * @param {[number, number, number, number] | null} box the world rectangle in view, or all
   * @param {number} r
   */
  #drawRestricted(box, r) {
    const layout = this.layout;
    /** @type {number[]} */
    const seats = [];
    const visit = (/** @type {number} */ i) => {
      if (layout.flags[i] & FLAG.RESTRICTED) seats.push(i);
    };
    if (box) seatsIn(layout, box[0], box[1], box[2], box[3], visit);
    else for (let i = 0; i < layout.size; i += 1) visit(i);
    this.#slash(seats, r);
  }

  /**
   * @param {number[]} seats
   * @param {number} r
   */
  #slash(seats, r) {
    const { ctx, layout } = this;
    const path = new Path2D();
    let any = false;
    for (const i of seats) {
      const look = this.look(i);
      if (look !== LOOK.FREE && look !== LOOK.SELECTED) continue;
      const sx = layout.xs[i] * this.scale + this.tx;
      const sy = layout.ys[i] * this.scale + this.ty;
      const d = r * 0.6;
      path.moveTo(sx - d, sy + d);
      path.lineTo(sx + d, sy - d);
      any = true;
    }
    if (!any) return;
    ctx.strokeStyle = BACKGROUND;
    ctx.lineWidth = Math.max(1, r * 0.25);
    ctx.stroke(path);
  }

  #drawStage() {
    const { ctx, layout } = this;
    const { bounds, pitch, focal } = layout;
    const w = Math.max((bounds.maxX - bounds.minX) * 0.4, pitch * 6) * this.scale;
    const h = Math.max(pitch * 1.1 * this.scale, 10);
    const sx = focal.x * this.scale + this.tx;
    const sy = focal.y * this.scale + this.ty;
    ctx.fillStyle = STAGE;
    ctx.fillRect(sx - w / 2, sy - h, w, h);
    if (h >= 10 && w >= 40) {
      ctx.fillStyle = '#ffffff';
      ctx.font = `600 ${Math.min(14, Math.max(9, h * 0.6))}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('STAGE', sx, sy - h / 2);
    }
  }

  /** @param {number} r */
  #drawSectionNames(r) {
    const { ctx, layout } = this;
    if (r < 1) return;
    ctx.fillStyle = '#3d4550';
    ctx.font = '600 12px system-ui, sans-serif';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    for (const section of layout.sections) {
      const { box } = section;
      const width = (box.maxX - box.minX) * this.scale;
      const text = section.name;
      if (width < ctx.measureText(text).width) continue;
      const sx = ((box.minX + box.maxX) / 2) * this.scale + this.tx;
      // Above the first row, clear of what a repaint of its seats wipes.
      const sy = box.minY * this.scale + this.ty - (r + Math.max(1.5, r * 0.45) + 4);
      if (sx < 0 || sx > this.width || sy < 0 || sy > this.height + 20) continue;
      ctx.fillText(text, sx, sy);
    }
  }

  #listen() {
    const { canvas } = this;
    const signal = this.abort.signal;
    /** @type {Map<number, { x: number, y: number }>} */
    const pointers = new Map();
    let dragged = false;
    let start = { x: 0, y: 0 };
    let pinch = 0;
    /** @param {PointerEvent} e */
    const local = (e) => {
      const rect = canvas.getBoundingClientRect();
      return { x: e.clientX - rect.left, y: e.clientY - rect.top };
    };
    canvas.addEventListener(
      'pointerdown',
      (e) => {
        const p = local(e);
        pointers.set(e.pointerId, p);
        canvas.setPointerCapture(e.pointerId);
        if (pointers.size === 1) {
          dragged = false;
          start = p;
        } else if (pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          pinch = Math.hypot(a.x - b.x, a.y - b.y);
          dragged = true;
        }
      },
      { signal },
    );
    canvas.addEventListener(
      'pointermove',
      (e) => {
        const p = local(e);
        const previous = pointers.get(e.pointerId);
        if (!previous) {
          this.callbacks.onHover?.(this.seatAt(p.x, p.y));
          return;
        }
        pointers.set(e.pointerId, p);
        if (pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          const distance = Math.hypot(a.x - b.x, a.y - b.y);
          if (pinch > 0) this.zoomAt(distance / pinch, (a.x + b.x) / 2, (a.y + b.y) / 2);
          pinch = distance;
          return;
        }
        if (!dragged && Math.hypot(p.x - start.x, p.y - start.y) > 4) dragged = true;
        if (dragged) this.panBy(p.x - previous.x, p.y - previous.y);
      },
      { signal },
    );
    const end = (/** @type {PointerEvent} */ e) => {
      const p = pointers.get(e.pointerId);
      pointers.delete(e.pointerId);
      if (pointers.size < 2) pinch = 0;
      if (e.type === 'pointerup' && p && !dragged && pointers.size === 0) {
        const seat = this.seatAt(p.x, p.y);
        if (seat >= 0) this.callbacks.onPick?.(seat);
      }
    };
    canvas.addEventListener('pointerup', end, { signal });
    canvas.addEventListener('pointercancel', end, { signal });
    canvas.addEventListener('pointerleave', () => this.callbacks.onHover?.(-1), { signal });
    canvas.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const rect = canvas.getBoundingClientRect();
        this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
      },
      { signal, passive: false },
    );
    canvas.addEventListener(
      'keydown',
      (e) => {
        const step = 60;
        /** @type {Record<string, () => void>} */
        const keys = {
          ArrowLeft: () => this.panBy(step, 0),
          ArrowRight: () => this.panBy(-step, 0),
          ArrowUp: () => this.panBy(0, step),
          ArrowDown: () => this.panBy(0, -step),
          '+': () => this.zoomAt(1.25),
          '=': () => this.zoomAt(1.25),
          '-': () => this.zoomAt(0.8),
          '0': () => this.fit(),
        };
        const action = keys[e.key];
        if (!action) return;
        e.preventDefault();
        action();
      },
      { signal },
    );
    const observer = new ResizeObserver(() => this.resize());
    observer.observe(canvas);
    signal.addEventListener('abort', () => observer.disconnect());
  }
}
