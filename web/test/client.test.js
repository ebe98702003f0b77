// The SDK against a real node: one `marquee serve` on a fresh database for this file, a fresh
// event (and fresh buyers) for each test, real sockets on loopback. Connection failures are made
// with a TCP relay (harness `startProxy`) that cuts or freezes connections as a network would.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { MarqueeClient, MarqueeError, SEAT } from '../sdk/marquee.js';
import {
  adminApi,
  buyerToken,
  mintToken,
  newBuyer,
  seedEvent,
  sleep,
  startProxy,
  startTestNode,
  waitFor,
} from './harness.js';
import {
  availability,
  buyerClient,
  claimsOf,
  collect,
  nextEvent,
  recordingHandler,
  recordingWebSocket,
} from './support.js';

/** @type {Awaited<ReturnType<typeof startTestNode>>} */
let node;
const tenant = randomUUID();
/** @type {string} */
let venueId;
/** @type {MarqueeClient[]} */
const clients = [];
/** @type {Awaited<ReturnType<typeof startProxy>>[]} */
const proxies = [];

before(async () => {
  // Every simulated payment succeeds, so the check-in test gets its ticket deterministically.
  node = await startTestNode(null, { env: { MARQUEE_SIMULATED_PAYMENT_OUTCOMES: 'succeeded=1' } });
  const api = adminApi(node, tenant);
  await api.put('/v1/admin/tenant', { name: 'SDK tests' });
  venueId = (await api.post('/v1/admin/venues', { name: 'Hall', city: 'Porto' })).venue_id;
});

after(async () => {
  for (const client of clients) client.close();
  for (const proxy of proxies) await proxy.close();
  await node?.close();
});

/**
 * A buyer's client, closed after the file.
 * @param {string} url
 * @param {Partial<import('../sdk/marquee.js').ClientOptions>} [options]
 * @param {string} [sub]
 */
function buyer(url, options, sub = newBuyer()) {
  const client = buyerClient(url, { sub, tenant }, options);
  clients.push(client);
  return Object.assign(client, { sub });
}

async function proxy() {
  const p = await startProxy(node.port);
  proxies.push(p);
  return p;
}

/** A fresh live event without a waiting room. */
const freshEvent = () => seedEvent(node, { tenant, venueId });

/**
 * Waits for the seat map channel to report a seat's state.
 * @param {ReturnType<typeof recordingHandler>} recorder
 */
const lastSnapshot = (recorder) => recorder.subscriptions().at(-1)?.snapshot;

describe('connecting', () => {
  test('connect resolves with the welcome, naming the buyer, the inbox and the token expiry', async () => {
    const sub = newBuyer();
    const token = buyerToken(sub, tenant);
    const client = buyer(node.wsUrl, { token: () => token }, sub);
    const connected = nextEvent(client, 'connected');
    const welcome = await client.connect();
    assert.equal(welcome.type, 'welcome');
    assert.equal(welcome.user, sub);
    assert.equal(welcome.inbox, `inbox:${tenant}/${sub}`);
    assert.deepEqual(welcome.inbox_position.offset, 0);
    assert.deepEqual(welcome.inbox_snapshot, { pending: [] });
    assert.equal(welcome.expires_at, claimsOf(token).exp);
    assert.equal(welcome.heartbeat_ms, 25000);
    assert.equal(await connected, welcome);
    assert.equal(client.state, 'open');
    assert.equal(client.welcome, welcome);
    assert.ok((await client.ping()) >= 0);
  });

  test('a refused token rejects connect with the code the upgrade answered', async () => {
    const badSignature = buyer(node.wsUrl, { token: () => mintToken({ sub: 'x', tenant }, { secret: 'wrong' }) });
    await assert.rejects(badSignature.connect(), (error) => {
      assert.ok(error instanceof MarqueeError);
      assert.equal(error.kind, 'unauthorized');
      assert.equal(error.code, 'token_invalid');
      assert.equal(error.message, "the access token's signature is invalid");
      return true;
    });
    assert.equal(badSignature.state, 'idle');

    const expired = buyer(node.wsUrl, { token: () => buyerToken('x', tenant, { ttlSeconds: -60 }) });
    await assert.rejects(expired.connect(), { kind: 'unauthorized', code: 'token_expired' });

    const throwing = buyer(node.wsUrl, {
      token: () => {
        throw new Error('auth service down');
      },
    });
    await assert.rejects(throwing.connect(), {
      kind: 'token',
      code: 'token',
      message: 'the token provider failed: auth service down',
    });
  });

  test('a link that dies silently is found by the keepalive ping, and the client reconnects', async () => {
    const p = await proxy();
    const alice = buyer(p.wsUrl, { keepaliveMs: 200, requestTimeoutMs: 300 });
    const first = await alice.connect();
    const disconnected = nextEvent(alice, 'disconnected');
    const reconnected = nextEvent(alice, 'connected');
    p.freeze('both'); // no FIN, no RST: only silence
    const started = Date.now();
    const drop = await disconnected;
    assert.deepEqual({ code: drop.code, reason: drop.reason }, { code: 1006, reason: 'no answer to a keepalive ping' });
    assert.ok(Date.now() - started < 1500, `found after ${Date.now() - started} ms`);
    const second = await reconnected;
    assert.notEqual(second.session, first.session);
  });

  test('an unreachable node rejects connect', async () => {
    const p = await proxy();
    p.block(true);
    const client = buyer(p.wsUrl);
    await assert.rejects(client.connect(), { kind: 'connect', code: 'connect' });
  });
});

