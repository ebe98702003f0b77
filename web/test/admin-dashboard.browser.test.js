// The operators' dashboard (/admin) in real Chromium against a real node: an operator watches
// an onsale, pauses and resumes it, lowers its admission rate while a buyer (an SDK client in
// Node) waits, sees another operator's changes live (also after a network cut), closes it, and
// reads the event's sales. Checking a real pre-queue draw in the page is in shuffle.test.js,
// beside the shuffle's other checks.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
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
