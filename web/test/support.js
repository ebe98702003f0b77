// Helpers for the SDK's tests: SDK clients for test buyers, a WebSocket that records its
// frames, and waiting for events. The harness (harness.js) knows nothing of the SDK; this does.

import WebSocket from 'ws';
import { MarqueeClient } from '../sdk/marquee.js';
import { buyerToken } from './harness.js';

/** Tests fail fast: a bounded wait for anything a test expects. */
export const EVENT_TIMEOUT_MS = 5000;

/**
 * @typedef {object} Frame one recorded WebSocket message
 * @property {number} socket which socket (0 for the first the SDK opened, 1 for the next...)
 * @property {any} message the parsed JSON
 */

/**
 * A `ws` WebSocket subclass that records every frame sent and received, per socket, so a test
 * can check what the SDK put on the wire.
 */
export function recordingWebSocket() {
  /** @type {Frame[]} */
  const sent = [];
  /** @type {Frame[]} */
  const received = [];
  let sockets = 0;
  class RecordingWebSocket extends WebSocket {
    /**
     * @param {string} url
     * @param {string | string[]} [protocols]
     */
    constructor(url, protocols) {
      super(url, protocols);
      this.index = sockets++;
      this.addEventListener('message', (event) => {
        received.push({ socket: this.index, message: JSON.parse(String(event.data)) });
      });
    }

    /** @param {any} data */
    send(data) {
      sent.push({ socket: this.index, message: JSON.parse(String(data)) });
      super.send(data);
    }
  }
  return {
    WebSocket: RecordingWebSocket,
    sent,
    received,
    /** @param {string} type */
    sentOf: (type) => sent.filter((f) => f.message.type === type),
    /** @param {string} type */
    receivedOf: (type) => received.filter((f) => f.message.type === type),
  };
}

/**
 * An SDK client for a buyer (not connected yet). Backoff is short so that tests reconnect fast.
 * @param {string} url the node's (or a proxy's) WebSocket URL
 * @param {{ sub: string, tenant: string, roles?: string[] }} buyer
 * @param {Partial<import('../sdk/marquee.js').ClientOptions>} [options]
 */
export function buyerClient(url, { sub, tenant, roles = [] }, options = {}) {
  return new MarqueeClient({
    url,
    token: () => buyerToken(sub, tenant, { roles }),
    WebSocket,
    backoff: { baseMs: 50, capMs: 300 },
    requestTimeoutMs: 3000,
    commandTimeoutMs: 8000,
    ...options,
  });
}

/**
 * Resolves with the next `type` event for which `accept` is true. Register it before doing what
 * triggers the event.
 * @template {keyof import('../sdk/marquee.js').ClientEvents} K
 * @param {MarqueeClient} client
 * @param {K} type
 * @param {(event: import('../sdk/marquee.js').ClientEvents[K]) => boolean} [accept]
 * @param {number} [timeoutMs]
 * @returns {Promise<import('../sdk/marquee.js').ClientEvents[K]>}
 */
export function nextEvent(client, type, accept = () => true, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no ${type} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = client.on(type, (event) => {
      if (!accept(event)) return;
      clearTimeout(timer);
      stop();
      resolve(event);
    });
  });
}

/**
 * Collects every `type` event of a client into an array.
 * @template {keyof import('../sdk/marquee.js').ClientEvents} K
 * @param {MarqueeClient} client
 * @param {K} type
 * @returns {import('../sdk/marquee.js').ClientEvents[K][]}
 */
export function collect(client, type) {
  /** @type {import('../sdk/marquee.js').ClientEvents[K][]} */
  const events = [];
  client.on(type, (event) => events.push(event));
  return events;
}

/**
 * @typedef {{ kind: 'subscribed', value: import('../sdk/marquee.js').Subscribed }
 *   | { kind: 'publication', value: import('../sdk/marquee.js').Publication<any> }} Logged
 */

/**
 * A channel handler that records what it is given, with a way to wait for the n-th record.
 */
export function recordingHandler() {
  /** @type {Logged[]} */
  const log = [];
  /** @type {(() => void)[]} */
  let wakers = [];
  const wake = () => {
    const current = wakers;
    wakers = [];
    for (const w of current) w();
  };
  return {
    log,
    /** @type {import('../sdk/marquee.js').ChannelHandler<any>} */
    handler: {
      onSubscribed: (value) => {
        log.push({ kind: 'subscribed', value });
        wake();
      },
      onPublication: (value) => {
        log.push({ kind: 'publication', value });
        wake();
      },
    },
    /** The publications recorded so far. */
    publications: () => log.flatMap((e) => (e.kind === 'publication' ? [e.value] : [])),
    /** The (re)subscriptions recorded so far. */
    subscriptions: () => log.flatMap((e) => (e.kind === 'subscribed' ? [e.value] : [])),
    /**
     * Waits until `check(log)` holds.
     * @param {(log: Logged[]) => boolean} check
     * @param {string} what
     */
    async until(check, what, timeoutMs = EVENT_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      while (!check(log)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(log)}`);
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, left);
          wakers.push(() => {
            clearTimeout(timer);
            resolve(undefined);
          });
        });
      }
    },
  };
}

/**
 * The claims of a JWT (unverified: the test minted it).
 * @param {string} token
 * @returns {Record<string, any>}
 */
export function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/**
 * The public availability of an event: free seats per category id, and GA left per ticket type.
 * @param {{ httpUrl: string }} node
 * @param {string} tenant
 * @param {string} event
 */
export async function availability(node, tenant, event) {
  const response = await fetch(`${node.httpUrl}/v1/tenants/${tenant}/events/${event}/availability`);
  if (!response.ok) throw new Error(`availability: ${response.status} ${await response.text()}`);
  /** @type {{ categories: { price_category_id: string, total: number, free: number }[], general_admission: { ticket_type_id: string, available: number }[] }} */
  const body = await response.json();
  return {
    free: Object.fromEntries(body.categories.map((c) => [c.price_category_id, c.free])),
    total: Object.fromEntries(body.categories.map((c) => [c.price_category_id, c.total])),
    ga: Object.fromEntries(body.general_admission.map((g) => [g.ticket_type_id, g.available])),
  };
}
