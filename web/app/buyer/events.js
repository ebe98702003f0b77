// The event list and search (GET /v1/tenants/{tenant}/events, docs/catalog.md §9). The query
// lives in the address (`/?q=…&city=…`), so a search can be reloaded, shared and gone back to.

import { byId, byIdAs, describeError, formatWhen, h, setText } from './view.js';

/** @typedef {import('./app.js').App} App */

const STATUS = /** @type {Record<string, string>} */ ({
  on_sale: 'On sale',
  published: 'Coming soon',
  sold_out: 'Sold out',
});

/**
 * @param {App} app
 * @param {URLSearchParams} params
 * @returns {() => void}
 */
export function mountEvents(app, params) {
  let gone = false;
  const q = params.get('q') ?? '';
  const city = params.get('city') ?? '';
  const qInput = byIdAs('search-q', HTMLInputElement);
  const cityInput = byIdAs('search-city', HTMLInputElement);
  qInput.value = q;
  cityInput.value = city;
  document.title = q ? `“${q}” · Events · Marquee` : 'Events · Marquee';
  const form = byIdAs('search-form', HTMLFormElement);
  form.onsubmit = (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (qInput.value.trim()) next.set('q', qInput.value.trim());
    if (cityInput.value.trim()) next.set('city', cityInput.value.trim());
    const query = next.toString();
    app.navigate(query ? `/?${query}` : '/', { replace: true });
  };

  const list = byId('event-list');
  setText('events-status', 'Loading events…');
  void app.catalog.search({ q, city }).then(
    (events) => {
      if (gone) return;
      const what = q || city ? ` matching ${[q && `“${q}”`, city && `in ${city}`].filter(Boolean).join(' ')}` : '';
      setText('events-status', events.length === 0 ? `No events${what}.` : `${events.length} event${events.length === 1 ? '' : 's'}${what}.`);
      list.replaceChildren(
        ...events.map((event) =>
          h(
            'li',
            { class: 'event-card', 'data-status': event.status },
            h('h2', {}, h('a', { href: `/?event=${event.event_id}`, 'data-link': true }, event.name)),
            h('p', { class: 'event-meta' }, formatWhen(event.starts_at), event.category ? ` · ${event.category}` : ''),
            event.description ? h('p', { class: 'event-description' }, event.description) : null,
            h('p', { class: `badge badge-${event.status}` }, STATUS[event.status] ?? event.status),
          ),
        ),
      );
    },
    (error) => {
      if (!gone) setText('events-status', `Events cannot be loaded: ${describeError(error)}`);
    },
  );
  return () => {
    gone = true;
    form.onsubmit = null;
  };
}
