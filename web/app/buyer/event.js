// The event page: the live seat map (the static layout from the catalog, the states from the
// `seats:{event}` snapshot, kept current by its deltas), its legend, the keyboard path, and the
// three ways to buy: best available by category and quantity, seats picked by hand, and
// general-admission quantities. Behind a waiting room, buying waits for the buyer's turn.

import { MarqueeError, SEAT } from '../../sdk/marquee.js';
import { FLAG, seatLabel, seatsLabel } from './layout.js';
import { SeatPicker, Tally } from './picker.js';
import { MARK, NO_CATEGORY, PALETTE, SeatCanvas } from './seatcanvas.js';
import {
  announce,
  byId,
  byIdAs,
  describeError,
  formatClock,
  formatCount,
  formatMoney,
  formatWhen,
  h,
  setText,
  swatch,
} from './view.js';

/**
 * @typedef {import('./app.js').App} App
 * @typedef {import('./api.js').EventDetail} EventDetail
 * @typedef {import('./api.js').Onsale} Onsale
 * @typedef {import('../../sdk/marquee.js').CommandResult} CommandResult
 * @typedef {import('../../sdk/marquee.js').SeatMapChange} SeatMapChange
 */

/** The onsale a buyer deals with now: an open one first, then the next to open. */
const ONSALE_ORDER = ['live', 'paused', 'pre_queue', 'scheduled', 'sold_out', 'closed'];

/**
 * @param {Onsale[]} onsales
 * @returns {Onsale | null}
 */
export function currentOnsale(onsales) {
  const rank = (/** @type {Onsale} */ o) => {
    const r = ONSALE_ORDER.indexOf(o.status);
    return r < 0 ? ONSALE_ORDER.length : r;
  };
  return [...onsales].sort((a, b) => rank(a) - rank(b))[0] ?? null;
}

/** @param {string} status */
function onsaleWord(status) {
  return (
    /** @type {Record<string, string>} */ ({
      live: 'on sale now',
      paused: 'paused by the organiser',
      pre_queue: 'the waiting room is open',
      scheduled: 'not open yet',
      sold_out: 'sold out',
      closed: 'closed',
    })[status] ?? status
  );
}

/** Which page follows each `seats:` channel now (the SDK holds one subscription per channel). */
/** @type {Map<string, object>} */
const channelOwners = new Map();

/**
 * Asks for permission to notify "your turn" (a browser asks only after a click).
 */
export function askToNotify() {
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
}

/**
 * Shows the event page.
 * @param {App} app
 * @param {string} eventId
 * @returns {() => void} unmounts it
 */
export function mountEvent(app, eventId) {
  const abort = new AbortController();
  const signal = abort.signal;
  /** @type {(() => void)[]} */
  const cleanups = [];
  let gone = false;
  setText('event-title', 'Loading the event…');
  setText('event-meta', '');
  setText('event-status', 'Loading the seat map…');
  setText('shop-message', '');
  byId('event-sale').replaceChildren();
  byId('event-grid').hidden = true;

  void (async () => {
    /** @type {EventDetail} */
    let detail;
    /** @type {import('./layout.js').Layout} */
    let layout;
    try {
      [detail, layout] = await Promise.all([app.catalog.event(eventId), app.catalog.layout(eventId)]);
    } catch (error) {
      if (gone) return;
      setText('event-title', 'Event not found');
      setText('event-status', `This event cannot be shown: ${describeError(error)}`);
      return;
    }
    if (gone) return;
    document.title = `${detail.event.name} · Marquee`;
    setText('event-title', detail.event.name);
    setText('event-meta', `${formatWhen(detail.event.starts_at)} · ${detail.venue.name}, ${detail.venue.city}`);
    const shop = new Shop(app, detail, layout, signal);
    cleanups.push(() => shop.destroy());
    await shop.start();
  })();

  return () => {
    gone = true;
    abort.abort();
    for (const cleanup of cleanups) cleanup();
  };
}

