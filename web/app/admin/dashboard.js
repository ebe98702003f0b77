// The operators' dashboard (`/admin`, role `admin`): one onsale of the operator's tenant, live.
//
// - The waiting room's counts (`queue:{onsale}`, about once a second), its setting changes
//   (`admin:{onsale}`, with who made them) and the fairness record (`commitment`, `draw`) come
//   over the SDK's socket; the event's sales (`GET /v1/admin/events/{id}/sales`), its sales
//   over time (`.../sales/timeline`) and the onsale's funnel (`GET /v1/admin/onsales/{id}/funnel`)
//   are polled every few seconds, since they live in Postgres and have no channel. The two
//   reports download as CSV with the operator's token (the API takes no cookies), saved from
//   a `blob:` URL.
// - Controls call the admin API (`PATCH .../status`, `PATCH .../admission`); the page shows
//   what the server answers, and the `changed` message every open dashboard receives.
// - The page keeps no state of its own beyond the last few minutes of counts for the plots: a
//   reload, or a second tab, shows the same thing (the chosen interval of the timeline is kept
//   in the address with the onsale).

import { MarqueeClient } from '../../sdk/marquee.js';
import { apiDownload, apiRequest, describeError, opsSession } from './ops.js';
import { Plot, Series } from './plot.js';
import { verifyDraw } from './shuffle.js';
import { byId, fileSlug, formatDuration, formatMoney, formatNumber, formatShare, formatTime, saveBlob, setText } from './view.js';

/** @typedef {import('../../sdk/marquee.js').Publication<any>} Publication */

/**
 * An event as `GET /v1/admin/events` lists it (the fields the page reads).
 * @typedef {{ event_id: string, name: string, starts_at: string, status: string }} AdminEvent
 */

/**
 * An onsale as the admin API answers it.
 * @typedef {{ onsale_id: string, event_id: string, name: string, status: string,
 *   starts_at: string, ends_at: string | null, requires_admission: boolean,
 *   admission_rate: number, active_cap: number }} Onsale
 */

/**
 * A `counts` message of `queue:{onsale}` (docs/protocol.md §14).
 * @typedef {{ kind: 'counts', status: string, waiting: number, admitted: number, active: number,
 *   admission_rate: number, active_cap: number, outflow: number, sold_out: boolean }} Counts
 */

/**
 * `GET /v1/admin/events/{event_id}/sales`.
 * @typedef {{ event_id: string,
 *   categories: { price_category_id: string, name: string, price_minor: number, currency: string, seats: number, sold: number, held: number }[],
 *   ga: { ticket_type_id: string, name: string, price_minor: number, quota: number, sold: number, held: number }[],
 *   holds_active: number, holds_expiring_next_minute: number, orders: Record<string, number>,
 *   revenue_minor: Record<string, number>, payments: Record<string, number> }} Sales
 */

/**
 * `GET /v1/admin/events/{event_id}/sales/timeline`: one row per interval, ticket type and
 * price category.
 * @typedef {{ event_id: string, interval: string,
 *   rows: { at: string, ticket_type_id: string, price_category_id: string | null, currency: string,
 *     sold: number, revenue_minor: number, refunded: number, refunded_minor: number }[] }} Timeline
 */

/**
 * `GET /v1/admin/onsales/{onsale_id}/funnel`: from `joined` behind a waiting room, else from
 * `held`.
 * @typedef {{ onsale_id: string, event_id: string,
 *   steps: { step: string, buyers: number, dropped: number | null }[],
 *   queue_time: { p50_s: number, p90_s: number } | null }} Funnel
 */

/** @typedef {'minute' | 'hour' | 'day'} Interval */

/** How often the sales figures, the funnel and the timeline are read again. */
const SALES_POLL_MS = 3000;
/** The timeline's intervals, as the API names them. */
const INTERVALS = /** @type {const} */ (['minute', 'hour', 'day']);
/**
 * The most intervals the timeline's table lists (the latest): a day by the minute is 1,440
 * rows, more than a glance takes in. The CSV has them all.
 */
const TIMELINE_ROWS = 48;
/** Funnel step → what the table calls it. */
const STEP_NAMES = /** @type {Record<string, string>} */ ({
  joined: 'Joined the queue',
  admitted: 'Admitted',
  held: 'Held tickets',
  paid: 'Paid',
});
/**
 * After a setting change, counts still computed under the old setting can arrive for about a
 * second (the controller rereads settings every second): they do not override the change
 * for this long.
 */
const SETTLE_MS = 2500;

/** Status → icon shown beside its name (never the colour alone). */
const STATUS_ICONS = /** @type {Record<string, string>} */ ({
  scheduled: '◷',
  pre_queue: '◔',
  live: '●',
  paused: '‖',
  sold_out: '⊘',
  closed: '■',
});

const session = opsSession('admin');