describe('channels', () => {
  test('a subscription gets the snapshot, then another buyer\'s hold as the next delta', async () => {
    const event = await freshEvent();
    const alice = buyer(node.wsUrl);
    const bob = buyer(node.wsUrl);
    await Promise.all([alice.connect(), bob.connect()]);
    const seats = recordingHandler();
    const subscribed = await alice.subscribe(`seats:${event.eventId}`, seats.handler);
    assert.equal(subscribed.recovered, false);
    assert.equal(subscribed.automatic, false);
    assert.equal(subscribed.offset, 0);
    assert.deepEqual(subscribed.snapshot, {
      ga: [{ available: 100, ticket_type: event.ticketTypes.ga }],
      seats: 40,
      state: 'AAAAAAAAAAAAAA==', // 40 seats, two bits each, all free
      v: 0,
    });
    assert.deepEqual(seats.subscriptions(), [subscribed]);

    const result = await bob.holdSeats(event.eventId, [5, 6]);
    assert.equal(result.outcome.status, 'held');
    await seats.until((log) => log.length === 2, 'the delta');
    assert.deepEqual(seats.publications(), [
      {
        channel: `seats:${event.eventId}`,
        epoch: subscribed.epoch,
        offset: subscribed.offset + 1,
        data: { v: 1, held: [5, 6] },
      },
    ]);
    assert.deepEqual(alice.position(`seats:${event.eventId}`), { epoch: subscribed.epoch, offset: 1 });
  });

  test('the seat map helper decodes the snapshot and applies deltas', async () => {
    const event = await freshEvent();
    const alice = buyer(node.wsUrl);
    await alice.connect();
    /** @type {import('../sdk/marquee.js').SeatMapChange[]} */
    const changes = [];
    const map = await alice.subscribeSeatMap(event.eventId, (change) => changes.push(change));
    assert.equal(map.size, 40);
    assert.equal(map.seatsIn(SEAT.FREE).length, 40);
    assert.equal(map.ga.get(event.ticketTypes.ga), 100);
    await alice.holdSeats(event.eventId, [0, 39]);
    await alice.holdGa(event.eventId, event.ticketTypes.ga, 3);
    await waitFor(() => map.version === 2, { what: 'two deltas' });
    assert.deepEqual(map.seatsIn(SEAT.HELD), [0, 39]);
    assert.equal(map.ga.get(event.ticketTypes.ga), 97);
    assert.deepEqual(
      changes.map((c) => c.delta),
      [null, { v: 1, held: [0, 39] }, { v: 2, ga: [{ ticket_type: event.ticketTypes.ga, available: 97 }] }],
    );
  });

  test('after an abrupt drop the subscription resumes where it was, without a gap or a repeat', async () => {
    const event = await freshEvent();
    const p = await proxy();
    const alice = buyer(p.wsUrl);
    const bob = buyer(node.wsUrl);
    await Promise.all([alice.connect(), bob.connect()]);
    const channel = `seats:${event.eventId}`;
    const seats = recordingHandler();
    const first = await alice.subscribe(channel, seats.handler);
    await bob.holdSeats(event.eventId, [1]);
    await seats.until((log) => log.length === 2, 'the first delta');

    // The network goes: every socket is cut without a close frame, and the node cannot be
    // reached while two more holds change the map.
    p.block(true);
    const dropped = nextEvent(alice, 'disconnected');
    assert.equal(p.dropAll(), 1);
    const disconnected = await dropped;
    assert.equal(disconnected.code, 1006);
    assert.ok(disconnected.reconnectInMs !== null && disconnected.reconnectInMs <= 50);
    await bob.holdSeats(event.eventId, [2]);
    await bob.holdSeats(event.eventId, [3]);
    const reconnected = nextEvent(alice, 'connected');
    p.block(false);
    await reconnected;

    await seats.until((log) => log.length === 5, 'the resume and the two missed deltas');
    const subscriptions = seats.subscriptions();
    assert.equal(subscriptions.length, 2);
    assert.deepEqual(
      { ...subscriptions[1] },
      { channel, epoch: first.epoch, offset: 1, recovered: true, automatic: true },
    );
    assert.deepEqual(
      seats.publications().map((pub) => [pub.epoch, pub.offset, pub.data]),
      [
        [first.epoch, 1, { v: 1, held: [1] }],
        [first.epoch, 2, { v: 2, held: [2] }],
        [first.epoch, 3, { v: 3, held: [3] }],
      ],
    );
    // And it is live again.
    await bob.holdSeats(event.eventId, [4]);
    await seats.until((log) => log.length === 6, 'a live delta');
    assert.deepEqual(seats.publications().at(-1)?.data, { v: 4, held: [4] });
  });

  test('resync asks for a fresh snapshot', async () => {
    const event = await freshEvent();
    const alice = buyer(node.wsUrl);
    await alice.connect();
    const seats = recordingHandler();
    await alice.subscribe(`seats:${event.eventId}`, seats.handler);
    await alice.holdSeats(event.eventId, [8]);
    await seats.until((log) => log.length === 2, 'the delta');
    alice.resync(`seats:${event.eventId}`);
    await seats.until((log) => log.length === 3, 'the fresh snapshot');
    const again = seats.subscriptions()[1];
    assert.equal(again.recovered, false);
    assert.equal(again.automatic, true);
    assert.equal(again.offset, 1);
    // Seat 8 held: byte 2 holds seats 8-11, seat 8 in its lowest bits.
    assert.deepEqual(again.snapshot, {
      ga: [{ available: 100, ticket_type: event.ticketTypes.ga }],
      seats: 40,
      state: 'AAABAAAAAAAAAA==',
      v: 1,
    });
    assert.deepEqual(lastSnapshot(seats), again.snapshot);
  });

  test('a refused subscription rejects with the server\'s code and is dropped', async () => {
    const alice = buyer(node.wsUrl);
    await alice.connect();
    await assert.rejects(alice.subscribe('inbox:someone-else', {}), {
      name: 'MarqueeError',
      kind: 'server',
      code: 'forbidden',
      channel: 'inbox:someone-else',
    });
    await assert.rejects(alice.subscribe('nonsense:x', {}), { kind: 'server', code: 'bad_request' });
    assert.equal(alice.position('nonsense:x'), undefined);
  });
});

