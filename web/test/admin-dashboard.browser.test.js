// The operators' dashboard (/admin) in real Chromium against a real node: an operator watches
// an onsale, pauses and resumes it, lowers its admission rate while a buyer (an SDK client in
// Node) waits, sees another operator's changes live (also after a network cut), closes it,
// reads the event's sales, the onsale's funnel and the sales over time, and downloads the two
// reports as CSV. Checking a real pre-queue draw in the page is in shuffle.test.js,
// beside the shuffle's other checks.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import {
  adminApi,
  adminToken,
  assertPageClean,
  buyerToken,
  checkPageState,
  launchStaffBrowser,
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
import { formatDuration } from '../app/admin/view.js';

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
  await api.put('/v1/admin/tenant', { name: 'Dashboard tests' });
  venueId = (await api.post('/v1/admin/venues', { name: 'Coliseu', city: 'Porto' })).venue_id;
});

after(async () => {
  for (const client of clients) client.close();
  await browser?.close();
  await node?.close();
});

/** A connected SDK buyer of the test tenant. */
async function buyer(sub = newBuyer()) {
  const client = buyerClient(node.wsUrl, { sub, tenant });
  clients.push(client);
  await client.connect();
  return client;
}

/**
 * Opens the dashboard on one onsale, as an operator following a link.
 * @param {string} eventId
 * @param {string} onsaleId
 * @param {{ httpUrl: string }} [via] load the page (its socket and API calls too) through this
 *   address, e.g. a relay
 */
async function openDashboard(eventId, onsaleId, via = node) {
  const opened = await staffPage(browser, { width: 1280, height: 1100 });
  await opened.page.goto(signedInUrl(via, `/admin?event=${eventId}&onsale=${onsaleId}`, adminToken(tenant)));
  await opened.page.locator('#onsale-panels').waitFor({ state: 'visible' });
  return opened;
}