class Shop {
  /**
   * @param {App} app
   * @param {EventDetail} detail
   * @param {import('./layout.js').Layout} layout
   * @param {AbortSignal} signal
   */
  constructor(app, detail, layout, signal) {
    this.app = app;
    this.detail = detail;
    this.layout = layout;
    this.signal = signal;
    this.eventId = detail.event.event_id;
    this.onsale = currentOnsale(detail.onsales);
    /** The seated ticket type of each category (what a seat of it costs). */
    this.seatedType = new Map(
      detail.ticket_types.filter((t) => t.kind === 'seated' && t.price_category_id).map((t) => [t.price_category_id, t]),
    );
    this.gaTypes = detail.ticket_types.filter((t) => t.kind === 'general_admission');
    /** Seats picked, not yet held. */
    /** @type {Set<number>} */
    this.picked = new Set();
    /** Seats the buyer holds or ordered (the journal's). */
    /** @type {Set<number>} */
    this.mine = new Set();
    this.maxPick = Math.min(64, this.onsale?.per_user_limit ?? 64);
    /** General admission left, by ticket type (from the live map). */
    /** @type {Map<string, number>} */
    this.gaLeft = new Map();
    /** @type {Promise<unknown> | null} */
    this.subscribing = null;
    /** The hold the shop message is about. */
    /** @type {string | null} */
    this.lastHeld = null;
    /** @type {(() => void)[]} */
    this.offs = [];
    const canvasEl = byIdAs('seat-canvas', HTMLCanvasElement);
    byId('event-grid').hidden = false;
    this.canvas = new SeatCanvas(canvasEl, layout, {
      onPick: (seat) => this.#pickFromMap(seat),
      onHover: (seat) => this.#info(seat),
    });
    this.tally = new Tally(layout);
    this.picker = new SeatPicker(
      layout,
      this.canvas,
      this.tally,
      {
        section: byIdAs('pick-section', HTMLSelectElement),
        row: byIdAs('pick-row', HTMLSelectElement),
        chips: byIdAs('seat-chips', HTMLUListElement),
        legend: byId('pick-seats-legend'),
      },
      {
        describe: (seat) => {
          const c = layout.category[seat];
          return { category: this.#categoryName(c), price: this.#categoryPrice(c), cat: c === 255 ? 9 : c % PALETTE.length };
        },
        onToggle: (seat, picked) => this.#toggle(seat, picked),
      },
    );
  }

  async start() {
    const { signal } = this;
    byId('zoom-in').addEventListener('click', () => this.canvas.zoomAt(1.4), { signal });
    byId('zoom-out').addEventListener('click', () => this.canvas.zoomAt(1 / 1.4), { signal });
    byId('zoom-fit').addEventListener('click', () => this.canvas.fit(), { signal });
    this.#legend();
    this.#forms();
    this.#syncMine(false);
    this.offs.push(this.app.journal.onChange(() => {
      this.#syncMine(true);
      this.#sale();
      // "Held for you" is old news once that hold ended (checked out, released, lapsed).
      if (this.lastHeld && !this.app.journal.activeHolds().some((h) => h.outcome.hold === this.lastHeld)) {
        this.lastHeld = null;
        setText('shop-message', '');
      }
    }));
    this.offs.push(this.app.client.on('queue', (status) => {
      if (status.onsale === this.onsale?.onsale_id) this.#sale();
    }));
    this.#sale();
    // A place admitted, or an admission lapsing, changes what the buyer may do.
    const timer = setInterval(() => this.#gate(), 1000);
    this.offs.push(() => clearInterval(timer));
    const channel = `seats:${this.eventId}`;
    channelOwners.set(channel, this);
    this.subscribing = this.app.client.subscribeSeatMap(this.eventId, (change) => this.#onMap(change));
    try {
      await this.subscribing;
      setText('event-status', '');
    } catch (error) {
      if (!this.signal.aborted) setText('event-status', `The live seat map is not available: ${describeError(error)}`);
    }
  }

  destroy() {
    for (const off of this.offs) off();
    this.canvas.destroy();
    this.picker.destroy();
    // After the subscription is made (an unsubscribe sent before it would leave it on), and
    // only if no newer page of the same event took the channel over meanwhile.
    const channel = `seats:${this.eventId}`;
    const leave = () => {
      if (channelOwners.get(channel) !== this) return;
      channelOwners.delete(channel);
      this.app.client.unsubscribe(channel).catch(() => {});
    };
    if (this.subscribing) this.subscribing.then(leave, leave);
    else leave();
  }

  // -------------------------------------------------------------------------------------------
  // The live map

  /** @param {SeatMapChange} change */
  #onMap({ map, delta }) {
    if (this.signal.aborted) return;
    const started = performance.now();
    const states = this.canvas.states;
    const size = Math.min(map.size, this.layout.size);
    if (!delta) {
      // A snapshot (the first, or after a resync): everything again.
      for (let i = 0; i < size; i += 1) states[i] = map.state(i);
      this.tally.reset(states);
      for (const seat of [...this.picked]) if (states[seat] !== SEAT.FREE) this.#unpick(seat);
      this.canvas.draw();
      this.picker.refreshAll();
      performance.measure('marquee:map-draw', { start: started, end: performance.now(), detail: { seats: size } });
    } else {
      /** @type {number[]} */
      const changed = [];
      /** @type {number[]} */
      const lost = [];
      for (const list of [delta.free, delta.held, delta.sold]) {
        if (!list) continue;
        for (const seat of list) {
          if (seat >= size) continue;
          const before = states[seat];
          const after = map.state(seat);
          if (before === after) continue;
          states[seat] = after;
          this.tally.move(seat, before, after);
          changed.push(seat);
          if (after !== SEAT.FREE && this.picked.has(seat)) {
            this.#unpick(seat);
            lost.push(seat);
          }
        }
      }
      this.canvas.paint(changed);
      this.picker.seatsChanged(changed);
      if (lost.length) {
        const text = `${seatsLabel(this.layout, lost)} ${lost.length === 1 ? 'was' : 'were'} just taken by someone else.`;
        setText('shop-message', text);
        this.#selection();
      }
      performance.measure('marquee:delta', { start: started, end: performance.now(), detail: { seats: changed.length } });
    }
    for (const [type, left] of map.ga) this.gaLeft.set(type, left);
    byId('map').dataset.version = String(map.version);
    this.#counts();
  }

  /** The counts that follow the map: legend, summary, general admission. */
  #counts() {
    const { layout, tally } = this;
    const summary = `${formatCount(tally.free)} of ${formatCount(layout.size)} seats free`;
    setText('map-summary', summary);
    byId('seat-canvas').setAttribute(
      'aria-label',
      `Seat map of ${this.detail.event.name}: ${summary}. To choose seats with a keyboard or a screen reader, use “Pick your seats”.`,
    );
    for (const item of /** @type {NodeListOf<HTMLElement>} */ (byId('legend').querySelectorAll('[data-category]'))) {
      const c = Number(item.dataset.category);
      setText(/** @type {HTMLElement} */ (item.querySelector('.legend-free')), `${formatCount(tally.byCategory[c])} of ${formatCount(tally.totalByCategory[c])} free`);
    }
    for (const item of /** @type {NodeListOf<HTMLElement>} */ (byId('ga-list').querySelectorAll('[data-ticket-type]'))) {
      const left = this.gaLeft.get(item.dataset.ticketType ?? '');
      setText(/** @type {HTMLElement} */ (item.querySelector('.ga-left')), left === undefined ? '' : `${formatCount(left)} left`);
    }
  }

  /** @param {number} c */
  #categoryName(c) {
    return this.detail.categories[c]?.name ?? 'Unpriced';
  }