/** The page's whole state: what the server said last. */
const state = {
  /** @type {AdminEvent[]} */
  events: [],
  /** @type {Onsale[]} */
  onsales: [],
  /** @type {string | null} */
  eventId: null,
  /** @type {Onsale | null} */
  onsale: null,
  /** @type {Counts | null} */
  counts: null,
  countsAt: 0,
  /** When the last setting change was seen, so stale counts do not undo it. */
  changedAt: 0,
  /**
   * The settings as the `admin:` feed last told them (or as first read): what the next
   * `changed` message is described against in the list of changes. Kept apart from `onsale`,
   * which the admin API's own answer may have updated before the message arrives.
   * @type {{ status: string, admission_rate: number, active_cap: number } | null}
   */
  announced: null,
  /** @type {{ value: string, source: string } | null} */
  commitment: null,
  /** @type {{ seed_sha256: string, seed: string, order: string[] } | null} */
  draw: null,
  /** A change of onsale bumps this, so late answers about the previous one are dropped. */
  generation: 0,
  /** @type {ReturnType<typeof setTimeout> | null} */
  salesTimer: null,
  /** The timeline's interval, as chosen on the page (`hour` unless the address says). */
  interval: /** @type {Interval} */ ('hour'),
  /** Whether the socket is up: without it the figures on screen are the last ones heard. */
  live: false,
  /**
   * Ticket type id → currency, from the admin API: the sales figures give general-admission
   * prices without their currency.
   * @type {Map<string, string>}
   */
  currencies: new Map(),
};

const series = {
  waiting: new Series('waiting', 'line-waiting'),
  outflow: new Series('measured', 'line-outflow'),
  rate: new Series('configured', 'line-rate'),
  active: new Series('active', 'line-active'),
  cap: new Series('cap', 'line-cap'),
};
const plots = {
  waiting: new Plot(/** @type {SVGSVGElement} */ (/** @type {unknown} */ (byId('plot-waiting'))), [series.waiting]),
  rate: new Plot(/** @type {SVGSVGElement} */ (/** @type {unknown} */ (byId('plot-rate'))), [series.rate, series.outflow]),
  active: new Plot(/** @type {SVGSVGElement} */ (/** @type {unknown} */ (byId('plot-active'))), [series.cap, series.active]),
};

const client = session.ok
  ? new MarqueeClient({
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
      token: session.tokenProvider,
      // An operator in the middle of an onsale wants the feed back within seconds.
      backoff: { baseMs: 250, capMs: 5000 },
    })
  : null;

// ---------------------------------------------------------------------------------------------
// Start

if (!session.ok) {
  showSignInError(session.error);
} else {
  setText('who', `Signed in as ${session.claims.sub} · tenant ${session.claims.tenant}`);
  client?.on('connected', () => showConnection('open', 'Live'));
  client?.on('disconnected', ({ reconnectInMs }) =>
    showConnection('down', reconnectInMs == null ? 'Disconnected' : 'Reconnecting…'),
  );
  client?.on('error', (error) => console.warn('marquee', error.code, error.message));
  client?.connect().catch((error) => showConnection('down', `Cannot connect: ${describeError(error)}`));
  wireControls();
  wireReports();
  void loadEvents();
}

/** @param {string} message */
function showSignInError(message) {
  const alert = byId('signin-error');
  alert.textContent = message;
  alert.hidden = false;
  // Nothing else on the page can work without a session.
  document.body.dataset.signedOut = 'true';
  showConnection('down', 'Not connected');
}

/**
 * @param {'open' | 'down' | 'connecting'} kind
 * @param {string} text
 */
function showConnection(kind, text) {
  byId('connection').dataset.state = kind;
  setText('connection-text', text);
  state.live = kind === 'open';
  renderLive();
}

// ---------------------------------------------------------------------------------------------
// Picking an event and an onsale

async function loadEvents() {
  const select = /** @type {HTMLSelectElement} */ (byId('event-select'));
  try {
    state.events = /** @type {AdminEvent[]} */ (await apiRequest(session, 'GET', '/v1/admin/events'));
  } catch (error) {
    select.replaceChildren(new Option(`Cannot load events: ${describeError(error)}`, ''));
    return;
  }
  select.replaceChildren(
    new Option(state.events.length ? 'Choose an event…' : 'No events yet', ''),
    ...state.events.map((e) => new Option(`${e.name} · ${formatTime(Date.parse(e.starts_at), 'date')} · ${e.status}`, e.event_id)),
  );
  select.disabled = state.events.length === 0;
  select.addEventListener('change', () => void pickEvent(select.value || null, null));
  const wanted = new URLSearchParams(location.search);
  const event = wanted.get('event');
  if (event && state.events.some((e) => e.event_id === event)) {
    select.value = event;
    await pickEvent(event, wanted.get('onsale'));
  }
}

/**
 * @param {string | null} eventId
 * @param {string | null} onsaleId the onsale to open, if it is the event's
 */
async function pickEvent(eventId, onsaleId) {
  state.eventId = eventId;
  const select = /** @type {HTMLSelectElement} */ (byId('onsale-select'));
  select.disabled = true;
  if (!eventId) {
    select.replaceChildren(new Option('Pick an event first', ''));
    await pickOnsale(null);
    return;
  }
  try {
    state.onsales = /** @type {Onsale[]} */ (await apiRequest(session, 'GET', `/v1/admin/events/${eventId}/onsales`));
  } catch (error) {
    select.replaceChildren(new Option(`Cannot load onsales: ${describeError(error)}`, ''));
    return;
  }
  select.replaceChildren(
    new Option(state.onsales.length ? 'Choose an onsale…' : 'This event has no onsale', ''),
    ...state.onsales.map((o) => new Option(onsaleLabel(o), o.onsale_id)),
  );
  select.disabled = state.onsales.length === 0;
  select.onchange = () => void pickOnsale(select.value || null);
  const initial = onsaleId && state.onsales.some((o) => o.onsale_id === onsaleId) ? onsaleId : state.onsales.length === 1 ? state.onsales[0].onsale_id : null;
  select.value = initial ?? '';
  await pickOnsale(initial);
}

