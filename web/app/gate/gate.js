// The gate scanner (`/gate`, role `gate`): scan a ticket, let its holder in or not.
//
// Every code is checked in the page first, against the deployment's ticket key (Ed25519 over
// the code's 36-byte payload, docs/payments.md): a forged or damaged code, or a ticket of
// another event, is refused at once, with or without a network. A genuine code then goes to
// the node (`checkin.scan` over the SDK), whose answer is final: admitted, or already checked
// in (when, through which gate), or rejected (refunded, transferred).
//
// The event's scans at every gate arrive live on `gate:{event}`; the feed also settles a scan
// of this gate whose direct answer is slow or lost (it carries the scan id and the answer).
//
// Offline (the socket is down, no answer came within a few seconds, or the operator switched
// the gate offline), a genuine code is admitted on the page's word, unless this page already
// saw the ticket go in (its own scans and every scan on `gate:{event}` since it opened), and
// the scan is queued in localStorage with the page's decision. When the connection is back
// (or at once, when only an answer was lost), the queue is uploaded as one batch
// (`POST /v1/checkin/batch`, each scan with its own scan id, so a scan the node had recorded
// answers as it did the first time) and the node's answers are shown; a ticket the page let in
// that had gone in elsewhere first is called out.

import { MarqueeClient } from '../../sdk/marquee.js';
import { apiRequest, describeError, opsSession } from '../admin/ops.js';
import { byId, formatTime, setText } from '../admin/view.js';
import { checkOffline, ed25519Supported, importPublicKey } from './code.js';
import { ScanQueue } from './queue.js';

/** @typedef {import('../../sdk/marquee.js').Scan} Scan */
/** @typedef {import('../../sdk/marquee.js').ScanResult} ScanResult */
/** @typedef {import('./code.js').TicketCode} TicketCode */

/**
 * What the big result panel shows.
 * @typedef {'idle' | 'checking' | 'admitted' | 'admitted_offline' | 'already_checked_in' | 'invalid' | 'wrong_event'} ResultKind
 */

/**
 * @typedef {{ event_id: string, name: string, starts_at: string, status: string }} PublicEvent
 * @typedef {{ index: number, section: string, row: string, number: number }} Seat
 * @typedef {{ gate: string, result: ScanResult, scanned_at: number }} GateNotice
 */

/** A scan answered by the node within this long, or it is treated as made offline. */
const ONLINE_SCAN_TIMEOUT_MS = 3000;
/**
 * Ping the node after this long without a message from it: a link that died without a close
 * (a cable pulled, a Wi-Fi dropout) is noticed within seconds, and the gate turns offline.
 */
const KEEPALIVE_MS = 5000;
/** After a failed upload, try again this long later (also on every reconnect). */
const UPLOAD_RETRY_MS = 5000;
/**
 * The camera reads a code held up to it several times a second: the same code counts as one
 * scan for as long as it stays in view, and again only after it has been out of view this long
 * (so a ticket held still is not reported "already checked in" a moment after "admitted").
 */
const CAMERA_REPEAT_MS = 1500;
/** The scan log keeps this many lines. */
const LOG_LINES = 200;

const ICONS = /** @type {Record<ResultKind, string>} */ ({
  idle: '⌁',
  checking: '…',
  admitted: '✓',
  admitted_offline: '✓',
  already_checked_in: '⚠',
  invalid: '✕',
  wrong_event: '⊘',
});

const session = opsSession('gate');

const state = {
  /** @type {MarqueeClient | null} */
  client: null,
  /** The operator's switch: scans are queued even when the socket is up. */
  forcedOffline: false,
  /** @type {CryptoKey | null} */
  key: null,
  /** Why codes cannot be checked in the page, when they cannot. */
  keyProblem: 'the ticket key is not loaded yet',
  /** @type {PublicEvent[]} */
  events: [],
  /** @type {string | null} */
  eventId: null,
  /** @type {Map<string, string>} ticket type id → name, for the selected event */
  ticketTypes: new Map(),
  /** @type {Seat[]} */
  seats: [],
  /**
   * Tickets this page knows went in: from the node's answers, from `gate:{event}`, and from
   * its own offline admissions. What an offline scan is checked against.
   * @type {Map<string, { at: number, gate: string, provisional: boolean }>}
   */
  checkedIn: new Map(),
  uploading: false,
  /**
   * Scans sent to the node and not answered yet, by scan id: the `gate:` feed carries every
   * recorded scan with its answer, so it settles a scan whose direct answer is slow or lost.
   * @type {Map<string, (result: ScanResult) => void>}
   */
  pending: new Map(),
  /** The scan the result panel shows, so the node's later answer to it can replace it. */
  /** @type {string | null} */
  shownScan: null,
  /** @type {ReturnType<typeof setTimeout> | null} */
  uploadTimer: null,
  counter: 0,
};

