// The waiting room of one onsale (docs/waiting-room.md): a countdown to the start during the
// pre-queue, then the position, the number ahead and the ETA range as the node pushes them,
// why a position moved, pauses, sold out and closed as they happen, and "your turn" (with the
// tab title and a notification, from main.js). A purchase can be staged while waiting.
//
// Nothing here is guessed: the status is the node's last push (the SDK keeps it), the start is
// the onsale's, and a reload or a second tab attaches to the same place with `queue.join`.

import { askToNotify, currentOnsale } from './event.js';
import {
  announce,
  byId,
  byIdAs,
  describeError,
  formatClock,
  formatCount,
  formatCountdown,
  formatEta,
  formatMoney,
  formatWhen,
  setText,
  spokenDuration,
} from './view.js';

/**
 * @typedef {import('./app.js').App} App
 * @typedef {import('../../sdk/marquee.js').QueueStatus} QueueStatus
 */

/** Why a status changed, in words (protocol §14, "reason"). */
const REASONS = /** @type {Record<string, string>} */ ({
  drawn: 'The line was drawn at random at the start: this is your place.',
  rejoined: 'Your earlier place had ended, so you joined again at the back of the line.',
  paused: 'The organiser paused admissions. You keep your place; the line holds still.',
  resumed: 'Admissions resumed: the line is moving again.',
  sold_out: 'Everything is sold or held right now. You keep your place in case seats come back.',
  restocked: 'Seats came back: the line is moving again.',
  admission_ended: 'Your shopping time ended, so your place in line is over.',
  left: 'You left the line.',
  closed: 'The sale is closed.',
  no_show: 'It was your turn but you were away, so the place went to the next buyer.',
  grace_expired: 'You were away too long, so your place is gone.',
});

/**
 * Shows the waiting room.
 * @param {App} app
 * @param {string} eventId
 * @param {string | null} onsaleParam
 * @returns {() => void}
 */