/** @param {string | null} onsaleId */
async function pickOnsale(onsaleId) {
  const previous = state.onsale;
  state.generation++;
  const generation = state.generation;
  if (previous && client) {
    void client.unsubscribe(`queue:${previous.onsale_id}`).catch(() => {});
    void client.unsubscribe(`admin:${previous.onsale_id}`).catch(() => {});
  }
  if (state.salesTimer) clearTimeout(state.salesTimer);
  Object.assign(state, { onsale: null, counts: null, countsAt: 0, changedAt: 0, announced: null, commitment: null, draw: null });
  Object.values(series).forEach((s) => s.clear());
  byId('changes').replaceChildren(listItem('No change since this page opened.', 'muted'));
  remember();
  const panels = byId('onsale-panels');
  if (!onsaleId) {
    panels.hidden = true;
    return;
  }
  /** @type {Onsale} */
  let onsale;
  try {
    onsale = /** @type {Onsale} */ (await apiRequest(session, 'GET', `/v1/admin/onsales/${onsaleId}`));
  } catch (error) {
    showControlError(error);
    return;
  }
  if (generation !== state.generation) return;
  state.onsale = onsale;
  state.announced = settingsOf(onsale);
  remember();
  panels.hidden = false;
  fillSettingsForm(onsale);
  renderLive();
  renderFairness();
  clearReports();
  void loadCurrencies(onsale.event_id, generation).then(() => pollReports(generation));
  void loadDraw(generation);
  if (client) {
    client
      .subscribe(`queue:${onsaleId}`, { onPublication: (p) => generation === state.generation && onQueue(p) })
      .catch((error) => showControlError(error));
    client
      .subscribe(`admin:${onsaleId}`, {
        onPublication: (p) => generation === state.generation && onAdmin(p),
        // Resumed after a reconnect, the changes missed meanwhile are replayed in order. When
        // the node could not resume the feed, they are gone: read the onsale again, so the
        // page shows what is in force and the next change is described against it.
        onSubscribed: ({ recovered, automatic }) => {
          if (automatic && !recovered) void reloadOnsale(generation);
        },
      })
      // Read again once the feed is on: a change made between the first read and the
      // subscription (the schedule opening the pre-queue, say) is in this answer, and every
      // later one arrives on the feed.
      .then(() => reloadOnsale(generation))
      .catch((error) => showControlError(error));
  }
}

/**
 * Reads the onsale again (after a feed that could not be resumed).
 * @param {number} generation
 */
async function reloadOnsale(generation) {
  const onsale = state.onsale;
  if (!onsale) return;
  try {
    const fresh = /** @type {Onsale} */ (await apiRequest(session, 'GET', `/v1/admin/onsales/${onsale.onsale_id}`));
    if (generation !== state.generation || !state.onsale) return;
    Object.assign(state.onsale, settingsOf(fresh));
    state.announced = settingsOf(fresh);
    fillSettingsForm(state.onsale, true);
    renderLive();
  } catch (error) {
    showControlError(error);
  }
}

/**
 * @param {{ status: string, admission_rate: number, active_cap: number }} from
 */
function settingsOf({ status, admission_rate, active_cap }) {
  return { status, admission_rate, active_cap };
}

/** @param {Onsale} onsale */
function onsaleLabel(onsale) {
  return `${onsale.name || 'Onsale'} · ${onsale.status.replace('_', '-')} · starts ${formatTime(Date.parse(onsale.starts_at), 'date')} ${formatTime(Date.parse(onsale.starts_at))}`;
}

/** Keeps the choice in the address, so a reload or a shared link opens the same onsale. */
function remember() {
  const url = new URL(location.href);
  url.search = '';
  if (state.eventId) url.searchParams.set('event', state.eventId);
  if (state.onsale) url.searchParams.set('onsale', state.onsale.onsale_id);
  if (state.interval !== 'hour') url.searchParams.set('interval', state.interval);
  history.replaceState(null, '', url);
}

// ---------------------------------------------------------------------------------------------
// Live figures

/** @param {Publication} publication */
function onQueue({ data }) {
  if (!data || typeof data !== 'object') return;
  switch (data.kind) {
    case 'counts':
      onCounts(/** @type {Counts} */ (data));
      break;
    case 'commitment':
      state.commitment = { value: data.seed_sha256, source: `published on the queue channel at ${formatTime(Date.now())}, before the start` };
      renderFairness();
      break;
    case 'draw':
      state.draw = { seed_sha256: data.seed_sha256, seed: data.seed, order: data.order };
      renderFairness(true);
      break;
    case 'changed':
      // The same change reaches `admin:` with its author; that copy is the one listed.
      onChanged(data, null);
      break;
    default:
      break;
  }
}

/** @param {Publication} publication */
function onAdmin({ data }) {
  if (data?.kind === 'changed') onChanged(data, data.by ?? null);
}

