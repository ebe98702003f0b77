// "My tickets": the buyer's valid tickets (GET /v1/me/tickets), each with its QR code as the
// node renders it (GET /v1/me/tickets/{id}/qr.svg, fetched with the bearer token and shown
// from a blob: URL, which the page's CSP allows for images), and transfer to another account.
// A paid order (live from the inbox) shows its new tickets here at once.

import { seatLabel } from './layout.js';
import { byId, byIdAs, describeError, formatWhen, h, setText } from './view.js';

/**
 * @typedef {import('./app.js').App} App
 * @typedef {import('./api.js').Ticket} Ticket
 */

/**
 * @param {App} app
 * @returns {() => void}
 */
export function mountTickets(app) {
  let gone = false;
  /** @type {string[]} */
  let urls = [];
  let generation = 0;
  let paidOrders = paidCount();
  const list = byId('ticket-list');
  list.replaceChildren();
  setText('tickets-status', 'Loading your tickets…');
  document.title = 'My tickets · Marquee';

  function paidCount() {
    return app.journal.orders().filter((o) => o.status === 'paid').length;
  }

  async function load() {
    const mine = ++generation;
    /** @type {Ticket[]} */
    let tickets;
    try {
      tickets = await app.tickets.list();
    } catch (error) {
      if (!gone) setText('tickets-status', `Your tickets cannot be loaded: ${describeError(error)}`);
      return;
    }
    if (gone || mine !== generation) return;
    const events = [...new Set(tickets.map((t) => t.event))];
    const details = new Map(
      await Promise.all(events.map(async (id) => /** @type {const} */ ([id, await app.catalog.event(id).catch(() => null)]))),
    );
    const layouts = new Map(
      await Promise.all(
        events.map(async (id) => /** @type {const} */ ([id, tickets.some((t) => t.event === id && t.seat !== undefined) ? await app.catalog.layout(id).catch(() => null) : null])),
      ),
    );
    if (gone || mine !== generation) return;
    for (const url of urls) URL.revokeObjectURL(url);
    urls = [];
    setText('tickets-status', tickets.length === 0 ? 'No tickets yet. Tickets appear here the moment an order is paid.' : `${tickets.length} ticket${tickets.length === 1 ? '' : 's'}.`);
    list.replaceChildren(
      ...tickets.map((ticket) => {
        const detail = details.get(ticket.event) ?? null;
        const layout = layouts.get(ticket.event) ?? null;
        const type = detail?.ticket_types.find((t) => t.ticket_type_id === ticket.ticket_type);
        const where = ticket.seat !== undefined ? (layout ? seatLabel(layout, ticket.seat) : `seat #${ticket.seat}`) : type?.name ?? 'General admission';
        const img = h('img', { class: 'qr', width: 200, height: 200, alt: `QR code of your ticket: ${where}` });
        const qrState = h('p', { class: 'muted small qr-state', role: 'status' }, 'Loading the code…');
        const transfer = h('button', { type: 'button', class: 'btn' }, 'Transfer…');
        transfer.addEventListener('click', () => openTransfer(ticket, where));
        void app.tickets.qr(ticket.ticket).then(
          (blob) => {
            if (gone) return;
            const url = URL.createObjectURL(blob);
            urls.push(url);
            img.src = url;
            qrState.textContent = '';
            qrState.hidden = true;
          },
          (error) => {
            qrState.textContent = `The code cannot be shown: ${describeError(error)}`;
          },
        );
        return h(
          'li',
          { class: 'ticket', 'data-ticket': ticket.ticket },
          h(
            'div',
            { class: 'ticket-text' },
            h('h2', {}, detail?.event.name ?? 'Event'),
            h('p', { class: 'event-meta' }, detail ? `${formatWhen(detail.event.starts_at)} · ${detail.venue.name}` : ''),
            h('p', { class: 'ticket-where' }, where),
            type && ticket.seat !== undefined ? h('p', { class: 'muted small' }, type.name) : null,
            h('details', {}, h('summary', {}, 'The code as text'), h('code', { class: 'code' }, ticket.qr)),
            h('div', { class: 'button-row' }, transfer),
          ),
          h('div', { class: 'ticket-qr' }, img, qrState),
        );
      }),
    );
  }

  // A paid order's tickets show up at once.
  const off = app.journal.onChange(() => {
    const now = paidCount();
    if (now !== paidOrders) {
      paidOrders = now;
      void load();
    }
  });

  /**
   * @param {Ticket} ticket
   * @param {string} where
   */
  function openTransfer(ticket, where) {
    const dialog = byIdAs('transfer-dialog', HTMLDialogElement);
    const input = byIdAs('transfer-to', HTMLInputElement);
    const error = byId('transfer-error');
    const confirm = byIdAs('transfer-confirm', HTMLButtonElement);
    setText('transfer-what', `Your ticket: ${where}.`);
    input.value = '';
    error.hidden = true;
    confirm.onclick = async (e) => {
      e.preventDefault();
      const to = input.value.trim();
      if (!to) {
        error.textContent = 'Enter the account id of the person to give it to.';
        error.hidden = false;
        return;
      }
      confirm.disabled = true;
      try {
        const done = await app.tickets.transfer(ticket.ticket, to);
        dialog.close();
        await load();
        setText('tickets-status', `Transferred ${where} to ${done.to}. Its old code no longer works at the gates.`);
      } catch (failure) {
        error.textContent = `Not transferred: ${describeError(failure)}`;
        error.hidden = false;
      } finally {
        confirm.disabled = false;
      }
    };
    dialog.showModal();
    input.focus();
  }

  void load();
  return () => {
    gone = true;
    off();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}