/** @type {ScanQueue | null} */
const queue = session.ok ? new ScanQueue(`marquee.gate.queue.${session.claims.tenant}.${session.claims.sub}`) : null;

// ---------------------------------------------------------------------------------------------
// Start

if (!session.ok) {
  const alert = byId('signin-error');
  alert.textContent = session.error;
  alert.hidden = false;
  // Nothing else on the page can work without a session.
  document.body.dataset.signedOut = 'true';
  showNet();
} else {
  setText('who', `Signed in as ${session.claims.sub} · tenant ${session.claims.tenant}`);
  byId('scan-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = /** @type {HTMLInputElement} */ (byId('code-input'));
    const code = input.value;
    input.value = '';
    void handleCode(code);
    input.focus();
  });
  const offlineSwitch = /** @type {HTMLInputElement} */ (byId('offline-switch'));
  offlineSwitch.addEventListener('change', () => setForcedOffline(offlineSwitch.checked));
  byId('upload-now').addEventListener('click', () => void upload());
  window.addEventListener('online', () => state.client?.state === 'open' && void upload());
  window.addEventListener('offline', showNet);
  connect();
  showQueue();
  void loadKey();
  void loadEvents();
  void setUpCamera();
}

// ---------------------------------------------------------------------------------------------
// The connection

function connect() {
  if (!session.ok || state.client) return;
  const client = new MarqueeClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    token: session.tokenProvider,
    backoff: { baseMs: 250, capMs: 5000 },
    keepaliveMs: KEEPALIVE_MS,
    requestTimeoutMs: ONLINE_SCAN_TIMEOUT_MS,
  });
  state.client = client;
  client.on('connected', () => {
    showNet();
    void upload();
  });
  client.on('disconnected', showNet);
  client.on('error', (error) => console.warn('marquee', error.code, error.message));
  client.connect().catch((error) => {
    setText('connection-text', `Cannot connect: ${describeError(error)}`);
  });
  if (state.eventId) subscribeGate(state.eventId);
  showNet();
}

/** @param {boolean} offline */
function setForcedOffline(offline) {
  state.forcedOffline = offline;
  if (offline) {
    state.client?.close();
    state.client = null;
  } else {
    connect();
  }
  showNet();
}

/** Whether a scan goes to the node now. */
function online() {
  return !state.forcedOffline && state.client?.state === 'open';
}

function showNet() {
  const up = online();
  const badge = byId('net-badge');
  badge.dataset.net = up ? 'online' : 'offline';
  setText('net-icon', up ? '●' : '⚠');
  setText(
    'net-text',
    up
      ? 'Online: scans are checked by the server'
      : state.forcedOffline
        ? 'Offline (switched off): scans are checked here and queued'
        : 'Offline: scans are checked here and queued until the connection is back',
  );
  byId('connection').dataset.state = up ? 'open' : 'down';
  setText('connection-text', up ? 'Live' : !session.ok ? 'Not connected' : state.forcedOffline ? 'Offline by choice' : 'Reconnecting…');
  /** @type {HTMLButtonElement} */ (byId('upload-now')).disabled = !up || !queue?.size;
  if (state.eventId) {
    // Other gates' scans made meanwhile are replayed in order once the socket is back.
    setText('log-state', up ? '(live)' : '(paused while offline: other gates’ scans follow when the connection is back)');
  }
}

function showQueue() {
  const n = queue?.size ?? 0;
  setText('queue-count', n === 0 ? 'No scans waiting to upload.' : `${n} offline scan${n === 1 ? '' : 's'} waiting to upload.`);
  showNet();
}

// ---------------------------------------------------------------------------------------------
// The ticket key

