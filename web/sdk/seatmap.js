// The live seat map of an event (docs/protocol.md §7): a snapshot's two-bit seat states, kept
// current by applying deltas in version order. Pages draw from it; they never decode the wire
// format themselves.

/** @typedef {import('./marquee.js').SeatSnapshot} SeatSnapshot */
/** @typedef {import('./marquee.js').SeatDelta} SeatDelta */
/** @typedef {import('./marquee.js').SeatState} SeatState */

/** Seat states by name. */
export const SEAT = /** @type {const} */ ({ FREE: 0, HELD: 1, SOLD: 2, UNUSED: 3 });

/**
 * Decodes standard, padded base64 into bytes (`atob` exists in browsers and Node.js alike).
 * @param {string} text
 */
function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** One event's seat states and general-admission counts, at one inventory version. */
export class SeatMap {
  /** Two bits per seat: seat `i` is in byte `i >> 2`, at bit `2 × (i & 3)`. */
  #bytes;
  #version;
  #size;

  /** @param {SeatSnapshot} snapshot */
  constructor(snapshot) {
    this.#bytes = decodeBase64(snapshot.state);
    this.#version = snapshot.v;
    this.#size = snapshot.seats;
    /**
     * General admission: ticket type id → how many can still be held.
     * @type {Map<string, number>}
     */
    this.ga = new Map(snapshot.ga.map((g) => [g.ticket_type, g.available]));
  }

  /** The inventory version the map is at. */
  get version() {
    return this.#version;
  }

  /** How many seats the map has. */
  get size() {
    return this.#size;
  }

  /**
   * @param {number} index
   * @returns {SeatState}
   */
  state(index) {
    if (!Number.isInteger(index) || index < 0 || index >= this.#size) {
      throw new RangeError(`seat ${index} is not on this map of ${this.#size} seats`);
    }
    return /** @type {SeatState} */ ((this.#bytes[index >> 2] >> (2 * (index & 3))) & 3);
  }

  /**
   * The indexes of the seats in `state`, ascending.
   * @param {SeatState} state
   */
  seatsIn(state) {
    const seats = [];
    for (let i = 0; i < this.#size; i += 1) if (this.state(i) === state) seats.push(i);
    return seats;
  }

  /**
   * Applies a delta by version: the next version is applied, a repeat (deltas are published at
   * least once) is ignored, and a jump means one was missed, which only a fresh snapshot can
   * repair.
   * @param {SeatDelta} delta
   * @returns {'applied' | 'stale' | 'gap'}
   */
  apply(delta) {
    if (delta.v <= this.#version) return 'stale';
    if (delta.v > this.#version + 1) return 'gap';
    /** @type {[number[] | undefined, SeatState][]} */
    const lists = [
      [delta.free, SEAT.FREE],
      [delta.held, SEAT.HELD],
      [delta.sold, SEAT.SOLD],
    ];
    for (const [seats, state] of lists) {
      for (const index of seats ?? []) this.#set(index, state);
    }
    for (const g of delta.ga ?? []) this.ga.set(g.ticket_type, g.available);
    this.#version = delta.v;
    return 'applied';
  }

  /**
   * @param {number} index
   * @param {SeatState} state
   */
  #set(index, state) {
    if (index < 0 || index >= this.#size) return; // not on this map: nothing to draw
    const shift = 2 * (index & 3);
    const byte = index >> 2;
    this.#bytes[byte] = (this.#bytes[byte] & ~(3 << shift)) | (state << shift);
  }
}
