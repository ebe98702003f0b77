// Helpers of the buyer app's browser tests, on top of harness.js (the node, the catalog, the
// browser) and support.js (SDK buyers in Node): opening the app signed in as a buyer, waiting
// for what a person would see, a big seat map, and reading the page's own performance marks.

import { randomUUID } from 'node:crypto';
import { adminApi, buyerToken, signedInUrl, staffPage, waitFor } from './harness.js';

/**
 * A tenant with a venue, ready for events.
 * @param {{ httpUrl: string }} node
 * @param {string} [name]
 */
export async function seedBoxOffice(node, name = 'Buyer tests') {
  const tenant = randomUUID();
  const api = adminApi(node, tenant);
  await api.put('/v1/admin/tenant', { name });
  const venue = await api.post('/v1/admin/venues', { name: 'Grand Hall', city: 'Lisbon' });
  return { tenant, venueId: venue.venue_id, api };
}

/**
 * Records on a page what `staffPage` records (page errors, CSP refusals, the page's own files
 * that failed to load), for a second tab of a context `staffPage` opened.
 * @param {import('playwright-core').Page} page
 */
function watched(page) {
  /** @type {string[]} */
  const problems = [];
  /** @type {string[]} */
  const loadFailures = [];
  const files = new Set(['document', 'script', 'stylesheet', 'image', 'font']);
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && files.has(response.request().resourceType())) loadFailures.push(`${response.status()} ${response.url()}`);
  });
  page.on('requestfailed', (request) => {
    if (files.has(request.resourceType())) loadFailures.push(`failed ${request.url()}`);
  });
  return { problems: () => [...problems], loadFailures: () => [...loadFailures] };
}

/**
 * Opens the buyer app signed in as `sub` (the token in the fragment, as a sign-in link carries
 * it): in a fresh browser context, or as another tab of `context` (same localStorage, its own
 * sessionStorage, so it signs in by its own link). `notifications`: the page may notify, and
 * every notification it shows is recorded in `window.__notifications` (headless Chromium's
 * notifications cannot be observed otherwise; the stub is installed through the DevTools
 * protocol, which the page's CSP does not govern).
 * @param {import('playwright-core').Browser} browser
 * @param {{ httpUrl: string }} node
 * @param {{ sub: string, tenant: string, path?: string, notifications?: boolean,
 *   width?: number, height?: number, context?: import('playwright-core').BrowserContext }} options
 */
export async function openBuyer(browser, node, { sub, tenant, path = '/', notifications = false, width = 1280, height = 900, context }) {
  let opened;
  if (context) {
    const page = await context.newPage();
    opened = { context, page, ...watched(page) };
  } else {
    opened = await staffPage(browser, { width, height });
  }
  if (notifications) {
    await opened.page.addInitScript(() => {
      /** @type {any} */ (globalThis).__notifications = [];
      class RecordingNotification {
        static permission = 'granted';
        static requestPermission() {
          return Promise.resolve('granted');
        }
        /**
         * @param {string} title
         * @param {NotificationOptions} [options]
         */
        constructor(title, options = {}) {
          /** @type {any} */ (globalThis).__notifications.push({ title, body: options.body ?? '' });
        }
      }
      Object.defineProperty(globalThis, 'Notification', { value: RecordingNotification, configurable: true });
    });
  }
  await opened.page.goto(signedInUrl(node, path, buyerToken(sub, tenant)));
  return opened;
}

/**
 * The page's performance measures of one name (the app records `marquee:map-layout`,
 * `marquee:map-draw` and `marquee:delta`).
 * @param {import('playwright-core').Page} page
 * @param {string} name
 * @returns {Promise<{ duration: number, detail: any }[]>}
 */
export function measures(page, name) {
  return page.evaluate(
    (n) => performance.getEntriesByName(n, 'measure').map((e) => ({ duration: e.duration, detail: /** @type {PerformanceMeasure} */ (e).detail })),
    name,
  );
}

/**
 * A seat map of `sections` × `rows` × `seatsPerRow` seats in two price categories, for an
 * event made like `seedEvent`'s (Premium and Standard exist; the first two rows of every
 * section are Premium). 50,000 seats: 10 × 50 × 100.
 * @param {{ sections: number, rows: number, seatsPerRow: number }} size
 */
