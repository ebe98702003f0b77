// Reconnect delays: exponential backoff with full jitter (docs/protocol.md §12).
//
// The n-th consecutive failed attempt waits a uniformly random time between zero and
// `min(cap, base × 2^n)`. Full jitter spreads a crowd of browsers that lost the same node, so
// they do not come back in lockstep and knock it over again.

/** @typedef {import('./marquee.js').BackoffOptions} BackoffOptions */

const DEFAULT_BASE_MS = 250;
const DEFAULT_CAP_MS = 20_000;

/**
 * The ceiling of the `attempt`-th delay (from 0): `min(capMs, baseMs × 2^attempt)`.
 * @param {number} attempt
 * @param {BackoffOptions} [options]
 * @returns {number}
 */
export function backoffCeiling(attempt, { baseMs = DEFAULT_BASE_MS, capMs = DEFAULT_CAP_MS } = {}) {
  // 2 ** 1024 is Infinity, and min() then gives the cap: no overflow to guard against.
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
}

/**
 * A full-jitter delay: uniform over the whole milliseconds `0 ..= backoffCeiling(attempt)`.
 * @param {number} attempt
 * @param {BackoffOptions} [options]
 * @param {() => number} [random] numbers in `[0, 1)`
 * @returns {number}
 */
export function fullJitterDelay(attempt, options, random = Math.random) {
  const ceiling = Math.floor(backoffCeiling(attempt, options));
  return Math.floor(random() * (ceiling + 1));
}

/** A backoff policy and its attempt counter. */
export class Backoff {
  /** @type {BackoffOptions} */
  #options;
  /** @type {() => number} */
  #random;
  #attempt = 0;

  /**
   * @param {BackoffOptions} [options]
   * @param {() => number} [random]
   */
  constructor(options = {}, random = Math.random) {
    this.#options = options;
    this.#random = random;
  }

  /** Failed attempts counted since the last reset. */
  get attempt() {
    return this.#attempt;
  }

  /** The ceiling of the next delay, before jitter. */
  ceiling() {
    return backoffCeiling(this.#attempt, this.#options);
  }

  /** The next delay, counting one more failed attempt. */
  next() {
    const delay = fullJitterDelay(this.#attempt, this.#options, this.#random);
    this.#attempt += 1;
    return delay;
  }

  /** Starts over after a success. */
  reset() {
    this.#attempt = 0;
  }
}

/**
 * Reads an HTTP `Retry-After` header (RFC 9110: delta seconds, or an HTTP date) as milliseconds
 * from `now`.
 * @param {string | null | undefined} value
 * @param {number} [now] unix ms
 * @returns {number | undefined}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day and month; anything else (`-1`, `5s`) is unreadable, and
  // Date.parse would read too much into it.
  if (!/^[A-Za-z]{3}, /.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