async function loadKey() {
  const cacheKey = 'marquee.gate.publicKey';
  if (!(await ed25519Supported())) {
    state.keyProblem = 'this browser cannot verify Ed25519 signatures (WebCrypto), so codes are checked by the server only';
    setText('key-state', `⚠ Offline checks unavailable: ${state.keyProblem}.`);
    return;
  }
  /** @type {string | null} */
  let hex = null;
  try {
    const answer = /** @type {{ public_key: string, algorithm: string }} */ (
      await apiRequest(session, 'GET', '/v1/tickets/public-key', undefined, { auth: false })
    );
    hex = answer.public_key;
    localStorage.setItem(cacheKey, hex);
  } catch {
    hex = localStorage.getItem(cacheKey);
  }
  if (!hex) {
    state.keyProblem = 'the ticket key could not be loaded';
    setText('key-state', '⚠ The ticket key could not be loaded: codes are checked by the server only.');
    return;
  }
  try {
    state.key = await importPublicKey(hex);
    setText('key-state', '✓ Ticket key loaded: every code is checked on this device first (Ed25519), so forged codes are refused even offline.');
  } catch (error) {
    state.keyProblem = `the ticket key is unusable (${describeError(error)})`;
    setText('key-state', `⚠ ${state.keyProblem}.`);
  }
}

// ---------------------------------------------------------------------------------------------
// The event

async function loadEvents() {
  if (!session.ok) return;
  const select = /** @type {HTMLSelectElement} */ (byId('event-select'));
  const base = `/v1/tenants/${session.claims.tenant}/events`;
  const wanted = new URLSearchParams(location.search).get('event');
  try {
    // Soonest first, from a day and a half ago (tonight's show, or one still running), so
    // long-past events never crowd out today's in the first hundred.
    const from = new Date(Date.now() - 36 * 3_600_000).toISOString();
    state.events = /** @type {PublicEvent[]} */ (
      await apiRequest(session, 'GET', `${base}?limit=100&from=${encodeURIComponent(from)}`, undefined, { auth: false })
    );
    if (wanted && !state.events.some((e) => e.event_id === wanted)) {
      // A link may name any visible event, even one outside that window.
      try {
        state.events.unshift(/** @type {PublicEvent} */ (await apiRequest(session, 'GET', `${base}/${encodeURIComponent(wanted)}`, undefined, { auth: false })));
      } catch {
        // Not visible (or no such event): the picker simply lacks it.
      }
    }
  } catch (error) {
    select.replaceChildren(new Option(`Cannot load events: ${describeError(error)}`, ''));
    return;
  }
  select.replaceChildren(
    new Option(state.events.length ? 'Choose the event…' : 'No events', ''),
    ...state.events.map((e) => new Option(`${e.name} · ${new Date(e.starts_at).toLocaleDateString()}`, e.event_id)),
  );
  select.disabled = state.events.length === 0;
  select.addEventListener('change', () => void pickEvent(select.value || null));
  if (wanted && state.events.some((e) => e.event_id === wanted)) {
    select.value = wanted;
    await pickEvent(wanted);
  }
}

/** @param {string | null} eventId */
async function pickEvent(eventId) {
  if (state.eventId && state.client) void state.client.unsubscribe(`gate:${state.eventId}`).catch(() => {});
  state.eventId = eventId;
  state.checkedIn.clear();
  state.ticketTypes.clear();
  state.seats = [];
  byId('scan-log').replaceChildren(logLine('', '', 'No scans yet.'));
  const url = new URL(location.href);
  url.search = eventId ? `?event=${eventId}` : '';
  history.replaceState(null, '', url);
  if (!eventId || !session.ok) return;
  subscribeGate(eventId);
  const base = `/v1/tenants/${session.claims.tenant}/events/${eventId}`;
  try {
    const detail = /** @type {{ ticket_types: { ticket_type_id: string, name: string }[] }} */ (
      await apiRequest(session, 'GET', base, undefined, { auth: false })
    );
    for (const t of detail.ticket_types) state.ticketTypes.set(t.ticket_type_id, t.name);
    const map = /** @type {{ seats: Seat[] }} */ (await apiRequest(session, 'GET', `${base}/seats`, undefined, { auth: false }));
    state.seats = map.seats;
  } catch {
    // Labels are a nicety: without them a result names the seat by its index.
  }
}

