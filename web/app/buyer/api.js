// The HTTP half of the buyer app: the public catalog (docs/catalog.md §9) and the buyer's own
// tickets (docs/payments.md, "Tickets", "Transfers"). Everything live travels over the SDK's
// socket; what is here is read once (an event, its static seat map) or on demand (tickets).

import { buildLayout } from './layout.js';

/**
 * @typedef {{ event_id: string, venue_id: string, name: string, description: string,
 *   category: string, starts_at: string, ends_at: string | null, status: string }} CatalogEvent
 * @typedef {{ price_category_id: string, name: string, price_minor: number, currency: string }} Category
 * @typedef {{ ticket_type_id: string, name: string, kind: 'seated' | 'general_admission',
 *   price_category_id: string | null, price_minor: number, currency: string,
 *   min_per_order: number, max_per_order: number, ga_quota: number | null }} TicketType
 * @typedef {{ onsale_id: string, event_id: string, name: string, status: string,
 *   starts_at: string, ends_at: string | null, hold_duration_seconds: number,
 *   per_user_limit: number, requires_admission: boolean, admission_rate: number,
 *   active_cap: number }} Onsale
 * @typedef {{ event: CatalogEvent, venue: { name: string, city: string, address: string },
 *   categories: Category[], ticket_types: TicketType[], onsales: Onsale[] }} EventDetail
 * @typedef {{ index: number, section: string, row: string, number: number, x: number, y: number,
 *   category: string, accessible: boolean, companion: boolean, restricted_view: boolean }} StaticSeat
 * @typedef {{ focal: { x: number, y: number }, seats: StaticSeat[] }} StaticMap
 * @typedef {import('../../sdk/marquee.js').Ticket} Ticket
 */

/** An HTTP answer that was not 2xx, with the server's `{code, message}`. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {string} path
 * @param {{ method?: string, token?: string, body?: unknown, accept?: string }} [options]
 * @returns {Promise<Response>}
 */
async function call(path, { method = 'GET', token, body, accept = 'application/json' } = {}) {
  /** @type {Record<string, string>} */
  const headers = { accept };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  /** @type {Response} */
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
  } catch (error) {
    throw new ApiError(0, 'network', `the box office cannot be reached (${/** @type {Error} */ (error).message})`);
  }
  if (!response.ok) {
    const text = await response.text();
    /** @type {any} */
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // Not one of ours: keep the text.
    }
    throw new ApiError(response.status, json?.code ?? `http_${response.status}`, json?.message ?? (text || response.statusText));
  }
  return response;
}

/**
 * @param {string} path
 * @param {{ method?: string, token?: string, body?: unknown }} [options]
 */
async function json(path, options) {
  return /** @type {Promise<any>} */ ((await call(path, options)).json());
}

/**
 * The public catalog of one tenant, with the event details and seat maps cached for the page's
 * life (both are static once an event is on sale).
 * @param {string} tenant
 */
export function catalog(tenant) {
  const base = `/v1/tenants/${encodeURIComponent(tenant)}`;
  /** @type {Map<string, Promise<EventDetail>>} */
  const details = new Map();
  /** @type {Map<string, Promise<import('./layout.js').Layout>>} */
  const layouts = new Map();
  /**
   * @template T
   * @param {Map<string, Promise<T>>} cache
   * @param {string} key
   * @param {() => Promise<T>} load
   */
  const cached = (cache, key, load) => {
    let promise = cache.get(key);
    if (!promise) {
      promise = load();
      cache.set(key, promise);
      promise.catch(() => cache.delete(key)); // a failure is not remembered
    }
    return promise;
  };
  /** @param {string} eventId @returns {Promise<EventDetail>} */
  const event = (eventId) => cached(details, eventId, () => json(`${base}/events/${encodeURIComponent(eventId)}`));
  return {
    /**
     * @param {{ q?: string, city?: string }} query
     * @returns {Promise<CatalogEvent[]>}
     */
    search(query) {
      const params = new URLSearchParams({ limit: '50' });
      if (query.q) params.set('q', query.q);
      if (query.city) params.set('city', query.city);
      return json(`${base}/events?${params}`);
    },
    event,
    /**
     * The event's static seat map, ready to draw and to name seats by.
     * @param {string} eventId
     * @returns {Promise<import('./layout.js').Layout>}
     */
    layout: (eventId) =>
      cached(layouts, eventId, async () => {
        const started = performance.now();
        const [detail, map] = await Promise.all([
          event(eventId),
          /** @type {Promise<StaticMap>} */ (json(`${base}/events/${encodeURIComponent(eventId)}/seats`)),
        ]);
        performance.measure('marquee:map-load', { start: started, end: performance.now(), detail: { seats: map.seats.length } });
        return buildLayout(map, detail.categories.map((c) => c.price_category_id));
      }),
    /**
     * @param {string} onsaleId
     * @returns {Promise<{ seed_sha256: string, seed?: string, order?: string[] } | null>}
     */
    async draw(onsaleId) {
      try {
        return await json(`${base}/onsales/${encodeURIComponent(onsaleId)}/draw`);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return null;
        throw error;
      }
    },
  };
}

/** @typedef {ReturnType<typeof catalog>} Catalog */

/**
 * The signed-in buyer's own tickets.
 * @param {() => string} token
 */
export function myTickets(token) {
  return {
    /** @returns {Promise<Ticket[]>} */
    async list() {
      return (await json('/v1/me/tickets', { token: token() })).tickets;
    },
    /**
     * The ticket's QR code, rendered by the node (`image/svg+xml`), as a blob for an `<img>`.
     * @param {string} ticketId
     */
    async qr(ticketId) {
      const response = await call(`/v1/me/tickets/${encodeURIComponent(ticketId)}/qr.svg`, {
        token: token(),
        accept: 'image/svg+xml',
      });
      return response.blob();
    },
    /**
     * @param {string} ticketId
     * @param {string} to the other account's user id
     * @returns {Promise<{ ticket: string, to: string, version: number }>}
     */
    transfer(ticketId, to) {
      return json(`/v1/me/tickets/${encodeURIComponent(ticketId)}/transfer`, { method: 'POST', token: token(), body: { to } });
    },
  };
}

/** @typedef {ReturnType<typeof myTickets>} MyTickets */
