// The gate scanner (/gate) in real Chromium against a real node: real paid tickets are admitted
// once and refused after, online and offline (the gate's link to the node cut through a TCP
// relay, the offline scans uploaded as one batch when it is back), forged codes and tickets of
// another event are refused on the page's own Ed25519 check, a scan whose answer was lost is
// settled by the node's first answer, and the camera path reads codes through BarcodeDetector.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  adminApi,
  buyerToken,
  gateToken,
  launchStaffBrowser,
  assertPageClean,
  checkPageState,
  newBuyer,
  seedEvent,
  signedInUrl,
  staffPage,
  startProxy,
  startTestNode,
  waitFor,
  waitForText,
} from './harness.js';
import { buyerClient, nextEvent } from './support.js';

/** @type {Awaited<ReturnType<typeof startTestNode>>} */
let node;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {string} */
let tenant;
/** @type {string} */
let venueId;
/** @type {import('../sdk/marquee.js').MarqueeClient[]} */
const clients = [];

before(async () => {
  [node, browser] = await Promise.all([
    startTestNode(null, { env: { MARQUEE_SIMULATED_PAYMENT_OUTCOMES: 'succeeded=1' } }),
    launchStaffBrowser(),
  ]);
  tenant = randomUUID();
  const api = adminApi(node, tenant);
  await api.put('/v1/admin/tenant', { name: 'Gate tests' });
  venueId = (await api.post('/v1/admin/venues', { name: 'Pavilhão', city: 'Lisbon' })).venue_id;
});

after(async () => {
  for (const client of clients) client.close();
  await browser?.close();
  await node?.close();
});

/**
 * Buys `seats` of an event as a fresh buyer and answers the paid order's tickets.
 * @param {string} eventId
 * @param {number[]} seats
 */
async function buyTickets(eventId, seats) {
  const client = buyerClient(node.wsUrl, { sub: newBuyer(), tenant });
  clients.push(client);
  await client.connect();
  const paid = nextEvent(client, 'order', (o) => o.status === 'paid', 8000);
  const held = await client.holdSeats(eventId, seats);
  assert.ok(held.outcome.status === 'held', JSON.stringify(held.outcome));
  await client.checkout(eventId, held.outcome.hold);
  const order = await paid;
  const tickets = order.tickets ?? [];
  assert.equal(tickets.length, seats.length);
  return tickets.sort((a, b) => (a.seat ?? 0) - (b.seat ?? 0));
}

/** A second gate, as an SDK client in Node. */
async function otherGate(sub = 'gate-south') {
  const client = buyerClient(node.wsUrl, { sub, tenant, roles: ['gate'] });
  clients.push(client);
  await client.connect();
  return client;
}

/**
 * Types a code and sends it as a handheld scanner does (it types the code, then Enter), or by
 * pressing the check button.
 * @param {import('playwright-core').Page} page
 * @param {string} code
 * @param {'enter' | 'click'} [how]
 */
async function scan(page, code, how = 'enter') {
  const field = page.getByLabel('Ticket code (MQ1.…)');
  await field.fill(code);
  if (how === 'enter') await field.press('Enter');
  else await page.getByRole('button', { name: 'Check ticket' }).click();
}

/**
 * The result panel once it has settled on an answer.
 * @param {import('playwright-core').Page} page
 * @param {string} kind the panel's `data-result`
 */
async function resultOf(page, kind) {
  await page.locator(`#result[data-result="${kind}"]`).waitFor({ timeout: 8000 });
  return {
    title: (await page.locator('#result-title').textContent()) ?? '',
    detail: (await page.locator('#result-detail').textContent()) ?? '',
    icon: (await page.locator('#result-icon').textContent()) ?? '',
  };
}

/** A code with one signature byte changed: well formed, not genuine. */
function forged(/** @type {string} */ qr) {
  const [prefix, payload, signature] = qr.split('.');
  const bytes = Buffer.from(signature, 'base64url');
  bytes[10] ^= 0x01;
  return `${prefix}.${payload}.${bytes.toString('base64url')}`;
}

/**
 * Opens the gate page for an event, as a gate device following its sign-in link.
 * @param {string} eventId
 * @param {{ gate?: string, via?: { httpUrl: string },
 *   prepare?: (page: import('playwright-core').Page, context: import('playwright-core').BrowserContext) => Promise<unknown> }} [options]
 *   `via`: load the page (and so its socket and API calls) through this address, e.g. a relay;
 *   `prepare`: runs before the page loads
 */