/** @param {string} eventId */
function subscribeGate(eventId) {
  const client = state.client;
  if (!client) return;
  client
    .subscribe(`gate:${eventId}`, {
      onPublication: ({ data }) => {
        if (eventId === state.eventId) onGateNotice(/** @type {GateNotice} */ (data));
      },
    })
    .then(showNet)
    .catch((error) => setText('log-state', `(not live: ${describeError(error)})`));
}

/** @param {GateNotice} notice */
function onGateNotice(notice) {
  const { result, gate } = notice;
  if (!result) return;
  state.pending.get(result.scan_id)?.(result);
  if (result.ticket && result.status === 'admitted') {
    state.checkedIn.set(result.ticket, { at: result.at, gate, provisional: false });
  } else if (result.ticket && result.status === 'already_checked_in' && !state.checkedIn.get(result.ticket)?.provisional) {
    state.checkedIn.set(result.ticket, { at: result.at, gate: result.gate, provisional: false });
  }
  const time = formatTime(notice.scanned_at);
  addLog(result.status, `${time}`, `${gate}: ${describeResult(result)}`);
}

// ---------------------------------------------------------------------------------------------
// Scanning

/** A fresh scan id, unique per tenant: the gate, this page's random part and a counter. */
function newScanId() {
  const gate = session.ok ? session.claims.sub.slice(0, 64) : 'gate';
  const random = crypto.getRandomValues(new Uint8Array(6));
  state.counter++;
  return `${gate}-${Array.from(random, (b) => b.toString(16).padStart(2, '0')).join('')}-${state.counter}`;
}

/**
 * Checks one code: in the page, then with the node (or into the queue when offline).
 * @param {string} text
 */
async function handleCode(text) {
  if (!text.trim()) return;
  if (!state.eventId) {
    showResult('invalid', 'Choose the event first', 'This gate does not know which event it admits to yet.');
    return;
  }
  const eventId = state.eventId;
  state.shownScan = null;
  showResult('checking', 'Checking…', 'Verifying the code’s signature on this device.');
  const verdict = await checkOffline(text, { key: state.key, event: eventId, unavailable: state.keyProblem });
  if (verdict.verdict === 'invalid') {
    showResult('invalid', 'Invalid ticket', `Do not admit: ${verdict.reason}.`);
    addLog('invalid', formatTime(Date.now()), `this gate: invalid code (${verdict.reason})`);
    return;
  }
  if (verdict.verdict === 'wrong_event') {
    const other = state.events.find((e) => e.event_id === verdict.code.event);
    showResult('wrong_event', 'Wrong event', `Do not admit: this ticket is for ${other ? `“${other.name}”` : 'another event'}.`);
    addLog('invalid', formatTime(Date.now()), 'this gate: a ticket of another event');
    return;
  }
  const code = verdict.code;
  if (!code) {
    showResult('invalid', 'Invalid ticket', 'Do not admit: the code cannot be read.');
    return;
  }
  /** @type {Scan} */
  const scan = { qr: text.trim(), scan_id: newScanId(), event: eventId, scanned_at: Date.now() };
  if (online() && state.client) {
    showResult('checking', 'Checking…', 'Genuine code; asking the server whether it has been used.');
    /** @type {Promise<ScanResult>} */
    const fromFeed = new Promise((resolve) => state.pending.set(scan.scan_id, resolve));
    try {
      const result = await Promise.race([
        state.client.checkinScan({ qr: scan.qr, scan_id: scan.scan_id, event: eventId }, { timeoutMs: ONLINE_SCAN_TIMEOUT_MS }),
        fromFeed,
      ]);
      showServerResult(result, code);
      return;
    } catch (error) {
      const kind = /** @type {{ kind?: string, code?: string }} */ (error);
      const lost = kind.kind !== 'server' || kind.code === 'unavailable';
      if (!lost) {
        showResult('invalid', 'Not checked', `The server refused the scan: ${describeError(error)}.`);
        return;
      }
      // No answer: the scan may or may not have been recorded; queued with the same scan id,
      // its upload answers whatever the node decided. The socket may be dead while it still
      // looks open, so the upload goes over HTTP at once rather than at the next reconnect.
      admitOffline(scan, code, verdict.verdict === 'unchecked' ? verdict.reason : null);
      scheduleUpload(0);
      return;
    } finally {
      state.pending.delete(scan.scan_id);
    }
  }
  admitOffline(scan, code, verdict.verdict === 'unchecked' ? verdict.reason : null);
}

