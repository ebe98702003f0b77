// The keyboard and screen-reader path through the seat map: section → row → seat, as native
// selects and checkboxes (the model is seats.io's step-through list). It shows the same live
// state as the canvas and updates only what a delta touched: the free counts of the sections
// and rows it names, and the seats of the row on show.

import { FLAG } from './layout.js';
import { MARK } from './seatcanvas.js';
import { h, setText } from './view.js';

/**
 * Free seats by section, by row and by category, kept current seat by seat.
 */
export class Tally {
  /** @param {import('./layout.js').Layout} layout */
  constructor(layout) {
    this.layout = layout;
    this.bySection = new Int32Array(layout.sections.length);
    this.byRow = new Int32Array(layout.rows.length);
    this.byCategory = new Int32Array(Math.max(1, layout.categories.length));
    this.totalByCategory = new Int32Array(Math.max(1, layout.categories.length));
    this.free = 0;
    for (let i = 0; i < layout.size; i += 1) {
      const c = layout.category[i];
      if (c < this.totalByCategory.length) this.totalByCategory[c] += 1;
    }
  }

  /** @param {Uint8Array} states */
  reset(states) {
    this.bySection.fill(0);
    this.byRow.fill(0);
    this.byCategory.fill(0);
    this.free = 0;
    for (let i = 0; i < states.length; i += 1) if (states[i] === 0) this.#add(i, 1);
  }

  /**
   * @param {number} seat
   * @param {number} before its state before
   * @param {number} after its state now
   */
  move(seat, before, after) {
    if (before === after) return;
    if (before === 0) this.#add(seat, -1);
    else if (after === 0) this.#add(seat, 1);
  }

  /**
   * @param {number} seat
   * @param {number} delta
   */
  #add(seat, delta) {
    const layout = this.layout;
    const row = layout.rowOf[seat];
    this.byRow[row] += delta;
    this.bySection[layout.rows[row].section] += delta;
    const c = layout.category[seat];
    if (c < this.byCategory.length) this.byCategory[c] += delta;
    this.free += delta;
  }
}

/**
 * @typedef {object} PickerOptions
 * @property {(seat: number) => { category: string, price: string, cat: number }} describe
 *   the seat's category name and price, and its colour index
 * @property {(seat: number, picked: boolean) => void} onToggle
 */

export class SeatPicker {
  /**
   * @param {import('./layout.js').Layout} layout
   * @param {import('./seatcanvas.js').SeatCanvas} canvas whose states and marks are shown
   * @param {Tally} tally
   * @param {{ section: HTMLSelectElement, row: HTMLSelectElement, chips: HTMLUListElement, legend: HTMLElement }} elements
   * @param {PickerOptions} options
   */
  constructor(layout, canvas, tally, elements, options) {
    this.layout = layout;
    this.canvas = canvas;
    this.tally = tally;
    this.el = elements;
    this.options = options;
    this.section = 0;
    this.row = layout.sections[0]?.rows[0] ?? 0;
    /** Chips of the row on show, by seat. */
    /** @type {Map<number, { input: HTMLInputElement, label: HTMLLabelElement, state: HTMLElement }>} */
    this.chips = new Map();
    this.abort = new AbortController();
    const signal = this.abort.signal;
    elements.section.addEventListener(
      'change',
      () => {
        this.section = Number(elements.section.value);
        this.row = layout.sections[this.section]?.rows[0] ?? 0;
        this.#rows();
        this.#seats();
      },
      { signal },
    );
    elements.row.addEventListener(
      'change',
      () => {
        this.row = Number(elements.row.value);
        this.#seats();
      },
      { signal },
    );
    elements.chips.addEventListener(
      'change',
      (e) => {
        const input = /** @type {HTMLInputElement} */ (e.target);
        const seat = Number(input.dataset.seat);
        if (Number.isInteger(seat)) options.onToggle(seat, input.checked);
      },
      { signal },
    );
  }

  destroy() {
    this.abort.abort();
  }