describe('requests', () => {
  test('a request without a reply rejects with a timeout', async () => {
    const p = await proxy();
    const alice = buyer(p.wsUrl);
    await alice.connect();
    p.freeze(); // requests reach the node; nothing comes back
    const started = Date.now();
    await assert.rejects(alice.ping({ timeoutMs: 300 }), (error) => {
      assert.ok(error instanceof MarqueeError);
      assert.equal(error.kind, 'timeout');
      assert.equal(error.code, 'timeout');
      assert.equal(error.message, 'no reply to ping within 300 ms');
      return true;
    });
    const waited = Date.now() - started;
    assert.ok(waited >= 290 && waited < 1500, `waited ${waited} ms`);
  });

  test('a server error rejects with a typed error carrying its code', async () => {
    const alice = buyer(node.wsUrl);
    await alice.connect();
    await assert.rejects(alice.checkinScan({ qr: 'MQ1.a.b', scan_id: 'scan-1' }), {
      name: 'MarqueeError',
      kind: 'server',
      code: 'forbidden',
      message: 'check-in needs the gate role and a tenant',
    });
    // A command refused before the queue: the request id is not used up, nothing stays open.
    await assert.rejects(alice.holdSeats(randomUUID(), [1], { requestId: 'refused-1' }), {
      kind: 'server',
      code: 'not_found',
      requestId: 'refused-1',
    });
    assert.deepEqual(alice.openCommands(), []);
  });

  test('requests while disconnected reject at once', async () => {
    const alice = buyer(node.wsUrl);
    await assert.rejects(alice.ping(), { kind: 'disconnected', code: 'disconnected' });
    alice.close();
    await assert.rejects(alice.ping(), { kind: 'closed' });
    await assert.rejects(alice.connect(), { kind: 'closed' });
  });
});