/**
 * Decides a scan on the page's own knowledge and queues it for the node.
 * @param {Scan} scan
 * @param {TicketCode} code
 * @param {string | null} unchecked why the signature could not be checked, if it could not
 */
function admitOffline(scan, code, unchecked) {
  const seen = state.checkedIn.get(code.ticket);
  queue?.push(scan, seen ? 'refused' : unchecked ? 'unverified' : 'admitted');
  showQueue();
  state.shownScan = scan.scan_id;
  if (seen) {
    showResult(
      'already_checked_in',
      'Already checked in',
      `Do not admit: this ticket went in at ${formatTime(seen.at)} through ${seen.gate === ownGate() ? 'this gate' : seen.gate}${seen.provisional ? ' (offline)' : ''}. Queued for the server.`,
    );
    addLog('already_checked_in', formatTime(scan.scanned_at ?? Date.now()), `this gate, offline: already checked in (${seen.gate})`);
    return;
  }
  if (unchecked) {
    showResult('already_checked_in', 'Cannot verify offline', `Check the ticket by hand: ${unchecked}. The scan is queued for the server.`);
    addLog('already_checked_in', formatTime(scan.scanned_at ?? Date.now()), 'this gate, offline: not verified');
    return;
  }
  state.checkedIn.set(code.ticket, { at: scan.scanned_at ?? Date.now(), gate: ownGate(), provisional: true });
  showResult('admitted_offline', 'Admitted (offline)', `Genuine ticket${ticketLabel(code)}. Checked on this device; the server confirms it when the connection is back.`);
  addLog('admitted', formatTime(scan.scanned_at ?? Date.now()), `this gate, offline: admitted${ticketLabel(code)}`);
}

function ownGate() {
  return session.ok ? session.claims.sub : '';
}

/**
 * Shows the node's answer to a scan.
 * @param {ScanResult} result
 * @param {TicketCode} code
 */
function showServerResult(result, code) {
  switch (result.status) {
    case 'admitted':
      state.checkedIn.set(code.ticket, { at: result.at, gate: ownGate(), provisional: false });
      showResult('admitted', 'Admitted', `Let them in${labelOf(result.ticket_type, result.seat)}. Checked in at ${formatTime(result.at)}.`);
      break;
    case 'already_checked_in':
      state.checkedIn.set(code.ticket, { at: result.at, gate: result.gate, provisional: false });
      showResult('already_checked_in', 'Already checked in', `Do not admit: this ticket went in at ${formatTime(result.at)} through ${result.gate === ownGate() ? `this gate (${result.gate})` : result.gate}.`);
      break;
    case 'rejected':
      if (result.code === 'wrong_event') showResult('wrong_event', 'Wrong event', `Do not admit: ${result.message}.`);
      else showResult('invalid', 'Invalid ticket', `Do not admit: ${result.message} (${result.code}).`);
      break;
    default:
      showResult('invalid', 'Not checked', 'The server gave an answer this page does not know.');
  }
}

/** @param {TicketCode} code */
function ticketLabel(code) {
  // Version 1 is the ticket as issued; a higher one was transferred.
  return code.version > 1 ? ` (ticket …${code.ticket.slice(-6)}, transferred: version ${code.version})` : ` (ticket …${code.ticket.slice(-6)})`;
}

/**
 * ` · Standard seat · Stalls B-6`, from what the event's public catalog says.
 * @param {string | undefined} ticketType
 * @param {number | undefined} seat
 */
function labelOf(ticketType, seat) {
  const parts = [];
  const type = ticketType ? state.ticketTypes.get(ticketType) : undefined;
  if (type) parts.push(type);
  if (seat !== undefined) {
    const s = state.seats[seat];
    parts.push(s ? `${s.section} ${s.row}-${s.number}` : `seat #${seat}`);
  }
  return parts.length ? `: ${parts.join(', ')}` : '';
}

/**
 * @param {ScanResult} result
 */
function describeResult(result) {
  switch (result.status) {
    case 'admitted':
      return `admitted${labelOf(result.ticket_type, result.seat)}`;
    case 'already_checked_in':
      return `already checked in (at ${formatTime(result.at)} through ${result.gate})`;
    case 'rejected':
      return `refused: ${result.code}`;
    default:
      return 'unknown answer';
  }
}