async function openGate(eventId, { gate = 'gate-north', via = node, prepare } = {}) {
  const opened = await staffPage(browser, { width: 1100, height: 1000 });
  await prepare?.(opened.page, opened.context);
  await opened.page.goto(signedInUrl(via, `/gate?event=${eventId}`, gateToken(tenant, gate)));
  await waitForText(opened.page, '#key-state', /Ticket key loaded/);
  await waitForText(opened.page, '#net-text', /^Online/);
  await waitForText(opened.page, '#log-state', /^\(live\)$/);
  return opened;
}

/**
 * How many `POST /v1/checkin/batch` the page sends from now on.
 * @param {import('playwright-core').Page} page
 */
function countBatches(page) {
  let batches = 0;
  page.on('request', (request) => {
    if (request.url().endsWith('/v1/checkin/batch')) batches++;
  });
  return () => batches;
}

// Two at a time: each test has its own event and browser context, and most of a test's time
// is spent waiting for the node (admissions, payments, reconnects, a scan's timeout), so the
// file stays well inside the runner's per-file timeout on a shared 2-core machine.
describe('the gate scanner', { concurrency: 2 }, () => {
  test('online: a ticket is admitted once, then refused with when and through which gate', async () => {
    const [event, elsewhere] = await Promise.all([
      seedEvent(node, { tenant, venueId, name: 'Gate night' }),
      seedEvent(node, { tenant, venueId, name: 'Another night' }),
    ]);
    const [[first, second], [foreign]] = await Promise.all([buyTickets(event.eventId, [12, 13]), buyTickets(elsewhere.eventId, [0])]);
    const opened = await openGate(event.eventId);
    const { page, context } = opened;
    // Debian's headless Chromium has no BarcodeDetector: the page says so and offers typing.
    await waitForText(page, '#camera-state', /Camera scanning is not available in this browser/);
    assert.equal(await page.getByRole('button', { name: 'Start the camera' }).count(), 0);
    await checkPageState(page, 'gate-ready');

    await scan(page, first.qr, 'click');
    const admitted = await resultOf(page, 'admitted');
    assert.equal(admitted.title, 'Admitted');
    assert.equal(admitted.icon, '✓');
    assert.match(admitted.detail, /Standard seat, Stalls B-3/);
    await waitForText(page, '#scan-log', /gate-north: admitted: Standard seat, Stalls B-3/);
    await checkPageState(page, 'gate-admitted');

    await scan(page, first.qr);
    const again = await resultOf(page, 'already_checked_in');
    assert.equal(again.title, 'Already checked in');
    assert.equal(again.icon, '⚠');
    assert.match(again.detail, /^Do not admit: this ticket went in at \d\d:\d\d:\d\d.* through this gate \(gate-north\)\.$/);
    await checkPageState(page, 'gate-already-checked-in');

    // Another gate lets the second ticket in: the page sees it live, and refuses it after.
    const south = await otherGate();
    const southScan = await south.checkinScan({ qr: second.qr, scan_id: `south-${randomUUID()}`, event: event.eventId });
    assert.equal(southScan.status, 'admitted');
    await waitForText(page, '#scan-log', /gate-south: admitted: Standard seat, Stalls B-4/);
    await scan(page, second.qr);
    const elsewhereIn = await resultOf(page, 'already_checked_in');
    assert.match(elsewhereIn.detail, /through gate-south\.$/);
    await checkPageState(page, 'gate-checked-in-elsewhere');

    await scan(page, forged(first.qr));
    const fake = await resultOf(page, 'invalid');
    assert.equal(fake.title, 'Invalid ticket');
    assert.equal(fake.icon, '✕');
    assert.match(fake.detail, /signature does not verify/);
    await checkPageState(page, 'gate-invalid');

    await scan(page, foreign.qr);
    const wrong = await resultOf(page, 'wrong_event');
    assert.equal(wrong.title, 'Wrong event');
    assert.match(wrong.detail, /“Another night”/);
    await checkPageState(page, 'gate-wrong-event');

    await scan(page, 'not a ticket at all');
    assert.match((await resultOf(page, 'invalid')).detail, /not a Marquee ticket code/);

    // Neither the forged code nor the other event's ticket reached the node as this event's
    // check-in: the second gate still admits the foreign ticket at its own event.
    assert.equal((await south.checkinScan({ qr: foreign.qr, scan_id: `south-${randomUUID()}`, event: elsewhere.eventId })).status, 'admitted');
    assertPageClean(opened);
    await context.close();
  });

  test('offline: with the link to the node cut, scans are checked in the page, queued, and uploaded as one batch when it is back', async (t) => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Offline night' });
    const [early, fresh, contested] = await buyTickets(event.eventId, [20, 21, 22]);
    // The gate reaches the node through a relay, so the test can cut its network.
    const link = await startProxy(node.port);
    t.after(() => link.close());
    const opened = await openGate(event.eventId, { via: link });
    const { page, context } = opened;
    const batches = countBatches(page);

    // Checked in online first, so the page knows it went in.
    await scan(page, early.qr);
    await resultOf(page, 'admitted');

    // The network goes: every connection is cut without a close frame, new ones are refused.
    link.block(true);
    link.dropAll();
    await waitForText(page, '#net-text', /^Offline: scans are checked here and queued/);
    await waitForText(page, '#connection-text', /Reconnecting/);
    await waitForText(page, '#log-state', /^\(paused while offline/);

    // A genuine, unseen ticket: admitted on the page's word, queued.
    await scan(page, fresh.qr);
    const offline = await resultOf(page, 'admitted_offline');
    assert.equal(offline.title, 'Admitted (offline)');
    assert.match(offline.detail, /the server confirms it when the connection is back/);
    await waitForText(page, '#queue-count', /^1 offline scan waiting to upload\.$/);

    // The same ticket again: this gate let it in a moment ago.
    await scan(page, fresh.qr);
    const twice = await resultOf(page, 'already_checked_in');
    assert.match(twice.detail, /through this gate \(offline\)/);
    await waitForText(page, '#queue-count', /^2 offline scans waiting/);

    // The ticket checked in online before the link went.
    await scan(page, early.qr);
    assert.match((await resultOf(page, 'already_checked_in')).detail, /through this gate\. Queued/);
    await waitForText(page, '#queue-count', /^3 offline scans waiting/);

    // A forged code is refused offline too, and not queued.
    await scan(page, forged(fresh.qr));
    assert.match((await resultOf(page, 'invalid')).detail, /signature does not verify/);
    await waitForText(page, '#queue-count', /^3 offline scans waiting/);

    // Meanwhile another gate, online, lets in a ticket this gate cannot hear about.
    const south = await otherGate();
    assert.equal((await south.checkinScan({ qr: contested.qr, scan_id: `south-${randomUUID()}`, event: event.eventId })).status, 'admitted');
    await scan(page, contested.qr);
    await resultOf(page, 'admitted_offline');
    await waitForText(page, '#queue-count', /^4 offline scans waiting/);
    const queued = await page.evaluate(() =>
      Object.entries(localStorage)
        .filter(([k]) => k.startsWith('marquee.gate.queue.'))
        .map(([, v]) => JSON.parse(v).length),
    );
    assert.deepEqual(queued, [4], 'the queue is on disk before the gate is back');
    await checkPageState(page, 'gate-offline-queued');
    assert.equal(batches(), 0);

    // The link comes back: the SDK reconnects by itself, one batch goes up, the answers show.
    link.block(false);
    await waitForText(page, '#upload-summary', /^Uploaded 4 offline scans at .*: 1 admitted, 3 already checked in\.$/, 15_000);
    await waitForText(page, '#queue-count', /^No scans waiting to upload\.$/);
    await waitForText(page, '#net-text', /^Online/);
    await waitForText(page, '#log-state', /^\(live\)$/);
    // The other gate's scan made while this one was cut off is replayed on the resumed feed.
    await waitForText(page, '#scan-log', /gate-south: admitted: Standard seat, Balcony 1-3/);
    assert.equal(batches(), 1);
    const lines = await page.locator('#upload-log li').allTextContents();
    assert.equal(lines.length, 4);
    assert.match(lines[0], /scanned offline: admitted: Standard seat, Balcony 1-2$/);
    assert.match(lines[1], /scanned offline: already checked in \(at .* through gate-north\)$/);
    assert.match(lines[2], /scanned offline: already checked in \(at .* through gate-north\)$/);
    assert.match(lines[3], /scanned offline: already checked in \(at .* through gate-south\) \(let in offline\)$/);
    // The one the page let in although another gate had: called out, in the panel too.
    await waitForText(page, '#upload-conflicts', /^⚠ 1 ticket was let in offline but the server refuses it: ticket …\w{6} \(scanned .*\): already checked in \(at .* through gate-south\)\.$/);
    const overturned = await resultOf(page, 'already_checked_in');
    assert.equal(overturned.title, 'Offline admission overturned');
    await checkPageState(page, 'gate-batch-uploaded');

    // The node recorded the offline admission as this gate's, at most once.
    const east = await otherGate('gate-east');
    const after = await east.checkinScan({ qr: fresh.qr, scan_id: `east-${randomUUID()}`, event: event.eventId });
    assert.ok(after.status === 'already_checked_in' && after.gate === 'gate-north', JSON.stringify(after));
    assertPageClean(opened);
    await context.close();
  });

  test('a scan whose answer is lost is settled by the gate feed, or queued with its scan id for the node’s first answer', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Lost answer night' });
    const [first, second] = await buyTickets(event.eventId, [5, 6]);
    // The page's socket runs through a relay in the browser that can lose what the node sends:
    // `answers` drops only the scans' direct answers, `everything` every message.
    /** @type {'nothing' | 'answers' | 'everything'} */
    let drop = 'nothing';
    let dropped = 0;
    const opened = await openGate(event.eventId, {
      gate: 'gate-lost',
      prepare: (page) =>
        page.routeWebSocket(/\/ws/, (ws) => {
          const server = ws.connectToServer();
          ws.onMessage((message) => server.send(message));
          server.onMessage((message) => {
            const answer = String(message).includes('"checkin.result"');
            if (drop === 'everything' || (drop === 'answers' && answer)) {
              if (answer) dropped++;
              return;
            }
            ws.send(message);
          });
        }),
    });
    const { page, context } = opened;
    const batches = countBatches(page);

    // The direct answer is lost, but the gate feed carries the scan, with its scan id and the
    // node's answer: that settles it at once, online.
    drop = 'answers';
    await scan(page, first.qr);
    assert.match((await resultOf(page, 'admitted')).detail, /^Let them in: Premium seat, Stalls A-6\./);
    await waitFor(() => dropped === 1, { what: 'the answer to be dropped' });
    await waitForText(page, '#queue-count', /^No scans waiting to upload\.$/);

    // Nothing comes back at all: no answer in time, so the page decides on its own check, as
    // offline, and uploads the scan over HTTP at once (the socket may be dead while it looks
    // open). The node had recorded the scan: with the same scan id it answers "admitted"
    // again, not "already checked in", and the panel turns into the node's answer.
    drop = 'everything';
    await scan(page, second.qr);
    await waitForText(page, '#upload-summary', /^Uploaded 1 offline scan at .*: 1 admitted\.$/, 10_000);
    const confirmed = await resultOf(page, 'admitted');
    assert.match(confirmed.detail, /^Confirmed by the server: Premium seat, Stalls A-7\. Checked in at /);
    // The log keeps the page's own verdict from before the upload.
    await waitForText(page, '#scan-log', /this gate, offline: admitted \(ticket …\w{6}\)/);
    assert.equal(dropped, 2, 'the node answered the scan; the answer was lost on the way');
    assert.equal(batches(), 1);
    assert.equal(await page.locator('#upload-conflicts').isHidden(), true);
    drop = 'nothing';
    await checkPageState(page, 'gate-lost-answer-confirmed');

    const east = await otherGate('gate-east');
    for (const ticket of [first, second]) {
      const after = await east.checkinScan({ qr: ticket.qr, scan_id: `east-${randomUUID()}`, event: event.eventId });
      assert.ok(after.status === 'already_checked_in' && after.gate === 'gate-lost', JSON.stringify(after));
    }
    assertPageClean(opened);
    await context.close();
  });

  test('the camera: a code in view is scanned once, and again only when shown again', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Camera night' });
    const [ticket] = await buyTickets(event.eventId, [7]);
    // Debian's Chromium has neither a camera nor BarcodeDetector (Chromium ships it on macOS,
    // ChromeOS and Android): stand-ins for both, installed before the page's scripts, show
    // the page whatever code the test holds up.
    const opened = await openGate(event.eventId, {
      prepare: async (_page, context) =>
        context.addInitScript(() => {
          const w = /** @type {any} */ (window);
          w.__camera = { code: null, frames: 0 };
          w.BarcodeDetector = class {
            static async getSupportedFormats() {
              return ['qr_code', 'ean_13'];
            }
            async detect() {
              w.__camera.frames++;
              return w.__camera.code ? [{ rawValue: w.__camera.code, format: 'qr_code' }] : [];
            }
          };
          navigator.mediaDevices.getUserMedia = async () => {
            const canvas = document.createElement('canvas');
            canvas.width = 320;
            canvas.height = 240;
            const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
            let hue = 0;
            setInterval(() => {
              g.fillStyle = `hsl(${(hue += 7) % 360} 30% 30%)`;
              g.fillRect(0, 0, 320, 240);
            }, 50);
            return canvas.captureStream(20);
          };
        }),
    });
    const { page, context } = opened;
    /** @param {string | null} code */
    const show = (code) => page.evaluate((c) => ((/** @type {any} */ (window)).__camera.code = c), code);
    const frames = () => page.evaluate(() => /** @type {number} */ ((/** @type {any} */ (window)).__camera.frames));

    await waitForText(page, '#camera-state', /^Camera scanning is available\.$/);
    await page.getByRole('button', { name: 'Start the camera' }).click();
    await waitForText(page, '#camera-state', /Point the camera at the ticket’s QR code/);
    assert.equal(await page.locator('#camera-video').isVisible(), true);

    await show(ticket.qr);
    assert.match((await resultOf(page, 'admitted')).detail, /Stalls A-8/);
    // Held still in front of the camera, the code is read again and again but scanned once.
    const seen = await frames();
    await waitFor(async () => (await frames()) >= seen + 5, { what: 'five more camera frames' });
    assert.equal(await page.locator('#result').getAttribute('data-result'), 'admitted');
    await checkPageState(page, 'gate-camera-admitted');

    // Another code in view, then the ticket again: a second scan, refused.
    await show(forged(ticket.qr));
    assert.match((await resultOf(page, 'invalid')).detail, /signature does not verify/);
    await show(ticket.qr);
    assert.match((await resultOf(page, 'already_checked_in')).detail, /through this gate \(gate-north\)/);
    // Any other QR code is an invalid ticket, not ignored.
    await show('https://example.com/not-a-ticket');
    assert.match((await resultOf(page, 'invalid')).detail, /not a Marquee ticket code/);
    const admissions = (await page.locator('#scan-log li').allTextContents()).filter((l) => /gate-north: admitted/.test(l));
    assert.equal(admissions.length, 1);

    await page.getByRole('button', { name: 'Stop the camera' }).click();
    await waitForText(page, '#camera-state', /^Camera stopped\.$/);
    assert.equal(await page.locator('#camera-video').isHidden(), true);
    assertPageClean(opened);
    await context.close();
  });

  test('a queue left by a closed tab is uploaded when the gate opens again', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Reload night' });
    const [ticket] = await buyTickets(event.eventId, [30]);
    const opened = await openGate(event.eventId, { gate: 'gate-west' });
    const { page, context } = opened;
    // The operator can switch the gate offline by hand (a flaky venue network).
    await page.getByLabel('Work offline').check();
    await waitForText(page, '#net-text', /^Offline \(switched off\)/);
    await waitForText(page, '#connection-text', /^Offline by choice$/);
    await scan(page, ticket.qr);
    await resultOf(page, 'admitted_offline');
    await waitForText(page, '#queue-count', /^1 offline scan waiting/);
    await checkPageState(page, 'gate-switched-offline');
    await page.reload();
    await waitForText(page, '#upload-summary', /^Uploaded 1 offline scan at .*: 1 admitted\.$/, 10_000);
    await waitForText(page, '#queue-count', /^No scans waiting/);
    const east = await otherGate('gate-east');
    const after = await east.checkinScan({ qr: ticket.qr, scan_id: `east-${randomUUID()}`, event: event.eventId });
    assert.ok(after.status === 'already_checked_in' && after.gate === 'gate-west', JSON.stringify(after));
    assertPageClean(opened);
    await context.close();
  });

  test('without the gate role the page says so', async () => {
    const opened = await staffPage(browser);
    const { page, context } = opened;
    await page.goto(signedInUrl(node, '/gate', buyerToken(newBuyer(), tenant)));
    await waitForText(page, '#signin-error', /^This token lacks the gate role\. Sign in with a gate account\.$/);
    assert.equal(await page.getByLabel('Ticket code (MQ1.…)').isHidden(), true, 'no scanning without a session');
    await waitForText(page, '#connection-text', /^Not connected$/);
    assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
    await checkPageState(page, 'gate-signed-out');
    assertPageClean(opened);
    await context.close();
  });
});