/** @param {Counts} counts */
function onCounts(counts) {
  const now = Date.now();
  const onsale = state.onsale;
  if (!onsale) return;
  const wasPreQueue = state.counts?.status === 'pre_queue';
  state.counts = counts;
  state.countsAt = now;
  if (now - state.changedAt > SETTLE_MS) {
    // The controller's view is the latest word on the status (the schedule moves it without a
    // `changed` message) and on the settings in force.
    onsale.status = counts.status;
    onsale.admission_rate = counts.admission_rate;
    onsale.active_cap = counts.active_cap;
  }
  series.waiting.push(now, counts.waiting);
  series.outflow.push(now, counts.outflow);
  series.rate.push(now, onsale.admission_rate);
  series.active.push(now, counts.active);
  series.cap.push(now, onsale.active_cap);
  renderLive();
  if (wasPreQueue && counts.status !== 'pre_queue' && !state.draw) void loadDraw(state.generation);
  // The page may have asked for the record before the pre-queue opened (none yet) and
  // subscribed after the commitment was published: the first counts of the pre-queue that find
  // no commitment ask the record again.
  else if (!wasPreQueue && counts.status === 'pre_queue' && !state.commitment) void loadDraw(state.generation);
}

/**
 * A setting change, from `admin:` (with its author) or `queue:`.
 * @param {{ status: string, admission_rate: number, active_cap: number }} change
 * @param {string | null} by
 */
function onChanged(change, by) {
  const onsale = state.onsale;
  if (!onsale) return;
  onsale.status = change.status;
  onsale.admission_rate = change.admission_rate;
  onsale.active_cap = change.active_cap;
  state.changedAt = Date.now();
  renderLive();
  fillSettingsForm(onsale, true);
  if (by === null) return;
  const before = state.announced ?? settingsOf(change);
  state.announced = settingsOf(change);
  /** @type {string[]} */
  const what = [];
  if (before.status !== change.status) what.push(`status ${before.status} → ${change.status}`);
  if (before.admission_rate !== change.admission_rate) what.push(`rate ${formatNumber(before.admission_rate)} → ${formatNumber(change.admission_rate)}/s`);
  if (before.active_cap !== change.active_cap) what.push(`cap ${before.active_cap} → ${change.active_cap}`);
  if (what.length === 0) what.push(`status ${change.status}, rate ${formatNumber(change.admission_rate)}/s, cap ${change.active_cap}`);
  const list = byId('changes');
  list.querySelector('.muted')?.remove();
  list.prepend(listItem(`${formatTime(Date.now())} · ${by}: ${what.join(', ')}`));
  while (list.children.length > 20) list.lastElementChild?.remove();
}

function renderLive() {
  const onsale = state.onsale;
  if (!onsale) return;
  const counts = state.counts;
  const status = onsale.status;
  const badge = byId('status-badge');
  badge.dataset.status = status;
  setText('status-icon', STATUS_ICONS[status] ?? '?');
  setText('status-text', status.replace('_', '-'));
  const card = byId('live-card');
  card.dataset.stale = String(!state.live && counts !== null);
  setText(
    'counts-age',
    !counts
      ? 'No counts yet: the controller publishes them from just before the queue opens.'
      : state.live
        ? `Counts from the admission controller, ${formatTime(state.countsAt)}.`
        : `⚠ Not live: the connection to the node is down. These counts are from ${formatTime(state.countsAt)}; they update again once it is back.`,
  );
  setText('waiting', counts ? formatNumber(counts.waiting) : '–');
  setText('admitted', counts ? formatNumber(counts.admitted) : '–');
  setText('active', counts ? formatNumber(counts.active) : '–');
  setText('active-cap', formatNumber(onsale.active_cap));
  setText('outflow', counts ? formatNumber(counts.outflow) : '–');
  setText('rate', formatNumber(onsale.admission_rate));
  const activeMeter = /** @type {HTMLMeterElement} */ (byId('active-meter'));
  activeMeter.max = Math.max(1, onsale.active_cap);
  activeMeter.value = counts?.active ?? 0;
  activeMeter.high = onsale.active_cap * 0.9;
  const rateMeter = /** @type {HTMLMeterElement} */ (byId('rate-meter'));
  rateMeter.max = Math.max(onsale.admission_rate, counts?.outflow ?? 0, 0.01);
  rateMeter.value = counts?.outflow ?? 0;
  setText('sold-out', counts ? (counts.sold_out ? '⊘ Sold out right now: admission waits for seats to come back' : '✓ Seats left') : '–');

  for (const [plot, topId] of /** @type {const} */ ([[plots.waiting, 'plot-waiting-top'], [plots.rate, 'plot-rate-top'], [plots.active, 'plot-active-top']])) {
    plot.paint();
    setText(topId, plot.top ? `(0–${formatNumber(plot.top)}, last ${Math.round(plot.span / 60_000)} min)` : '');
  }
  const option = /** @type {HTMLSelectElement} */ (byId('onsale-select')).selectedOptions[0];
  if (option && option.value === onsale.onsale_id) option.textContent = onsaleLabel(onsale);

  const can = /** @param {string[]} from */ (from) => from.includes(status);
  /** @type {HTMLButtonElement} */ (byId('pause')).disabled = !can(['live']);
  /** @type {HTMLButtonElement} */ (byId('resume')).disabled = !can(['paused']);
  /** @type {HTMLButtonElement} */ (byId('close')).disabled = can(['closed']);
  /** @type {HTMLButtonElement} */ (byId('apply')).disabled = can(['sold_out', 'closed']);
}

