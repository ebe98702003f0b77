// The SDK's one error type. A `kind` says where a failure comes from (the server, a timeout, a
// dropped connection...), and `code` carries the server's stable error code when there is one,
// so an application branches on `error.code === 'forbidden'` exactly as docs/protocol.md §9
// tells it to.

/** @typedef {import('./marquee.js').ErrorKind} ErrorKind */

/** Every failure the SDK reports. */
export class MarqueeError extends Error {
  /** @type {'MarqueeError'} */
  name = 'MarqueeError';

  /**
   * @param {ErrorKind} kind
   * @param {string} code the server's code, or the kind for failures the client detects itself
   * @param {string} message
   * @param {{ retryAfterMs?: number, channel?: string, requestId?: string }} [details]
   */
  constructor(kind, code, message, details = {}) {
    super(message);
    /** @type {ErrorKind} */
    this.kind = kind;
    /** @type {string} */
    this.code = code;
    /** @type {number | undefined} */
    this.retryAfterMs = details.retryAfterMs;
    /** @type {string | undefined} */
    this.channel = details.channel;
    /** @type {string | undefined} */
    this.requestId = details.requestId;
  }
}

/**
 * A client-side failure whose code is its kind (`timeout`, `disconnected`, `closed`, ...).
 * @param {ErrorKind} kind
 * @param {string} message
 * @param {{ channel?: string, requestId?: string }} [details]
 */
export function clientError(kind, message, details) {
  return new MarqueeError(kind, kind, message, details);
}
