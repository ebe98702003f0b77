// The buyer app's budgets, measured in real Chromium against a real node and printed one line
// per figure (`budget: …`):
//
// - first load: the JavaScript and CSS the app loads, as transferred (gzip through the node),
//   at most 150 KB;
// - a 50,000-seat map (created through the admin API) drawn within 1 s of its data being in the
//   page, and one delta applied (state, canvas, keyboard path, counts) within 16 ms (at the
//   95th percentile: wall-clock on a shared machine);
// - 10 deltas a second (three SDK buyers in Node holding and releasing seats) leave the page's
//   seat states equal to the server's.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  assertPageClean,
  buyerToken,
  launchStaffBrowser,
  newBuyer,
  saveScreenshot,
  seedEvent,
  signedInUrl,
  sleep,
  staffPage,
  startTestNode,
  waitFor,
  waitForText,
} from './harness.js';
import { bigLayout, measures, openBuyer, seedBoxOffice, seedEventWithLayout } from './buyer-harness.js';
import { availability, buyerClient } from './support.js';

const FIRST_LOAD_LIMIT_KB = 150;
const DRAW_LIMIT_MS = 1000;
const DELTA_LIMIT_MS = 16;

/** @type {Awaited<ReturnType<typeof startTestNode>>} */
let node;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {{ tenant: string, venueId: string }} */
let office;
/** @type {import('../sdk/marquee.js').MarqueeClient[]} */
const clients = [];

before(async () => {
  [node, browser] = await Promise.all([startTestNode(), launchStaffBrowser()]);
  office = await seedBoxOffice(node, 'Budget tests');
});

after(async () => {
  for (const client of clients) client.close();
  await browser?.close();
  await node?.close();
});

/**
 * The size of a resource as the node sends it to a browser that takes gzip (the raw bytes on
 * the wire, not decompressed).
 * @param {string} url
 * @returns {Promise<{ bytes: number, encoding: string }>}
 */
function gzipSize(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { 'accept-encoding': 'gzip' } }, (response) => {
        let bytes = 0;
        response.on('data', (chunk) => (bytes += chunk.length));
        response.on('end', () => resolve({ bytes, encoding: String(response.headers['content-encoding'] ?? 'identity') }));
        response.on('error', reject);
      })
      .on('error', reject);
  });
}

/** @param {number} bytes */
const kb = (bytes) => (bytes / 1024).toFixed(1);

