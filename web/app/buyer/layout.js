// The static half of an event's seat map (GET .../seats, docs/catalog.md §9) in the shape the
// map draws from: typed arrays indexed by seat index (the index the live map, commands and
// deltas use), sections and rows for the keyboard path, and a grid for hit testing. Built once
// per event; a 50,000-seat map takes a few milliseconds.

/** Seat flags. */
export const FLAG = /** @type {const} */ ({ ACCESSIBLE: 1, RESTRICTED: 2, COMPANION: 4 });

/**
 * @typedef {object} Row
 * @property {string} label
 * @property {number} section its section's position in `sections`
 * @property {number[]} seats seat indexes, in map order
 */

/**
 * @typedef {object} Section
 * @property {string} name
 * @property {number[]} rows row positions in `rows`
 * @property {number} seats how many seats
 * @property {{ minX: number, maxX: number, minY: number, maxY: number }} box
 */

/**
 * @typedef {object} Layout
 * @property {number} size how many seats
 * @property {Float32Array} xs
 * @property {Float32Array} ys
 * @property {Uint8Array} category position in `categories`, 255 for none known
 * @property {Uint8Array} flags {@link FLAG} bits
 * @property {Int32Array} number the seat number
 * @property {Uint32Array} rowOf the seat's row position in `rows`
 * @property {string[]} categories price category ids, in the event detail's order
 * @property {Section[]} sections
 * @property {Row[]} rows
 * @property {{ x: number, y: number }} focal the stage
 * @property {{ minX: number, maxX: number, minY: number, maxY: number }} bounds seats and stage
 * @property {number} pitch the usual distance between neighbouring seats
 * @property {Grid} grid
 */

/**
 * A uniform grid over the seats: `cellStart[c]..cellStart[c+1]` index `cellSeats`.
 * @typedef {{ cell: number, minX: number, minY: number, width: number, height: number,
 *   cellStart: Int32Array, cellSeats: Int32Array }} Grid
 */

/**
 * @param {import('./api.js').StaticMap} map
 * @param {string[]} categories the event's price category ids (their order picks the colours)
 * @returns {Layout}
 */
export function buildLayout(map, categories) {
  const started = performance.now();
  const seats = map.seats;
  const size = seats.length;
  const xs = new Float32Array(size);
  const ys = new Float32Array(size);
  const category = new Uint8Array(size);
  const flags = new Uint8Array(size);
  const number = new Int32Array(size);
  const rowOf = new Uint32Array(size);
  /** @type {Map<string, number>} */
  const categoryIndex = new Map(categories.map((id, i) => [id, i]));
  /** @type {Section[]} */
  const sections = [];
  /** @type {Row[]} */
  const rows = [];
  /** @type {Map<string, number>} */
  const sectionIndex = new Map();
  /** @type {Map<string, number>} */
  const rowIndex = new Map();
  let lastSection = '';
  let lastRow = '';
  let currentSection = -1;
  let currentRow = -1;
  let minX = map.focal.x;
  let maxX = map.focal.x;
  let minY = map.focal.y;
  let maxY = map.focal.y;
  for (let i = 0; i < size; i += 1) {
    const seat = seats[i];
    xs[i] = seat.x;
    ys[i] = seat.y;
    category[i] = categoryIndex.get(seat.category) ?? 255;
    flags[i] = (seat.accessible ? FLAG.ACCESSIBLE : 0) | (seat.restricted_view ? FLAG.RESTRICTED : 0) | (seat.companion ? FLAG.COMPANION : 0);
    number[i] = seat.number;
    // Seats come section by section and row by row; the maps keep it right if they did not.
    if (seat.section !== lastSection || currentSection < 0) {
      lastSection = seat.section;
      lastRow = '';
      let s = sectionIndex.get(seat.section);
      if (s === undefined) {
        s = sections.length;
        sectionIndex.set(seat.section, s);
        sections.push({ name: seat.section, rows: [], seats: 0, box: { minX: seat.x, maxX: seat.x, minY: seat.y, maxY: seat.y } });
      }
      currentSection = s;
    }
    if (seat.row !== lastRow || currentRow < 0) {
      lastRow = seat.row;
      const key = `${currentSection}\u0000${seat.row}`;
      let r = rowIndex.get(key);
      if (r === undefined) {
        r = rows.length;
        rowIndex.set(key, r);
        rows.push({ label: seat.row, section: currentSection, seats: [] });
        sections[currentSection].rows.push(r);
      }
      currentRow = r;
    }
    rows[currentRow].seats.push(i);
    rowOf[i] = currentRow;
    const section = sections[currentSection];
    section.seats += 1;
    const box = section.box;
    if (seat.x < box.minX) box.minX = seat.x;
    if (seat.x > box.maxX) box.maxX = seat.x;
    if (seat.y < box.minY) box.minY = seat.y;
    if (seat.y > box.maxY) box.maxY = seat.y;
    if (seat.x < minX) minX = seat.x;
    if (seat.x > maxX) maxX = seat.x;
    if (seat.y < minY) minY = seat.y;
    if (seat.y > maxY) maxY = seat.y;
  }
  const pitch = estimatePitch(rows, xs, ys);
  const bounds = { minX, maxX, minY, maxY };
  const grid = buildGrid(xs, ys, bounds, pitch);
  performance.measure('marquee:map-layout', { start: started, end: performance.now(), detail: { seats: size } });
  return {
    size,
    xs,
    ys,
    category,
    flags,
    number,
    rowOf,
    categories,
    sections,
    rows,
    focal: { x: map.focal.x, y: map.focal.y },
    bounds,
    pitch,
    grid,
  };
}

