// The SDK's edge cases against a scripted server: a `ws` WebSocketServer on loopback that
// answers what each test tells it to. A real node cannot be made to refuse a subscription with
// `unavailable`, repeat a publication or skip an offset on demand; these are the paths that
// keep a client exact when it does (docs/protocol.md §5, §8, §9).

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { MarqueeClient } from '../sdk/marquee.js';
import { waitFor } from './harness.js';
import { collect, nextEvent, recordingHandler } from './support.js';

/**
 * @typedef {object} Peer one connection as the scripted server sees it
 * @property {number} index 0 for the first connection, 1 for the next...
 * @property {(message: object) => void} send
 * @property {(code: number, reason?: string) => void} close
 * @property {any[]} received the client's messages, parsed
 */

/**
 * A scripted server. `onConnection(peer)` runs for each connection (send the welcome there);
 * `onMessage(peer, message)` for each client message.
 * @param {{ onConnection?: (peer: Peer) => void, onMessage?: (peer: Peer, message: any) => void }} script
 */
async function scriptedServer(script) {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'marquee.v1.json' });
  await once(server, 'listening');
  /** @type {Peer[]} */
  const peers = [];
  server.on('connection', (socket) => {
    /** @type {Peer} */
    const peer = {
      index: peers.length,
      send: (message) => socket.send(JSON.stringify(message)),
      close: (code, reason) => socket.close(code, reason),
      received: [],
    };
    peers.push(peer);
    socket.on('message', (data) => {
      const message = JSON.parse(String(data));
      peer.received.push(message);
      script.onMessage?.(peer, message);
    });
    script.onConnection?.(peer);
  });
  const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port;
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    peers,
    /** Every message of `type` the client sent, on any connection, with the connection's index. */
    /** @param {string} type */
    sent: (type) => peers.flatMap((p) => p.received.filter((m) => m.type === type).map((m) => ({ peer: p.index, ...m }))),
    close: () =>
      new Promise((resolve) => {
        // ws leaves open connections alone on close(); end them, or close() never finishes.
        for (const socket of server.clients) socket.terminate();
        server.close(resolve);
      }),
  };
}

/** @param {number} index */
const welcome = (index, extra = {}) => ({
  type: 'welcome',
  session: `s-${index}`,
  node: 'scripted',
  user: 'u1',
  inbox: 'inbox:u1',
  inbox_position: { epoch: 'inbox-epoch', offset: 0 },
  inbox_snapshot: { pending: [] },
  expires_at: Math.floor(Date.now() / 1000) + 3600,
  heartbeat_ms: 25000,
  ...extra,
});

