// Test harness: a real Marquee node on loopback, against a fresh Postgres database.
//
// Every test suite of `web/` (the SDK's node tests now, browser tests of the pages later) starts
// the real server the way an operator would: the prebuilt `marquee serve` binary, its settings
// in the environment, a database of its own that is dropped at the end. Nothing is mocked; the
// tests speak to the node over real sockets.
//
// - `startTestNode()`: a database plus a node; `close()` (or the test context's end) stops the
//   node and drops the database.
// - `createDatabase()`, `startNode()`: the two halves, for tests that need more control
//   (several nodes, restarts, unusual settings).
// - `mintToken()`, `buyerToken()`, `adminToken()`: HS256 JWTs signed with the node's secret.
// - `seedCatalog()`, `seedEvent()`: a tenant, a venue and live events through the admin API.
// - `startProxy()`: a TCP relay in front of a node, so a test can cut every connection
//   abruptly (no close frame), as a network failure would.
// - Staff pages in Chromium (`launchStaffBrowser()`, `staffPage()`, `signedInUrl()`,
//   `waitForText()`, `checkPageState()`: a screenshot and an axe-core check of one state,
//   `assertPageClean()`), and `seedPrequeueEvent()`, `gateToken()` for the dashboard and gate.
//
// The binary is `$MARQUEE_BIN`, by default `target/debug/marquee` of this repository. Postgres
// is `$MARQUEE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`, trust auth).

import { spawn, spawnSync, execFile } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

/** The shared secret the test nodes verify access tokens with (HS256). */
export const JWT_SECRET = 'marquee-web-tests-jwt-secret-0123456789';

/** The key test nodes sign and check waiting-room admissions with. */
export const ADMISSION_SECRET = 'marquee-web-tests-admission-secret-0123456789';

/** The `marquee` binary the tests run; never built by the tests themselves. */
export const MARQUEE_BIN =
  process.env.MARQUEE_BIN ?? path.resolve(here, '../../target/debug/marquee');

/**
 * Where each node's output is also written, one file per node (`node-<port>.log`), when set:
 * `scripts/test` sets it so that a failed run shows what the nodes said.
 */
const NODE_LOG_DIR = process.env.MARQUEE_TEST_NODE_LOGS;
if (NODE_LOG_DIR) mkdirSync(NODE_LOG_DIR, { recursive: true });

/** Base URL of the Postgres server, without a database name. */
export const PG_URL = process.env.MARQUEE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432';

// Children and databases this process made, so that a test run that dies half way (an
// uncaught exception, Ctrl-C) does not leave a server or a database behind.
/** @type {Set<import('node:child_process').ChildProcess>} */
const liveChildren = new Set();
/** @type {Set<string>} */
const liveDatabases = new Set();

process.once('exit', () => {
  for (const child of liveChildren) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  for (const name of liveDatabases) {
    // Synchronous on purpose: an exit handler cannot wait for a promise.
    spawnSync('psql', [PG_URL + '/postgres', '-qc', `drop database if exists "${name}" with (force)`], {
      stdio: 'ignore',
    });
  }
});
for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
  process.once(signal, () => process.exit(130));
}

/**
 * Runs one SQL statement against the `postgres` maintenance database with `psql`.
 * @param {string} sql
 */
async function psql(sql) {
  await execFileAsync('psql', [PG_URL + '/postgres', '-v', 'ON_ERROR_STOP=1', '-qc', sql]);
}

/**
 * @typedef {object} TestDatabase
 * @property {string} name the database's name
 * @property {string} url its `DATABASE_URL`
 * @property {() => Promise<void>} drop drops it (idempotent)
 */

/**
 * Creates a fresh, uniquely named database; the node applies its migrations at start-up.
 * @returns {Promise<TestDatabase>}
 */
export async function createDatabase() {
  const name = `marquee_web_${randomBytes(6).toString('hex')}`;
  await psql(`create database "${name}"`);
  liveDatabases.add(name);
  let dropped = false;
  return {
    name,
    url: `${PG_URL}/${name}`,
    async drop() {
      if (dropped) return;
      dropped = true;
      // `with (force)` ends connections a killed node may have left for a moment.
      await psql(`drop database if exists "${name}" with (force)`);
      liveDatabases.delete(name);
    },
  };
}

