// The strip above every page: the buyer's places in line, "your turn", the holds with their
// countdowns (from the node's `expires_at`), checkout, and the orders as their payments move
// (pending, paid, failed), live from the inbox. It renders from the journal, so a reload or a
// second tab shows the same holds and the same deadlines.

import { seatsLabel } from './layout.js';
import {
  announce,
  byId,
  describeError,
  formatClock,
  formatCountdown,
  formatEta,
  formatMoney,
  h,
  setText,
  spokenDuration,
} from './view.js';

/**
 * @typedef {import('./app.js').App} App
 * @typedef {import('./journal.js').HoldEntry} HoldEntry
 * @typedef {import('./journal.js').OrderEntry} OrderEntry
 */

/** Seconds-left marks at which a hold's countdown is said aloud. */
const SPOKEN_MARKS = [120, 30];
/** Ended orders stay in the strip this long. */
const SHOW_ENDED_ORDER_MS = 15 * 60_000;

/**
 * @param {App} app
 * @param {() => { view: string, event: string | null, onsale: string | null }} where the page shown now
 * @returns {{ render: () => void }}
 */
export function startStrip(app, where) {
  const basket = byId('basket');
  const holdsList = byId('holds');
  const ordersList = byId('orders');
  const ordersTitle = byId('orders-title');
  const placesList = byId('places');
  const turnAlert = byId('turn-alert');
  /** @type {Map<string, import('./api.js').EventDetail | null>} */
  const details = new Map();
  /** @type {Map<string, import('./layout.js').Layout | null>} */
  const layouts = new Map();
  /** @type {Map<string, HTMLLIElement>} */
  const holdItems = new Map();
  /** @type {Map<string, HTMLLIElement>} */
  const orderItems = new Map();
  /** @type {Set<string>} */
  const spoken = new Set();
  /** Messages under a hold (its checkout's progress), by hold id. */
  /** @type {Map<string, string>} */
  const holdMessages = new Map();

  /** @param {string} eventId */
  const detail = (eventId) => {
    if (!details.has(eventId)) {
      details.set(eventId, null);
      app.catalog.event(eventId).then(
        (d) => {
          details.set(eventId, d);
          render();
        },
        () => details.delete(eventId),
      );
    }
    return details.get(eventId) ?? null;
  };
  /** @param {string} eventId */
  const layout = (eventId) => {
    if (!layouts.has(eventId)) {
      layouts.set(eventId, null);
      app.catalog.layout(eventId).then(
        (l) => {
          layouts.set(eventId, l);
          render();
        },
        () => layouts.delete(eventId),
      );
    }
    return layouts.get(eventId) ?? null;
  };
  /** @param {string} eventId */
  const eventName = (eventId) => detail(eventId)?.event.name ?? 'Your event';

  /**
   * What a hold is, in words.
   * @param {{ event: string, seats: number[], quantity: number, ticketType?: string }} what
   */
  const holdWhat = (what) => {
    if (what.seats.length === 0) {
      const type = detail(what.event)?.ticket_types.find((t) => t.ticket_type_id === what.ticketType);
      return `${what.quantity} × ${type?.name ?? 'general admission'}`;
    }
    const l = layout(what.event);
    return l ? seatsLabel(l, what.seats) : `${what.seats.length} seat${what.seats.length === 1 ? '' : 's'}`;
  };

  function render() {
    const now = Date.now();
    const holds = app.journal.activeHolds(now);
    const orders = app.journal
      .orders()
      .filter((o) => o.status === 'pending_payment' || now - o.at < SHOW_ENDED_ORDER_MS);
    renderHolds(holds);
    renderOrders(orders);
    ordersTitle.hidden = orders.length === 0;
    byId('basket-title').hidden = holds.length === 0;
    basket.hidden = holds.length === 0 && orders.length === 0;
    renderPlaces();
  }

  /** @param {HoldEntry[]} holds */
  function renderHolds(holds) {
    const keep = new Set(holds.map((hold) => hold.outcome.hold));
    for (const [id, item] of holdItems) {
      if (!keep.has(id)) {
        item.remove();
        holdItems.delete(id);
      }
    }
    for (const hold of holds) {
      const id = hold.outcome.hold;
      let item = holdItems.get(id);
      if (!item) {
        item = holdItem(hold);
        holdItems.set(id, item);
      }
      const name = /** @type {HTMLElement} */ (item.querySelector('.hold-event'));
      setText(name, eventName(hold.event));
      setText(
        /** @type {HTMLElement} */ (item.querySelector('.hold-seats')),
        holdWhat({ event: hold.event, seats: hold.outcome.seats, quantity: hold.outcome.quantity, ticketType: hold.outcome.ticket_type }),
      );
      setText(/** @type {HTMLElement} */ (item.querySelector('.hold-until')), `held until ${formatClock(hold.outcome.expires_at)}`);
      setText(/** @type {HTMLElement} */ (item.querySelector('.hold-message')), holdMessages.get(id) ?? '');
      holdsList.append(item); // keeps them in deadline order
    }
    tick();
  }

  /** @param {HoldEntry} hold */
  function holdItem(hold) {
    const id = hold.outcome.hold;
    const timer = h('span', { class: 'timer', role: 'timer', 'data-deadline': hold.outcome.expires_at });
    const checkout = h('button', { type: 'button', class: 'btn btn-primary' }, 'Check out');
    const release = h('button', { type: 'button', class: 'btn' }, 'Release');
    const item = h(
      'li',
      { class: 'hold', 'data-hold': id },
      h('div', { class: 'hold-what' }, h('strong', { class: 'hold-event' }), h('span', { class: 'hold-seats' })),
      h('div', { class: 'hold-clock' }, timer, h('span', { class: 'muted small hold-until' })),
      h('div', { class: 'button-row' }, checkout, release),
      h('p', { class: 'hold-message', role: 'status' }),
    );
    checkout.addEventListener('click', async () => {
      checkout.disabled = true;
      release.disabled = true;
      holdMessages.set(id, 'Checking out…');
      render();
      // Sent with the admission: the buyer is done shopping, the slot goes to the next in line.
      const admission = app.admission(hold.event);
      try {
        const result = await app.command({ kind: 'checkout', event: hold.event, hold: id }, admission ? { admission: admission.token } : {});
        if (result.outcome.status === 'rejected') holdMessages.set(id, `Checkout refused: ${result.outcome.message} (${result.outcome.code})`);
        else holdMessages.delete(id);
        // A checkout sent with the admission ends it and the place (protocol §14): the
        // buyer is done shopping in this onsale. Leaving as well tells the SDK not to join
        // again after a reconnect (which would make a new place at the back).
        if (admission && result.outcome.status === 'checked_out') void app.leave(admission.onsale).catch(() => {});
      } catch (error) {
        holdMessages.set(id, `Checkout failed: ${describeError(error)}`);
      }
      checkout.disabled = false;
      release.disabled = false;
      render();
    });
    release.addEventListener('click', async () => {
      checkout.disabled = true;
      release.disabled = true;
      holdMessages.set(id, 'Releasing…');
      render();
      try {
        const result = await app.command({ kind: 'release', event: hold.event, hold: id });
        if (result.outcome.status === 'released') announce('Released. The seats are back on sale.');
        else if (result.outcome.status === 'rejected') holdMessages.set(id, `Release refused: ${result.outcome.message}`);
      } catch (error) {
        holdMessages.set(id, `Release failed: ${describeError(error)}`);
      }
      checkout.disabled = false;
      release.disabled = false;
      render();
    });
    return item;
  }

  /** @param {OrderEntry[]} orders */
  function renderOrders(orders) {
    const keep = new Set(orders.map((o) => o.order));
    for (const [id, item] of orderItems) {
      if (!keep.has(id)) {
        item.remove();
        orderItems.delete(id);
      }
    }
    for (const order of orders) {
      let item = orderItems.get(order.order);
      if (!item) {
        item = h(
          'li',
          { class: 'order', 'data-order': order.order },
          h('span', { class: 'order-icon', 'aria-hidden': 'true' }),
          h('div', { class: 'order-what' }, h('strong', { class: 'order-event' }), h('span', { class: 'order-seats' })),
          h('p', { class: 'order-status', role: 'status' }),
          h('a', { class: 'btn order-tickets', href: '/?view=tickets', 'data-link': true, hidden: true }, 'See my tickets'),
        );
        orderItems.set(order.order, item);
      }
      item.dataset.status = order.status;
      const [icon, text] = orderText(order);
      setText(/** @type {HTMLElement} */ (item.querySelector('.order-icon')), icon);
      setText(/** @type {HTMLElement} */ (item.querySelector('.order-event')), eventName(order.event));
      setText(
        /** @type {HTMLElement} */ (item.querySelector('.order-seats')),
        order.seats || order.quantity ? holdWhat({ event: order.event, seats: order.seats ?? [], quantity: order.quantity ?? 0 }) : '',
      );
      setText(/** @type {HTMLElement} */ (item.querySelector('.order-status')), text);
      /** @type {HTMLElement} */ (item.querySelector('.order-tickets')).hidden = order.status !== 'paid' || where().view === 'tickets';
      ordersList.append(item);
    }
  }

  /**
   * @param {OrderEntry} order
   * @returns {[string, string]}
   */
  function orderText(order) {
    const total = order.total_minor !== undefined && order.currency ? formatMoney(order.total_minor, order.currency) : '';
    switch (order.status) {
      case 'pending_payment':
        return ['◷', `Payment pending${total ? ` · ${total}` : ''}${order.payment_due_at ? ` · due by ${formatClock(order.payment_due_at)}` : ''}`];
      case 'paid':
        return ['✓', `Paid${total ? ` · ${total}` : ''}${order.tickets ? ` · ${order.tickets} ticket${order.tickets === 1 ? '' : 's'}` : ''}${order.reason === 'late_payment_accepted' ? ' (late payment accepted)' : ''}`];
      case 'failed':
        return ['✗', 'Payment failed: nothing was charged and the seats are back on sale.'];
      case 'expired':
        return ['✗', 'Not paid in time: the order expired and the seats are back on sale.'];
      case 'refunded':
        return ['↺', order.reason === 'late_payment_refunded' ? 'Paid too late: the seats had gone, so the money goes back.' : 'Refunded.'];
      case 'cancelled':
        return ['■', 'Cancelled by the organiser; any payment goes back.'];
      default:
        return ['•', order.status];
    }
  }

  function renderPlaces() {
    const here = where();
    /** @type {HTMLLIElement[]} */
    const items = [];
    /** @type {string[]} */
    const turns = [];
    for (const place of app.journal.places()) {
      const status = app.client.queueStatus(place.onsale);
      if (!status) continue;
      const name = eventName(place.event);
      if (status.state === 'admitted') {
        const shopping = app.journal.activeHolds().some((hold) => hold.event === place.event);
        const onIt = (here.view === 'event' || here.view === 'queue') && here.event === place.event;
        if (!shopping && !onIt) {
          const until = status.admission ? ` before ${formatClock(status.admission.expires_at * 1000)}` : '';
          turns.push(`It’s your turn for ${name}! Choose your seats${until}.`);
        }
        continue;
      }
      if (here.view === 'queue' && here.onsale === place.onsale) continue;
      const link = h('a', { href: `/?event=${place.event}&onsale=${place.onsale}&view=queue`, 'data-link': true }, 'Waiting room');
      let text = `In line for ${name}`;
      if (status.state === 'pre_queue') text += ': waiting for the start';
      else if (status.state === 'waiting' && status.position !== undefined) {
        text += `: position ${status.position}`;
        if (status.paused) text += ' (paused)';
        else if (status.eta_seconds) text += ` · ${formatEta(status.eta_seconds)}`;
      } else if (status.state === 'sold_out') text += ': sold out for now';
      else if (status.state === 'closed') text += ': the sale is closed';
      else if (status.state === 'ended') continue;
      items.push(h('li', {}, `${text} · `, link));
    }
    placesList.replaceChildren(...items);
    placesList.hidden = items.length === 0;
    const alert = turns.join(' ');
    if (turnAlert.textContent !== alert) turnAlert.textContent = alert;
    turnAlert.hidden = alert === '';
  }

  /** Moves every countdown on; lets lapsed holds go. */
  function tick() {
    const now = Date.now();
    for (const timer of /** @type {NodeListOf<HTMLElement>} */ (holdsList.querySelectorAll('.timer'))) {
      const left = Number(timer.dataset.deadline) - now;
      setText(timer, formatCountdown(left));
      timer.setAttribute('aria-label', `${spokenDuration(left)} left`);
      timer.closest('.hold')?.classList.toggle('hold-ending', left < 60_000);
      const id = timer.closest('.hold')?.getAttribute('data-hold') ?? '';
      for (const mark of SPOKEN_MARKS) {
        const key = `${id}:${mark}`;
        if (left <= mark * 1000 && left > (mark - 5) * 1000 && !spoken.has(key)) {
          spoken.add(key);
          announce(`${spokenDuration(left)} left on your hold.`);
        }
      }
    }
    for (const hold of app.journal.lapsedHolds(now)) {
      app.journal.holdGone(hold.outcome.hold);
      announce(`Your hold on ${eventName(hold.event)} ran out: the seats are back on sale.`);
    }
  }

  app.journal.onChange(render);
  app.client.on('queue', render);
  setInterval(tick, 1000);
  render();
  return { render };
}
