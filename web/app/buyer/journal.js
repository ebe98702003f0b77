// What the buyer is in the middle of, kept in localStorage so that a reload, or another tab of
// the same account, shows the same thing: commands sent but not yet answered, the results the
// server gave (holds with their deadlines, checkouts), order updates, and places in line.
//
// Everything in it is what the server said; the page never makes a deadline or a position up.
// - An open command is sent again, with its same request id, when the page loads: the node
//   answers a request id once and repeats its first result for every retry (protocol §8), so
//   a result lost to a reload is asked for again and nothing happens twice.
// - A hold's `expires_at` and an order's `payment_due_at` are the node's, in unix ms.
// - Places are attached again with `queue.join` when the page loads (the node keeps a place
//   through its grace period, so the buyer keeps their position).

/**
 * @typedef {import('../../sdk/marquee.js').Command} Command
 * @typedef {import('../../sdk/marquee.js').CommandResult} CommandResult
 * @typedef {import('../../sdk/marquee.js').OrderUpdate} OrderUpdate
 * @typedef {Extract<import('../../sdk/marquee.js').Outcome, { status: 'held' }>} Held
 * @typedef {Extract<import('../../sdk/marquee.js').Outcome, { status: 'checked_out' }>} CheckedOut
 */

/**
 * @typedef {object} OpenCommand
 * @property {Command} command
 * @property {string} [admission]
 * @property {number} at when it was sent, unix ms
 */

/**
 * @typedef {object} HoldEntry a hold the node gave, until it ends
 * @property {string} requestId
 * @property {string} event
 * @property {Held} outcome
 * @property {'active' | 'checked_out' | 'released' | 'gone'} status
 */

/**
 * @typedef {object} OrderEntry
 * @property {string} order
 * @property {string} event
 * @property {string} status `pending_payment`, `paid`, `failed`, ...
 * @property {number} [total_minor]
 * @property {string} [currency]
 * @property {number} [payment_due_at]
 * @property {string} [reason]
 * @property {number} [tickets] how many tickets a paid order issued
 * @property {number[]} [seats] the hold's seats
 * @property {number} [quantity]
 * @property {number} at when it was last updated, unix ms
 */

/**
 * @typedef {object} PlaceEntry a place in an onsale's line
 * @property {string} event
 * @property {string} [place] the place id the node gave
 * @property {{ category: string, quantity: number }} [intent] the purchase staged while waiting
 * @property {boolean} [renewed] the old place had ended when the page attached again, so this
 *   is a new one at the back
 * @property {number} at when it was joined, unix ms
 */

/**
 * @typedef {object} JournalData
 * @property {Record<string, OpenCommand>} open by request id
 * @property {Record<string, HoldEntry>} holds by hold id
 * @property {Record<string, OrderEntry>} orders by order id
 * @property {Record<string, PlaceEntry>} places by onsale id
 * @property {string[]} seen request ids already recorded (results arrive more than once)
 */

/** Ended holds and orders are kept this long (for the "what happened" lines), then dropped. */
const KEEP_ENDED_MS = 6 * 3600_000;
/** Open commands older than this are given up (their result would have come long ago). */
const KEEP_OPEN_MS = 3600_000;
const MAX_SEEN = 500;

/** @returns {JournalData} */
function empty() {
  return { open: {}, holds: {}, orders: {}, places: {}, seen: [] };
}

export class Journal {
  /**
   * @param {string} tenant
   * @param {string} sub
   * @param {Storage} [storage]
   */
  constructor(tenant, sub, storage = localStorage) {
    this.key = `marquee.buyer.v1.${tenant}.${sub}`;
    this.storage = storage;
    /** @type {Set<() => void>} */
    this.listeners = new Set();
    this.data = this.#read();
    this.#prune();
    // Another tab of the same account changed it: show the same thing here.
    window.addEventListener('storage', (e) => {
      if (e.key !== this.key) return;
      this.data = this.#read();
      this.#notify();
    });
  }