  /** @param {number} c */
  #categoryPrice(c) {
    const category = this.detail.categories[c];
    if (!category) return '';
    const type = this.seatedType.get(category.price_category_id);
    return formatMoney(type?.price_minor ?? category.price_minor, type?.currency ?? category.currency);
  }

  #legend() {
    const { layout, detail } = this;
    const items = detail.categories.map((category, c) => {
      const onSale = this.seatedType.has(category.price_category_id);
      return h(
        'li',
        { 'data-category': c, class: 'legend-category' },
        swatch(PALETTE[c % PALETTE.length]),
        h('strong', {}, category.name),
        h('span', { class: 'legend-price' }, this.#categoryPrice(c)),
        h('span', { class: 'legend-free muted' }),
        onSale ? null : h('span', { class: 'muted small' }, '(not on sale)'),
      );
    });
    let accessible = false;
    let restricted = false;
    for (let i = 0; i < layout.size && !(accessible && restricted); i += 1) {
      if (layout.flags[i] & FLAG.ACCESSIBLE) accessible = true;
      if (layout.flags[i] & FLAG.RESTRICTED) restricted = true;
    }
    const key = PALETTE[0];
    items.push(
      h('li', { class: 'legend-key' }, swatch(key), 'Free'),
      h('li', { class: 'legend-key' }, swatch('#6b7480', { shape: 'ring' }), 'Held by someone'),
      h('li', { class: 'legend-key' }, swatch('#39414b', { shape: 'dot' }), 'Sold'),
      h('li', { class: 'legend-key' }, swatch(key, { stroke: '#111827' }), 'Picked'),
      h('li', { class: 'legend-key' }, swatch('#111827'), 'Yours'),
    );
    if (accessible) items.push(h('li', { class: 'legend-key' }, swatch(NO_CATEGORY, { shape: 'square' }), 'Wheelchair accessible (square)'));
    if (restricted) items.push(h('li', { class: 'legend-key' }, swatch(NO_CATEGORY, { slash: true }), 'Restricted view (slashed)'));
    byId('legend').replaceChildren(...items);
  }

  /**
   * Describes a seat under the pointer.
   * @param {number} seat
   */
  #info(seat) {
    if (seat < 0) {
      setText('map-info', '');
      return;
    }
    const state = this.canvas.states[seat];
    const c = this.layout.category[seat];
    const flags = this.layout.flags[seat];
    const word = this.mine.has(seat) ? 'yours' : this.picked.has(seat) ? 'picked' : ['free', 'held', 'sold', 'not for sale'][state];
    const extras = [flags & FLAG.ACCESSIBLE ? 'wheelchair accessible' : '', flags & FLAG.RESTRICTED ? 'restricted view' : ''].filter(Boolean);
    setText('map-info', `· ${seatLabel(this.layout, seat)} · ${this.#categoryName(c)} ${this.#categoryPrice(c)} · ${word}${extras.length ? ` · ${extras.join(', ')}` : ''}`);
  }

  // -------------------------------------------------------------------------------------------
  // Picking

  /** @param {number} seat */
  #pickFromMap(seat) {
    this.#info(seat);
    this.picker.showSeat(seat);
    this.#toggle(seat, !this.picked.has(seat));
  }

  /**
   * @param {number} seat
   * @param {boolean} pick
   */
  #toggle(seat, pick) {
    if (pick) {
      if (this.mine.has(seat)) {
        setText('shop-message', `${seatLabel(this.layout, seat)} is already yours.`);
      } else if (this.canvas.states[seat] !== SEAT.FREE) {
        setText('shop-message', `${seatLabel(this.layout, seat)} is not free.`);
      } else if (this.picked.size >= this.maxPick) {
        setText('shop-message', `You can pick at most ${this.maxPick} seats.`);
      } else if (!this.seatedType.has(this.detail.categories[this.layout.category[seat]]?.price_category_id ?? '')) {
        setText('shop-message', `${seatLabel(this.layout, seat)} is not on sale.`);
      } else {
        this.picked.add(seat);
        this.canvas.marks[seat] |= MARK.SELECTED;
      }
    } else if (this.picked.has(seat)) {
      this.#unpick(seat);
    }
    this.canvas.paint([seat]);
    this.picker.seatsChanged([seat]);
    this.#selection();
  }

  /** @param {number} seat */
  #unpick(seat) {
    this.picked.delete(seat);
    this.canvas.marks[seat] &= ~MARK.SELECTED;
    this.canvas.paint([seat]);
    this.picker.seatsChanged([seat]);
  }

  #selection() {
    const seats = [...this.picked].sort((a, b) => a - b);
    let total = 0;
    let currency = '';
    for (const seat of seats) {
      const type = this.seatedType.get(this.detail.categories[this.layout.category[seat]]?.price_category_id ?? '');
      if (type) {
        total += type.price_minor;
        currency = type.currency;
      }
    }
    setText(
      'selection',
      seats.length === 0
        ? 'No seats picked.'
        : `${seats.length} seat${seats.length === 1 ? '' : 's'} picked: ${seatsLabel(this.layout, seats)}${currency ? ` · ${formatMoney(total, currency)}` : ''}`,
    );
    byIdAs('clear-selected', HTMLButtonElement).disabled = seats.length === 0;
    this.#gate();
  }

  /**
   * Follows the journal's holds and orders of this event onto the map ("yours").
   * @param {boolean} paint
   */
  #syncMine(paint) {
    const next = this.app.journal.mySeats(this.eventId);
    /** @type {number[]} */
    const changed = [];
    for (const seat of this.mine) if (!next.has(seat)) changed.push(seat);
    for (const seat of next) if (!this.mine.has(seat)) changed.push(seat);
    this.mine = next;
    for (const seat of changed) {
      if (seat >= this.layout.size) continue;
      if (next.has(seat)) {
        this.canvas.marks[seat] = (this.canvas.marks[seat] | MARK.MINE) & ~MARK.SELECTED;
        this.picked.delete(seat);
      } else {
        this.canvas.marks[seat] &= ~MARK.MINE;
      }
    }
    if (paint && changed.length) {
      this.canvas.paint(changed);
      this.picker.seatsChanged(changed);
      this.#selection();
    }
    this.#gate();
  }

  // -------------------------------------------------------------------------------------------
  // Buying

  /** What the buyer may do now, and the admission to do it with. */
  #canBuy() {
    const onsale = this.onsale;
    if (!onsale) return { ok: false, why: 'This event is not on sale right now.' };
    if (onsale.requires_admission) {
      const admission = this.app.admission(this.eventId);
      if (admission) return { ok: true, admission: admission.token, why: '' };
      return { ok: false, why: 'Buying opens when it is your turn in the waiting room.' };
    }
    if (onsale.status !== 'live') return { ok: false, why: `Sales are ${onsaleWord(onsale.status)}.` };
    return { ok: true, why: '' };
  }

  #gate() {
    const { ok, why } = this.#canBuy();
    const gate = byId('shop-gate');
    setText(gate, why);
    gate.hidden = ok;
    byIdAs('best-submit', HTMLButtonElement).disabled = !ok || this.bestCategories.length === 0;
    byIdAs('hold-selected', HTMLButtonElement).disabled = !ok || this.picked.size === 0;
    for (const button of /** @type {NodeListOf<HTMLButtonElement>} */ (byId('ga-list').querySelectorAll('button'))) button.disabled = !ok;
  }

  /** @type {import('./api.js').Category[]} */
  get bestCategories() {
    return this.detail.categories.filter((c) => this.seatedType.has(c.price_category_id));
  }

  #forms() {
    const { signal } = this;
    const category = byIdAs('best-category', HTMLSelectElement);
    const quantity = byIdAs('best-quantity', HTMLInputElement);
    category.replaceChildren(
      ...this.bestCategories.map((c) => new Option(`${c.name} · ${this.#categoryPrice(this.detail.categories.indexOf(c))}`, c.price_category_id)),
    );
    const maxFor = () => Math.min(this.maxPick, this.seatedType.get(category.value)?.max_per_order ?? this.maxPick);
    quantity.max = String(maxFor());
    category.addEventListener('change', () => (quantity.max = String(maxFor())), { signal });
    byId('best-card').hidden = this.bestCategories.length === 0;
    byId('picker-card').hidden = this.layout.size === 0;
    byId('map').hidden = this.layout.size === 0;
    byIdAs('best-form', HTMLFormElement).addEventListener(
      'submit',
      (e) => {
        e.preventDefault();
        const n = Number(quantity.value);
        const name = category.selectedOptions[0]?.textContent ?? '';
        void this.#hold({ kind: 'hold_best_available', event: this.eventId, category: category.value, quantity: n }, `Finding the best ${n} in ${name}…`);
      },
      { signal },
    );
    byIdAs('hold-selected', HTMLButtonElement).addEventListener(
      'click',
      () => {
        const seats = [...this.picked].sort((a, b) => a - b);
        if (seats.length) void this.#hold({ kind: 'hold_seats', event: this.eventId, seats }, `Holding ${seatsLabel(this.layout, seats)}…`);
      },
      { signal },
    );
    byIdAs('clear-selected', HTMLButtonElement).addEventListener(
      'click',
      () => {
        for (const seat of [...this.picked]) this.#unpick(seat);
        this.#selection();
      },
      { signal },
    );
    const ga = byId('ga-list');
    ga.replaceChildren(
      ...this.gaTypes.map((type) => {
        const id = `ga-${type.ticket_type_id}`;
        const input = h('input', {
          id,
          type: 'number',
          min: type.min_per_order,
          max: Math.min(type.max_per_order, this.maxPick),
          value: type.min_per_order,
          inputmode: 'numeric',
          required: true,
        });
        const button = h('button', { type: 'submit', class: 'btn btn-primary' }, `Hold ${type.name}`);
        const form = h(
          'form',
          { class: 'inline-form' },
          h('div', { class: 'field field-narrow' }, h('label', { for: id }, 'Tickets'), input),
          button,
        );
        form.addEventListener('submit', (e) => {
          e.preventDefault();
          const n = Number(input.value);
          void this.#hold({ kind: 'hold_ga', event: this.eventId, ticket_type: type.ticket_type_id, quantity: n }, `Holding ${n} × ${type.name}…`);
        });
        return h(
          'li',
          { class: 'ga-item', 'data-ticket-type': type.ticket_type_id },
          h('div', {}, h('strong', {}, type.name), ' ', h('span', { class: 'legend-price' }, formatMoney(type.price_minor, type.currency)), ' ', h('span', { class: 'ga-left muted' })),
          form,
        );
      }),
    );
    byId('ga-card').hidden = this.gaTypes.length === 0;
  }

  /**
   * Sends a hold and says what came of it.
   * @param {import('../../sdk/marquee.js').Command} command
   * @param {string} pending
   */
  async #hold(command, pending) {
    const { ok, admission, why } = this.#canBuy();
    if (!ok) {
      setText('shop-message', why);
      return;
    }
    setText('shop-message', pending);
    /** @type {CommandResult} */
    let result;
    try {
      result = await this.app.command(command, admission ? { admission } : {});
    } catch (error) {
      if (this.signal.aborted) return;
      setText('shop-message', error instanceof MarqueeError && error.kind === 'timeout' ? 'No answer yet: still trying…' : `Could not hold: ${describeError(error)}`);
      return;
    }
    if (this.signal.aborted) return;
    const outcome = result.outcome;
    const message = byId('shop-message');
    if (outcome.status === 'held') {
      if (command.kind === 'hold_seats') for (const seat of command.seats) this.#unpick(seat);
      this.#selection();
      const what = outcome.seats.length ? seatsLabel(this.layout, outcome.seats) : `${outcome.quantity} ticket${outcome.quantity === 1 ? '' : 's'}`;
      setText(message, `Held for you: ${what}. Check out before ${formatClock(outcome.expires_at)}.`);
      this.lastHeld = outcome.hold;
      announce('Held. Check out from the list at the top of the page.');
    } else if (outcome.status === 'rejected') {
      message.replaceChildren(`Not held: ${outcome.message} (${outcome.code}).`);
      const alternative = outcome.alternative;
      if (alternative?.length) {
        const take = h('button', { type: 'button', class: 'btn' }, `Pick ${seatsLabel(this.layout, alternative)} instead`);
        take.addEventListener('click', () => {
          for (const seat of [...this.picked]) this.#unpick(seat);
          for (const seat of alternative) this.#toggle(seat, true);
          if (alternative[0] !== undefined) {
            this.picker.showSeat(alternative[0]);
            this.canvas.reveal(alternative[0]);
          }
        });
        message.append(' ', take);
      }
    }
  }

  /** The banner under the title: the onsale, and the waiting room when it has one. */
  #sale() {
    const banner = byId('event-sale');
    const onsale = this.onsale;
    this.#gate();
    if (!onsale) {
      banner.dataset.kind = 'none';
      banner.replaceChildren(h('p', {}, 'This event has no sale open.'));
      return;
    }
    const rule = `Holds last ${Math.round(onsale.hold_duration_seconds / 60)} minutes · at most ${onsale.per_user_limit} per buyer`;
    if (!onsale.requires_admission) {
      banner.dataset.kind = onsale.status === 'live' ? 'open' : 'closed';
      banner.replaceChildren(h('p', {}, h('strong', {}, `${onsale.name || 'Sale'}: ${onsaleWord(onsale.status)}.`), ` ${rule}.`));
      return;
    }
    // The journal's places only: a place the buyer finished with (checked out with its
    // admission) is over even while the node still reports it admitted.
    const status = this.app.journal.place(onsale.onsale_id) ? this.app.client.queueStatus(onsale.onsale_id) : undefined;
    const queueHref = `/?event=${this.eventId}&onsale=${onsale.onsale_id}&view=queue`;
    const state = status && status.state !== 'ended' ? status.state : null;
    if (state === 'admitted') {
      banner.dataset.kind = 'turn';
      const until = status?.admission ? ` You can shop until ${formatClock(status.admission.expires_at * 1000)}.` : '';
      banner.replaceChildren(h('p', {}, h('strong', {}, 'It’s your turn.'), until, ` ${rule}.`));
      return;
    }
    if (state) {
      banner.dataset.kind = 'queued';
      const where = state === 'waiting' && status?.position !== undefined ? `You’re in line: position ${status.position}.` : state === 'pre_queue' ? 'You’re in the waiting room for the start.' : `Your place: ${state.replace('_', ' ')}.`;
      banner.replaceChildren(h('p', {}, h('strong', {}, where), ' ', h('a', { href: queueHref, 'data-link': true }, 'Go to the waiting room')));
      return;
    }
    banner.dataset.kind = 'queue';
    if (onsale.status === 'closed' || onsale.status === 'sold_out') {
      banner.replaceChildren(h('p', {}, h('strong', {}, `${onsale.name || 'The sale'}: ${onsaleWord(onsale.status)}.`)));
      return;
    }
    const bought = this.app.journal.orders().some((o) => o.event === this.eventId && (o.status === 'pending_payment' || o.status === 'paid'));
    const join = h('button', { type: 'button', class: 'btn btn-primary' }, bought ? 'Join the waiting room again' : 'Join the waiting room');
    const error = h('span', { class: 'alert-inline', role: 'alert' });
    join.addEventListener('click', async () => {
      askToNotify();
      join.disabled = true;
      try {
        await this.app.join(onsale.onsale_id, this.eventId);
        this.app.navigate(queueHref);
      } catch (e) {
        join.disabled = false;
        error.textContent = `Could not join: ${describeError(e)}`;
      }
    });
    const when = onsale.status === 'scheduled' ? ` Starts ${formatWhen(onsale.starts_at)}.` : onsale.status === 'pre_queue' ? ` The sale starts ${formatWhen(onsale.starts_at)}; everyone who joins before then has the same chance.` : '';
    banner.replaceChildren(
      h(
        'p',
        {},
        h('strong', {}, `${onsale.name || 'This sale'} has a waiting room (${onsaleWord(onsale.status)}).`),
        bought ? ' You checked out here, which ended your turn; to buy more, queue again.' : when,
      ),
      h('p', {}, join, ' ', error),
    );
  }
}