/**
 * Puts the onsale's settings in the form, unless the operator is editing it.
 * @param {Onsale} onsale
 * @param {boolean} [onlyIfUntouched]
 */
function fillSettingsForm(onsale, onlyIfUntouched = false) {
  const form = /** @type {HTMLFormElement} */ (byId('admission-form'));
  if (onlyIfUntouched && form.contains(document.activeElement)) return;
  /** @type {HTMLInputElement} */ (byId('rate-input')).value = String(onsale.admission_rate);
  /** @type {HTMLInputElement} */ (byId('cap-input')).value = String(onsale.active_cap);
}

// ---------------------------------------------------------------------------------------------
// Controls

function wireControls() {
  byId('pause').addEventListener('click', () => void setStatus('paused'));
  byId('resume').addEventListener('click', () => void setStatus('live'));
  const dialog = /** @type {HTMLDialogElement} */ (byId('close-dialog'));
  const confirmInput = /** @type {HTMLInputElement} */ (byId('close-confirm-input'));
  const confirmButton = /** @type {HTMLButtonElement} */ (byId('close-confirm'));
  byId('close').addEventListener('click', () => {
    confirmInput.value = '';
    confirmButton.disabled = true;
    dialog.returnValue = '';
    dialog.showModal();
    confirmInput.focus();
  });
  confirmInput.addEventListener('input', () => {
    confirmButton.disabled = confirmInput.value.trim().toLowerCase() !== 'close';
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'confirm') void setStatus('closed');
    byId('close').focus();
  });
  byId('admission-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void setAdmission();
  });
  byId('verify').addEventListener('click', () => void verify());
  byId('reset-record').addEventListener('click', () => renderFairness(true));
  byId('order-input').addEventListener('input', () => {
    setVerdict('none', '');
    countOrder();
  });
  byId('seed-input').addEventListener('input', () => setVerdict('none', ''));
}

/** @param {string} status */
async function setStatus(status) {
  const onsale = state.onsale;
  if (!onsale) return;
  clearControlMessages();
  try {
    const updated = /** @type {Onsale} */ (await apiRequest(session, 'PATCH', `/v1/admin/onsales/${onsale.onsale_id}/status`, { status }));
    applyAnswer(updated);
    setText('control-ok', `Done: the onsale is ${updated.status.replace('_', '-')}.`);
  } catch (error) {
    showControlError(error);
  }
}

async function setAdmission() {
  const onsale = state.onsale;
  if (!onsale) return;
  clearControlMessages();
  const rate = Number(/** @type {HTMLInputElement} */ (byId('rate-input')).value);
  const cap = Number(/** @type {HTMLInputElement} */ (byId('cap-input')).value);
  try {
    const updated = /** @type {Onsale} */ (await apiRequest(session, 'PATCH', `/v1/admin/onsales/${onsale.onsale_id}/admission`, { admission_rate: rate, active_cap: cap }));
    applyAnswer(updated);
    setText('control-ok', `Done: ${formatNumber(updated.admission_rate)} admissions a second, at most ${updated.active_cap} shopping at once.`);
  } catch (error) {
    showControlError(error);
  }
}

/**
 * Shows the onsale the admin API answered with.
 * @param {Onsale} updated
 */
function applyAnswer(updated) {
  if (!state.onsale || updated.onsale_id !== state.onsale.onsale_id) return;
  Object.assign(state.onsale, {
    status: updated.status,
    admission_rate: updated.admission_rate,
    active_cap: updated.active_cap,
  });
  state.changedAt = Date.now();
  fillSettingsForm(state.onsale);
  renderLive();
}

function clearControlMessages() {
  const error = byId('control-error');
  error.hidden = true;
  error.textContent = '';
  setText('control-ok', '');
}