export function bigLayout({ sections, rows, seatsPerRow }) {
  return {
    focal: { x: 0, y: 0 },
    sections: Array.from({ length: sections }, (_, s) => ({
      name: `Block ${String.fromCharCode(65 + s)}`,
      rows: `1-${rows}`,
      seats: `1-${seatsPerRow}`,
      origin: { x: (s % 5) * (seatsPerRow + 8) - 2.5 * (seatsPerRow + 8), y: 4 + Math.floor(s / 5) * (rows + 6) },
      categories: [
        { rows: '1-2', category: 'Premium' },
        { rows: `3-${rows}`, category: 'Standard' },
      ],
      accessible: [{ rows: '1', seats: '1-4' }],
      restricted_view: [{ rows: `${rows}`, seats: '1-6' }],
    })),
  };
}

/**
 * An event like `seedEvent`'s whose seat map is `layout` instead of the 40-seat test map:
 * the same categories and ticket types, sold without a waiting room.
 * @param {{ httpUrl: string }} node
 * @param {{ tenant: string, venueId: string, name: string, layout: unknown }} options
 */
export async function seedEventWithLayout(node, { tenant, venueId, name, layout }) {
  const api = adminApi(node, tenant);
  const now = Date.now();
  const event = await api.post('/v1/admin/events', {
    venue_id: venueId,
    name,
    category: 'concert',
    starts_at: new Date(now + 30 * 86_400_000).toISOString(),
  });
  const eventId = event.event_id;
  const premium = await api.post(`/v1/admin/events/${eventId}/price-categories`, { name: 'Premium', price_minor: 8900, currency: 'EUR' });
  const standard = await api.post(`/v1/admin/events/${eventId}/price-categories`, { name: 'Standard', price_minor: 4500, currency: 'EUR' });
  const map = await api.post(`/v1/admin/events/${eventId}/seat-map`, layout);
  for (const [category, price] of /** @type {const} */ ([[premium, 8900], [standard, 4500]])) {
    await api.post(`/v1/admin/events/${eventId}/ticket-types`, {
      name: `${category.name} seat`,
      kind: 'seated',
      price_category_id: category.price_category_id,
      price_minor: price,
      currency: 'EUR',
      max_per_order: 8,
    });
  }
  const onsale = await api.post(`/v1/admin/events/${eventId}/onsales`, {
    name: 'Open sale',
    starts_at: new Date(now - 60_000).toISOString(),
    per_user_limit: 8,
    requires_admission: false,
  });
  await api.patch(`/v1/admin/events/${eventId}/status`, { status: 'published' });
  await api.patch(`/v1/admin/onsales/${onsale.onsale_id}/status`, { status: 'live' });
  return {
    eventId,
    onsaleId: onsale.onsale_id,
    seats: /** @type {number} */ (map.seats),
    categories: { premium: premium.price_category_id, standard: standard.price_category_id },
  };
}


/**
 * Waits until an onsale has `status` (the node's admission controller moves waiting-room
 * onsales by their schedule, within 100 ms of the time).
 * @param {{ httpUrl: string }} node
 * @param {string} tenant
 * @param {string} onsaleId
 * @param {string} status
 * @param {number} [timeoutMs]
 */
export async function onsaleReaches(node, tenant, onsaleId, status, timeoutMs = 5000) {
  const api = adminApi(node, tenant);
  await waitFor(async () => (await api.get(`/v1/admin/onsales/${onsaleId}`)).status === status, {
    timeoutMs,
    intervalMs: 50,
    what: `onsale ${onsaleId} to be ${status}`,
  });
}

/**
 * The upper end of an estimated wait as the waiting room words it ("7–9 seconds", "about
 * 2–3 minutes", "about 45 seconds"), in seconds; null when it shows none.
 * @param {string} text
 */
export function etaUpperSeconds(text) {
  const match = /(?:(\d+)–)?(\d+) (second|minute)s?/.exec(text);
  if (!match) return null;
  return Number(match[2]) * (match[3] === 'minute' ? 60 : 1);
}