describe('inbox', () => {
  test('a hold\'s result is delivered once and acknowledged, so it is not delivered again', async () => {
    const event = await freshEvent();
    const recording = recordingWebSocket();
    const sub = newBuyer();
    const alice = buyer(node.wsUrl, { WebSocket: recording.WebSocket }, sub);
    await alice.connect();
    const results = collect(alice, 'result');
    const result = await alice.holdSeats(event.eventId, [20, 21]);
    assert.equal(result.outcome.status, 'held');
    assert.deepEqual(results, [result]);
    assert.deepEqual(Object.keys(result).sort(), ['command', 'event', 'outcome', 'request_id']);

    // The ack went out with the request id, and the node confirmed it.
    const ack = await waitFor(() =>
      recording.sentOf('ack').find((f) => f.message.request_ids.includes(result.request_id)),
    );
    await waitFor(() => recording.receivedOf('acked').some((f) => f.message.id === ack?.message.id), {
      what: 'acked',
    });
    alice.close();

    // A new session (a reloaded page: no memory of what was delivered) gets nothing again.
    const again = buyer(node.wsUrl, {}, sub);
    const redelivered = collect(again, 'result');
    const welcome = await again.connect();
    assert.deepEqual(welcome.inbox_snapshot, { pending: [] });
    assert.equal(welcome.inbox_position.offset, 1);
    await again.ping();
    assert.deepEqual(redelivered, []);
  });

  test('results pending in the welcome are delivered and acknowledged', async () => {
    const event = await freshEvent();
    const sub = newBuyer();
    // A client that sends a command and leaves before acknowledging its result.
    const raw = new WebSocket(`${node.wsUrl}?access_token=${buyerToken(sub, tenant)}`, 'marquee.v1.json');
    /** @type {any[]} */
    const frames = [];
    raw.on('message', (data) => frames.push(JSON.parse(String(data))));
    await new Promise((resolve) => raw.once('open', resolve));
    /** @type {import('../sdk/marquee.js').Command} */
    const command = { kind: 'hold_seats', event: event.eventId, seats: [30] };
    raw.send(JSON.stringify({ type: 'command', id: 1, request_id: 'left-unacked', command }));
    await waitFor(() => frames.some((f) => f.type === 'pub' && f.data.request_id === 'left-unacked'), {
      what: 'the raw client\'s result',
    });
    raw.close();

    const recording = recordingWebSocket();
    const alice = buyer(node.wsUrl, { WebSocket: recording.WebSocket }, sub);
    const results = collect(alice, 'result');
    const welcome = await alice.connect();
    assert.equal(welcome.inbox_snapshot?.pending.length, 1);
    assert.equal(results.length, 1);
    assert.equal(results[0].request_id, 'left-unacked');
    assert.equal(results[0].outcome.status, 'held');
    await waitFor(() => recording.receivedOf('acked').length === 1, { what: 'acked' });
    assert.deepEqual(recording.sentOf('ack').map((f) => f.message.request_ids), [['left-unacked']]);
    // The same id sent again is answered from what was delivered, without a round trip.
    assert.equal(await alice.command(command, { requestId: 'left-unacked' }), results[0]);
    assert.equal(recording.sentOf('command').length, 0);
  });
});