describe('buyer app budgets', () => {
  test('the first load is at most 150 KB of JavaScript and CSS, compressed', async () => {
    const event = await seedEvent(node, { tenant: office.tenant, venueId: office.venueId, name: 'Budget night' });
    // A fresh context (nothing cached), watched through the DevTools protocol.
    const fresh = await staffPage(browser);
    const cdp = await fresh.context.newCDPSession(fresh.page);
    await cdp.send('Network.enable');
    /** @type {Map<string, { url: string, type: string, encoding: string, bytes: number }>} */
    const resources = new Map();
    cdp.on('Network.responseReceived', (e) => {
      const headers = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), String(v)]));
      resources.set(e.requestId, { url: e.response.url, type: e.type, encoding: headers['content-encoding'] ?? 'identity', bytes: 0 });
    });
    cdp.on('Network.loadingFinished', (e) => {
      const resource = resources.get(e.requestId);
      if (resource) resource.bytes = e.encodedDataLength;
    });
    // The event page: every module of the app is loaded by then (they are all static imports).
    await fresh.page.goto(signedInUrl(node, `/?event=${event.eventId}`, buyerToken(newBuyer(), office.tenant)));
    await waitForText(fresh.page, '#map-summary', /of 40 seats free/);
    const code = [...resources.values()].filter((r) => r.type === 'Script' || r.type === 'Stylesheet');
    const transferred = code.reduce((sum, r) => sum + r.bytes, 0);
    let wire = 0;
    for (const r of code) {
      const { bytes, encoding } = await gzipSize(r.url);
      assert.equal(encoding, 'gzip', `${r.url} is sent compressed`);
      wire += bytes;
    }
    console.log(`budget: first load js+css = ${kb(transferred)} KB transferred in Chromium (${code.length} files, ${[...new Set(code.map((r) => r.encoding))].join('/')}), ${kb(wire)} KB gzip bodies (limit ${FIRST_LOAD_LIMIT_KB} KB)`);
    assert.ok(code.some((r) => r.url.endsWith('/app/buyer/main.js')) && code.some((r) => r.url.endsWith('/css/buyer.css')));
    assert.ok(code.every((r) => r.encoding === 'gzip' || r.encoding === 'br'), JSON.stringify(code));
    assert.ok(transferred <= FIRST_LOAD_LIMIT_KB * 1024, `${kb(transferred)} KB transferred`);
    assert.ok(wire <= FIRST_LOAD_LIMIT_KB * 1024, `${kb(wire)} KB of gzip`);
    assertPageClean(fresh);
    await fresh.context.close();
  });

  test('a 50,000-seat map draws within 1 s, a delta applies within 16 ms, and 10 deltas a second leave it equal to the server’s', async () => {
    const big = await seedEventWithLayout(node, {
      tenant: office.tenant,
      venueId: office.venueId,
      name: 'Stadium night',
      layout: bigLayout({ sections: 10, rows: 50, seatsPerRow: 100 }),
    });
    assert.equal(big.seats, 50_000);
    const navigated = Date.now();
    const opened = await openBuyer(browser, node, { sub: newBuyer(), tenant: office.tenant, path: `/?event=${big.eventId}` });
    const { page } = opened;
    await waitForText(page, '#map-summary', /^50,000 of 50,000 seats free$/, 30_000);
    const ready = Date.now() - navigated;
    const [layout] = await measures(page, 'marquee:map-layout');
    const [draw] = await measures(page, 'marquee:map-draw');
    const [load] = await measures(page, 'marquee:map-load');
    assert.equal(layout.detail.seats, 50_000);
    assert.equal(draw.detail.seats, 50_000);
    console.log(
      `budget: 50,000-seat map = ${(layout.duration + draw.duration).toFixed(1)} ms (layout ${layout.duration.toFixed(1)} ms + snapshot and first draw ${draw.duration.toFixed(1)} ms; limit ${DRAW_LIMIT_MS} ms); context: fetching and parsing the 9 MB seat list from a debug node ${load.duration.toFixed(0)} ms, the whole page ${ready} ms`,
    );
    assert.ok(layout.duration + draw.duration <= DRAW_LIMIT_MS);

    // Three buyers take turns holding and releasing seats of the row the page shows (Block A,
    // row 1), one command every 100 ms, each its own booking transaction and so one delta. A
    // release needs its hold's id: the hold was sent 300 ms before, so waiting for its result
    // rarely holds the pace up.
    const buyers = Array.from({ length: 3 }, () =>
      buyerClient(node.wsUrl, { sub: newBuyer(), tenant: office.tenant }, { commandTimeoutMs: 20_000 }),
    );
    clients.push(...buyers);
    await Promise.all(buyers.map((b) => b.connect()));
    // The first command makes a worker load the event's 50,000 seats (a second or more on a
    // debug build): done before the pace starts.
    const warm = await buyers[0].holdSeats(big.eventId, [99]);
    assert.equal(warm.outcome.status, 'held');
    if (warm.outcome.status === 'held') await buyers[0].release(big.eventId, warm.outcome.hold);
    const seatsOf = [[10, 11], [14, 15, 16], [18]];
    /** @type {(Promise<import('../sdk/marquee.js').CommandResult> | null)[]} */
    const holds = [null, null, null];
    /** @type {Promise<unknown>[]} */
    const sent = [];
    const started = Date.now();
    // 35 rounds: the third buyer ends holding its seat, the others released theirs.
    const rounds = 35;
    let commands = 0;
    for (let k = 0; k < rounds; k += 1) {
      await sleep(Math.max(0, started + k * 100 - Date.now()));
      const b = k % 3;
      const hold = holds[b];
      if (hold) {
        const result = await hold;
        assert.equal(result.outcome.status, 'held', JSON.stringify(result.outcome));
        if (result.outcome.status === 'held') sent.push(buyers[b].release(big.eventId, result.outcome.hold));
        holds[b] = null;
      } else {
        holds[b] = buyers[b].holdSeats(big.eventId, seatsOf[b]);
        sent.push(holds[b]);
      }
      commands += 1;
    }
    const seconds = (Date.now() - started) / 1000;
    // The server's map now, fresh from a snapshot, and the page at the same version.
    const watcher = buyerClient(node.wsUrl, { sub: newBuyer(), tenant: office.tenant });
    clients.push(watcher);
    await watcher.connect();
    await Promise.all(sent);
    const server = await watcher.subscribeSeatMap(big.eventId, () => {});
    await waitFor(async () => Number(await page.locator('#map').getAttribute('data-version')) === server.version, {
      timeoutMs: 8000,
      what: `the page at version ${server.version}`,
    });
    const deltas = await measures(page, 'marquee:delta');
    const times = deltas.map((d) => d.duration).sort((a, b) => a - b);
    const worst = times[times.length - 1];
    const p95 = times[Math.ceil(times.length * 0.95) - 1];
    const mean = times.reduce((sum, t) => sum + t, 0) / times.length;
    console.log(
      `budget: delta apply = ${p95.toFixed(2)} ms at the 95th percentile, ${worst.toFixed(2)} ms worst, ${mean.toFixed(2)} ms mean over ${deltas.length} deltas (limit ${DELTA_LIMIT_MS} ms); ${commands} commands in ${seconds.toFixed(1)} s = ${(commands / seconds).toFixed(1)} a second`,
    );
    assert.ok(deltas.length >= commands * 0.9, `${deltas.length} deltas for ${commands} commands`);
    assert.ok(commands / seconds >= 9.5, `${(commands / seconds).toFixed(1)} commands a second`);
    // Wall-clock on a shared 2-core machine: one delta in twenty may lose the CPU to another
    // process mid-way, so the budget holds at the 95th percentile, and no delta may take
    // anything like a full redraw.
    assert.ok(p95 <= DELTA_LIMIT_MS, `p95 ${p95.toFixed(2)} ms`);
    assert.ok(worst <= 3 * DELTA_LIMIT_MS, `worst ${worst.toFixed(2)} ms`);

    // What the page shows equals the server: every seat of the churned row, by the keyboard
    // path's states, and the free seats of every category, by the legend.
    const chips = await page.locator('#seat-chips label').evaluateAll((labels) =>
      labels.map((l) => (/state-(\w+)/.exec(l.className) ?? [])[1]),
    );
    const words = ['free', 'held', 'sold', 'none'];
    for (let seat = 0; seat < 100; seat += 1) assert.equal(chips[seat], words[server.state(seat)], `seat ${seat}`);
    const free = await availability(node, office.tenant, big.eventId);
    const legend = await page.locator('#legend .legend-category').evaluateAll((items) => items.map((i) => i.querySelector('.legend-free')?.textContent ?? ''));
    assert.deepEqual(legend, [
      `${free.free[big.categories.premium].toLocaleString('en-US')} of 2,000 free`,
      `${free.free[big.categories.standard].toLocaleString('en-US')} of 48,000 free`,
    ]);
    const held = server.seatsIn(1).length;
    assert.deepEqual(server.seatsIn(1), seatsOf[2], 'the third buyer still holds its seat');
    await waitForText(page, '#map-summary', new RegExp(`^${(50_000 - held).toLocaleString('en-US')} of 50,000 seats free$`));
    await saveScreenshot(page, 'buyer-map-50000');
    assertPageClean(opened);
    await opened.context.close();
  });
});