/** @type {(() => unknown)[]} */
const cleanups = [];
after(async () => {
  // Clients first, then the servers they talk to.
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/**
 * A client of the scripted server, with a fixed token and fast backoff; no refusal probe.
 * @param {string} url
 * @param {Partial<import('../sdk/marquee.js').ClientOptions>} [options]
 */
function client(url, options = {}) {
  const c = new MarqueeClient({
    url,
    token: () => 'scripted-token',
    WebSocket,
    fetch: null,
    backoff: { baseMs: 40, capMs: 200 },
    requestTimeoutMs: 2000,
    ...options,
  });
  cleanups.push(() => c.close());
  return c;
}

describe('subscriptions', () => {
  test('a resubscribe answered unavailable is retried with backoff until it succeeds', async () => {
    let refusals = 0;
    const server = await scriptedServer({
      onConnection: (peer) => peer.send(welcome(peer.index)),
      onMessage: (peer, m) => {
        if (m.type !== 'subscribe') return;
        if (!m.since) {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'e1', offset: 4, recovered: false, snapshot: { n: 4 } });
          // The node lost its feed: the client must resubscribe from where it is.
          peer.send({ type: 'resync', channel: m.channel, reason: 'stream_interrupted' });
        } else if (refusals < 3) {
          refusals += 1;
          peer.send({ type: 'error', id: m.id, code: 'unavailable', message: 'the channel engine cannot be reached' });
        } else {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'e1', offset: 4, recovered: true });
          peer.send({ type: 'pub', channel: m.channel, epoch: 'e1', offset: 5, data: { n: 5 } });
        }
      },
    });
    cleanups.push(server.close);
    const c = client(server.url);
    const errors = collect(c, 'error');
    await c.connect();
    const seats = recordingHandler();
    await c.subscribe('seats:x', seats.handler);
    await seats.until((log) => log.length === 3, 'the resume after three refusals');

    const subscribes = server.sent('subscribe');
    assert.deepEqual(
      subscribes.map((m) => m.since ?? null),
      [null, { epoch: 'e1', offset: 4 }, { epoch: 'e1', offset: 4 }, { epoch: 'e1', offset: 4 }, { epoch: 'e1', offset: 4 }],
    );
    assert.deepEqual(
      seats.log.map((e) => (e.kind === 'subscribed' ? ['subscribed', e.value.recovered, e.value.automatic] : ['pub', e.value.offset])),
      [
        ['subscribed', false, false],
        ['subscribed', true, true],
        ['pub', 5],
      ],
    );
    assert.deepEqual(
      errors.map((e) => [e.kind, e.code, e.channel]),
      Array(3).fill(['server', 'unavailable', 'seats:x']),
    );
  });

  test('publications are delivered once and in order: repeats are dropped, a gap or a new epoch resumes', async () => {
    const server = await scriptedServer({
      onConnection: (peer) => peer.send(welcome(peer.index)),
      onMessage: (peer, m) => {
        if (m.type !== 'subscribe') return;
        const pub = (/** @type {string} */ epoch, /** @type {number} */ offset) =>
          peer.send({ type: 'pub', channel: m.channel, epoch, offset, data: { at: `${epoch}/${offset}` } });
        if (!m.since) {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'e1', offset: 10, recovered: false, snapshot: {} });
          pub('e1', 11);
          pub('e1', 11); // a repeat
          pub('e1', 10); // an old one
          pub('e1', 13); // 12 is missing
          pub('e1', 14); // dropped while the resume is in flight
        } else if (m.since.epoch === 'e1' && m.since.offset === 11) {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'e1', offset: 11, recovered: true });
          pub('e1', 12);
          pub('e1', 13);
          pub('e2', 1); // the stream's history was lost
        } else if (m.since.epoch === 'e1' && m.since.offset === 13) {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'e2', offset: 1, recovered: false, snapshot: { fresh: true } });
          pub('e2', 2);
        }
      },
    });
    cleanups.push(server.close);
    const c = client(server.url);
    await c.connect();
    const channel = recordingHandler();
    await c.subscribe('queue:o1', channel.handler);
    await channel.until((log) => log.some((e) => e.kind === 'publication' && e.value.epoch === 'e2'), 'the new epoch');
    assert.deepEqual(
      channel.log.map((e) => (e.kind === 'subscribed' ? `sub ${e.value.epoch}/${e.value.offset} ${e.value.recovered}` : e.value.data.at)),
      ['sub e1/10 false', 'e1/11', 'sub e1/11 true', 'e1/12', 'e1/13', 'sub e2/1 false', 'e2/2'],
    );
    assert.deepEqual(c.position('queue:o1'), { epoch: 'e2', offset: 2 });
  });
});