describe('purchase commands across reconnects', () => {
  test('a command lost with the connection is resent after the reconnect with the same request id, and takes effect once', async () => {
    const event = await freshEvent();
    const p = await proxy();
    const recording = recordingWebSocket();
    const alice = buyer(p.wsUrl, { WebSocket: recording.WebSocket });
    await alice.connect();
    const results = collect(alice, 'result');
    const before = await availability(node, tenant, event.eventId);

    // The link dies silently both ways: the command goes out and never reaches the node.
    p.freeze('both');
    const pending = alice.holdSeats(event.eventId, [10, 11]);
    const [sent] = recording.sentOf('command');
    assert.deepEqual(alice.openCommands(), [sent.message.request_id]);
    p.dropAll();

    const result = await pending;
    assert.equal(result.request_id, sent.message.request_id);
    assert.ok(result.outcome.status === 'held');
    assert.deepEqual(result.outcome.seats, [10, 11]);
    const commands = recording.sentOf('command');
    assert.equal(commands.length, 2, 'sent once on each connection');
    assert.notEqual(commands[1].socket, commands[0].socket);
    assert.equal(commands[1].message.request_id, sent.message.request_id);
    assert.deepEqual(commands[1].message.command, sent.message.command);
    assert.deepEqual(results, [result]);
    assert.deepEqual(alice.openCommands(), []);
    const now = await availability(node, tenant, event.eventId);
    assert.equal(now.free[event.categories.standard], before.free[event.categories.standard] - 2);
  });

  test('a command whose result was lost with the connection gets it after the reconnect, without a second effect', async () => {
    const event = await freshEvent();
    const p = await proxy();
    const recording = recordingWebSocket();
    const sub = newBuyer();
    const alice = buyer(p.wsUrl, { WebSocket: recording.WebSocket }, sub);
    await alice.connect();
    const results = collect(alice, 'result');
    const before = await availability(node, tenant, event.eventId);
    const free = () => before.free[event.categories.standard];

    // Only the node's answers are lost: the seats are held, and neither `accepted` nor the
    // result comes back before the connection drops.
    p.freeze('down');
    const requestId = MarqueeClient.newRequestId();
    const pending = alice.holdSeats(event.eventId, [12, 13], { requestId });
    await waitFor(
      async () => (await availability(node, tenant, event.eventId)).free[event.categories.standard] === free() - 2,
      { what: 'the hold to take effect on the node' },
    );
    assert.deepEqual(alice.openCommands(), [requestId]);
    p.dropAll();

    // The result is pending on the node, so the next welcome brings it (§8 step 4: read the
    // inbox snapshot, then resend what is still open: nothing here).
    const result = await pending;
    assert.equal(result.request_id, requestId);
    assert.ok(result.outcome.status === 'held');
    assert.deepEqual(results, [result]);
    assert.equal(recording.sentOf('command').length, 1);
    assert.deepEqual(
      recording.receivedOf('welcome')[1].message.inbox_snapshot.pending.map((/** @type {any} */ r) => r.request_id),
      [requestId],
    );

    // A reloaded page retrying the same request id gets the first result again: same hold.
    const reloaded = buyer(node.wsUrl, {}, sub);
    await reloaded.connect();
    const retried = await reloaded.holdSeats(event.eventId, [12, 13], { requestId });
    assert.deepEqual(retried, result);
    const now = await availability(node, tenant, event.eventId);
    assert.equal(now.free[event.categories.standard], free() - 2, 'one effect, not two');
  });

  test('a command made while disconnected is sent after the reconnect, once', async () => {
    const event = await freshEvent();
    const p = await proxy();
    const recording = recordingWebSocket();
    const alice = buyer(p.wsUrl, { WebSocket: recording.WebSocket });
    await alice.connect();
    p.block(true);
    const dropped = nextEvent(alice, 'disconnected');
    p.dropAll();
    await dropped;
    assert.notEqual(alice.state, 'open');

    const pending = alice.holdBestAvailable(event.eventId, event.categories.premium, 2);
    assert.equal(alice.openCommands().length, 1);
    assert.equal(recording.sentOf('command').length, 0);
    p.block(false);
    const result = await pending;
    assert.equal(result.command, 'hold_best_available');
    assert.equal(result.outcome.status, 'held');
    const commands = recording.sentOf('command');
    assert.equal(commands.length, 1);
    assert.equal(commands[0].message.request_id, result.request_id);
    const now = await availability(node, tenant, event.eventId);
    assert.equal(now.free[event.categories.premium], now.total[event.categories.premium] - 2);
  });
});

