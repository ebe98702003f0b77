// The buyer app (/) in real Chromium against a real node, driven the way a buyer would: the
// event list and search, the waiting room's pre-queue countdown, the draw and "your turn"
// (with the tab title and a notification), the live seat map (another buyer's hold arriving),
// best available, seats picked on the keyboard path and on the canvas, general admission, a
// purchase staged while waiting, the hold countdown across a reload, checkout, payment pending
// then paid from the inbox, the tickets' QR codes, and a transfer. (The waiting room of a long
// line, with an operator at work, is buyer-queue.browser.test.js.)
//
// Other buyers are SDK clients in Node; the operator is the admin API. Every page state is
// checked with axe-core and saved as test/screenshots/buyer-*.png.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  adminApi,
  assertPageClean,
  buyerToken,
  checkPageState,
  launchStaffBrowser,
  newBuyer,
  saveScreenshot,
  seedEvent,
  seedPrequeueEvent,
  staffPage,
  startTestNode,
  waitFor,
  waitForText,
} from './harness.js';
import { onsaleReaches, openBuyer, seedBoxOffice } from './buyer-harness.js';
import { availability, buyerClient, nextEvent } from './support.js';

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
  // Every checkout is paid, a second after it, so "payment pending" can be seen.
  [node, browser] = await Promise.all([
    startTestNode(null, { env: { MARQUEE_SIMULATED_PAYMENT_OUTCOMES: 'succeeded=1', MARQUEE_SIMULATED_PAYMENT_DELAY: '1s' } }),
    launchStaffBrowser(),
  ]);
  ({ tenant, venueId } = await seedBoxOffice(node));
});

after(async () => {
  for (const client of clients) client.close();
  await browser?.close();
  await node?.close();
});

/** A connected SDK buyer of the test tenant (another person buying at the same time). */
async function otherBuyer(sub = newBuyer()) {
  const client = buyerClient(node.wsUrl, { sub, tenant });
  clients.push(client);
  await client.connect();
  return client;
}

/**
 * The states the keyboard path shows for the seats of one row, by seat number.
 * @param {import('playwright-core').Page} page
 * @param {string} section e.g. `Stalls`
 * @param {string} row e.g. `B`
 */
async function rowStates(page, section, row) {
  const sectionSelect = page.locator('#pick-section');
  const value = await sectionSelect.locator('option', { hasText: new RegExp(`^${section} —`) }).getAttribute('value');
  await sectionSelect.selectOption(value ?? '');
  const rowSelect = page.locator('#pick-row');
  const rowValue = await rowSelect.locator('option', { hasText: new RegExp(`^Row ${row} —`) }).getAttribute('value');
  await rowSelect.selectOption(rowValue ?? '');
  return page.locator('#seat-chips label').evaluateAll((labels) =>
    Object.fromEntries(labels.map((l) => [Number(l.textContent?.match(/\d+/)?.[0]), (/state-(\w+)/.exec(l.className) ?? [])[1]])),
  );
}