/**
 * @param {ResultKind} kind
 * @param {string} title
 * @param {string} detail
 */
function showResult(kind, title, detail) {
  const panel = byId('result');
  panel.dataset.result = kind;
  setText('result-icon', ICONS[kind]);
  setText('result-title', title);
  setText('result-detail', detail);
}

/**
 * @param {string} kind
 * @param {string} time
 * @param {string} text
 */
function logLine(kind, time, text) {
  const li = document.createElement('li');
  if (!kind) {
    li.className = 'muted';
    li.textContent = text;
    return li;
  }
  const icon = document.createElement('span');
  icon.className = 'log-icon';
  icon.dataset.result = kind;
  icon.setAttribute('aria-hidden', 'true');
  icon.textContent = kind === 'admitted' ? '✓' : kind === 'already_checked_in' ? '⚠' : '✕';
  const when = document.createElement('span');
  when.className = 'log-time';
  when.textContent = time;
  const what = document.createElement('span');
  what.textContent = text;
  li.append(icon, when, what);
  return li;
}

/**
 * @param {string} kind
 * @param {string} time
 * @param {string} text
 */
function addLog(kind, time, text) {
  const list = byId('scan-log');
  list.querySelector('.muted')?.remove();
  list.prepend(logLine(kind, time, text));
  while (list.children.length > LOG_LINES) list.lastElementChild?.remove();
}

// ---------------------------------------------------------------------------------------------
// Uploading the offline queue

/** Uploads the queued scans as one batch and shows the node's answers. */
async function upload() {
  if (!queue || state.uploading || !online()) return;
  const scans = queue.batch();
  if (scans.length === 0) return;
  const decisions = queue.decisions();
  if (state.uploadTimer) clearTimeout(state.uploadTimer);
  state.uploading = true;
  setText('queue-count', `Uploading ${scans.length} offline scan${scans.length === 1 ? '' : 's'}…`);
  try {
    const answer = /** @type {{ results: ScanResult[] }} */ (await apiRequest(session, 'POST', '/v1/checkin/batch', { scans }));
    queue.remove(answer.results.map((r) => r.scan_id));
    showUpload(scans, answer.results, decisions);
  } catch (error) {
    setText('upload-summary', `The upload failed (${describeError(error)}); the scans stay queued and are sent again.`);
    byId('upload-panel').hidden = false;
    scheduleUpload(UPLOAD_RETRY_MS);
  } finally {
    state.uploading = false;
    showQueue();
  }
  if (queue.size && online()) void upload();
}

/**
 * Uploads the queue after `delayMs` (replacing a retry already planned).
 * @param {number} delayMs
 */
function scheduleUpload(delayMs) {
  if (state.uploadTimer) clearTimeout(state.uploadTimer);
  state.uploadTimer = setTimeout(() => {
    state.uploadTimer = null;
    void upload();
  }, delayMs);
}

/**
 * Shows the node's answers to an upload. A scan the page had let in on its own word and that
 * the node refuses (the ticket went in elsewhere first, or is no longer valid) is called out:
 * somebody got in who should not have, and the gate should know at once.
 * @param {Scan[]} scans what was sent
 * @param {ScanResult[]} results the node's answers, one per scan
 * @param {Map<string, import('./queue.js').OfflineDecision>} decisions what the page decided offline
 */