describe('tokens', () => {
  test('the token provider is asked again for every reconnect', async () => {
    const sub = newBuyer();
    const p = await proxy();
    /** @type {string[]} */
    const tokens = [];
    const alice = buyer(
      p.wsUrl,
      {
        token: () => {
          // A distinct expiry per call, to tell the tokens apart in the welcome.
          const token = buyerToken(sub, tenant, { ttlSeconds: 3600 + tokens.length });
          tokens.push(token);
          return token;
        },
      },
      sub,
    );
    const first = await alice.connect();
    assert.equal(tokens.length, 1);
    assert.equal(first.expires_at, claimsOf(tokens[0]).exp);

    const reconnected = nextEvent(alice, 'connected');
    p.dropAll();
    const second = await reconnected;
    assert.equal(tokens.length, 2);
    assert.equal(second.expires_at, claimsOf(tokens[1]).exp);
    assert.notEqual(second.expires_at, first.expires_at);
    assert.notEqual(second.session, first.session);
  });

  test('the token is refreshed over the socket before it expires', async () => {
    const sub = newBuyer();
    const recording = recordingWebSocket();
    /** @type {string[]} */
    const tokens = [];
    const alice = buyer(
      node.wsUrl,
      {
        WebSocket: recording.WebSocket,
        // The first token lives 4 s, so the refresh comes half way: after about 2 s.
        token: () => {
          const token = buyerToken(sub, tenant, { ttlSeconds: tokens.length === 0 ? 4 : 3600 });
          tokens.push(token);
          return token;
        },
      },
      sub,
    );
    const refreshed = nextEvent(alice, 'refreshed');
    const welcome = await alice.connect();
    const started = Date.now();
    const { expiresAt } = await refreshed;
    const waited = Date.now() - started;
    assert.ok(waited > 800 && waited < 3500, `refreshed after ${waited} ms`);
    assert.equal(tokens.length, 2);
    assert.equal(expiresAt, claimsOf(tokens[1]).exp);
    assert.deepEqual(
      recording.sentOf('refresh').map((f) => [f.socket, f.message.token]),
      [[0, tokens[1]]],
    );
    assert.equal(alice.state, 'open');
    assert.equal(alice.welcome?.session, welcome.session); // the same connection
  });
});