export function mountQueue(app, eventId, onsaleParam) {
  const abort = new AbortController();
  const signal = abort.signal;
  /** @type {(() => void)[]} */
  const offs = [];
  /** @type {import('./api.js').Onsale | null} */
  let onsale = null;
  /** @type {import('./api.js').EventDetail | null} */
  let detail = null;
  /** @type {QueueStatus | null} */
  let last = null;
  let startsAt = 0;
  let previousReason = '';
  /** The last reason code the node gave, for what stays worth saying at admission. */
  let lastReasonCode = '';

  const join = byIdAs('queue-join', HTMLButtonElement);
  const leave = byIdAs('queue-leave', HTMLButtonElement);
  const back = byIdAs('queue-back', HTMLAnchorElement);
  back.href = `/?event=${encodeURIComponent(eventId)}`;
  byIdAs('queue-shop', HTMLAnchorElement).href = `/?event=${encodeURIComponent(eventId)}`;
  setText('queue-event', '');
  setText('queue-state', 'Checking your place…');
  setText('queue-fairness', '');
  setText('staged', '');
  byId('stage-card').hidden = true;
  byId('queue-countdown').hidden = true;
  byId('queue-figures').hidden = true;
  byId('queue-reason').hidden = true;
  byId('queue-turn').hidden = true;
  join.hidden = true;
  leave.hidden = true;

  void (async () => {
    try {
      detail = await app.catalog.event(eventId);
    } catch (error) {
      setText('queue-state', `This waiting room cannot be shown: ${describeError(error)}`);
      return;
    }
    if (signal.aborted) return;
    onsale = detail.onsales.find((o) => o.onsale_id === onsaleParam) ?? currentOnsale(detail.onsales.filter((o) => o.requires_admission));
    if (!onsale || !onsale.requires_admission) {
      setText('queue-state', 'This event sells without a waiting room.');
      return;
    }
    startsAt = Date.parse(onsale.starts_at);
    document.title = `Waiting room · ${detail.event.name} · Marquee`;
    setText('queue-event', `${detail.event.name} · ${formatWhen(detail.event.starts_at)} · ${onsale.name || 'Sale'} starts ${formatWhen(onsale.starts_at)}`);
    stageForm(detail);
    offs.push(app.client.on('queue', (status) => {
      if (status.onsale === onsale?.onsale_id) render(status);
    }));
    offs.push(app.journal.onChange(() => {
      staged();
      if (last?.state === 'admitted') render(last);
    }));
    const timer = setInterval(() => countdown(), 250);
    offs.push(() => clearInterval(timer));
    const known = app.client.queueStatus(onsale.onsale_id);
    if (known) render(known);
    else if (!app.journal.place(onsale.onsale_id)) showJoin('You are not in this waiting room yet.');
    // else: main.js attaches the place again; its status arrives as a `queue` event.
    staged();
    void fairness();
  })();

  join.onclick = async () => {
    if (!onsale) return;
    askToNotify();
    join.disabled = true;
    setText('queue-state', 'Joining…');
    try {
      render(await app.join(onsale.onsale_id, eventId));
    } catch (error) {
      setText('queue-state', `Could not join: ${describeError(error)}`);
    } finally {
      join.disabled = false;
    }
  };
  leave.onclick = async () => {
    if (!onsale) return;
    leave.disabled = true;
    try {
      await app.leave(onsale.onsale_id);
    } catch (error) {
      setText('queue-state', `Could not leave: ${describeError(error)}`);
    } finally {
      leave.disabled = false;
    }
  };

  /** @param {string} text */
  function showJoin(text) {
    setText('queue-state', text);
    byId('queue-card').dataset.state = 'none';
    join.hidden = false;
    leave.hidden = true;
    byId('stage-card').hidden = true;
  }

  /** @param {QueueStatus} status */
  function render(status) {
    if (signal.aborted) return;
    const previous = last;
    last = status;
    const card = byId('queue-card');
    card.dataset.state = status.paused ? 'paused' : status.state;
    const waiting = status.state === 'waiting' || status.state === 'sold_out';
    byId('queue-countdown').hidden = status.state !== 'pre_queue';
    byId('queue-figures').hidden = !waiting;
    byId('queue-turn').hidden = status.state !== 'admitted';
    join.hidden = !(status.state === 'ended');
    leave.hidden = !['pre_queue', 'waiting', 'sold_out', 'admitted'].includes(status.state);
    byId('stage-card').hidden = !['pre_queue', 'waiting', 'sold_out'].includes(status.state);
    setText('queue-place', status.place ? `Your place: ${status.place}` : '');

    /** @type {string} */
    let headline;
    switch (status.state) {
      case 'pre_queue':
        headline = 'You’re in the waiting room. The line is drawn when the sale starts.';
        break;
      case 'waiting':
        headline = status.paused ? 'You’re in line. Admissions are paused.' : 'You’re in line.';
        break;
      case 'sold_out':
        headline = 'Sold out for now. You keep your place.';
        break;
      case 'admitted':
        headline = 'It’s your turn!';
        break;
      case 'closed':
        headline = 'The sale is closed.';
        break;
      case 'ended':
        headline = 'Your place in line has ended.';
        break;
      default:
        headline = status.state;
    }
    setText('queue-state', headline);

    if (waiting) {
      setText('queue-position', status.position !== undefined ? formatCount(status.position) : '–');
      setText('queue-ahead', status.ahead !== undefined ? formatCount(status.ahead) : '–');
      setText(
        'queue-eta',
        status.paused ? 'paused' : status.state === 'sold_out' ? 'waiting for seats' : status.eta_seconds ? formatEta(status.eta_seconds) : 'estimating…',
      );
    }
    if (status.state === 'admitted') {
      const until = status.admission ? formatClock(status.admission.expires_at * 1000) : null;
      setText('queue-turn-text', until ? `Choose your seats before ${until}.` : 'Choose your seats now.');
      const intent = app.journal.place(status.onsale)?.intent;
      const holding = app.journal.activeHolds().some((hold) => hold.event === eventId);
      if (intent) {
        setText(
          'queue-turn-text',
          holding
            ? `Your staged seats are held for you: check out at the top of the page. You can shop until ${until ?? 'your time runs out'}.`
            : `Your staged seats are being held for you. You can shop until ${until ?? 'your time runs out'}.`,
        );
      }
    }

    // Why it moved: the node's reason, and a new place across a reload (another place id).
    const renewed = app.journal.place(status.onsale)?.renewed;
    let reason = status.reason ? REASONS[status.reason] ?? `Status changed: ${status.reason}.` : '';
    if (!reason && renewed && status.state === 'waiting') {
      reason = REASONS.rejoined;
      // Said once: the flag is the journal's note that this page attached to a new place.
      const place = app.journal.place(status.onsale);
      if (place) setTimeout(() => app.journal.setPlace(status.onsale, { event: place.event, renewed: false }), 0);
    }
    if (
      !reason &&
      previous?.place === status.place &&
      previous.position !== undefined &&
      status.position !== undefined &&
      status.position > previous.position
    ) {
      reason = 'Your place moved back in the line.';
    }
    const reasonEl = byId('queue-reason');
    // Said by the headline already, or old news once it is the buyer's turn (except the
    // draw: a place drawn at the front is admitted at once, and the buyer should know why).
    const code = status.reason ?? (renewed ? 'rejoined' : '');
    if (reason === headline) reason = '';
    if (status.state === 'admitted') reason = code === 'drawn' || lastReasonCode === 'drawn' ? REASONS.drawn : '';
    if (code) lastReasonCode = code;
    if (reason) {
      setText(reasonEl, reason);
      reasonEl.hidden = false;
      if (reason !== previousReason) announce(reason);
      previousReason = reason;
    } else if (previous?.state !== status.state) {
      reasonEl.hidden = true;
    }
    if (status.reason === 'drawn') void fairness();
    countdown();
  }

  function countdown() {
    if (!last || last.state !== 'pre_queue') return;
    const left = startsAt - Date.now();
    const value = byId('queue-countdown-value');
    if (left > 0) {
      setText(value, formatCountdown(left));
      value.setAttribute('aria-label', `${spokenDuration(left)} to the start`);
    } else {
      setText(value, 'Starting…');
      value.setAttribute('aria-label', 'Starting: the line is being drawn');
    }
  }

  /** @param {import('./api.js').EventDetail} detail */
  function stageForm(detail) {
    const seated = new Map(detail.ticket_types.filter((t) => t.kind === 'seated').map((t) => [t.price_category_id, t]));
    const categories = detail.categories.filter((c) => seated.has(c.price_category_id));
    const select = byIdAs('stage-category', HTMLSelectElement);
    select.replaceChildren(
      ...categories.map((c) => {
        const type = seated.get(c.price_category_id);
        return new Option(`${c.name} · ${formatMoney(type?.price_minor ?? c.price_minor, type?.currency ?? c.currency)}`, c.price_category_id);
      }),
    );
    const quantity = byIdAs('stage-quantity', HTMLInputElement);
    quantity.max = String(Math.min(64, onsale?.per_user_limit ?? 8));
    byIdAs('stage-form', HTMLFormElement).onsubmit = async (e) => {
      e.preventDefault();
      if (!onsale) return;
      const intent = { category: select.value, quantity: Number(quantity.value) };
      setText('staged', 'Staging…');
      try {
        render(await app.join(onsale.onsale_id, eventId, intent));
        staged();
      } catch (error) {
        setText('staged', `Could not stage it: ${describeError(error)}`);
      }
    };
  }

  function staged() {
    if (!onsale || !detail) return;
    const intent = app.journal.place(onsale.onsale_id)?.intent;
    if (!intent) return;
    const name = detail.categories.find((c) => c.price_category_id === intent.category)?.name ?? 'seats';
    setText('staged', `Staged: the best ${intent.quantity} × ${name}, held for you the moment it is your turn.`);
  }

  async function fairness() {
    if (!onsale) return;
    try {
      const record = await app.catalog.draw(onsale.onsale_id);
      if (!record || signal.aborted) return;
      setText(
        'queue-fairness',
        record.seed
          ? `Fair draw: the seed ${record.seed} hashes to the commitment ${record.seed_sha256} published before the start (${formatCount(record.order?.length ?? 0)} places drawn).`
          : `Fair draw: the commitment (SHA-256 of the seed) is ${record.seed_sha256}; the seed is published at the start so anyone can check the order.`,
      );
    } catch {
      // The record is a courtesy; the waiting room works without it.
    }
  }

  return () => {
    abort.abort();
    for (const off of offs) off();
    join.onclick = null;
    leave.onclick = null;
  };
}
