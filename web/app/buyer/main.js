// The buyer app (`/`): entry point, sign-in, routing and "your turn".
//
// Views are chosen by the query string, so the fragment stays free for the sign-in token:
//
//   /                               events, with search (`?q=`, `&city=`)
//   /?event={id}                    the event: live seat map, best available, picking, GA
//   /?event={id}&onsale={id}&view=queue   the waiting room
//   /?view=tickets                  my tickets, QR codes, transfer
//
// Module map: app.js (shared parts: SDK client, journal, catalog, actions), journal.js (what
// the buyer is in the middle of, across reloads and tabs), strip.js (places, holds, orders on
// every page), events.js, event.js (+ layout.js, seatcanvas.js, picker.js), queue.js,
// tickets.js, api.js (HTTP), session.js (the token), view.js (DOM and formats).

import { createApp, resume } from './app.js';
import { mountEvent } from './event.js';
import { mountEvents } from './events.js';
import { mountQueue } from './queue.js';
import { buyerSession } from './session.js';
import { startStrip } from './strip.js';
import { mountTickets } from './tickets.js';
import { byId, describeError, setText } from './view.js';

const VIEWS = ['events', 'event', 'queue', 'tickets'];

const session = buyerSession();

if (!session.ok) {
  const alert = byId('signin-error');
  alert.textContent = session.error;
  alert.hidden = false;
  setConnection('down', 'Not signed in');
} else {
  start(session.claims, session.token);
}

/**
 * @param {'open' | 'down' | 'connecting'} kind
 * @param {string} text
 */
function setConnection(kind, text) {
  byId('connection').dataset.state = kind;
  setText('connection-text', text);
}

/**
 * @param {{ sub: string, tenant: string, exp: number }} claims
 * @param {() => string} token
 */
function start(claims, token) {
  setText('who', `Signed in as ${claims.sub}`);
  /** @type {() => void} */
  let unmount = () => {};
  let first = true;
  /** @type {{ view: string, event: string | null, onsale: string | null }} */
  let current = { view: 'events', event: null, onsale: null };

  /**
   * @param {string} href
   * @param {{ replace?: boolean }} [options]
   */
  const navigate = (href, { replace = false } = {}) => {
    const url = new URL(href, location.href);
    if (replace) history.replaceState(null, '', url.pathname + url.search);
    else history.pushState(null, '', url.pathname + url.search);
    route();
  };

  const app = createApp(claims, token, navigate);
  const strip = startStrip(app, () => current);

  function route() {
    unmount();
    const params = new URLSearchParams(location.search);
    const event = params.get('event');
    let view = params.get('view') ?? (event ? 'event' : 'events');
    if (!VIEWS.includes(view) || ((view === 'event' || view === 'queue') && !event)) view = 'events';
    current = { view, event, onsale: params.get('onsale') };
    for (const name of VIEWS) byId(`view-${name}`).hidden = name !== view;
    for (const link of /** @type {NodeListOf<HTMLAnchorElement>} */ (document.querySelectorAll('[data-nav]'))) {
      if (link.dataset.nav === (view === 'tickets' ? 'tickets' : 'events')) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (view === 'event' && event) unmount = mountEvent(app, event);
    else if (view === 'queue' && event) unmount = mountQueue(app, event, params.get('onsale'));
    else if (view === 'tickets') unmount = mountTickets(app);
    else unmount = mountEvents(app, params);
    strip.render();
    refreshTitle();
    // A new page for screen readers: its heading (not on the first load, where the browser
    // starts at the top anyway).
    if (!first) byId(`view-${view}`).querySelector('h1')?.focus();
    first = false;
  }

  // Links of the app stay in the page (the socket, the map and the holds stay with it).
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const link = /** @type {Element} */ (e.target).closest?.('a[data-link]');
    if (!(link instanceof HTMLAnchorElement) || link.origin !== location.origin) return;
    e.preventDefault();
    navigate(link.href);
  });
  window.addEventListener('popstate', route);

  // "Your turn": the title says so, a notification if the buyer allowed them, and the strip.
  /** @type {Map<string, string>} */
  const states = new Map();
  const TURN = '★ Your turn! · ';
  function refreshTitle() {
    const turn = app.journal.places().some((p) => app.client.queueStatus(p.onsale)?.state === 'admitted');
    const base = document.title.startsWith(TURN) ? document.title.slice(TURN.length) : document.title;
    const wanted = turn ? TURN + base : base;
    if (document.title !== wanted) document.title = wanted;
  }
  // Views set their own titles; the prefix stays while it is the buyer's turn.
  const titleElement = document.querySelector('title');
  if (titleElement) new MutationObserver(() => refreshTitle()).observe(titleElement, { childList: true, characterData: true, subtree: true });
  app.client.on('queue', (status) => {
    const place = app.journal.place(status.onsale);
    const before = states.get(status.onsale);
    states.set(status.onsale, status.state);
    if (place && status.place && place.place !== status.place && status.state !== 'ended') {
      app.journal.setPlace(status.onsale, { event: place.event, place: status.place });
    }
    if (status.state === 'admitted' && before !== 'admitted' && place) {
      void app.catalog.event(place.event).then(
        (detail) => notifyTurn(detail.event.name, status.onsale),
        () => notifyTurn('your event', status.onsale),
      );
    }
    // The place is gone: the next join makes a new one, which is the buyer's decision.
    if (status.state === 'ended' || status.state === 'closed') app.journal.dropPlace(status.onsale);
    refreshTitle();
  });

  app.client.on('connected', () => setConnection('open', 'Live'));
  app.client.on('disconnected', ({ reconnectInMs, error }) => {
    if (error?.kind === 'unauthorized' || error?.kind === 'token') setConnection('down', 'Sign in again');
    else setConnection('down', reconnectInMs == null ? 'Disconnected' : 'Reconnecting…');
  });
  app.client.on('error', (error) => console.warn('marquee', error.code, error.message));
  app.client.connect().then(
    () => resume(app),
    (error) => setConnection('down', `Cannot connect: ${describeError(error)}`),
  );
  route();
}

/**
 * @param {string} eventName
 * @param {string} onsale
 */
function notifyTurn(eventName, onsale) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    new Notification('It’s your turn', { body: `You can buy tickets for ${eventName} now.`, tag: `marquee-turn-${onsale}` });
  } catch {
    // Some browsers allow notifications only from a service worker; the title and the page say it too.
  }
}