describe('waiting room', () => {
  test('queue.join gives a status, pushes follow, and the admission lets a hold through', async () => {
    const event = await seedEvent(node, { tenant, venueId, requiresAdmission: true });
    const alice = buyer(node.wsUrl);
    await alice.connect();
    const statuses = collect(alice, 'queue');
    const admitted = nextEvent(alice, 'queue', (s) => s.state === 'admitted');
    const joined = await alice.joinQueue(event.onsaleId);
    assert.equal(joined.onsale, event.onsaleId);
    assert.match(joined.place, /^p[0-9a-f]+$/);
    assert.ok(['waiting', 'admitted'].includes(joined.state), joined.state);
    assert.equal(statuses[0], joined);

    const admission = (await admitted).admission;
    assert.ok(admission);
    assert.equal(typeof admission.token, 'string');
    assert.ok(admission.expires_at > Date.now() / 1000);
    assert.equal(alice.queueStatus(event.onsaleId)?.state, 'admitted');

    const without = await alice.holdSeats(event.eventId, [12]);
    assert.deepEqual(without.outcome, {
      status: 'rejected',
      code: 'admission_required',
      message: 'this onsale admits buyers through its waiting room',
    });
    const held = await alice.holdSeats(event.eventId, [12], { admission: admission.token });
    assert.equal(held.outcome.status, 'held');

    const left = await alice.leaveQueue(event.onsaleId);
    assert.deepEqual(left, { onsale: event.onsaleId, place: joined.place, state: 'ended', reason: 'left' });
    assert.deepEqual(alice.queueStatus(event.onsaleId), left);
    // The listener heard every change once, in order (the node also pushes the `ended` status
    // it answered queue.leave with; the client does not repeat it).
    await alice.ping();
    assert.deepEqual(
      statuses.map((s) => s.state),
      joined.state === 'admitted' ? ['admitted', 'ended'] : ['waiting', 'admitted', 'ended'],
    );
  });

  test('the queue is joined again after a reconnect, keeping the place', async () => {
    const event = await seedEvent(node, { tenant, venueId, requiresAdmission: true });
    const p = await proxy();
    const recording = recordingWebSocket();
    const alice = buyer(p.wsUrl, { WebSocket: recording.WebSocket });
    await alice.connect();
    const joined = await alice.joinQueue(event.onsaleId);
    p.dropAll();
    const reply = await waitFor(
      () => recording.receivedOf('queue.joined').find((f) => f.socket === 1),
      { what: 'the queue.joined reply on the new connection' },
    );
    assert.equal(reply.message.status.place, joined.place);
    assert.deepEqual(
      recording.sentOf('queue.join').map((f) => [f.socket, f.message.onsale]),
      [
        [0, event.onsaleId],
        [1, event.onsaleId],
      ],
    );
    assert.equal(alice.queueStatus(event.onsaleId)?.place, joined.place);
  });
});

describe('orders and check-in', () => {
  test('a paid order arrives on the inbox with its tickets, and a gate admits the ticket once', async () => {
    const event = await freshEvent();
    const sub = newBuyer();
    const alice = buyer(node.wsUrl, {}, sub);
    await alice.connect();
    const paid = nextEvent(alice, 'order', (o) => o.status === 'paid');
    const held = await alice.holdSeats(event.eventId, [15]);
    assert.ok(held.outcome.status === 'held');
    const checkout = await alice.checkout(event.eventId, held.outcome.hold);
    assert.ok(checkout.outcome.status === 'checked_out');
    assert.equal(checkout.outcome.total_minor, 4500);
    assert.equal(checkout.outcome.currency, 'EUR');

    const order = await paid;
    assert.equal(order.order, checkout.outcome.order);
    assert.equal(order.request_id, `order:${order.order}:paid`);
    assert.equal(order.tickets?.length, 1);
    const [ticket] = order.tickets ?? [];
    assert.equal(ticket.seat, 15);
    assert.match(ticket.qr, /^MQ1\./);

    const gate = buyerClient(node.wsUrl, { sub: 'gate-north', tenant, roles: ['gate'] });
    clients.push(gate);
    await gate.connect();
    const scan = { qr: ticket.qr, scan_id: `north-${sub}-1`, event: event.eventId };
    const first = await gate.checkinScan(scan);
    assert.equal(first.status, 'admitted');
    assert.ok(first.status === 'admitted');
    assert.deepEqual(
      { scan_id: first.scan_id, ticket: first.ticket, event: first.event, seat: first.seat, ticket_type: first.ticket_type },
      { scan_id: scan.scan_id, ticket: ticket.ticket, event: event.eventId, seat: 15, ticket_type: event.ticketTypes.standard },
    );
    const retried = await gate.checkinScan(scan);
    assert.deepEqual(retried, first, 'the same scan id answers the first answer');
    const second = await gate.checkinScan({ ...scan, scan_id: `north-${sub}-2` });
    assert.deepEqual(second, {
      scan_id: `north-${sub}-2`,
      ticket: ticket.ticket,
      status: 'already_checked_in',
      at: first.at,
      gate: 'gate-north',
    });

    // The order update was acknowledged: a new session does not get it again.
    await sleep(100);
    alice.close();
    const again = buyer(node.wsUrl, {}, sub);
    const welcome = await again.connect();
    assert.deepEqual(welcome.inbox_snapshot, { pending: [] });
  });
});
