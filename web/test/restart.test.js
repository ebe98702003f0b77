// The SDK across a node restart, and against a node that refuses connections (503 with
// Retry-After). Each suite runs its own node, since both stop or fill it.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { MarqueeError } from '../sdk/marquee.js';
import { adminApi, newBuyer, seedEvent, startProxy, startTestNode, waitFor } from './harness.js';
import { buyerClient, nextEvent, recordingHandler, recordingWebSocket } from './support.js';

/**
 * Opens a tenant with a venue on `node`.
 * @param {{ httpUrl: string }} node
 */
async function openTenant(node) {
  const tenant = randomUUID();
  const api = adminApi(node, tenant);
  await api.put('/v1/admin/tenant', { name: 'Restart tests' });
  const venue = await api.post('/v1/admin/venues', { name: 'Hall', city: 'Faro' });
  return { tenant, venueId: venue.venue_id };
}

/**
 * How many WebSocket connections the node holds, from its metrics.
 * @param {{ httpUrl: string }} node
 */
async function openConnections(node) {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('marquee_connections '));
  return Number(line?.split(' ')[1]);
}

describe('a node restart', () => {
  /** @type {Awaited<ReturnType<typeof startTestNode>>} */
  let node;
  /** @type {import('../sdk/marquee.js').MarqueeClient[]} */
  const clients = [];
  before(async () => {
    node = await startTestNode();
  });
  after(async () => {
    for (const client of clients) client.close();
    await node?.close();
  });

  test('the server\'s reconnect advice is followed, and the channel restarts from a fresh snapshot of the same state', async () => {
    const { tenant, venueId } = await openTenant(node);
    const event = await seedEvent(node, { tenant, venueId });
    const recording = recordingWebSocket();
    const alice = buyerClient(node.wsUrl, { sub: newBuyer(), tenant }, { WebSocket: recording.WebSocket });
    const bob = buyerClient(node.wsUrl, { sub: newBuyer(), tenant });
    clients.push(alice, bob);
    await Promise.all([alice.connect(), bob.connect()]);
    const channel = `seats:${event.eventId}`;
    const seats = recordingHandler();
    const first = await alice.subscribe(channel, seats.handler);
    await bob.holdSeats(event.eventId, [0]);
    await seats.until((log) => log.length === 2, 'the first delta');

    const disconnected = nextEvent(alice, 'disconnected');
    // SIGTERM: the node drains, telling every client to come back after a jittered delay.
    const restarted = node.restart();
    const drop = await disconnected;
    const [advice] = recording.receivedOf('reconnect');
    assert.equal(advice.message.reason, 'shutdown');
    assert.ok(advice.message.delay_ms <= 300, `delay_ms ${advice.message.delay_ms} over the 300 ms spread`);
    assert.deepEqual(
      { code: drop.code, reason: drop.reason, reconnectInMs: drop.reconnectInMs },
      { code: 1012, reason: 'service_restart', reconnectInMs: advice.message.delay_ms },
    );
    // A hold made while the node is away waits for the next connection.
    const pending = alice.holdSeats(event.eventId, [5]);
    await restarted;

    await seats.until((log) => log.length >= 3, 'the resubscription after the restart', 10_000);
    const again = seats.subscriptions()[1];
    // The memory engine lost the stream with the process: a new epoch, so no resume; the
    // snapshot comes from the database and still shows seat 0 held.
    assert.notEqual(again.epoch, first.epoch);
    assert.equal(again.recovered, false);
    assert.equal(again.automatic, true);
    assert.deepEqual(again.snapshot, {
      ga: [{ available: 100, ticket_type: event.ticketTypes.ga }],
      seats: 40,
      state: 'AQAAAAAAAAAAAA==', // seat 0 held
      v: 1,
    });

    const held = await pending;
    assert.ok(held.outcome.status === 'held');
    assert.deepEqual(held.outcome.seats, [5]);
    await bob.holdSeats(event.eventId, [6]);
    await seats.until((log) => log.length === 5, 'two live deltas in the new epoch');
    const after = seats.publications().slice(1);
    assert.deepEqual(
      after.map((p) => [p.epoch, p.offset, p.data.v]),
      [
        [again.epoch, again.offset + 1, 2],
        [again.epoch, again.offset + 2, 3],
      ],
    );
    assert.deepEqual(
      after.map((p) => p.data.held),
      [[5], [6]],
    );
  });
});

describe('a full node', () => {
  /** @type {Awaited<ReturnType<typeof startTestNode>>} */
  let node;
  /** @type {import('../sdk/marquee.js').MarqueeClient[]} */
  const clients = [];
  before(async () => {
    node = await startTestNode(null, { env: { MARQUEE_MAX_CONNECTIONS: '1' } });
  });
  after(async () => {
    for (const client of clients) client.close();
    await node?.close();
  });

  test('a refused upgrade is diagnosed over HTTP, and the reconnect waits out its Retry-After', async () => {
    const { tenant } = await openTenant(node);
    /** @param {string} url */
    const client = (url) => {
      const c = buyerClient(url, { sub: newBuyer(), tenant });
      clients.push(c);
      return c;
    };
    const first = client(node.wsUrl);
    await first.connect();
    const second = client(node.wsUrl);
    await assert.rejects(second.connect(), (error) => {
      assert.ok(error instanceof MarqueeError);
      assert.equal(error.kind, 'over_capacity');
      assert.equal(error.code, 'over_capacity');
      assert.ok(
        error.retryAfterMs !== undefined && error.retryAfterMs >= 1000 && error.retryAfterMs <= 5000,
        `Retry-After ${error.retryAfterMs} ms`,
      );
      return true;
    });
    first.close();
    await waitFor(async () => (await openConnections(node)) === 0, { what: 'the slot to free' });

    // A connected client loses its connection, and someone else takes the only slot.
    const p = await startProxy(node.port);
    try {
      const alice = client(p.wsUrl);
      await alice.connect();
      p.block(true);
      const dropped = nextEvent(alice, 'disconnected');
      p.dropAll();
      await dropped;
      await waitFor(async () => (await openConnections(node)) === 0, { what: 'the slot to free' });
      const other = client(node.wsUrl);
      await other.connect();

      const refused = nextEvent(alice, 'disconnected', (d) => d.error?.kind === 'over_capacity');
      p.block(false);
      const refusal = await refused;
      const retryAfterMs = refusal.error?.retryAfterMs ?? 0;
      assert.ok(retryAfterMs >= 1000, `Retry-After ${retryAfterMs} ms`);
      assert.ok(
        refusal.reconnectInMs !== null && refusal.reconnectInMs >= retryAfterMs,
        `reconnect in ${refusal.reconnectInMs} ms, before the Retry-After of ${retryAfterMs} ms`,
      );
      alice.close();
    } finally {
      await p.close();
    }
  });
});