// Two at a time: each test has its own event and browser context, and most of a test's time
// is spent waiting for the node (admissions, payments, reconnects, a scan's timeout), so the
// file stays well inside the runner's per-file timeout on a shared 2-core machine.
describe('the operators’ dashboard', { concurrency: 2 }, () => {
  test('pause and resume show live, and a lower admission rate moves a waiting buyer’s ETA', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Rate night', requiresAdmission: true, admissionRate: 4 });
    const api = adminApi(node, tenant);
    // Paused, buyers line up without being admitted; resuming starts the flow all at once.
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'paused' });
    const opened = await openDashboard(event.eventId, event.onsaleId);
    const { page, context } = opened;
    await waitForText(page, '#status-text', /^paused$/);
    assert.equal(await page.locator('#rate').textContent(), '4');

    const ahead = await Promise.all(Array.from({ length: 40 }, () => buyer()));
    for (const b of ahead) await b.joinQueue(event.onsaleId);
    const watcher = await buyer();
    const joined = await watcher.joinQueue(event.onsaleId);
    assert.equal(joined.state, 'waiting');
    assert.equal(joined.position, 41);
    await waitForText(page, '#waiting', /^41$/);

    // Resume from the page: the badge follows, the buyers hear it.
    const resumed = nextEvent(watcher, 'queue', (s) => s.reason === 'resumed', 5000);
    await page.getByRole('button', { name: 'Resume admissions' }).click();
    await waitForText(page, '#status-text', /^live$/);
    await resumed;
    await waitForText(page, '#changes', /operator-1: status paused → live/);

    const firstEta = await nextEvent(watcher, 'queue', (s) => s.state === 'waiting' && Array.isArray(s.eta_seconds), 8000);
    const before = /** @type {[number, number]} */ (firstEta.eta_seconds);
    await waitForText(page, '#admitted', /^[1-9]\d*$/);

    // Lower the rate from the page: the dashboard shows the new setting at once...
    await page.getByLabel('Admissions per second').fill('0.5');
    await page.getByRole('button', { name: 'Apply' }).click();
    await waitForText(page, '#rate', /^0\.5$/);
    await waitForText(page, '#control-ok', /0\.5 admissions a second/);
    await waitForText(page, '#changes', /operator-1: rate 4 → 0\.5\/s/);
    // ...and the waiting buyer's estimate, pushed by the node, grows although its place moves up.
    const later = await nextEvent(
      watcher,
      'queue',
      (s) => s.state === 'waiting' && Array.isArray(s.eta_seconds) && s.eta_seconds[1] > before[1] + 2,
      15_000,
    );
    assert.ok(later.position !== undefined && joined.position !== undefined && later.position < joined.position);
    // The measured outflow follows the setting down.
    await waitForText(page, '#outflow', /^(0(\.\d+)?|1(\.\d+)?)$/, 15_000);
    await checkPageState(page, 'admin-rate-lowered');

    // Another operator pauses from elsewhere: the dashboard hears it on admin:, with who did it.
    const other = buyerToken('operator-2', tenant, { roles: ['admin'] });
    const pausedPush = nextEvent(watcher, 'queue', (s) => s.paused === true, 5000);
    const response = await fetch(`${node.httpUrl}/v1/admin/onsales/${event.onsaleId}/status`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json' },
      body: JSON.stringify({ status: 'paused' }),
    });
    assert.equal(response.status, 200);
    await waitForText(page, '#status-text', /^paused$/);
    await waitForText(page, '#changes', /operator-2: status live → paused/);
    assert.equal(await page.getByRole('button', { name: 'Pause admissions' }).isDisabled(), true);
    assert.equal(await page.getByRole('button', { name: 'Resume admissions' }).isDisabled(), false);
    assert.equal((await pausedPush).reason, 'paused');
    await checkPageState(page, 'admin-paused-by-another-operator');
    assertPageClean(opened);
    for (const b of [...ahead, watcher]) b.close();
    await context.close();
  });

  test('a refused change shows the server’s code; closing asks first and then disables the controls', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Closing night', requiresAdmission: true });
    const opened = await openDashboard(event.eventId, event.onsaleId);
    const { page, context } = opened;
    await waitForText(page, '#status-text', /^live$/);

    await page.getByLabel('Admissions per second').fill('0');
    await page.getByRole('button', { name: 'Apply' }).click();
    await waitForText(page, '#control-error', /^Refused: bad_request: /);
    // Nothing changed: the page still shows the setting in force.
    assert.equal(await page.locator('#rate').textContent(), '50');
    assert.equal((await adminApi(node, tenant).get(`/v1/admin/onsales/${event.onsaleId}`)).admission_rate, 50);
    await checkPageState(page, 'admin-change-refused');

    await page.getByRole('button', { name: /Close the onsale/ }).click();
    const dialog = page.getByRole('dialog', { name: 'Close this onsale?' });
    await dialog.waitFor({ state: 'visible' });
    const confirm = dialog.getByRole('button', { name: 'Close the onsale' });
    assert.equal(await confirm.isDisabled(), true, 'closing needs the word typed first');
    await checkPageState(page, 'admin-close-confirmation');
    await dialog.getByRole('button', { name: 'Keep it open' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.locator('#status-text').textContent(), 'live');

    await page.getByRole('button', { name: /Close the onsale/ }).click();
    await dialog.getByLabel(/Type close to confirm/).fill('close');
    await confirm.click();
    await waitForText(page, '#status-text', /^closed$/);
    await waitForText(page, '#changes', /operator-1: status live → closed/);
    assert.equal((await adminApi(node, tenant).get(`/v1/admin/onsales/${event.onsaleId}`)).status, 'closed');
    for (const name of [/Pause admissions/, /Resume admissions/, /Close the onsale/, /Apply/]) {
      assert.equal(await page.getByRole('button', { name }).isDisabled(), true, String(name));
    }
    await checkPageState(page, 'admin-closed');
    assertPageClean(opened);
    await context.close();
  });

  test('after its network is cut, the dashboard reconnects and shows what changed meanwhile', async (t) => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Flaky wifi night', requiresAdmission: true, admissionRate: 6 });
    const link = await startProxy(node.port);
    t.after(() => link.close());
    const opened = await openDashboard(event.eventId, event.onsaleId, link);
    const { page, context } = opened;
    await waitForText(page, '#connection-text', /^Live$/);
    await waitForText(page, '#counts-age', /^Counts from the admission controller/);

    link.block(true);
    link.dropAll();
    await waitForText(page, '#connection-text', /^Reconnecting…$/);
    // The figures on screen are the last ones heard, and the page says so.
    await waitForText(page, '#counts-age', /^⚠ Not live: the connection to the node is down\. These counts are from /);
    await checkPageState(page, 'admin-reconnecting');
    // Another operator changes the settings while this dashboard cannot hear it.
    const other = buyerToken('operator-2', tenant, { roles: ['admin'] });
    const response = await fetch(`${node.httpUrl}/v1/admin/onsales/${event.onsaleId}/admission`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${other}`, 'content-type': 'application/json' },
      body: JSON.stringify({ admission_rate: 2.5, active_cap: 40 }),
    });
    assert.equal(response.status, 200);
    assert.equal(await page.locator('#rate').textContent(), '6');

    // Back: the SDK resumes admin: from where it was, so the missed change is replayed, with
    // its author, and the figures follow.
    link.block(false);
    await waitForText(page, '#connection-text', /^Live$/, 15_000);
    await waitForText(page, '#counts-age', /^Counts from the admission controller/);
    await waitForText(page, '#changes', /operator-2: rate 6 → 2\.5\/s, cap 500 → 40/);
    await waitForText(page, '#rate', /^2\.5$/);
    await waitForText(page, '#active-cap', /^40$/);
    assert.equal(await page.getByLabel('Admissions per second').inputValue(), '2.5');
    assertPageClean(opened);
    await context.close();
  });

  test('sales, holds and payments by category come from the sales poll', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Sales night', holdDurationSeconds: 45 });

    const alice = await buyer();
    const paid = nextEvent(alice, 'order', (o) => o.status === 'paid', 8000);
    const held = await alice.holdSeats(event.eventId, [0, 1]);
    assert.ok(held.outcome.status === 'held');
    await alice.checkout(event.eventId, held.outcome.hold);
    await paid;
    const bob = await buyer();
    const bobHeld = await bob.holdSeats(event.eventId, [12, 13, 14]);
    assert.ok(bobHeld.outcome.status === 'held');

    const opened = await openDashboard(event.eventId, event.onsaleId);
    const { page, context } = opened;
    await waitForText(page, '#holds-active', /^1$/);
    await waitForText(page, '#holds-expiring', /^1$/);
    await waitForText(page, '#revenue', /178/);
    const rows = async (/** @type {string} */ table) =>
      page.locator(`#${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent?.trim())));
    await waitFor(async () => (await rows('categories-table')).length === 2, { what: 'the category rows' });
    assert.deepEqual((await rows('categories-table')).map((r) => r.slice(0, 6)), [
      ['Premium', '€89.00', '10', '2', '0', '8'],
      ['Standard', '€45.00', '30', '0', '3', '27'],
    ]);
    assert.deepEqual(await rows('orders-table'), [['paid', '1']]);
    assert.deepEqual(await rows('payments-table'), [['paid', '1']]);
    assert.deepEqual((await rows('ga-table')).map((r) => r.slice(0, 3)), [['Standing', '€35.00', '100']]);
    // Without a waiting room the funnel starts at the hold: Alice and Bob held, Alice paid.
    await waitFor(async () => (await rows('funnel-table')).length === 2, { what: 'the funnel rows' });
    assert.deepEqual(await rows('funnel-table'), [
      ['Held tickets', '2', '–'],
      ['Paid', '1', '50%'],
    ]);
    assert.equal(await page.locator('#queue-p50').textContent(), 'no waiting room');
    // An onsale without a pre-queue has no fairness record to check.
    await waitForText(page, '#fairness-state', /^No pre-queue record/);
    assert.equal(await page.getByRole('button', { name: 'Verify the draw' }).count(), 0);
    await checkPageState(page, 'admin-sales');
    assertPageClean(opened);
    await context.close();

    // A standing-only event in pounds: the sales figures give general-admission prices
    // without a currency, so the page takes it from the ticket types.
    const api = adminApi(node, tenant);
    const standing = await api.post('/v1/admin/events', {
      venue_id: venueId,
      name: 'Standing only',
      category: 'concert',
      starts_at: new Date(Date.now() + 7 * 86_400_000).toISOString(),
    });
    await api.post(`/v1/admin/events/${standing.event_id}/ticket-types`, {
      name: 'Terrace',
      kind: 'general_admission',
      price_minor: 2000,
      currency: 'GBP',
      max_per_order: 4,
      ga_quota: 20,
    });
    const onsale = await api.post(`/v1/admin/events/${standing.event_id}/onsales`, {
      name: 'Terrace sale',
      starts_at: new Date(Date.now() + 86_400_000).toISOString(),
      hold_duration_seconds: 300,
      per_user_limit: 4,
      requires_admission: false,
      admission_rate: 10,
      active_cap: 100,
    });
    const gbp = await openDashboard(standing.event_id, onsale.onsale_id);
    await waitFor(
      async () => {
        const cells = await gbp.page.locator('#ga-table tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent?.trim())));
        return cells.length === 1 && cells[0][1] === '£20.00' ? cells : null;
      },
      { what: 'the Terrace row priced in pounds' },
    );
    await waitForText(gbp.page, '#categories-table tbody', /No price categories\./);
    assertPageClean(gbp);
    await gbp.context.close();
  });

  test('the funnel and the sales over time show what the server counts, and download as CSV with the token', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Funnel night', requiresAdmission: true });
    const api = adminApi(node, tenant);
    /**
     * A buyer who joins the waiting room and is admitted; answers the admission token.
     * @param {import('../sdk/marquee.js').MarqueeClient} client
     */
    const admitted = async (client) => {
      const status = nextEvent(client, 'queue', (s) => s.state === 'admitted', 10_000);
      await client.joinQueue(event.onsaleId);
      const token = (await status).admission?.token;
      assert.ok(token, 'an admission token');
      return token;
    };
    /**
     * Holds seats with the admission and pays for them; answers the order id.
     * @param {import('../sdk/marquee.js').MarqueeClient} client
     * @param {number[]} seats
     */
    const buy = async (client, seats) => {
      const admission = await admitted(client);
      const paid = nextEvent(client, 'order', (o) => o.status === 'paid', 8000);
      const held = await client.holdSeats(event.eventId, seats, { admission });
      assert.ok(held.outcome.status === 'held', JSON.stringify(held.outcome));
      await client.checkout(event.eventId, held.outcome.hold);
      return (await paid).order;
    };
    // Ana buys two Premium seats, Ben a Standard one that the operator refunds, Cat holds one
    // and never pays, Dan is admitted and holds nothing.
    const [ana, ben, cat, dan] = await Promise.all([buyer(), buyer(), buyer(), buyer()]);
    await buy(ana, [0, 1]);
    const bensOrder = await buy(ben, [12]);
    const refunded = nextEvent(ben, 'order', (o) => o.status === 'refunded', 8000);
    await api.post(`/v1/admin/orders/${bensOrder}/refund`, {});
    await refunded;
    const catsHold = await cat.holdSeats(event.eventId, [13], { admission: await admitted(cat) });
    assert.equal(catsHold.outcome.status, 'held');
    await admitted(dan);

    // What the server counts (joins are written about once a second).
    /** @type {{ steps: { step: string, buyers: number, dropped: number | null }[], queue_time: { p50_s: number, p90_s: number } | null }} */
    const funnel = await waitFor(
      async () => {
        const answer = await api.get(`/v1/admin/onsales/${event.onsaleId}/funnel`);
        return answer.steps[0].buyers === 4 ? answer : null;
      },
      { timeoutMs: 10_000, intervalMs: 200, what: 'the funnel to count four joins' },
    );
    assert.deepEqual(funnel.steps.map((s) => [s.step, s.buyers]), [['joined', 4], ['admitted', 4], ['held', 3], ['paid', 2]]);
    assert.ok(funnel.queue_time, 'a time in queue');

    const opened = await openDashboard(event.eventId, event.onsaleId);
    const { page, context } = opened;
    /** The Authorization header of every CSV request the page makes. */
    /** @type {Promise<string>[]} */
    const csvAuth = [];
    page.on('request', (request) => {
      if (request.url().includes('format=csv')) csvAuth.push(request.allHeaders().then((h) => h.authorization ?? ''));
    });
    const rows = async (/** @type {string} */ table) =>
      page.locator(`#${table} tbody tr`).evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent?.trim())));

    // The funnel: every step's buyers and the share lost since the step before, and the time
    // in queue as the server measured it.
    const expectedFunnel = [
      ['Joined the queue', '4', '–'],
      ['Admitted', '4', '0%'],
      ['Held tickets', '3', '25%'],
      ['Paid', '2', '33.3%'],
    ];
    await waitFor(async () => JSON.stringify(await rows('funnel-table')) === JSON.stringify(expectedFunnel), {
      timeoutMs: 10_000,
      what: 'the funnel rows',
    });
    assert.equal(await page.locator('#queue-p50').textContent(), formatDuration(funnel.queue_time.p50_s));
    assert.equal(await page.locator('#queue-p90').textContent(), formatDuration(funnel.queue_time.p90_s));
    await waitForText(page, '#funnel-age', /^as of /);

    /**
     * The server's timeline, summed per interval over ticket types (all in euros here), newest
     * first, as the table should read it: [start, sold, revenue, refunded, refunds].
     * @param {string} interval
     */
    const serverTimeline = async (interval) => {
      const answer = await api.get(`/v1/admin/events/${event.eventId}/sales/timeline?interval=${interval}`);
      /** @type {Map<string, number[]>} */
      const sums = new Map();
      for (const r of answer.rows) {
        const sum = sums.get(r.at) ?? [0, 0, 0, 0];
        [r.sold, r.revenue_minor, r.refunded, r.refunded_minor].forEach((v, i) => (sum[i] += v));
        sums.set(r.at, sum);
      }
      const euros = (/** @type {number} */ minor) => `€${(minor / 100).toFixed(2)}`;
      return {
        rows: answer.rows,
        table: [...sums]
          .sort(([a], [b]) => Date.parse(b) - Date.parse(a))
          .map(([at, [sold, revenue, refunded, refunds]]) => [at, String(sold), euros(revenue), String(refunded), euros(refunds)]),
      };
    };
    const timelineRows = async () =>
      page.locator('#timeline-table tbody tr').evaluateAll((trs) =>
        trs.map((tr) => [tr.querySelector('time')?.dateTime ?? '', ...[...tr.children].slice(1).map((c) => c.textContent?.trim())]),
      );
    const hourly = await serverTimeline('hour');
    // Three tickets of two types sold, one refunded, whichever hours they fell in.
    const total = (/** @type {number} */ column) => hourly.table.reduce((sum, row) => sum + Number(row[column]), 0);
    assert.deepEqual([total(1), total(3)], [3, 1]);
    await waitForText(page, '#timeline-caption', /per hour, all ticket types$/);
    await waitFor(async () => JSON.stringify(await timelineRows()) === JSON.stringify(hourly.table), {
      timeoutMs: 10_000,
      what: `the hourly timeline to read ${JSON.stringify(hourly.table)}`,
    });
    await checkPageState(page, 'admin-funnel-and-timeline');

    // The funnel's CSV: fetched with the bearer token, saved from a blob: URL.
    const [funnelFile] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV of the funnel' }).click(),
    ]);
    assert.match(funnelFile.suggestedFilename(), /^funnel-night-queued-sale-funnel-\d{4}-\d\d-\d\d-\d{4}\.csv$/);
    assert.match(funnelFile.url(), /^blob:/);
    const funnelCsv = (await readFile(await funnelFile.path(), 'utf8')).split('\r\n');
    assert.equal(funnelCsv[0], 'step,buyers,dropped,queue_p50_s,queue_p90_s');
    assert.deepEqual(funnelCsv.slice(1, 5).map((line) => line.split(',').slice(0, 3).join(',')), [
      'joined,4,',
      'admitted,4,0',
      'held,3,0.25',
      // The shortest form that reads back as the same double, in Rust as in JavaScript.
      `paid,2,${funnel.steps[3].dropped}`,
    ]);
    await waitForText(page, '#funnel-csv-status', /^Saved funnel-night-queued-sale-funnel-.+\.csv \([\d,]+ bytes\)\.$/);

    // By the minute, then its CSV.
    await page.getByLabel('Interval').selectOption('minute');
    await waitForText(page, '#timeline-caption', /per minute, all ticket types$/);
    assert.equal(new URL(page.url()).searchParams.get('interval'), 'minute', 'the choice stays in the address');
    const byMinute = await serverTimeline('minute');
    await waitFor(async () => JSON.stringify(await timelineRows()) === JSON.stringify(byMinute.table), {
      timeoutMs: 10_000,
      what: `the timeline by the minute to read ${JSON.stringify(byMinute.table)}`,
    });
    const [timelineFile] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV of sales over time' }).click(),
    ]);
    assert.match(timelineFile.suggestedFilename(), /^funnel-night-sales-per-minute-\d{4}-\d\d-\d\d-\d{4}\.csv$/);
    const timelineCsv = (await readFile(await timelineFile.path(), 'utf8')).split('\r\n');
    assert.equal(timelineCsv[0], 'at,ticket_type_id,price_category_id,currency,sold,revenue_minor,refunded,refunded_minor');
    assert.equal(timelineCsv.filter(Boolean).length, byMinute.rows.length + 1);
    await waitForText(page, '#timeline-csv-status', /^Saved funnel-night-sales-per-minute-.+\.csv/);

    const sent = await Promise.all(csvAuth);
    assert.equal(sent.length, 2);
    for (const authorization of sent) assert.match(authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    assertPageClean(opened);
    for (const b of [ana, ben, cat, dan]) b.close();
    await context.close();
  });

  test('times in queue read in seconds, minutes and hours', () => {
    assert.deepEqual(
      [0, 0.01, 0.44, 9.96, 42.4, 185, 3599.4, 3720, 90_000].map(formatDuration),
      ['0 s', '< 0.1 s', '0.4 s', '10 s', '42 s', '3 min 05 s', '59 min 59 s', '1 h 02 min', '25 h 00 min'],
    );
    assert.equal(formatDuration(Number.NaN), '–');
  });

  test('without the admin role the page says so', async () => {
    const opened = await staffPage(browser);
    const { page, context } = opened;
    await page.goto(signedInUrl(node, '/admin', buyerToken(newBuyer(), tenant)));
    await waitForText(page, '#signin-error', /^This token lacks the admin role\. Sign in with an admin account\.$/);
    assert.equal(new URL(page.url()).hash, '', 'the token leaves the address bar');
    assert.equal(await page.locator('#onsale-panels').isHidden(), true);
    assert.equal(await page.getByLabel('Event').isHidden(), true, 'no picker that can never load');
    await checkPageState(page, 'admin-signed-out');
    assertPageClean(opened);
    await context.close();
  });
});