/**
 * The median distance between neighbours of a row, from a sample of rows.
 * @param {Row[]} rows
 * @param {Float32Array} xs
 * @param {Float32Array} ys
 */
function estimatePitch(rows, xs, ys) {
  const gaps = [];
  const step = Math.max(1, Math.floor(rows.length / 200));
  for (let r = 0; r < rows.length; r += step) {
    const seats = rows[r].seats;
    for (let k = 1; k < seats.length && k < 50; k += 1) {
      const d = Math.hypot(xs[seats[k]] - xs[seats[k - 1]], ys[seats[k]] - ys[seats[k - 1]]);
      if (d > 0) gaps.push(d);
    }
  }
  if (gaps.length === 0) return 1;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)];
}

/**
 * @param {Float32Array} xs
 * @param {Float32Array} ys
 * @param {{ minX: number, maxX: number, minY: number, maxY: number }} bounds
 * @param {number} pitch
 * @returns {Grid}
 */
function buildGrid(xs, ys, bounds, pitch) {
  let cell = pitch;
  let width = Math.floor((bounds.maxX - bounds.minX) / cell) + 1;
  let height = Math.floor((bounds.maxY - bounds.minY) / cell) + 1;
  // A sparse venue (sections far apart) must not make a huge grid: coarser cells instead.
  while (width * height > 4 * xs.length + 1024) {
    cell *= 2;
    width = Math.floor((bounds.maxX - bounds.minX) / cell) + 1;
    height = Math.floor((bounds.maxY - bounds.minY) / cell) + 1;
  }
  const cells = width * height;
  const cellOf = new Int32Array(xs.length);
  const cellStart = new Int32Array(cells + 1);
  for (let i = 0; i < xs.length; i += 1) {
    const c = Math.floor((xs[i] - bounds.minX) / cell) + Math.floor((ys[i] - bounds.minY) / cell) * width;
    cellOf[i] = c;
    cellStart[c + 1] += 1;
  }
  for (let c = 0; c < cells; c += 1) cellStart[c + 1] += cellStart[c];
  const fill = cellStart.slice(0, cells);
  const cellSeats = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i += 1) cellSeats[fill[cellOf[i]]++] = i;
  return { cell, minX: bounds.minX, minY: bounds.minY, width, height, cellStart, cellSeats };
}

/**
 * Calls `visit` for every seat whose position lies in the world rectangle.
 * @param {Layout} layout
 * @param {number} x0
 * @param {number} y0
 * @param {number} x1
 * @param {number} y1
 * @param {(seat: number) => void} visit
 */
export function seatsIn(layout, x0, y0, x1, y1, visit) {
  const g = layout.grid;
  const c0 = Math.max(0, Math.floor((x0 - g.minX) / g.cell));
  const c1 = Math.min(g.width - 1, Math.floor((x1 - g.minX) / g.cell));
  const r0 = Math.max(0, Math.floor((y0 - g.minY) / g.cell));
  const r1 = Math.min(g.height - 1, Math.floor((y1 - g.minY) / g.cell));
  for (let r = r0; r <= r1; r += 1) {
    for (let c = c0; c <= c1; c += 1) {
      const cell = r * g.width + c;
      for (let k = g.cellStart[cell]; k < g.cellStart[cell + 1]; k += 1) {
        const seat = g.cellSeats[k];
        const x = layout.xs[seat];
        const y = layout.ys[seat];
        if (x >= x0 && x <= x1 && y >= y0 && y <= y1) visit(seat);
      }
    }
  }
}

/**
 * The seat nearest to a world point, within `radius`; -1 when none.
 * @param {Layout} layout
 * @param {number} x
 * @param {number} y
 * @param {number} radius
 */
export function nearestSeat(layout, x, y, radius) {
  let best = -1;
  let bestDistance = radius * radius;
  seatsIn(layout, x - radius, y - radius, x + radius, y + radius, (seat) => {
    const dx = layout.xs[seat] - x;
    const dy = layout.ys[seat] - y;
    const d = dx * dx + dy * dy;
    if (d <= bestDistance) {
      bestDistance = d;
      best = seat;
    }
  });
  return best;
}

/**
 * A seat's name for people: "Stalls, row A, seat 5".
 * @param {Layout} layout
 * @param {number} seat
 */
export function seatLabel(layout, seat) {
  if (seat < 0 || seat >= layout.size) return `seat #${seat}`;
  const row = layout.rows[layout.rowOf[seat]];
  return `${layout.sections[row.section].name}, row ${row.label}, seat ${layout.number[seat]}`;
}

/**
 * Several seats for people, grouped by row: "Stalls, row A, seats 4–5; Balcony, row 1, seat 3".
 * @param {Layout} layout
 * @param {number[]} seats
 */
export function seatsLabel(layout, seats) {
  /** @type {Map<number, number[]>} */
  const byRow = new Map();
  for (const seat of seats) {
    if (seat < 0 || seat >= layout.size) continue;
    const row = layout.rowOf[seat];
    const list = byRow.get(row) ?? [];
    list.push(layout.number[seat]);
    byRow.set(row, list);
  }
  const parts = [];
  for (const [r, numbers] of byRow) {
    numbers.sort((a, b) => a - b);
    const row = layout.rows[r];
    const runs = [];
    for (let k = 0; k < numbers.length; ) {
      let end = k;
      while (end + 1 < numbers.length && numbers[end + 1] === numbers[end] + 1) end += 1;
      runs.push(end > k ? `${numbers[k]}–${numbers[end]}` : String(numbers[k]));
      k = end + 1;
    }
    parts.push(`${layout.sections[row.section].name}, row ${row.label}, seat${numbers.length > 1 ? 's' : ''} ${runs.join(', ')}`);
  }
  return parts.join('; ');
}