describe('the buyer app', () => {
  test('lists the box office’s events and searches them; the sign-in token leaves the address bar', async () => {
    await seedEvent(node, { tenant, venueId, name: 'The Midnight Orchestra' });
    await seedEvent(node, { tenant, venueId, name: 'Jazz Brunch' });
    const opened = await openBuyer(browser, node, { sub: newBuyer(), tenant });
    const { page } = opened;
    assert.equal(new URL(page.url()).hash, '', 'the token is removed from the address bar at once');
    await waitForText(page, '#events-status', /^2 events\.$/);
    assert.deepEqual(await page.locator('#event-list h2').allTextContents(), ['The Midnight Orchestra', 'Jazz Brunch']);
    await checkPageState(page, 'buyer-events');

    await page.getByLabel('Search').fill('orchestra');
    await page.getByRole('button', { name: 'Search' }).click();
    await waitForText(page, '#events-status', /^1 event matching “orchestra”\.$/);
    assert.deepEqual(await page.locator('#event-list h2').allTextContents(), ['The Midnight Orchestra']);
    assert.equal(new URL(page.url()).search, '?q=orchestra');
    await checkPageState(page, 'buyer-events-search');
    // The search is in the address: a reload shows it again, signed in from the tab's storage.
    await page.reload();
    await waitForText(page, '#events-status', /^1 event matching “orchestra”\.$/);
    await page.getByLabel('City').fill('Porto');
    await page.getByRole('button', { name: 'Search' }).click();
    await waitForText(page, '#events-status', /^No events matching “orchestra” in Porto\.$/);
    assertPageClean(opened);
    await opened.context.close();
  });

  test('without a sign-in the page says so', async () => {
    const opened = await staffPage(browser);
    const { page } = opened;
    await page.goto(`${node.httpUrl}/`);
    await waitForText(page, '#signin-error', /^Sign in first/);
    assertPageClean(opened);
    await opened.context.close();
  });

  test('a buyer waits through the pre-queue, is admitted, sees another hold arrive, holds best available, keeps it across a reload, pays and gets QR codes, then transfers one', async () => {
    const event = await seedPrequeueEvent(node, { tenant, venueId, name: 'Fair night', startsInMs: 7000, admissionRate: 20 });
    await onsaleReaches(node, tenant, event.onsaleId, 'pre_queue');
    const other = await otherBuyer();
    const otherAdmitted = nextEvent(other, 'queue', (s) => s.state === 'admitted', 15_000);
    assert.equal((await other.joinQueue(event.onsaleId)).state, 'pre_queue');

    const sub = newBuyer();
    const opened = await openBuyer(browser, node, { sub, tenant, path: `/?event=${event.eventId}`, notifications: true });
    const { page } = opened;
    await waitForText(page, '#event-sale', /has a waiting room \(the waiting room is open\)/);
    await waitForText(page, '#shop-gate', /when it is your turn in the waiting room/);
    assert.equal(await page.getByRole('button', { name: 'Find seats' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Join the waiting room' }).click();

    // The pre-queue: a countdown to the start, from the onsale's start time.
    await waitForText(page, '#queue-state', /^You’re in the waiting room\. The line is drawn when the sale starts\.$/);
    const first = await waitForText(page, '#queue-countdown-value', /^0:0[1-7]$/);
    await waitForText(page, '#queue-countdown-value', new RegExp(`^(?!${first}$)0:0\\d$`), 3000);
    await waitForText(page, '#queue-fairness', /commitment \(SHA-256 of the seed\) is [0-9a-f]{64}/);
    await checkPageState(page, 'buyer-queue-prequeue');

    // The start: the line is drawn, then the buyer's turn, said in the page, the tab's title
    // and a notification.
    await waitForText(page, '#queue-reason', /drawn at random at the start/, 12_000);
    await waitForText(page, '#queue-state', /^It’s your turn!$/, 10_000);
    await waitFor(async () => (await page.title()).startsWith('★ Your turn! · '), { what: 'the title to say it is my turn' });
    await waitFor(async () => (await page.evaluate(() => /** @type {any} */ (globalThis).__notifications)).length === 1, { what: 'a notification' });
    const [notification] = await page.evaluate(() => /** @type {any} */ (globalThis).__notifications);
    assert.deepEqual(notification, { title: 'It’s your turn', body: 'You can buy tickets for Fair night now.' });
    await waitForText(page, '#queue-fairness', /the seed [0-9a-f]{64} hashes to the commitment/);
    await checkPageState(page, 'buyer-queue-turn');

    // The event page, live: another buyer's hold shows on the map as it happens.
    await page.getByRole('link', { name: 'Choose your seats' }).click();
    await waitForText(page, '#event-sale', /It’s your turn\./);
    await waitForText(page, '#map-summary', /^40 of 40 seats free$/);
    const { admission } = await otherAdmitted;
    assert.ok(admission);
    const theirs = await other.holdSeats(event.eventId, [12, 13], { admission: admission.token });
    assert.equal(theirs.outcome.status, 'held');
    await waitForText(page, '#map-summary', /^38 of 40 seats free$/);
    await waitForText(page, '#legend', /Standard€45\.0028 of 30 free/);
    const rowB = await rowStates(page, 'Stalls', 'B');
    assert.equal(rowB[3], 'held');
    assert.equal(rowB[4], 'held');
    assert.equal(rowB[5], 'free');

    // Best available: two Premium seats, held until the server's deadline.
    const best = page.locator('#best-card');
    await best.getByLabel('Category').selectOption({ label: 'Premium · €89.00' });
    await best.getByLabel('Seats').fill('2');
    await best.getByRole('button', { name: 'Find seats' }).click();
    await waitForText(page, '#shop-message', /^Held for you: Stalls, row A, seats \d+–\d+\. Check out before /);
    const hold = page.locator('#holds .hold');
    await waitForText(page, '#holds .hold-seats', /^Stalls, row A, seats \d+–\d+$/);
    const until = await waitForText(page, '#holds .hold-until', /^held until /);
    const timer = await waitForText(page, '#holds .timer', /^(10:00|9:5\d)$/);
    await waitForText(page, '#holds .timer', new RegExp(`^(?!${timer}$)9:5\\d$`), 3000);
    await waitForText(page, '#map-summary', /^36 of 40 seats free$/);
    assert.equal(await hold.count(), 1);
    await checkPageState(page, 'buyer-hold');

    // A reload keeps the hold and its deadline (the journal holds the server's result).
    await page.reload();
    await waitForText(page, '#map-summary', /^36 of 40 seats free$/);
    assert.equal(await page.locator('#holds .hold-until').textContent(), until);
    await waitForText(page, '#holds .timer', /^9:[45]\d$/);
    const rowA = await rowStates(page, 'Stalls', 'A');
    assert.equal(Object.values(rowA).filter((s) => s === 'mine').length, 2, JSON.stringify(rowA));

    // Checkout: payment pending, then paid, pushed on the inbox.
    await page.getByRole('button', { name: 'Check out' }).click();
    await waitForText(page, '#orders .order-status', /^Payment pending · €178\.00 · due by /);
    assert.equal(await hold.count(), 0, 'the hold became the order');
    await checkPageState(page, 'buyer-checkout-pending');
    await waitForText(page, '#orders .order-status', /^Paid · €178\.00 · 2 tickets$/, 10_000);
    await checkPageState(page, 'buyer-paid');

    // My tickets: each with the QR code the node renders.
    await page.getByRole('link', { name: 'See my tickets' }).click();
    await waitForText(page, '#tickets-status', /^2 tickets\.$/);
    const images = page.locator('#ticket-list img.qr');
    await waitFor(async () => (await images.evaluateAll((imgs) => imgs.filter((i) => /** @type {HTMLImageElement} */ (i).complete && /** @type {HTMLImageElement} */ (i).naturalWidth > 0 && /** @type {HTMLImageElement} */ (i).src.startsWith('blob:')).length)) === 2, { what: 'both QR codes' });
    assert.match((await images.first().getAttribute('alt')) ?? '', /^QR code of your ticket: Stalls, row A, seat \d+$/);
    const apiTickets = await (await fetch(`${node.httpUrl}/v1/me/tickets`, { headers: { authorization: `Bearer ${buyerToken(sub, tenant)}` } })).json();
    assert.equal(apiTickets.tickets.length, 2);
    assert.deepEqual(
      (await page.locator('#ticket-list code').allTextContents()).sort(),
      apiTickets.tickets.map((/** @type {{ qr: string }} */ t) => t.qr).sort(),
    );
    await checkPageState(page, 'buyer-tickets');

    // Transfer one to a friend: it leaves this list and reaches theirs.
    const friend = newBuyer();
    await page.getByRole('button', { name: 'Transfer…' }).first().click();
    const dialog = page.getByRole('dialog', { name: 'Transfer this ticket?' });
    await dialog.getByLabel('Their account id').fill(friend);
    await saveScreenshot(page, 'buyer-transfer-dialog');
    await dialog.getByRole('button', { name: 'Transfer' }).click();
    await waitForText(page, '#tickets-status', new RegExp(`^Transferred Stalls, row A, seat \\d+ to ${friend}\\. Its old code no longer works at the gates\\.$`));
    assert.equal(await page.locator('#ticket-list .ticket').count(), 1);
    const theirTickets = await (await fetch(`${node.httpUrl}/v1/me/tickets`, { headers: { authorization: `Bearer ${buyerToken(friend, tenant)}` } })).json();
    assert.equal(theirTickets.tickets.length, 1);
    await checkPageState(page, 'buyer-ticket-transferred');
    assertPageClean(opened);
    await opened.context.close();
  });

  test('a purchase staged while waiting is held at admission; seats picked on the keyboard path, a seat taken meanwhile, and general admission', async () => {
    const event = await seedEvent(node, { tenant, venueId, name: 'Staged night', requiresAdmission: true, admissionRate: 20 });
    const api = adminApi(node, tenant);
    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'paused' });
    const rival = await otherBuyer();
    const rivalAdmitted = nextEvent(rival, 'queue', (s) => s.state === 'admitted', 10_000);
    await rival.joinQueue(event.onsaleId);

    const opened = await openBuyer(browser, node, { sub: newBuyer(), tenant, path: `/?event=${event.eventId}` });
    const { page } = opened;
    await page.getByRole('button', { name: 'Join the waiting room' }).click();
    await waitForText(page, '#queue-position', /^2$/);
    // Stage two Premium seats while waiting.
    const stage = page.locator('#stage-card');
    await stage.getByLabel('Category').selectOption({ label: 'Premium · €89.00' });
    await stage.getByLabel('Seats').fill('2');
    await stage.getByRole('button', { name: 'Stage this purchase' }).click();
    await waitForText(page, '#staged', /^Staged: the best 2 × Premium, held for you the moment it is your turn\.$/);
    await checkPageState(page, 'buyer-queue-staged');

    await api.patch(`/v1/admin/onsales/${event.onsaleId}/status`, { status: 'live' });
    await waitForText(page, '#queue-state', /^It’s your turn!$/, 8000);
    await waitForText(page, '#holds .hold-seats', /^Stalls, row A, seats \d+–\d+$/, 8000);
    await waitForText(page, '#queue-turn-text', /^Your staged seats are held for you: check out at the top of the page\./);
    await checkPageState(page, 'buyer-staged-held');

    // The keyboard path: section → row → seats, with the keyboard only.
    await page.getByRole('link', { name: 'Choose your seats' }).click();
    await waitForText(page, '#map-summary', /^38 of 40 seats free$/);
    await page.locator('#pick-section').focus();
    await page.keyboard.press('ArrowDown'); // Stalls → Balcony
    await waitForText(page, '#pick-seats-legend', /^Seats in Balcony, row 1$/);
    await page.keyboard.press('Tab'); // the row
    await page.keyboard.press('Tab'); // seat 1
    for (let n = 1; n < 5; n += 1) await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'seat-24', 'Balcony 1-5 has the focus');
    await page.keyboard.press('Space');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');
    await waitForText(page, '#selection', /^3 seats picked: Balcony, row 1, seats 5–7 · €135\.00$/);
    assert.equal(await page.getByLabel('Seat 6, free, Standard €45.00').isChecked(), true);

    // Someone else takes seat 7 before this buyer holds: it is dropped from the pick, said so.
    const { admission } = await rivalAdmitted;
    assert.ok(admission);
    const taken = await rival.holdSeats(event.eventId, [26], { admission: admission.token });
    assert.equal(taken.outcome.status, 'held');
    await waitForText(page, '#shop-message', /^Balcony, row 1, seat 7 was just taken by someone else\.$/);
    await waitForText(page, '#selection', /^2 seats picked: Balcony, row 1, seats 5–6 · €90\.00$/);
    assert.equal(await page.getByLabel(/^Seat 7, held by someone/).isDisabled(), true);
    await saveScreenshot(page, 'buyer-keyboard-pick');
    await page.getByRole('button', { name: 'Hold picked seats' }).click();
    await waitForText(page, '#shop-message', /^Held for you: Balcony, row 1, seats 5–6\./);
    await waitFor(async () => page.getByLabel(/^Seat 5, yours/).isChecked(), { what: 'seat 5 to be mine' });
    assert.equal(await page.getByLabel(/^Seat 5, yours/).isDisabled(), true);

    // The map itself: zoom in, point at seats until one is free, click it: it is picked.
    await page.getByRole('button', { name: 'Zoom in' }).click();
    const box = await page.locator('#seat-canvas').boundingBox();
    assert.ok(box);
    let pointed = '';
    for (let y = 0.15; y < 0.95 && !pointed; y += 0.03) {
      for (let x = 0.05; x < 0.95 && !pointed; x += 0.04) {
        await page.mouse.move(box.x + box.width * x, box.y + box.height * y);
        const info = (await page.locator('#map-info').textContent()) ?? '';
        if (/ · free$/.test(info)) {
          pointed = info;
          await page.mouse.click(box.x + box.width * x, box.y + box.height * y);
        }
      }
    }
    const seat = /^· (.+?) · /.exec(pointed)?.[1];
    assert.ok(seat, `a free seat under the pointer (${pointed})`);
    await waitForText(page, '#selection', new RegExp(`^1 seat picked: ${seat} · €`));
    await page.getByRole('button', { name: 'Clear' }).click();
    await waitForText(page, '#selection', /^No seats picked\.$/);

    // General admission: three standing tickets; what is left follows live.
    const ga = page.locator('#ga-card');
    await ga.getByLabel('Tickets').fill('3');
    await ga.getByRole('button', { name: 'Hold Standing' }).click();
    await waitForText(page, '#shop-message', /^Held for you: 3 tickets\./);
    await waitForText(page, '#ga-list .ga-left', /^97 left$/);
    await waitForText(page, '#holds', /3 × Standing/);
    assert.equal(await page.locator('#holds .hold').count(), 3);
    assert.equal((await availability(node, tenant, event.eventId)).ga[event.ticketTypes.ga], 97);
    await checkPageState(page, 'buyer-event-map');

    // Releasing a hold gives its seats back at once.
    await page.locator('#holds .hold', { hasText: 'Balcony' }).getByRole('button', { name: 'Release' }).click();
    await waitFor(async () => (await page.locator('#holds .hold').count()) === 2, { what: 'the released hold to go' });
    await waitForText(page, '#map-summary', /^37 of 40 seats free$/);
    assertPageClean(opened);
    await opened.context.close();
  });
});