function showUpload(scans, results, decisions) {
  const byScan = new Map(scans.map((s) => [s.scan_id, s]));
  let admitted = 0;
  let already = 0;
  let refused = 0;
  /** @type {string[]} */
  const overturned = [];
  /** @type {ScanResult | null} */
  let shown = null;
  const lines = results.map((result) => {
    const scan = byScan.get(result.scan_id);
    const when = formatTime(scan?.scanned_at ?? Date.now());
    if (result.status === 'admitted') admitted++;
    else if (result.status === 'already_checked_in') already++;
    else refused++;
    if (result.ticket && result.status === 'admitted') {
      state.checkedIn.set(result.ticket, { at: result.at, gate: ownGate(), provisional: false });
    }
    const lost = decisions.get(result.scan_id) === 'admitted' && result.status !== 'admitted';
    if (lost) overturned.push(`ticket …${(result.ticket ?? '').slice(-6)} (scanned ${when}): ${describeResult(result)}`);
    if (result.scan_id === state.shownScan) shown = result;
    return logLine(result.status, when, `scanned offline: ${describeResult(result)}${lost ? ' (let in offline)' : ''}`);
  });
  const parts = [`${admitted} admitted`];
  if (already) parts.push(`${already} already checked in`);
  if (refused) parts.push(`${refused} refused`);
  setText('upload-summary', `Uploaded ${results.length} offline scan${results.length === 1 ? '' : 's'} at ${formatTime(Date.now())}: ${parts.join(', ')}.`);
  const conflicts = byId('upload-conflicts');
  conflicts.hidden = overturned.length === 0;
  conflicts.textContent = overturned.length
    ? `⚠ ${overturned.length} ticket${overturned.length === 1 ? ' was' : 's were'} let in offline but the server refuses ${overturned.length === 1 ? 'it' : 'them'}: ${overturned.join('; ')}.`
    : '';
  byId('upload-log').replaceChildren(...lines);
  byId('upload-panel').hidden = false;
  if (overturned.length) {
    showResult(
      'already_checked_in',
      `Offline admission${overturned.length === 1 ? '' : 's'} overturned`,
      `The server refuses ${overturned.length} ticket${overturned.length === 1 ? '' : 's'} this gate let in while offline; see the upload below.`,
    );
    state.shownScan = null;
  } else if (shown) {
    const result = /** @type {ScanResult} */ (shown);
    if (result.status === 'admitted') {
      showResult('admitted', 'Admitted', `Confirmed by the server${labelOf(result.ticket_type, result.seat)}. Checked in at ${formatTime(result.at)}.`);
    } else {
      showResult(result.status === 'rejected' ? 'invalid' : 'already_checked_in', 'Refused by the server', `Do not admit: ${describeResult(result)}.`);
    }
    state.shownScan = null;
  }
}

// ---------------------------------------------------------------------------------------------
// The camera

async function setUpCamera() {
  const Detector = /** @type {any} */ (globalThis).BarcodeDetector;
  /** @type {string[]} */
  let formats = [];
  try {
    formats = Detector ? await Detector.getSupportedFormats() : [];
  } catch {
    formats = [];
  }
  if (!Detector || !formats.includes('qr_code') || !navigator.mediaDevices?.getUserMedia) {
    setText('camera-state', 'Camera scanning is not available in this browser (it needs the BarcodeDetector API with QR codes). Type or paste the code, or use a handheld scanner that types it.');
    return;
  }
  const detector = new Detector({ formats: ['qr_code'] });
  const toggle = /** @type {HTMLButtonElement} */ (byId('camera-toggle'));
  const video = /** @type {HTMLVideoElement} */ (byId('camera-video'));
  byId('camera-controls').hidden = false;
  setText('camera-state', 'Camera scanning is available.');
  /** @type {MediaStream | null} */
  let stream = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  /** @type {{ code: string, at: number } | null} */
  let last = null;
  const stop = () => {
    if (timer) clearTimeout(timer);
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = true;
    toggle.textContent = 'Start the camera';
    setText('camera-state', 'Camera stopped.');
  };
  const tick = async () => {
    if (!stream) return;
    try {
      const codes = /** @type {{ rawValue: string }[]} */ (await detector.detect(video));
      // A Marquee code first; any other QR code is shown as invalid rather than ignored.
      const found = codes.find((c) => c.rawValue.startsWith('MQ1.')) ?? codes[0];
      const now = Date.now();
      if (found) {
        const repeat = last !== null && last.code === found.rawValue && now - last.at < CAMERA_REPEAT_MS;
        last = { code: found.rawValue, at: now };
        if (!repeat) void handleCode(found.rawValue);
      }
    } catch {
      // A frame that cannot be read yet (the video is still starting).
    }
    timer = setTimeout(() => void tick(), 200);
  };
  toggle.addEventListener('click', async () => {
    if (stream) {
      stop();
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      toggle.textContent = 'Stop the camera';
      setText('camera-state', 'Point the camera at the ticket’s QR code.');
      void tick();
    } catch (error) {
      stop();
      setText('camera-state', `The camera cannot be used: ${describeError(error)}. Type or paste the code instead.`);
    }
  });
}