  /**
   * Listens to every change (here or in another tab).
   * @param {() => void} listener
   */
  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Remembers a command before it is sent.
   * @param {string} requestId
   * @param {Command} command
   * @param {string} [admission]
   */
  opened(requestId, command, admission) {
    this.#change((d) => {
      d.open[requestId] = { command, admission, at: Date.now() };
    });
  }

  /**
   * Records a command's result (from any tab's command, or the waiting room's staged one).
   * @param {CommandResult} result
   */
  recordResult(result) {
    this.#change((d) => {
      const open = d.open[result.request_id];
      delete d.open[result.request_id];
      if (d.seen.includes(result.request_id)) return;
      d.seen.push(result.request_id);
      const outcome = result.outcome;
      if (outcome.status === 'held') {
        d.holds[outcome.hold] = { requestId: result.request_id, event: result.event, outcome, status: 'active' };
      } else if (outcome.status === 'released') {
        const hold = d.holds[outcome.hold];
        if (hold) hold.status = 'released';
      } else if (outcome.status === 'checked_out') {
        const hold = d.holds[outcome.hold];
        if (hold) hold.status = 'checked_out';
        const existing = d.orders[outcome.order];
        d.orders[outcome.order] = {
          order: outcome.order,
          event: result.event,
          // An order update may have come first (a checkout result seen after a reload).
          status: existing?.status ?? 'pending_payment',
          total_minor: outcome.total_minor,
          currency: outcome.currency,
          payment_due_at: existing?.payment_due_at ?? outcome.payment_due_at,
          seats: hold?.outcome.seats,
          quantity: hold?.outcome.quantity,
          tickets: existing?.tickets,
          reason: existing?.reason,
          at: Date.now(),
        };
      } else if (outcome.status === 'rejected' && (result.command === 'checkout' || result.command === 'release')) {
        // The hold is gone (expired, or ended elsewhere): stop showing it.
        const named = open && 'hold' in open.command ? d.holds[open.command.hold] : undefined;
        if (named && (outcome.code === 'hold_expired' || outcome.code === 'hold_not_found')) named.status = 'gone';
      }
    });
  }

  /**
   * Marks a hold gone when the command that failed named it.
   * @param {string} holdId
   */
  holdGone(holdId) {
    this.#change((d) => {
      const hold = d.holds[holdId];
      if (hold && hold.status === 'active') hold.status = 'gone';
    });
  }

  /** @param {OrderUpdate} update */
  recordOrder(update) {
    this.#change((d) => {
      const entry = d.orders[update.order] ?? { order: update.order, event: update.event, status: update.status, at: Date.now() };
      // An order only moves forward; updates of one order may still arrive out of order
      // across a reload (live, then from a snapshot): a pending update never undoes a result.
      const final = ['paid', 'failed', 'expired', 'cancelled', 'refunded'];
      if (!(final.includes(entry.status) && update.status === 'pending_payment')) {
        entry.status = update.status;
      }
      if (update.payment_due_at !== undefined) entry.payment_due_at = update.payment_due_at;
      if (update.reason !== undefined) entry.reason = update.reason;
      if (update.tickets) entry.tickets = update.tickets.length;
      entry.at = Date.now();
      d.orders[update.order] = entry;
    });
  }

  /**
   * @param {string} onsale
   * @param {Partial<PlaceEntry> & { event: string }} place
   */
  setPlace(onsale, place) {
    this.#change((d) => {
      d.places[onsale] = { ...d.places[onsale], ...place, at: d.places[onsale]?.at ?? Date.now() };
    });
  }

  /** @param {string} onsale */
  dropPlace(onsale) {
    if (!this.data.places[onsale]) return;
    this.#change((d) => {
      delete d.places[onsale];
    });
  }

  /** Commands sent but not answered. */
  openCommands() {
    return Object.entries(this.data.open).map(([requestId, open]) => ({ requestId, ...open }));
  }

  /**
   * Holds still in force at `now` (by the node's deadline), soonest to lapse first.
   * @param {number} [now]
   */
  activeHolds(now = Date.now()) {
    return Object.values(this.data.holds)
      .filter((h) => h.status === 'active' && h.outcome.expires_at > now)
      .sort((a, b) => a.outcome.expires_at - b.outcome.expires_at);
  }

  /** Holds that lapsed since they were shown, for the "your hold expired" line. */
  lapsedHolds(now = Date.now()) {
    return Object.values(this.data.holds).filter((h) => h.status === 'active' && h.outcome.expires_at <= now);
  }

  /** Orders, newest first. */
  orders() {
    return Object.values(this.data.orders).sort((a, b) => b.at - a.at);
  }

  /** @param {string} onsale */
  place(onsale) {
    return this.data.places[onsale];
  }

  places() {
    return Object.entries(this.data.places).map(([onsale, place]) => ({ onsale, ...place }));
  }

  /**
   * Seats of this event the buyer holds or has ordered, for the map's "yours".
   * @param {string} event
   */
  mySeats(event) {
    /** @type {Set<number>} */
    const seats = new Set();
    for (const hold of this.activeHolds()) if (hold.event === event) for (const s of hold.outcome.seats) seats.add(s);
    for (const order of Object.values(this.data.orders)) {
      if (order.event === event && (order.status === 'pending_payment' || order.status === 'paid')) {
        for (const s of order.seats ?? []) seats.add(s);
      }
    }
    return seats;
  }

  /** @param {(data: JournalData) => void} mutate */
  #change(mutate) {
    // Read first: another tab may have written since.
    this.data = this.#read();
    mutate(this.data);
    if (this.data.seen.length > MAX_SEEN) this.data.seen.splice(0, this.data.seen.length - MAX_SEEN);
    try {
      this.storage.setItem(this.key, JSON.stringify(this.data));
    } catch {
      // Storage full or refused (private mode): the page still works for this load.
    }
    this.#notify();
  }

  #notify() {
    for (const listener of this.listeners) listener();
  }

  /** @returns {JournalData} */
  #read() {
    try {
      const raw = this.storage.getItem(this.key);
      if (!raw) return empty();
      const data = JSON.parse(raw);
      return { ...empty(), ...data };
    } catch {
      return empty();
    }
  }

  #prune() {
    const now = Date.now();
    let changed = false;
    for (const [id, open] of Object.entries(this.data.open)) {
      if (now - open.at > KEEP_OPEN_MS) {
        delete this.data.open[id];
        changed = true;
      }
    }
    for (const [id, hold] of Object.entries(this.data.holds)) {
      if (hold.outcome.expires_at + KEEP_ENDED_MS < now) {
        delete this.data.holds[id];
        changed = true;
      }
    }
    for (const [id, order] of Object.entries(this.data.orders)) {
      if (order.status !== 'pending_payment' && order.at + KEEP_ENDED_MS < now) {
        delete this.data.orders[id];
        changed = true;
      }
    }
    if (changed) {
      try {
        this.storage.setItem(this.key, JSON.stringify(this.data));
      } catch {
        // As above.
      }
    }
  }
}