  /** Everything again (after a snapshot). */
  refreshAll() {
    const { layout } = this;
    this.el.section.replaceChildren(
      ...layout.sections.map((_, i) => new Option(this.#sectionText(i), String(i), false, i === this.section)),
    );
    this.el.section.disabled = layout.sections.length === 0;
    this.#rows();
    this.#seats();
  }

  /**
   * After a delta or a change of marks: the counts and chips those seats touch.
   * @param {Iterable<number>} seats
   */
  seatsChanged(seats) {
    const { layout } = this;
    /** @type {Set<number>} */
    const sections = new Set();
    /** @type {Set<number>} */
    const rows = new Set();
    for (const seat of seats) {
      const row = layout.rowOf[seat];
      rows.add(row);
      sections.add(layout.rows[row].section);
      if (row === this.row) this.#chip(seat);
    }
    for (const s of sections) {
      const option = this.el.section.options[s];
      if (option) setText(option, this.#sectionText(s));
    }
    if (sections.has(this.section)) {
      const sectionRows = layout.sections[this.section].rows;
      for (const r of rows) {
        const k = sectionRows.indexOf(r);
        const option = k >= 0 ? this.el.row.options[k] : undefined;
        if (option) setText(option, this.#rowText(r));
      }
    }
  }

  /**
   * Shows the row of a seat (after it was picked on the map).
   * @param {number} seat
   */
  showSeat(seat) {
    const row = this.layout.rowOf[seat];
    const section = this.layout.rows[row].section;
    if (section !== this.section) {
      this.section = section;
      this.el.section.value = String(section);
      this.row = row;
      this.#rows();
      this.#seats();
    } else if (row !== this.row) {
      this.row = row;
      this.el.row.value = String(row);
      this.#seats();
    }
  }

  /** @param {number} s */
  #sectionText(s) {
    const section = this.layout.sections[s];
    return `${section.name} — ${this.tally.bySection[s]} of ${section.seats} free`;
  }

  /** @param {number} r */
  #rowText(r) {
    const row = this.layout.rows[r];
    return `Row ${row.label} — ${this.tally.byRow[r]} of ${row.seats.length} free`;
  }

  #rows() {
    const section = this.layout.sections[this.section];
    const rows = section?.rows ?? [];
    this.el.row.replaceChildren(...rows.map((r) => new Option(this.#rowText(r), String(r), false, r === this.row)));
    this.el.row.disabled = rows.length === 0;
  }

  #seats() {
    const row = this.layout.rows[this.row];
    this.chips.clear();
    if (!row) {
      this.el.chips.replaceChildren();
      return;
    }
    setText(this.el.legend, `Seats in ${this.layout.sections[row.section].name}, row ${row.label}`);
    const items = row.seats.map((seat) => {
      const input = h('input', { type: 'checkbox', id: `seat-${seat}`, class: 'chip-input', 'data-seat': seat });
      const state = h('span', { class: 'visually-hidden' });
      const glyph = h('span', { class: 'chip-glyph', 'aria-hidden': 'true' });
      const label = h(
        'label',
        { for: `seat-${seat}`, class: 'chip' },
        h('span', { class: 'visually-hidden' }, 'Seat '),
        String(this.layout.number[seat]),
        state,
        glyph,
      );
      this.chips.set(seat, { input, label, state });
      this.#chip(seat);
      return h('li', {}, input, label);
    });
    this.el.chips.replaceChildren(...items);
  }

  /** @param {number} seat */
  #chip(seat) {
    const chip = this.chips.get(seat);
    if (!chip) return;
    const live = this.canvas.states[seat];
    const marks = this.canvas.marks[seat];
    const mine = (marks & MARK.MINE) !== 0;
    const picked = (marks & MARK.SELECTED) !== 0;
    const flags = this.layout.flags[seat];
    const { category, price, cat } = this.options.describe(seat);
    const word = mine ? 'yours' : live === 0 ? 'free' : live === 1 ? 'held by someone' : live === 2 ? 'sold' : 'not for sale';
    const extras = [
      flags & FLAG.ACCESSIBLE ? 'wheelchair accessible' : '',
      flags & FLAG.RESTRICTED ? 'restricted view' : '',
    ].filter(Boolean);
    setText(chip.state, `, ${word}, ${category} ${price}${extras.length ? `, ${extras.join(', ')}` : ''}`);
    chip.input.checked = mine || picked;
    chip.input.disabled = mine || live !== 0;
    chip.label.className = `chip cat-${cat} state-${mine ? 'mine' : ['free', 'held', 'sold', 'none'][live]}${picked ? ' picked' : ''}`;
    const glyph = /** @type {HTMLElement} */ (chip.label.querySelector('.chip-glyph'));
    setText(
      glyph,
      `${mine ? '★' : live === 1 ? '◌' : live === 2 ? '×' : ''}${flags & FLAG.ACCESSIBLE ? '♿' : ''}${flags & FLAG.RESTRICTED ? '◭' : ''}`,
    );
  }
}