/**
 * A loopback TCP port that was free a moment ago. (Bind-and-release: another process could
 * take it in between, which on a test machine practically never happens.)
 * @returns {Promise<number>}
 */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = /** @type {net.AddressInfo} */ (server.address());
  server.close();
  await once(server, 'close');
  return address.port;
}

/**
 * Polls `check` until it returns something truthy, or fails after `timeoutMs`.
 * @template T
 * @param {() => T | Promise<T>} check
 * @param {{timeoutMs?: number, intervalMs?: number, what?: string}} [options]
 * @returns {Promise<NonNullable<T>>}
 */
export async function waitFor(check, { timeoutMs = 5000, intervalMs = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return /** @type {NonNullable<T>} */ (value);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * @param {number} ms
 * @returns {Promise<void>}
 */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * @typedef {object} NodeOptions
 * @property {string} [databaseUrl] `DATABASE_URL`; without it the node has no booking engine
 * @property {number} [port] the public port (a free one when left out)
 * @property {Record<string, string>} [env] more settings (`MARQUEE_*`), over the defaults below
 * @property {number} [readyTimeoutMs] how long start-up may take (default 20 s)
 */

/**
 * A running `marquee serve` process.
 * @typedef {object} MarqueeNode
 * @property {number} port the public listener's port
 * @property {string} httpUrl e.g. `http://127.0.0.1:43121`
 * @property {string} wsUrl e.g. `ws://127.0.0.1:43121/ws`
 * @property {() => number | undefined} pid the current process's id
 * @property {() => string} logs everything the process wrote so far (all its runs)
 * @property {(signal?: NodeJS.Signals) => Promise<void>} stop ends it (SIGTERM: a graceful drain
 *   that sends clients `reconnect`; SIGKILL: a crash) and waits for the exit
 * @property {() => Promise<void>} start starts it again on the same port and database
 * @property {() => Promise<void>} restart `stop()` then `start()`
 */

/**
 * Starts `marquee serve` on a loopback port and waits until `GET /ready` answers 200.
 *
 * Defaults suit tests: the test JWT and admission secrets, a simulated payment delay of 200 ms,
 * a shutdown drain of 1 s (a restart stays quick), reconnect advice within 300 ms, a database
 * pool of 4, the internal listener on a port of its own.
 * @param {NodeOptions} [options]
 * @returns {Promise<MarqueeNode>}
 */
export async function startNode(options = {}) {
  const port = options.port ?? (await freePort());
  const httpUrl = `http://127.0.0.1:${port}`;
  /** @type {Record<string, string>} */
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
    MARQUEE_JWT_SECRET: JWT_SECRET,
    MARQUEE_ADMISSION_SECRET: ADMISSION_SECRET,
    // `serve` runs the simulated payment provider only when asked to.
    MARQUEE_PAYMENT_PROVIDER: 'simulated',
    MARQUEE_SIMULATED_PAYMENT_DELAY: '200ms',
    MARQUEE_SHUTDOWN_TIMEOUT: '1s',
    // Postgres is shared with other test suites on the machine: keep each node's share small.
    MARQUEE_DATABASE_POOL: '4',
    MARQUEE_RECONNECT_SPREAD: '300ms',
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    ...options.env,
  };
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--internal-listen', '127.0.0.1:0'];
  let output = '';
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child;

  async function start() {
    const started = spawn(MARQUEE_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    liveChildren.add(started);
    const logFile = NODE_LOG_DIR && path.join(NODE_LOG_DIR, `node-${port}.log`);
    /** @param {Buffer} chunk */
    const record = (chunk) => {
      output += chunk;
      if (logFile) appendFileSync(logFile, chunk);
    };
    started.stdout?.on('data', record);
    started.stderr?.on('data', record);
    started.once('exit', () => liveChildren.delete(started));
    const spawnError = once(started, 'error').then(([error]) => {
      throw new Error(`cannot start ${MARQUEE_BIN}: ${error.message}`);
    });
    const exited = once(started, 'exit').then(([code]) => {
      throw new Error(`marquee exited with ${code} during start-up:\n${output}`);
    });
    const ready = waitFor(
      async () => {
        try {
          const response = await fetch(`${httpUrl}/ready`);
          return response.status === 200;
        } catch {
          return false; // not listening yet
        }
      },
      { timeoutMs: options.readyTimeoutMs ?? 20_000, intervalMs: 25, what: `${httpUrl}/ready` },
    );
    try {
      await Promise.race([ready, spawnError, exited]);
    } finally {
      // Start-up is over either way; later exits are expected (stop) or seen in the logs.
      spawnError.catch(() => {});
      exited.catch(() => {});
    }
  }

  /** @param {NodeJS.Signals} [signal] */
  async function stop(signal = 'SIGTERM') {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill(signal); // by this child's own pid, never by name
    const timer = setTimeout(() => running.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    port,
    httpUrl,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    pid: () => child?.pid,
    logs: () => output,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}

/**
 * A fresh database and a node on it. `close()` stops the node and drops the database; pass a
 * test context `t` to have that done when the test ends.
 *
 * For a whole file, start it in a top-level `before` and close it in a top-level `after`
 * (`after` called inside `before` would run at the end of the hook, not of the file).
 * @param {{ after: (fn: () => unknown) => void } | null} [t]
 * @param {Omit<NodeOptions, 'databaseUrl'>} [options]
 * @returns {Promise<MarqueeNode & { database: TestDatabase, close: () => Promise<void> }>}
 */
export async function startTestNode(t = null, options = {}) {
  const database = await createDatabase();
  /** @type {MarqueeNode} */
  let node;
  try {
    node = await startNode({ ...options, databaseUrl: database.url });
  } catch (error) {
    await database.drop();
    throw error;
  }
  const close = async () => {
    await node.stop();
    await database.drop();
  };
  t?.after(close);
  return { ...node, database, close };
}

// ---------------------------------------------------------------------------------------------
// Tokens

/** @param {Buffer | string} data */
function base64url(data) {
  return Buffer.from(data).toString('base64url');
}

/**
 * Mints an HS256 JWT.
 * @param {Record<string, unknown>} claims `sub`, `tenant`, `roles`, ...; `exp` defaults to an
 *   hour from now
 * @param {{ secret?: string }} [options] the signing secret (default: the test nodes' secret)
 * @returns {string}
 */
export function mintToken(claims, { secret = JWT_SECRET } = {}) {
  const body = { exp: Math.floor(Date.now() / 1000) + 3600, ...claims };
  const signingInput = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(body))}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/**
 * A buyer's token: `sub` and `tenant`, no roles.
 * @param {string} sub
 * @param {string} tenant
 * @param {{ ttlSeconds?: number, roles?: string[] }} [options]
 */
export function buyerToken(sub, tenant, { ttlSeconds = 3600, roles = [] } = {}) {
  return mintToken({ sub, tenant, roles, exp: Math.floor(Date.now() / 1000) + ttlSeconds });
}

/**
 * An operator's token for the catalog admin API of `tenant`.
 * @param {string} tenant
 */
export function adminToken(tenant) {
  return buyerToken('operator-1', tenant, { roles: ['admin'] });
}

/** A fresh buyer id, unique across test runs. */
export function newBuyer() {
  return `buyer-${randomBytes(5).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// Catalog

/**
 * A small client of the catalog admin API that throws on any non-2xx answer.
 * @param {{ httpUrl: string }} node
 * @param {string} tenant
 */
export function adminApi(node, tenant) {
  const token = adminToken(tenant);
  /**
   * @param {string} method
   * @param {string} route
   * @param {unknown} [body]
   * @returns {Promise<any>}
   */
  async function call(method, route, body) {
    const response = await fetch(node.httpUrl + route, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) {
      const error = new Error(`${method} ${route}: ${response.status} ${text}`);
      Object.assign(error, { status: response.status, body: text });
      throw error;
    }
    return text ? JSON.parse(text) : null;
  }
  return {
    /** @param {string} route */
    get: (route) => call('GET', route),
    /** @param {string} route @param {unknown} body */
    post: (route, body) => call('POST', route, body),
    /** @param {string} route @param {unknown} body */
    put: (route, body) => call('PUT', route, body),
    /** @param {string} route @param {unknown} body */
    patch: (route, body) => call('PATCH', route, body),
  };
}

/**
 * The seat map every seeded event gets: 40 seats.
 *
 * - Stalls, rows A-B, seats 1-10: row A `Premium` (indexes 0-9), row B `Standard` (10-19).
 * - Balcony, rows 1-2, seats 1-10: `Standard` (20-39).
 */
export const TEST_LAYOUT = {
  focal: { x: 0, y: 0 },
  sections: [
    {
      name: 'Stalls',
      rows: 'A-B',
      seats: '1-10',
      origin: { x: -4.5, y: 2 },
      categories: [
        { rows: 'A', category: 'Premium' },
        { rows: 'B', category: 'Standard' },
      ],
      accessible: [{ rows: 'A', seats: '1-2' }],
    },
    {
      name: 'Balcony',
      rows: '1-2',
      seats: '1-10',
      origin: { x: -4.5, y: 10 },
      categories: [{ rows: '1-2', category: 'Standard' }],
    },
  ],
};

/**
 * @typedef {object} SeededEvent
 * @property {string} eventId
 * @property {string} onsaleId its one onsale, `live`
 * @property {boolean} requiresAdmission whether holds need a waiting-room admission
 * @property {number} seats how many seats the map has
 * @property {{ premium: string, standard: string }} categories price category ids
 * @property {{ premium: string, standard: string, ga: string }} ticketTypes ticket type ids
 *   (`ga`: general admission, quota 100)
 */

/**
 * Creates one published event with the test seat map, a seated ticket type per category, a
 * general-admission type, and one live onsale.
 * @param {{ httpUrl: string }} node
 * @param {{ tenant: string, venueId: string, name?: string, requiresAdmission?: boolean,
 *   perUserLimit?: number, holdDurationSeconds?: number, admissionRate?: number,
 *   activeCap?: number }} options
 * @returns {Promise<SeededEvent>}
 */
export async function seedEvent(node, options) {
  const api = adminApi(node, options.tenant);
  const requiresAdmission = options.requiresAdmission ?? false;
  const now = Date.now();
  const event = await api.post('/v1/admin/events', {
    venue_id: options.venueId,
    name: options.name ?? `Test event ${randomBytes(3).toString('hex')}`,
    category: 'concert',
    starts_at: new Date(now + 30 * 86_400_000).toISOString(),
  });
  const eventId = event.event_id;
  const premium = await api.post(`/v1/admin/events/${eventId}/price-categories`, {
    name: 'Premium',
    price_minor: 8900,
    currency: 'EUR',
  });
  const standard = await api.post(`/v1/admin/events/${eventId}/price-categories`, {
    name: 'Standard',
    price_minor: 4500,
    currency: 'EUR',
  });
  const map = await api.post(`/v1/admin/events/${eventId}/seat-map`, TEST_LAYOUT);
  /**
   * @param {object} body
   * @returns {Promise<string>}
   */
  const ticketType = async (body) =>
    (await api.post(`/v1/admin/events/${eventId}/ticket-types`, { currency: 'EUR', ...body })).ticket_type_id;
  const ticketTypes = {
    premium: await ticketType({
      name: 'Premium seat',
      kind: 'seated',
      price_category_id: premium.price_category_id,
      price_minor: 8900,
      max_per_order: 8,
    }),
    standard: await ticketType({
      name: 'Standard seat',
      kind: 'seated',
      price_category_id: standard.price_category_id,
      price_minor: 4500,
      max_per_order: 8,
    }),
    ga: await ticketType({
      name: 'Standing',
      kind: 'general_admission',
      price_minor: 3500,
      max_per_order: 6,
      ga_quota: 100,
    }),
  };
  const onsale = await api.post(`/v1/admin/events/${eventId}/onsales`, {
    name: requiresAdmission ? 'Queued sale' : 'Open sale',
    // Started a minute ago, so holds go through as soon as the onsale is live.
    starts_at: new Date(now - 60_000).toISOString(),
    hold_duration_seconds: options.holdDurationSeconds ?? 600,
    per_user_limit: options.perUserLimit ?? 8,
    requires_admission: requiresAdmission,
    admission_rate: options.admissionRate ?? 50,
    active_cap: options.activeCap ?? 500,
  });
  await api.patch(`/v1/admin/events/${eventId}/status`, { status: 'published' });
  await makeLive(api, onsale.onsale_id);
  return {
    eventId,
    onsaleId: onsale.onsale_id,
    requiresAdmission,
    seats: map.seats,
    categories: { premium: premium.price_category_id, standard: standard.price_category_id },
    ticketTypes,
  };
}

/**
 * Moves an onsale to `live`. A waiting-room onsale whose start has passed is moved there by the
 * node's admission controller too, within 100 ms; whichever comes first wins, so a `409` is fine
 * once the onsale reads `live`.
 * @param {ReturnType<typeof adminApi>} api
 * @param {string} onsaleId
 */
async function makeLive(api, onsaleId) {
  try {
    await api.patch(`/v1/admin/onsales/${onsaleId}/status`, { status: 'live' });
  } catch (error) {
    const onsale = await api.get(`/v1/admin/onsales/${onsaleId}`);
    if (onsale.status !== 'live') throw error;
  }
}

/**
 * @typedef {object} SeededCatalog
 * @property {string} tenant the tenant's id (a UUID)
 * @property {string} venueId
 * @property {SeededEvent} open an event whose onsale needs no admission
 * @property {SeededEvent} queued an event whose onsale `requires_admission` (waiting room)
 */

/**
 * Creates a tenant (a fresh UUID unless given), a venue, and two live events: one sold without
 * a waiting room, one behind it.
 * @param {{ httpUrl: string }} node
 * @param {{ tenant?: string }} [options]
 * @returns {Promise<SeededCatalog>}
 */
export async function seedCatalog(node, { tenant = randomUUID() } = {}) {
  const api = adminApi(node, tenant);
  await api.put('/v1/admin/tenant', { name: 'Web test box office' });
  const venue = await api.post('/v1/admin/venues', { name: 'Test Hall', city: 'Lisbon' });
  const open = await seedEvent(node, { tenant, venueId: venue.venue_id, name: 'Open sale night' });
  const queued = await seedEvent(node, {
    tenant,
    venueId: venue.venue_id,
    name: 'Queued sale night',
    requiresAdmission: true,
  });
  return { tenant, venueId: venue.venue_id, open, queued };
}

// ---------------------------------------------------------------------------------------------
// Network faults

/**
 * @typedef {object} Proxy
 * @property {number} port the relay's loopback port
 * @property {string} wsUrl `ws://127.0.0.1:{port}/ws`
 * @property {string} httpUrl `http://127.0.0.1:{port}`
 * @property {() => number} dropAll destroys every relayed connection at once (both sides, no
 *   close frame), returning how many there were
 * @property {(blocked: boolean) => void} block while blocked, new connections are cut as soon as
 *   they arrive (a node that cannot be reached)
 * @property {(direction?: 'down' | 'both') => void} freeze stops relaying on the current
 *   connections, as a link that died silently: `down` (the default) stops the node's bytes to the
 *   clients (requests still reach the node, nothing comes back), `both` the clients' bytes too
 * @property {() => number} connections how many connections it relays now
 * @property {() => Promise<void>} close stops listening and drops everything
 */

/**
 * A TCP relay to `127.0.0.1:targetPort`, so a test can cut connections the way a network does.
 * @param {number} targetPort
 * @returns {Promise<Proxy>}
 */
export async function startProxy(targetPort) {
  /** @type {Set<{ client: net.Socket, upstream: net.Socket }>} */
  const pairs = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      socket.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  const dropAll = () => {
    const count = pairs.size;
    for (const { client, upstream } of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
    return count;
  };
  return {
    port,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    dropAll,
    block(value) {
      blocked = value;
    },
    freeze(direction = 'down') {
      for (const { client, upstream } of pairs) {
        // Keep reading so that writes do not stall; the bytes are thrown away.
        upstream.unpipe(client);
        upstream.on('data', () => {});
        if (direction === 'both') {
          client.unpipe(upstream);
          client.on('data', () => {});
        }
      }
    },
    connections: () => pairs.size,
    async close() {
      dropAll();
      server.close();
      await once(server, 'close');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Waiting-room onsales with a pre-queue (operator dashboard and fairness tests)

/**
 * @typedef {object} PrequeueEvent
 * @property {string} eventId
 * @property {string} onsaleId the onsale behind the waiting room, with a pre-queue
 * @property {string} closedOnsaleId the event's first onsale, closed (left from `seedEvent`)
 * @property {number} startsAt when the onsale starts, unix ms: the draw
 * @property {{ premium: string, standard: string }} categories price category ids
 */

/**
 * An event (as `seedEvent` makes it) whose live onsale is closed and replaced by one behind the
 * waiting room whose pre-queue is open now and which starts `startsInMs` from now. The node's
 * admission controller moves it to `pre_queue` within 100 ms (drawing the seed and publishing
 * its commitment) and to `live` at the start (drawing the order).
 * @param {{ httpUrl: string }} node
 * @param {{ tenant: string, venueId: string, name?: string, startsInMs?: number,
 *   admissionRate?: number, activeCap?: number }} options
 * @returns {Promise<PrequeueEvent>}
 */
export async function seedPrequeueEvent(node, options) {
  const api = adminApi(node, options.tenant);
  const seeded = await seedEvent(node, {
    tenant: options.tenant,
    venueId: options.venueId,
    name: options.name ?? 'Pre-queue night',
    requiresAdmission: true,
  });
  await api.patch(`/v1/admin/onsales/${seeded.onsaleId}/status`, { status: 'closed' });
  const now = Date.now();
  const startsAt = now + (options.startsInMs ?? 5000);
  const onsale = await api.post(`/v1/admin/events/${seeded.eventId}/onsales`, {
    name: 'Fair start',
    prequeue_opens_at: new Date(now - 1000).toISOString(),
    starts_at: new Date(startsAt).toISOString(),
    hold_duration_seconds: 600,
    per_user_limit: 8,
    requires_admission: true,
    admission_rate: options.admissionRate ?? 10,
    active_cap: options.activeCap ?? 500,
  });
  return {
    eventId: seeded.eventId,
    onsaleId: onsale.onsale_id,
    closedOnsaleId: seeded.onsaleId,
    startsAt,
    categories: seeded.categories,
  };
}

/**
 * A gate's token for `tenant`: role `gate`; `sub` names the gate in check-in answers.
 * @param {string} tenant
 * @param {string} [gate]
 */
export function gateToken(tenant, gate = 'gate-north') {
  return buyerToken(gate, tenant, { roles: ['gate'] });
}

// ---------------------------------------------------------------------------------------------
// Staff pages in Chromium (dashboard and gate tests)
//
// Debian's Chromium driven by playwright-core (never a downloaded browser). playwright-core and
// axe-core are loaded only by the tests that call these, so the SDK's suites do not need them.

/** Where browser tests write their screenshots. */
export const SCREENSHOT_DIR = path.resolve(here, 'screenshots');

/**
 * Launches headless Chromium: `$CHROMIUM_PATH`, else Debian's.
 * @returns {Promise<import('playwright-core').Browser>}
 */
export async function launchStaffBrowser() {
  const { chromium } = await import('playwright-core');
  const { existsSync } = await import('node:fs');
  const executablePath =
    process.env.CHROMIUM_PATH ?? ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
  if (!executablePath) throw new Error('no Chromium found: install Debian\'s chromium or set CHROMIUM_PATH');
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
}

/**
 * A new page that records what a person would not see but a test should: uncaught errors and
 * Content Security Policy refusals (`problems()`), and the page's own files (documents,
 * scripts, styles, images, fonts) that failed to load or answered 4xx/5xx (`loadFailures()`;
 * API calls are not counted, since a test may provoke their refusals).
 * @param {import('playwright-core').Browser} browser
 * @param {{ width?: number, height?: number }} [viewport]
 */
export async function staffPage(browser, { width = 1280, height = 1000 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  /** @type {string[]} */
  const problems = [];
  /** @type {string[]} */
  const loadFailures = [];
  const files = new Set(['document', 'script', 'stylesheet', 'image', 'font']);
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && files.has(response.request().resourceType())) {
      loadFailures.push(`${response.status()} ${response.url()}`);
    }
  });
  page.on('requestfailed', (request) => {
    if (files.has(request.resourceType())) loadFailures.push(`failed ${request.url()}`);
  });
  return { context, page, problems: () => [...problems], loadFailures: () => [...loadFailures] };
}

/**
 * The page's URL on `node`, signed in with `token` in the fragment, as `marquee demo` links are.
 * @param {{ httpUrl: string }} node
 * @param {string} pathAndQuery e.g. `/admin?event=…`
 * @param {string} token
 */
export function signedInUrl(node, pathAndQuery, token) {
  return `${node.httpUrl}${pathAndQuery}#token=${token}`;
}

/**
 * Writes a full-page screenshot to `test/screenshots/{name}.png`; returns its path.
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export async function saveScreenshot(page, name) {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** @type {Promise<string> | null} */
let axeScript = null;

/** axe-core's script, read once per test process. */
function axeSource() {
  axeScript ??= (async () => {
    const { readFile } = await import('node:fs/promises');
    const { createRequire } = await import('node:module');
    return readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  })();
  return axeScript;
}

/**
 * Runs axe-core in the page and answers its serious and critical violations. The script is
 * evaluated through the DevTools protocol, which the page's CSP does not govern, so the page
 * keeps its real policy.
 * @param {import('playwright-core').Page} page
 * @returns {Promise<{ id: string, impact: string, help: string, nodes: string[] }[]>}
 */
export async function seriousA11yViolations(page) {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(await axeSource());
  return page.evaluate(async () => {
    const axe = /** @type {any} */ (globalThis).axe;
    const results = await axe.run(document, { resultTypes: ['violations'] });
    return results.violations
      .filter((/** @type {any} */ v) => v.impact === 'serious' || v.impact === 'critical')
      .map((/** @type {any} */ v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((/** @type {any} */ n) => n.target.join(' ')),
      }));
  });
}

/**
 * One state of a page as a person sees it: writes its screenshot (`saveScreenshot`) and runs
 * axe-core on it (`seriousA11yViolations`). Answers the file and the serious or critical
 * violations, for the test to assert none.
 * @param {import('playwright-core').Page} page
 * @param {string} name the screenshot's name, e.g. `admin-paused`
 * @returns {Promise<{ file: string, violations: Awaited<ReturnType<typeof seriousA11yViolations>> }>}
 */
export async function pageState(page, name) {
  const file = await saveScreenshot(page, name);
  const violations = await seriousA11yViolations(page);
  return { file, violations };
}

/**
 * `pageState`, failing (naming the state) when axe-core finds a serious violation.
 * @param {import('playwright-core').Page} page
 * @param {string} name
 * @returns {Promise<string>} the screenshot's path
 */
export async function checkPageState(page, name) {
  const { file, violations } = await pageState(page, name);
  if (violations.length) throw new Error(`${name}: serious accessibility violations:\n${JSON.stringify(violations, null, 2)}`);
  return file;
}

/**
 * Fails unless a page from `staffPage` went as a person would want: no page error, no
 * Content Security Policy refusal, none of its files missing.
 * @param {{ problems: () => string[], loadFailures: () => string[] }} opened
 */
export function assertPageClean(opened) {
  const found = [...opened.problems(), ...opened.loadFailures()];
  if (found.length) throw new Error(`the page had problems:\n${found.join('\n')}`);
}

/**
 * Waits until the text of the element `selector` matches `pattern`, as a person waits to read
 * something; answers the text.
 * @param {import('playwright-core').Page} page
 * @param {string} selector
 * @param {RegExp} pattern
 * @param {number} [timeoutMs]
 */
export async function waitForText(page, selector, pattern, timeoutMs = 8000) {
  let last = '';
  try {
    return await waitFor(
      async () => {
        last = (await page.locator(selector).textContent()) ?? '';
        return pattern.test(last) ? last : null;
      },
      { timeoutMs, intervalMs: 50, what: `${selector} to read ${pattern}` },
    );
  } catch (error) {
    throw new Error(`${/** @type {Error} */ (error).message}; it reads ${JSON.stringify(last)}`);
  }
}
