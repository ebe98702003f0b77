// The buyer app's waiting room in real Chromium against a real node, for a buyer in a long
// line: a refresh and a second tab attach to the same place at the same position; an
// operator's pause, resume, lower admission rate (the ETA pushed by the node grows), sold out
// and closed all reach the page as they happen. The buyers ahead are SDK clients in Node; the
// operator is the admin API. Each state is checked with axe-core and saved as a screenshot.
// This node's simulated provider fails every payment, so a failed payment is seen here too.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  adminApi,
  assertPageClean,
  checkPageState,
  launchStaffBrowser,
  newBuyer,
  seedEvent,
  startTestNode,
  waitFor,
  waitForText,
} from './harness.js';
import { etaUpperSeconds, openBuyer, seedBoxOffice } from './buyer-harness.js';
import { buyerClient } from './support.js';

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
    startTestNode(null, { env: { MARQUEE_SIMULATED_PAYMENT_OUTCOMES: 'failed=1' } }),
    launchStaffBrowser(),
  ]);
  ({ tenant, venueId } = await seedBoxOffice(node));
});

after(async () => {
  for (const client of clients) client.close();
  await browser?.close();
  await node?.close();
});

/** A connected SDK buyer of the test tenant. */
async function otherBuyer(sub = newBuyer()) {
  const client = buyerClient(node.wsUrl, { sub, tenant });
  clients.push(client);
  await client.connect();
  return client;
}

describe('the buyer app’s waiting room', () => {
  test('a waiting buyer keeps the place across a refresh and in a second tab; pause, a lower rate, sold out and closed reach the page live', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Rate night', requiresAdmission: true, admissionRate: 4 });
    const api = adminApi(node, tenant);
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'paused' });
    const ahead = await Promise.all(Array.from({ length: 40 }, () => otherBuyer()));
    for (const b of ahead) await b.joinQueue(event.onsaleId);

    const sub = newBuyer();
    const queueUrl = `/?event=${event.eventId}&onsale=${event.onsaleId}&view=queue`;
    const opened = await openBuyer(browser, node, { sub, tenant, path: queueUrl });
    const { page } = opened;
    await waitForText(page, '#queue-state', /^You are not in this waiting room yet\.$/);
    await page.getByRole('button', { name: 'Join the waiting room' }).click();
    await waitForText(page, '#queue-state', /^You’re in line\. Admissions are paused\.$/);
    await waitForText(page, '#queue-position', /^41$/);
    await waitForText(page, '#queue-ahead', /^40$/);
    await waitForText(page, '#queue-eta', /^paused$/);
    const place = await waitForText(page, '#queue-place', /^Your place: p[0-9a-f]+$/);
    await checkPageState(page, 'buyer-queue-paused');

    // A refresh attaches to the same place, at the same position.
    await page.reload();
    await waitForText(page, '#queue-position', /^41$/);
    assert.equal(await page.locator('#queue-place').textContent(), place);
    // So does a second tab of the same account (signed in by its own link).
    const second = await openBuyer(browser, node, { sub, tenant, path: queueUrl, context: opened.context });
    await waitForText(second.page, '#queue-position', /^41$/);
    assert.equal(await second.page.locator('#queue-place').textContent(), place);

    // Resumed: the line moves, and the node's estimate settles on the 4-a-second rate.
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'live' });
    await waitForText(page, '#queue-reason', /^Admissions resumed: the line is moving again\.$/);
    const fast = await waitFor(
      async () => {
        const text = (await page.locator('#queue-eta').textContent()) ?? '';
        const upper = etaUpperSeconds(text);
        return upper !== null && upper <= 12 ? { text, upper } : null;
      },
      { timeoutMs: 15_000, intervalMs: 100, what: 'an estimate at the fast rate' },
    );
    const positionThen = Number(await page.locator('#queue-position').textContent());
    assert.ok(positionThen < 41);

    // The operator lowers the rate: the estimate, pushed by the node, grows although the
    // place keeps moving up (at an unchanged rate it could only shrink). The node's range
    // follows the admissions it measured over 10 and 30 seconds, so it grows over seconds.
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/admission`, { admission_rate: 0.5 });
    const wanted = Math.max(fast.upper + 3, Math.ceil(fast.upper * 1.3));
    const slow = await waitFor(
      async () => {
        const text = (await page.locator('#queue-eta').textContent()) ?? '';
        const upper = etaUpperSeconds(text);
        return upper !== null && upper >= wanted ? text : null;
      },
      { timeoutMs: 25_000, intervalMs: 100, what: `the estimate to grow from ${fast.text} to ${wanted} s or more` },
    );
    const positionNow = Number(await page.locator('#queue-position').textContent());
    assert.ok(positionNow < positionThen && positionNow > 1, `position ${positionThen} → ${positionNow}`);
    console.log(`waiting room: ETA at 4 admissions a second ${fast.text}; after the operator lowered it to 0.5: ${slow}`);
    await checkPageState(page, 'buyer-queue-rate-lowered');

    // Sold out and closed, pushed to both tabs.
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'sold_out' });
    await waitForText(page, '#queue-state', /^Sold out for now\. You keep your place\.$/);
    await waitForText(second.page, '#queue-state', /^Sold out for now\. You keep your place\.$/);
    await waitForText(page, '#queue-eta', /^waiting for seats$/);
    await checkPageState(page, 'buyer-queue-sold-out');
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'closed' });
    await waitForText(page, '#queue-state', /^The sale is closed\.$/);
    await waitForText(second.page, '#queue-state', /^The sale is closed\.$/);
    await checkPageState(page, 'buyer-queue-closed');
    assertPageClean(opened);
    assertPageClean(second);
    for (const b of ahead) b.close();
    await opened.context.close();
  });


  test('a failed payment is said at once and its seats go back on sale', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Unlucky night' });
    const opened = await openBuyer(browser, node, { sub: newBuyer(), tenant, path: `/?event=${event.eventId}` });
    const { page } = opened;
    await waitForText(page, '#event-sale', /^Open sale: on sale now\./);
    await waitForText(page, '#map-summary', /^40 of 40 seats free$/);
    await page.locator('#best-card').getByRole('button', { name: 'Find seats' }).click();
    await waitForText(page, '#holds .hold-seats', /^Stalls, row A, seats \d+–\d+$/);
    await page.getByRole('button', { name: 'Check out' }).click();
    await waitForText(page, '#orders .order-status', /^Payment failed: nothing was charged and the seats are back on sale\.$/, 10_000);
    await waitForText(page, '#map-summary', /^40 of 40 seats free$/);
    assert.equal(await page.locator('#holds .hold').count(), 0);
    await checkPageState(page, 'buyer-payment-failed');
    assertPageClean(opened);
    await opened.context.close();
  });
});