/** @param {unknown} error */
function showControlError(error) {
  const box = byId('control-error');
  box.textContent = `Refused: ${describeError(error)}`;
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Sales

/**
 * Reads the sales, the funnel and the timeline, then again every few seconds while the same
 * onsale is shown.
 * @param {number} generation
 */
async function pollReports(generation) {
  if (!state.onsale || generation !== state.generation) return;
  await Promise.all([readSales(generation), readFunnel(generation), readTimeline(generation)]);
  if (generation === state.generation) state.salesTimer = setTimeout(() => void pollReports(generation), SALES_POLL_MS);
}

/** @param {number} generation */
async function readSales(generation) {
  const eventId = state.onsale?.event_id;
  if (!eventId) return;
  const errorBox = byId('sales-error');
  try {
    const sales = /** @type {Sales} */ (await apiRequest(session, 'GET', `/v1/admin/events/${eventId}/sales`));
    if (generation !== state.generation) return;
    renderSales(sales);
    errorBox.hidden = true;
    setText('sales-age', `as of ${formatTime(Date.now())}`);
  } catch (error) {
    if (generation !== state.generation) return;
    errorBox.textContent = `Cannot read the sales: ${describeError(error)}`;
    errorBox.hidden = false;
  }
}

/**
 * @param {string} eventId
 * @param {number} generation
 */
async function loadCurrencies(eventId, generation) {
  try {
    const types = /** @type {{ ticket_type_id: string, currency: string }[]} */ (
      await apiRequest(session, 'GET', `/v1/admin/events/${eventId}/ticket-types`)
    );
    if (generation === state.generation) state.currencies = new Map(types.map((t) => [t.ticket_type_id, t.currency]));
  } catch {
    // Without them a general-admission price is shown in the categories' currency.
  }
}

/** @param {Sales} sales */
function renderSales(sales) {
  setText('holds-active', formatNumber(sales.holds_active));
  setText('holds-expiring', formatNumber(sales.holds_expiring_next_minute));
  const revenue = Object.entries(sales.revenue_minor);
  setText('revenue', revenue.length ? revenue.map(([currency, minor]) => formatMoney(minor, currency)).join(', ') : 'none yet');
  fillRows(
    'categories-table',
    sales.categories.map((c) => {
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = Math.max(1, c.seats);
      meter.value = c.sold;
      meter.setAttribute('aria-label', `${c.name}: ${c.sold} of ${c.seats} sold`);
      return [c.name, formatMoney(c.price_minor, c.currency), formatNumber(c.seats), formatNumber(c.sold), formatNumber(c.held), formatNumber(c.seats - c.sold - c.held), meter];
    }),
    'No price categories.',
  );
  fillRows(
    'ga-table',
    sales.ga.map((g) => {
      const currency = state.currencies.get(g.ticket_type_id) ?? sales.categories[0]?.currency;
      const price = currency ? formatMoney(g.price_minor, currency) : formatNumber(g.price_minor);
      return [g.name, price, formatNumber(g.quota), formatNumber(g.sold), formatNumber(g.held), formatNumber(Math.max(0, g.quota - g.sold - g.held))];
    }),
    'No general admission.',
  );
  fillRows('orders-table', Object.entries(sales.orders).map(([status, n]) => [status.replace(/_/g, ' '), formatNumber(n)]), 'No orders yet.');
  fillRows('payments-table', Object.entries(sales.payments).map(([outcome, n]) => [outcome.replace(/_/g, ' '), formatNumber(n)]), 'No payments yet.');
}

/**
 * Replaces a table's body.
 * @param {string} tableId
 * @param {(string | Node)[][]} rows
 * @param {string} empty what to say when there are none
 */
function fillRows(tableId, rows, empty) {
  const table = /** @type {HTMLTableElement} */ (byId(tableId));
  const body = table.tBodies[0];
  const columns = table.tHead?.rows[0]?.cells.length ?? 1;
  if (rows.length === 0) {
    const cell = document.createElement('td');
    cell.colSpan = columns;
    cell.className = 'muted';
    cell.textContent = empty;
    const tr = document.createElement('tr');
    tr.append(cell);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement('tr');
      cells.forEach((value, i) => {
        const cell = document.createElement(i === 0 ? 'th' : 'td');
        if (i === 0) cell.setAttribute('scope', 'row');
        cell.append(value);
        tr.append(cell);
      });
      return tr;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The funnel and sales over time

function wireReports() {
  const select = /** @type {HTMLSelectElement} */ (byId('interval-select'));
  const wanted = new URLSearchParams(location.search).get('interval');
  if (isInterval(wanted)) state.interval = wanted;
  select.value = state.interval;
  renderTimelineCaption();
  select.addEventListener('change', () => {
    if (!isInterval(select.value)) return;
    state.interval = select.value;
    remember();
    renderTimelineCaption();
    fillRows('timeline-table', [], 'Loading…');
    void readTimeline(state.generation);
  });
  byId('funnel-csv').addEventListener('click', () => {
    const onsale = state.onsale;
    if (!onsale) return;
    void download('funnel-csv', 'funnel-csv-status', `/v1/admin/onsales/${onsale.onsale_id}/funnel?format=csv`, `${eventSlug(onsale.event_id)}-${fileSlug(onsale.name, 'onsale')}-funnel-${fileStamp()}.csv`);
  });
  byId('timeline-csv').addEventListener('click', () => {
    const onsale = state.onsale;
    if (!onsale) return;
    const interval = state.interval;
    void download(
      'timeline-csv',
      'timeline-csv-status',
      `/v1/admin/events/${onsale.event_id}/sales/timeline?interval=${interval}&format=csv`,
      `${eventSlug(onsale.event_id)}-sales-per-${interval}-${fileStamp()}.csv`,
    );
  });
}

/**
 * @param {string | null} value
 * @returns {value is Interval}
 */
function isInterval(value) {
  return INTERVALS.some((i) => i === value);
}

/** Empties the two reports, so figures of the onsale shown before never pass for this one's. */
function clearReports() {
  for (const id of ['funnel-age', 'timeline-age', 'queue-p50', 'queue-p90']) setText(id, '');
  for (const id of ['funnel-csv-status', 'timeline-csv-status']) {
    const status = byId(id);
    status.className = 'ops-ok';
    status.textContent = '';
  }
  for (const id of ['funnel-error', 'timeline-error']) byId(id).hidden = true;
  fillRows('funnel-table', [], 'Loading…');
  fillRows('timeline-table', [], 'Loading…');
}

/** @param {number} generation */
async function readFunnel(generation) {
  const onsale = state.onsale;
  if (!onsale) return;
  const errorBox = byId('funnel-error');
  try {
    const funnel = /** @type {Funnel} */ (await apiRequest(session, 'GET', `/v1/admin/onsales/${onsale.onsale_id}/funnel`));
    if (generation !== state.generation) return;
    renderFunnel(funnel, onsale);
    errorBox.hidden = true;
    setText('funnel-age', `as of ${formatTime(Date.now())}`);
  } catch (error) {
    if (generation !== state.generation) return;
    errorBox.textContent = `Cannot read the funnel: ${describeError(error)}`;
    errorBox.hidden = false;
  }
}

/**
 * @param {Funnel} funnel
 * @param {Onsale} onsale
 */
function renderFunnel(funnel, onsale) {
  fillRows(
    'funnel-table',
    funnel.steps.map((s) => [STEP_NAMES[s.step] ?? s.step, formatNumber(s.buyers), s.dropped === null ? '–' : formatShare(s.dropped)]),
    'No steps.',
  );
  const queued = funnel.steps.some((s) => s.step === 'joined');
  const none = queued || onsale.requires_admission ? 'nobody admitted yet' : 'no waiting room';
  setText('queue-p50', funnel.queue_time ? formatDuration(funnel.queue_time.p50_s) : none);
  setText('queue-p90', funnel.queue_time ? formatDuration(funnel.queue_time.p90_s) : none);
  setText(
    'funnel-note',
    queued
      ? 'Distinct buyers. Joins are recorded about once a second; time in queue runs from joining to admission.'
      : 'Distinct buyers. This onsale has no waiting room: its funnel starts when buyers hold tickets.',
  );
}

/** @param {number} generation */
async function readTimeline(generation) {
  const eventId = state.onsale?.event_id;
  if (!eventId) return;
  const interval = state.interval;
  const errorBox = byId('timeline-error');
  try {
    const timeline = /** @type {Timeline} */ (await apiRequest(session, 'GET', `/v1/admin/events/${eventId}/sales/timeline?interval=${interval}`));
    // An answer for the interval chosen before is dropped: the one for the new choice follows.
    if (generation !== state.generation || timeline.interval !== state.interval) return;
    renderTimeline(timeline);
    errorBox.hidden = true;
    setText('timeline-age', `as of ${formatTime(Date.now())}`);
  } catch (error) {
    if (generation !== state.generation || interval !== state.interval) return;
    errorBox.textContent = `Cannot read the sales over time: ${describeError(error)}`;
    errorBox.hidden = false;
  }
}

function renderTimelineCaption() {
  setText('timeline-caption', `Tickets sold and refunded per ${state.interval}, all ticket types`);
}

/**
 * Sums the timeline's rows over ticket types and categories, per interval, keeping amounts
 * apart by currency; lists the latest intervals first.
 * @param {Timeline} timeline
 */
function renderTimeline(timeline) {
  /** @type {Map<number, { at: string, sold: number, refunded: number, revenue: Map<string, number>, refunds: Map<string, number> }>} */
  const intervals = new Map();
  const add = (/** @type {Map<string, number>} */ sums, /** @type {string} */ currency, /** @type {number} */ minor) =>
    sums.set(currency, (sums.get(currency) ?? 0) + minor);
  for (const row of timeline.rows) {
    const key = Date.parse(row.at);
    let sums = intervals.get(key);
    if (!sums) {
      sums = { at: row.at, sold: 0, refunded: 0, revenue: new Map(), refunds: new Map() };
      intervals.set(key, sums);
    }
    sums.sold += row.sold;
    sums.refunded += row.refunded;
    add(sums.revenue, row.currency, row.revenue_minor);
    add(sums.refunds, row.currency, row.refunded_minor);
  }
  const latest = [...intervals.entries()].sort(([a], [b]) => b - a).slice(0, TIMELINE_ROWS);
  const amounts = (/** @type {Map<string, number>} */ sums) => [...sums].map(([currency, minor]) => formatMoney(minor, currency)).join(', ');
  fillRows(
    'timeline-table',
    latest.map(([ms, sums]) => {
      const time = document.createElement('time');
      time.dateTime = sums.at;
      time.textContent = intervalLabel(ms, timeline.interval);
      return [time, formatNumber(sums.sold), amounts(sums.revenue), formatNumber(sums.refunded), amounts(sums.refunds)];
    }),
    'No sales yet.',
  );
  setText(
    'timeline-note',
    `A sale counts when its order was paid, a refund when its order was refunded. Newest first${
      intervals.size > latest.length ? `: the latest ${latest.length} of ${intervals.size} ${timeline.interval}s (the CSV has them all)` : ''
    }.`,
  );
}

/**
 * Where an interval starts, in the viewer's time zone, as precisely as the interval needs.
 * @param {number} ms unix ms
 * @param {string} interval
 */
function intervalLabel(ms, interval) {
  return interval === 'day'
    ? formatTime(ms, 'date')
    : new Date(ms).toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/**
 * Downloads a report's CSV with the operator's token and saves it as `fileName`; says how it
 * went in `statusId` (a status region). The button stays focusable while it works, so a
 * keyboard user keeps their place.
 * @param {string} buttonId
 * @param {string} statusId
 * @param {string} path
 * @param {string} fileName
 */
async function download(buttonId, statusId, path, fileName) {
  const button = byId(buttonId);
  const status = byId(statusId);
  if (button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  status.className = 'ops-ok';
  status.textContent = 'Preparing the file…';
  try {
    const blob = await apiDownload(session, path);
    saveBlob(blob, fileName);
    status.textContent = `Saved ${fileName} (${formatNumber(blob.size)} bytes).`;
  } catch (error) {
    status.className = 'ops-error';
    status.textContent = `Cannot download the CSV: ${describeError(error)}`;
  } finally {
    button.removeAttribute('aria-disabled');
  }
}

/**
 * The event's name as a piece of a file name.
 * @param {string} eventId
 */
function eventSlug(eventId) {
  const name = state.events.find((e) => e.event_id === eventId)?.name ?? '';
  return fileSlug(name, `event-${eventId.slice(0, 8)}`);
}

/** Now, local time, for a file name: `2026-12-04-1405`. */
function fileStamp(now = new Date()) {
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`;
}

// ---------------------------------------------------------------------------------------------
// Fairness

/** @param {number} generation */
async function loadDraw(generation) {
  const onsale = state.onsale;
  if (!onsale || !session.ok) return;
  try {
    const record = /** @type {{ seed_sha256: string, seed?: string, order?: string[] }} */ (
      await apiRequest(session, 'GET', `/v1/tenants/${session.claims.tenant}/onsales/${onsale.onsale_id}/draw`, undefined, { auth: false })
    );
    if (generation !== state.generation) return;
    if (record.seed && record.order) {
      state.draw = { seed_sha256: record.seed_sha256, seed: record.seed, order: record.order };
      if (!state.commitment) state.commitment = { value: record.seed_sha256, source: 'from the server’s draw record (this page opened after the start)' };
      renderFairness(true);
    } else if (!state.commitment) {
      state.commitment = { value: record.seed_sha256, source: `from the server’s record at ${formatTime(Date.now())}, before the start` };
      renderFairness();
    }
  } catch (error) {
    if (/** @type {{ code?: string }} */ (error).code !== 'not_found') setText('fairness-state', `Cannot read the draw record: ${describeError(error)}`);
  }
}

/**
 * Shows the fairness record.
 * @param {boolean} [resetInputs] put the published seed and order back in the inputs
 */
function renderFairness(resetInputs = false) {
  const { commitment, draw } = state;
  setText('commitment', commitment?.value ?? '–');
  setText('commitment-source', commitment ? `(${commitment.source})` : '');
  setText('draw-sha', draw?.seed_sha256 ?? '–');
  setText(
    'fairness-state',
    draw
      ? `The pre-queue was drawn: ${draw.order.length} place${draw.order.length === 1 ? '' : 's'}, first admitted first. Anyone can check it with the seed.`
      : commitment
        ? 'The pre-queue is open: the seed is committed to and is revealed with the order at the start.'
        : 'No pre-queue record: this onsale has no pre-queue, or it has not opened yet.',
  );
  byId('fairness-record').hidden = !commitment && !draw;
  const seedInput = /** @type {HTMLInputElement} */ (byId('seed-input'));
  const orderInput = /** @type {HTMLTextAreaElement} */ (byId('order-input'));
  if (resetInputs || !draw) {
    seedInput.value = draw?.seed ?? '';
    orderInput.value = draw?.order.join('\n') ?? '';
    setVerdict('none', '');
  }
  /** @type {HTMLButtonElement} */ (byId('verify')).disabled = !draw;
  /** @type {HTMLButtonElement} */ (byId('reset-record')).disabled = !draw;
  countOrder();
}

function countOrder() {
  const n = orderLines().length;
  setText('order-count', n ? `(${n})` : '');
}

/** The order as typed in the page. */
function orderLines() {
  return /** @type {HTMLTextAreaElement} */ (byId('order-input')).value
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
}

/** Checks the record as it stands in the inputs: the seed against the commitment, the order against the seed. */
async function verify() {
  const draw = state.draw;
  if (!draw) return;
  const record = {
    seed_sha256: draw.seed_sha256,
    seed: /** @type {HTMLInputElement} */ (byId('seed-input')).value,
    order: orderLines(),
  };
  setVerdict('working', 'Checking…');
  try {
    const verdict = await verifyDraw(record, { committed: state.commitment?.value ?? null });
    if (verdict.ok) {
      setVerdict(
        'ok',
        `✓ Verified: SHA-256 of the seed equals the commitment, and the ${verdict.entrants} place${verdict.entrants === 1 ? '' : 's'} stand in exactly the seed’s order.`,
      );
    } else {
      setVerdict('bad', `✗ Does not check out: ${verdict.message}.`);
    }
  } catch (error) {
    setVerdict('bad', `✗ Cannot check here: ${describeError(error)}`);
  }
}

/**
 * @param {'none' | 'working' | 'ok' | 'bad'} kind
 * @param {string} text
 */
function setVerdict(kind, text) {
  const box = byId('verdict');
  box.dataset.verdict = kind;
  box.textContent = text;
}

/**
 * @param {string} text
 * @param {string} [className]
 */
function listItem(text, className) {
  const li = document.createElement('li');
  li.textContent = text;
  if (className) li.className = className;
  return li;
}