describe('connecting', () => {
  test('an error instead of the welcome fails the attempt with the server\'s code', async () => {
    const server = await scriptedServer({
      onConnection: (peer) => {
        peer.send({ type: 'error', code: 'unavailable', message: 'the inbox cannot be subscribed' });
        peer.close(1011, 'internal_error');
      },
    });
    cleanups.push(server.close);
    await assert.rejects(client(server.url).connect(), {
      kind: 'server',
      code: 'unavailable',
      message: 'the inbox cannot be subscribed',
    });
  });

  test('after close 1000 the client does not reconnect by itself', async () => {
    const server = await scriptedServer({
      onConnection: (peer) => {
        peer.send(welcome(peer.index));
        setTimeout(() => peer.close(1000, 'normal'), 50);
      },
    });
    cleanups.push(server.close);
    const c = client(server.url);
    const disconnected = nextEvent(c, 'disconnected');
    await c.connect();
    const drop = await disconnected;
    assert.deepEqual({ code: drop.code, reason: drop.reason, reconnectInMs: drop.reconnectInMs }, { code: 1000, reason: 'normal', reconnectInMs: null });
    assert.equal(c.state, 'idle');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(server.peers.length, 1);
  });

  test('after close 4003 (flooding) the client waits longer than a first backoff', async () => {
    const server = await scriptedServer({
      onConnection: (peer) => {
        peer.send(welcome(peer.index));
        if (peer.index === 0) setTimeout(() => peer.close(4003, 'rate_limited'), 20);
      },
    });
    cleanups.push(server.close);
    // Jitter pinned to its top: the delay is the ceiling itself.
    const c = client(server.url, { random: () => 0.9999999, backoff: { baseMs: 40, capMs: 5000 } });
    const disconnected = nextEvent(c, 'disconnected');
    await c.connect();
    const drop = await disconnected;
    assert.equal(drop.code, 4003);
    assert.equal(drop.reconnectInMs, 40 * 2 ** 4);
  });
});

describe('inbox', () => {
  test('each request id is delivered once across snapshots, live publications and reconnects, and acks are repeated until confirmed', async () => {
    const result = (/** @type {string} */ id) => ({ request_id: id, event: 'ev', command: 'hold_seats', outcome: { status: 'held', hold: `h-${id}`, seats: [1], quantity: 1, expires_at: 1 } });
    const order = { request_id: 'order:o1:paid', order: 'o1', event: 'ev', status: 'paid', tickets: [] };
    const server = await scriptedServer({
      onConnection: (peer) => {
        // Both connections' welcomes hold r1 and the order: the first ack was never confirmed.
        peer.send(welcome(peer.index, { inbox_snapshot: { pending: [result('r1')], orders: [order] } }));
        if (peer.index === 0) {
          peer.send({ type: 'pub', channel: 'inbox:u1', epoch: 'inbox-epoch', offset: 1, data: { kind: 'result', ...result('r1') } });
          peer.send({ type: 'pub', channel: 'inbox:u1', epoch: 'inbox-epoch', offset: 2, data: { kind: 'result', ...result('r2') } });
          peer.send({ type: 'pub', channel: 'inbox:u1', epoch: 'inbox-epoch', offset: 3, data: { kind: 'unknown_kind' } });
        }
      },
      onMessage: (peer, m) => {
        if (m.type === 'ack' && peer.index === 0) setTimeout(() => peer.close(1012, 'service_restart'), 50);
        if (m.type === 'ack' && peer.index === 1) peer.send({ type: 'acked', id: m.id });
        if (m.type === 'subscribe') {
          peer.send({ type: 'subscribed', id: m.id, channel: m.channel, epoch: 'inbox-epoch', offset: 3, recovered: true });
        }
      },
    });
    cleanups.push(server.close);
    const c = client(server.url);
    const results = collect(c, 'result');
    const orders = collect(c, 'order');
    await c.connect();
    await waitFor(() => server.peers.length === 2 && server.sent('ack').some((m) => m.peer === 1), { what: 'the second connection\'s ack' });

    assert.deepEqual(results.map((r) => r.request_id), ['r1', 'r2']);
    assert.deepEqual(orders.map((o) => o.request_id), ['order:o1:paid']);
    assert.equal('kind' in results[1], false, 'delivered without the envelope\'s kind');
    const acks = server.sent('ack').map((m) => [m.peer, m.request_ids]);
    assert.deepEqual(acks, [
      [0, ['r1', 'order:o1:paid']],
      [0, ['r2']],
      // Again: the welcome's snapshot (delivered before, so not handed over), then the rest of
      // what the first connection never had confirmed.
      [1, ['r1', 'order:o1:paid']],
      [1, ['r2']],
    ]);
    // The second connection resumed the inbox from the last offset delivered.
    assert.deepEqual(server.sent('subscribe').map((m) => [m.peer, m.channel, m.since]), [[1, 'inbox:u1', { epoch: 'inbox-epoch', offset: 3 }]]);
  });
});
