// The Marquee client: one WebSocket to a node that stays up, and everything the protocol asks of
// a client to make that invisible to the application. It mirrors the Rust SDK
// (`client-sdk/src/driver.rs`); docs/protocol.md is the contract both follow.
//
// # Connections
//
// Each attempt asks the token provider for a token, opens `url?access_token=…` with the
// `marquee.v1.json` sub-protocol (browsers cannot set an `Authorization` header on a WebSocket),
// and waits for `welcome`. A dropped connection is reopened after a full-jitter backoff delay,
// or after the server's own `reconnect` advice. A browser cannot read the HTTP response of a
// refused upgrade (the `401` or the `503` with its `Retry-After`): it only sees the socket
// close. So after an attempt that never opened, the SDK asks the same URL once over plain HTTP
// (`fetch`): the node runs the same checks in the same order (capacity, then token) and answers
// the same status, now readable. A `503` then delays the next attempt by at least its
// `Retry-After`, a `401` is reported with its code. Without `fetch`, or when the probe fails
// too, the attempt counts as an ordinary failure and the backoff paces the retries.
//
// # Exactly once, in order
//
// For every channel the client remembers the position of the last publication it delivered.
// A publication is delivered only if it is the very next offset of the same epoch; an older one
// is a repeat and is dropped; a newer one, or another epoch, means something was missed, and the
// client resubscribes with `since` set to the remembered position. While a (re)subscribe is in
// flight the channel's publications are dropped: the server replays them after its reply. After
// a reconnect every channel, the inbox included, is resubscribed the same way. When the server
// cannot resume (`recovered: false`) the handler receives the fresh snapshot.
//
// # Purchase commands and their results
//
// A command stays open until its result arrives; every new connection sends the open commands
// again under their same `request_id` (the server answers a repeated request id with the first
// result and never applies it twice). Results and order updates come on the inbox: live, in the
// welcome's inbox snapshot, or in the snapshot of an inbox resubscribe. Each `request_id` is
// handed to the application once, then acknowledged; acknowledgements the server has not
// confirmed are sent again on the next connection.

import { Backoff, fullJitterDelay, parseRetryAfter } from './backoff.js';
import { MarqueeError, clientError } from './errors.js';
import { SeatMap } from './seatmap.js';

/** @typedef {import('./marquee.js').ClientOptions} ClientOptions */
/** @typedef {import('./marquee.js').ClientEvents} ClientEvents */
/** @typedef {import('./marquee.js').ChannelHandler<any>} ChannelHandler */
/** @typedef {import('./marquee.js').Command} Command */
/** @typedef {import('./marquee.js').CommandOptions} CommandOptions */
/** @typedef {import('./marquee.js').CommandResult} CommandResult */
/** @typedef {import('./marquee.js').OrderUpdate} OrderUpdate */
/** @typedef {import('./marquee.js').InboxSnapshot} InboxSnapshot */
/** @typedef {import('./marquee.js').Position} Position */
/** @typedef {import('./marquee.js').PurchaseIntent} PurchaseIntent */
/** @typedef {import('./marquee.js').QueueStatus} QueueStatus */
/** @typedef {import('./marquee.js').RequestOptions} RequestOptions */
/** @typedef {import('./marquee.js').Scan} Scan */
/** @typedef {import('./marquee.js').ScanResult} ScanResult */
/** @typedef {import('./marquee.js').SeatMapChange} SeatMapChange */
/** @typedef {import('./marquee.js').Subscribed} Subscribed */
/** @typedef {import('./marquee.js').SubscribeOptions} SubscribeOptions */
/** @typedef {import('./marquee.js').Welcome} Welcome */
/** @typedef {import('./marquee.js').WebSocketConstructor} WebSocketConstructor */
/** @typedef {import('./marquee.js').WebSocketLike} WebSocketLike */
/** @typedef {ReturnType<typeof setTimeout>} Timer */

/**
 * How long a client may wait, at random, before resubscribing to a channel whose stream the
 * node lost (`resync` with `stream_interrupted`): what every subscriber of the node hears at
 * once is spread over this long (the Rust SDK does the same).
 */
const RESYNC_SPREAD_MS = 3000;

/** The WebSocket sub-protocol the SDK speaks. */
export const SUBPROTOCOL = 'marquee.v1.json';

/** How many delivered request ids the client remembers, to drop a result delivered twice. */
const REMEMBERED_RESULTS = 10_000;
/** The most request ids one `ack` may carry (§8). */
const MAX_ACK = 1000;
/** `setTimeout` fires at once for longer delays, so longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Close codes after which the protocol says not to reconnect automatically (§10). */
const FINAL_CLOSE_CODES = new Set([1000, 1009, 4005]);
/** Error codes that mean "not now, try again later" (§8, §9): retried with backoff. */
const RETRYABLE_CODES = new Set(['unavailable', 'rate_limited']);

/**
 * A promise with its settle functions and a timeout.
 * @template T
 * @typedef {object} Waiter
 * @property {Promise<T>} promise
 * @property {(value: T) => void} resolve
 * @property {(error: unknown) => void} reject
 */

/**
 * A waiter that rejects by itself with `timeoutError()` after `timeoutMs`, calling `onTimeout`
 * first so the owner can forget it.
 * @template T
 * @param {number} timeoutMs
 * @param {() => MarqueeError} timeoutError
 * @param {(waiter: Waiter<T>) => void} onTimeout
 * @returns {Waiter<T>}
 */
function waiter(timeoutMs, timeoutError, onTimeout) {
  /** @type {(value: T) => void} */
  let resolve = () => {};
  /** @type {(error: unknown) => void} */
  let reject = () => {};
  /** @type {Promise<T>} */
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  /** @type {Waiter<T>} */
  const w = {
    promise,
    resolve: (value) => {
      clearTimeout(timer);
      resolve(value);
    },
    reject: (error) => {
      clearTimeout(timer);
      reject(error);
    },
  };
  const timer = setTimeout(() => {
    onTimeout(w);
    reject(timeoutError());
  }, timeoutMs);
  return w;
}

/**
 * A connection loss (as opposed to an answer): requests the client sends by itself are simply
 * sent again on the next connection.
 * @param {unknown} error
 */
function isConnectionLoss(error) {
  return error instanceof MarqueeError && (error.kind === 'disconnected' || error.kind === 'closed');
}

/**
 * @typedef {object} Pending a request awaiting its reply
 * @property {(message: any) => void} onReply called with the reply (any type but `error`)
 * @property {(error: MarqueeError) => void} onError an `error` reply, a timeout, a lost connection
 * @property {Timer} [timer]
 */

/**
 * @typedef {object} Channel a channel the application (or the client, for the inbox) wants
 * @property {string} name
 * @property {ChannelHandler | null} handler `null` for the inbox, which the client reads itself
 * @property {Position | null} position the last publication delivered, or where the
 *   subscription started: the `since` of the next resubscribe
 * @property {boolean} inFlight a (re)subscribe is unanswered; publications are dropped meanwhile,
 *   since the server replays every one that matters after its reply
 * @property {number} requestId the latest subscribe's id: an older reply is stale and ignored
 * @property {boolean} fresh the next subscribe leaves `since` out, for a fresh snapshot
 * @property {boolean} automatic the latest subscribe was the client's own idea
 * @property {Waiter<Subscribed>[]} waiters `subscribe()` calls waiting for the reply
 * @property {Backoff} retry paces resubscribes answered `unavailable`
 * @property {Timer | null} retryTimer
 */

/**
 * @typedef {object} OpenCommand a purchase command whose result has not arrived
 * @property {Command} command
 * @property {string | undefined} admission
 * @property {Set<Waiter<CommandResult>>} waiters
 * @property {Backoff} retry paces resends after `unavailable`
 * @property {Timer | null} retryTimer
 */

/**
 * @typedef {object} Connection one WebSocket and what is known about it
 * @property {WebSocketLike} ws
 * @property {string} url the URL it was opened with (token included)
 * @property {boolean} opened the upgrade succeeded
 * @property {boolean} welcomed the welcome arrived: the session is usable
 * @property {number | undefined} advisedMs the server's `reconnect` advice
 * @property {MarqueeError | undefined} refusal an `error` the server sent instead of a welcome
 * @property {number} lastHeard when the last message arrived (ms), for the keepalive
 * @property {boolean} pinging a keepalive ping is unanswered
 * @property {(code: number, reason: string) => void} finish ends the attempt or session now,
 *   whether or not the socket has reported its close yet
 */

/**
 * @typedef {object} SessionEnd how a connection (or an attempt) ended
 * @property {boolean} welcomed
 * @property {number} code
 * @property {string} reason
 * @property {number | undefined} advisedMs
 * @property {MarqueeError | undefined} error
 */

/** A connection to a Marquee node that stays up. See the module comment for how. */
export class MarqueeClient {
  /** @type {string[]} */
  #urls;
  #urlIndex = 0;
  /** @type {import('./marquee.js').TokenProvider} */
  #tokens;
  /** @type {WebSocketConstructor} */
  #WebSocket;
  /** @type {typeof fetch | null} */
  #fetch;
  #requestTimeoutMs;
  #connectTimeoutMs;
  #commandTimeoutMs;
  #refreshBeforeMs;
  /** @type {number | undefined} */
  #keepaliveMs;
  /** @type {import('./marquee.js').BackoffOptions} */
  #backoffOptions;
  /** @type {() => number} */
  #random;
  /** Reconnect pacing; reset by every welcome. */
  #backoff;

  /** @type {'idle' | 'connecting' | 'open' | 'waiting' | 'closed'} */
  #state = 'idle';
  /** The current connection (opening or open); `null` between connections. */
  /** @type {Connection | null} */
  #conn = null;
  /** @type {Welcome | null} */
  #welcome = null;
  /** Request ids count up for the client's whole life, so a stale reply can never match. */
  #nextId = 1;
  /** @type {Map<number, Pending>} */
  #pending = new Map();
  /** @type {Waiter<Welcome>[]} */
  #connectWaiters = [];

  /** @type {Map<string, Channel>} */
  #channels = new Map();
  /** The inbox's channel name, from the latest welcome. */
  /** @type {string | null} */
  #inbox = null;

  /** @type {Map<string, OpenCommand>} */
  #open = new Map();
  /**
   * Results and order updates delivered, by request id, oldest first (bounded): a repeat is
   * dropped, and a command sent again under a delivered id is answered from here.
   * @type {Map<string, CommandResult | OrderUpdate>}
   */
  #delivered = new Map();
  /**
   * Delivered request ids whose `ack` the server has not confirmed: sent again on the next
   * connection, since an acknowledgement lost with a connection is otherwise never repeated.
   * @type {Set<string>}
   */
  #unacked = new Set();
  /** Request ids in an `ack` sent on the current connection and not answered yet. */
  /** @type {Set<string>} */
  #acking = new Set();

  /**
   * Onsales whose queue the buyer is in, with the staged purchase: joined again after every
   * reconnect (§14: "after every reconnect, send queue.join again").
   * @type {Map<string, { intent?: PurchaseIntent, retry: Backoff, retryTimer: Timer | null }>}
   */
  #queues = new Map();
  /** @type {Map<string, QueueStatus>} */
  #queueStatus = new Map();

  /** @type {Timer | null} */
  #refreshTimer = null;
  /** @type {Timer | null} */
  #reconnectTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #keepaliveTimer = null;
  /** Ends the wait before a reconnect early (`close()`). */
  /** @type {(() => void) | null} */
  #wake = null;
  /** @type {Map<string, Set<(event: any) => void>>} */
  #listeners = new Map();

  /** @param {ClientOptions} options */
  constructor(options) {
    const urls = options.urls ?? (options.url ? [options.url] : []);
    if (urls.length === 0) throw new TypeError('MarqueeClient needs a url (or urls)');
    if (typeof options.token !== 'function') throw new TypeError('MarqueeClient needs a token provider');
    const WebSocketImpl = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError('no WebSocket: pass one in options.WebSocket (in Node.js, the ws package)');
    }
    this.#urls = urls;
    this.#tokens = options.token;
    this.#WebSocket = WebSocketImpl;
    const globalFetch = typeof fetch === 'function' ? fetch.bind(globalThis) : null;
    this.#fetch = options.fetch === undefined ? globalFetch : options.fetch;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 30_000;
    this.#refreshBeforeMs = options.refreshBeforeMs ?? 60_000;
    this.#keepaliveMs = options.keepaliveMs;
    this.#backoffOptions = options.backoff ?? {};
    this.#random = options.random ?? Math.random;
    this.#backoff = new Backoff(this.#backoffOptions, this.#random);
  }

  /** A fresh request id: 128 random bits in hex. Keep it to retry a command after a reload. */
  static newRequestId() {
    const bytes = new Uint8Array(16);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** @returns {'idle' | 'connecting' | 'open' | 'waiting' | 'closed'} */
  get state() {
    return this.#state;
  }

  /** @returns {Welcome | null} */
  get welcome() {
    return this.#welcome;
  }

  // -------------------------------------------------------------------------------------------
  // Events

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {(event: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => this.off(type, listener);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {(event: ClientEvents[K]) => void} listener
   */
  off(type, listener) {
    this.#listeners.get(type)?.delete(listener);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {ClientEvents[K]} event
   */
  #emit(type, event) {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) this.#call(() => listener(event));
  }

  /**
   * Runs application code. An exception there must not leave the client half way through a
   * message, so it is rethrown on its own, where the page (or the test runner) sees it.
   * @param {() => void} fn
   */
  #call(fn) {
    try {
      fn();
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connecting

  /** @returns {Promise<Welcome>} */
  connect() {
    if (this.#state === 'closed') return Promise.reject(clientError('closed', 'the client is closed'));
    if (this.#state === 'open' && this.#welcome) return Promise.resolve(this.#welcome);
    /** @type {Waiter<Welcome>} */
    const w = waiter(
      // The connect timeout covers one attempt; a first attempt reports within it (plus the
      // token provider and the probe), later ones only resolve this.
      2 * this.#connectTimeoutMs + this.#requestTimeoutMs,
      () => clientError('timeout', 'no connection within the timeout'),
      (expired) => (this.#connectWaiters = this.#connectWaiters.filter((x) => x !== expired)),
    );
    this.#connectWaiters.push(w);
    if (this.#state === 'idle') void this.#run();
    return w.promise;
  }

  close() {
    if (this.#state === 'closed') return;
    const conn = this.#conn;
    this.#state = 'closed';
    this.#conn = null;
    if (conn) {
      try {
        conn.ws.close(1000, 'client closed');
      } catch {
        // Closing a socket that is already going away.
      }
      this.#endSession(clientError('closed', 'the client was closed'));
      conn.finish(1000, 'client closed'); // the run loop need not wait for the handshake
    }
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#wake?.();
    const closed = () => clientError('closed', 'the client was closed');
    for (const w of this.#connectWaiters.splice(0)) w.reject(closed());
    for (const channel of this.#channels.values()) {
      if (channel.retryTimer) clearTimeout(channel.retryTimer);
      for (const w of channel.waiters.splice(0)) w.reject(closed());
    }
    for (const open of this.#open.values()) {
      if (open.retryTimer) clearTimeout(open.retryTimer);
      for (const w of open.waiters) w.reject(closed());
      open.waiters.clear();
    }
    for (const queue of this.#queues.values()) if (queue.retryTimer) clearTimeout(queue.retryTimer);
  }

  /** Connects, and reconnects after every drop, until `close()` or a final close code. */
  async #run() {
    let welcomedOnce = false;
    while (this.#state !== 'closed') {
      const end = await this.#session();
      if (/** @type {string} */ (this.#state) === 'closed') return;
      this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
      if (end.welcomed) welcomedOnce = true;
      const error = end.error;
      if (!welcomedOnce || FINAL_CLOSE_CODES.has(end.code)) {
        // A first attempt that fails is reported to connect() (a refused token, an unreachable
        // node), as the Rust SDK does; after 1000, 1009 or 4005 (the sign-in session was
        // ended) the protocol says not to come back.
        // Either way the client goes idle, and connect() starts again.
        this.#state = 'idle';
        const failure = error ?? clientError('connect', `the connection closed (${end.code} ${end.reason})`);
        for (const w of this.#connectWaiters.splice(0)) w.reject(failure);
        this.#emit('disconnected', { code: end.code, reason: end.reason, reconnectInMs: null, error });
        return;
      }
      // The server's advice wins (§12); otherwise full jitter, and never sooner than a 503's
      // Retry-After.
      let delay;
      if (end.advisedMs !== undefined) {
        delay = end.advisedMs;
      } else if (end.code === 4003) {
        // Closed for flooding: back off as if four attempts had failed already (§10).
        delay = fullJitterDelay(Math.max(this.#backoff.attempt, 4), this.#backoffOptions, this.#random);
        this.#backoff.next();
      } else {
        delay = this.#backoff.next();
        if (error?.retryAfterMs !== undefined) delay = Math.max(delay, error.retryAfterMs);
      }
      this.#state = 'waiting';
      this.#emit('disconnected', { code: end.code, reason: end.reason, reconnectInMs: delay, error });
      if (/** @type {string} */ (this.#state) !== 'waiting') return; // a listener closed the client
      await new Promise((resolve) => {
        this.#wake = () => resolve(undefined);
        this.#reconnectTimer = setTimeout(resolve, delay);
      });
      this.#wake = null;
      this.#reconnectTimer = null;
    }
  }

  /**
   * One connection attempt and, if it gets a welcome, the session on it, until it closes.
   * @returns {Promise<SessionEnd>}
   */
  async #session() {
    this.#state = 'connecting';
    /** @param {MarqueeError} error @returns {SessionEnd} */
    const failed = (error) => ({ welcomed: false, code: 1006, reason: error.message, advisedMs: undefined, error });
    let token;
    try {
      token = await this.#tokens();
      if (typeof token !== 'string' || token === '') throw new Error('it returned no token');
    } catch (cause) {
      return failed(clientError('token', `the token provider failed: ${describe(cause)}`));
    }
    // close() may have been called while the provider was working.
    if (/** @type {string} */ (this.#state) === 'closed') return failed(clientError('closed', 'the client was closed'));

    const url = new URL(this.#urls[this.#urlIndex]);
    url.searchParams.set('access_token', token);
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = new this.#WebSocket(url.href, SUBPROTOCOL);
    } catch (cause) {
      return failed(clientError('connect', `cannot open ${this.#urls[this.#urlIndex]}: ${describe(cause)}`));
    }
    /** @type {Connection} */
    const conn = {
      ws,
      url: url.href,
      opened: false,
      welcomed: false,
      advisedMs: undefined,
      refusal: undefined,
      lastHeard: Date.now(),
      pinging: false,
      finish: () => {},
    };
    this.#conn = conn;

    /** @type {{ code: number, reason: string }} */
    const closed = await new Promise((resolve) => {
      // A welcome must arrive within the connect timeout; a node that accepts the socket and
      // says nothing is as good as down.
      const timer = setTimeout(() => {
        if (!conn.welcomed) this.#abandon(conn, 'no welcome within the connect timeout');
      }, this.#connectTimeoutMs);
      conn.finish = (code, reason) => {
        clearTimeout(timer);
        resolve({ code, reason });
      };
      ws.addEventListener('open', () => {
        conn.opened = true;
      });
      ws.addEventListener('message', (event) => this.#onFrame(conn, event.data));
      ws.addEventListener('error', () => {
        // A close event follows every error; that is where the attempt ends.
      });
      ws.addEventListener('close', (event) => conn.finish(event.code ?? 1006, event.reason ?? ''));
    });

    if (this.#conn === conn) {
      this.#conn = null;
      this.#endSession(clientError('disconnected', 'the connection dropped before the reply'));
    }
    let error = conn.refusal;
    const closedByUs = /** @type {string} */ (this.#state) === 'closed';
    if (!conn.opened && !error && !closedByUs) error = await this.#probe(conn.url);
    if (!conn.welcomed && !error) {
      error = clientError('connect', `cannot connect to ${this.#urls[this.#urlIndex]} (${closed.code})`);
    }
    return { welcomed: conn.welcomed, code: closed.code, reason: closed.reason, advisedMs: conn.advisedMs, error };
  }

  /**
   * Gives a connection up without waiting for its close handshake: on a dead link a browser
   * may take minutes to report the close.
   * @param {Connection} conn
   * @param {string} reason
   */
  #abandon(conn, reason) {
    try {
      conn.ws.close();
    } catch {
      // Not open yet in some implementations.
    }
    conn.finish(1006, reason);
  }

  /**
   * Pings the node after `every` ms without a message from it, and gives the connection up
   * when the ping goes unanswered. The node pings too (§11), but a browser answers those
   * pings without telling the page, so a dead link is otherwise found only by TCP, much later.
   * @param {Connection} conn
   * @param {number} every
   */
  #startKeepalive(conn, every) {
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = null;
    if (!(every > 0)) return;
    this.#keepaliveTimer = setInterval(() => {
      if (this.#openConn() !== conn || conn.pinging || Date.now() - conn.lastHeard < every) return;
      conn.pinging = true;
      this.#request(conn, { type: 'ping' }, {
        timeoutMs: this.#requestTimeoutMs,
        onReply: () => {
          conn.pinging = false;
        },
        onError: (error) => {
          conn.pinging = false;
          if (error.kind === 'timeout') this.#abandon(conn, 'no answer to a keepalive ping');
        },
      });
    }, every);
  }

  /**
   * Learns why an upgrade was refused, which a browser's WebSocket does not say: the same URL
   * over plain HTTP passes the node's capacity and token checks exactly as the upgrade did, and
   * its status and headers are readable. `undefined` when that cannot be known.
   * @param {string} wsUrl
   * @returns {Promise<MarqueeError | undefined>}
   */
  async #probe(wsUrl) {
    if (!this.#fetch) return undefined;
    const url = new URL(wsUrl);
    url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
    /** @type {Response} */
    let response;
    try {
      response = await this.#fetch(url.href, {
        cache: 'no-store',
        signal: AbortSignal.timeout(this.#connectTimeoutMs),
      });
    } catch {
      return undefined; // unreachable (or a cross-origin page without CORS): nothing to learn
    }
    /** @type {{ code?: unknown, message?: unknown } | undefined} */
    const body = await response.json().catch(() => undefined);
    const code = typeof body?.code === 'string' ? body.code : `http_${response.status}`;
    const message = typeof body?.message === 'string' ? body.message : `HTTP ${response.status}`;
    if (response.status === 401) return new MarqueeError('unauthorized', code, message);
    if (response.status === 503) {
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      return new MarqueeError('over_capacity', code, message, { retryAfterMs });
    }
    // Typically 400 "not an upgrade": the node would have taken the socket, so the failure lay
    // elsewhere (a proxy, the network).
    return new MarqueeError('connect', code, `the upgrade failed; over HTTP the node answers ${response.status}: ${message}`);
  }

  /**
   * Everything tied to one connection ends with it: requests in flight fail (the client's own
   * are sent again on the next connection), timers stop.
   * @param {MarqueeError} reason
   */
  #endSession(reason) {
    this.#welcome = null;
    this.#acking.clear();
    if (this.#keepaliveTimer) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = null;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    for (const channel of this.#channels.values()) {
      channel.inFlight = false;
      if (channel.retryTimer) clearTimeout(channel.retryTimer);
      channel.retryTimer = null;
    }
    for (const open of this.#open.values()) {
      if (open.retryTimer) clearTimeout(open.retryTimer);
      open.retryTimer = null;
    }
    for (const queue of this.#queues.values()) {
      if (queue.retryTimer) clearTimeout(queue.retryTimer);
      queue.retryTimer = null;
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.onError(reason);
    }
  }

  /** The connection requests can be sent on: open and welcomed. */
  #openConn() {
    return this.#state === 'open' ? this.#conn : null;
  }

  // -------------------------------------------------------------------------------------------
  // Frames

  /**
   * @param {Connection} conn
   * @param {unknown} data
   */
  #onFrame(conn, data) {
    if (conn !== this.#conn) return; // a socket given up on (timed out, closed)
    conn.lastHeard = Date.now();
    if (typeof data !== 'string') return; // the JSON sub-protocol uses text frames only
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== 'object') return;
    if (!conn.welcomed) {
      if (message.type === 'welcome') {
        conn.welcomed = true;
        this.#onWelcome(conn, message);
      } else if (message.type === 'error') {
        // E.g. `unavailable` when the node cannot subscribe the inbox; the close follows.
        conn.refusal = new MarqueeError('server', message.code, message.message);
      } else if (message.type === 'reconnect') {
        // Too busy to greet: come back after the delay (protocol §1); the close follows.
        const retryAfterMs = typeof message.delay_ms === 'number' ? message.delay_ms : undefined;
        conn.advisedMs = retryAfterMs;
        conn.refusal = new MarqueeError('over_capacity', 'over_capacity', 'the node is busy greeting new connections', {
          retryAfterMs,
        });
      }
      return;
    }
    switch (message.type) {
      case 'pub':
        return this.#onPublication(message);
      case 'resync':
        return this.#onResync(message.channel, message.reason);
      case 'reconnect':
        conn.advisedMs = typeof message.delay_ms === 'number' ? message.delay_ms : undefined;
        return;
      case 'queue.status': {
        const { type: _type, ...status } = message;
        return this.#onQueueStatus(status);
      }
      default:
        if (typeof message.id === 'number') return this.#onReply(message);
        if (message.type === 'error') {
          // Not tied to a request, e.g. a channel the refreshed token no longer opens (§11).
          this.#emit('error', new MarqueeError('server', message.code, message.message));
        }
      // Unknown pushes are ignored, as the protocol asks (§2).
    }
  }

  /** @param {any} message */
  #onReply(message) {
    const pending = this.#pending.get(message.id);
    if (!pending) return; // timed out already
    this.#pending.delete(message.id);
    if (pending.timer) clearTimeout(pending.timer);
    if (message.type === 'error') pending.onError(new MarqueeError('server', message.code, message.message));
    else pending.onReply(message);
  }

  /**
   * Sends a request on `conn` under a fresh id and registers its handlers.
   * @param {Connection} conn
   * @param {Record<string, unknown> & { type: string }} message
   * @param {Pending & { timeoutMs?: number }} handlers
   * @returns {number} the request's id
   */
  #request(conn, message, { onReply, onError, timeoutMs }) {
    const id = this.#nextId++;
    /** @type {Pending} */
    const pending = { onReply, onError };
    if (timeoutMs !== undefined) {
      pending.timer = setTimeout(() => {
        if (this.#pending.get(id) !== pending) return;
        this.#pending.delete(id);
        onError(clientError('timeout', `no reply to ${message.type} within ${timeoutMs} ms`));
      }, timeoutMs);
    }
    this.#pending.set(id, pending);
    const { type, ...fields } = message;
    try {
      conn.ws.send(JSON.stringify({ type, id, ...fields }));
    } catch {
      // The socket is closing: its close event fails every pending request.
    }
    return id;
  }

  /**
   * A request from the application: resolves with `handle(reply)`, computed as the reply is read
   * so that its effects come in order with the messages after it.
   * @template T
   * @param {Record<string, unknown> & { type: string }} message
   * @param {number | undefined} timeoutMs
   * @param {(reply: any) => T} handle
   * @returns {Promise<T>}
   */
  #ask(message, timeoutMs, handle) {
    const conn = this.#openConn();
    if (!conn) {
      const closed = this.#state === 'closed';
      return Promise.reject(
        clientError(closed ? 'closed' : 'disconnected', closed ? 'the client is closed' : 'not connected'),
      );
    }
    return new Promise((resolve, reject) => {
      this.#request(conn, message, {
        timeoutMs: timeoutMs ?? this.#requestTimeoutMs,
        onReply: (reply) => {
          try {
            resolve(handle(reply));
          } catch (error) {
            reject(error);
          }
        },
        onError: reject,
      });
    });
  }

  /**
   * A new session: resume the inbox and every channel, deliver what the inbox holds, repeat the
   * acknowledgements and commands that may have been lost, rejoin the queues.
   * @param {Connection} conn
   * @param {Welcome} welcome
   */
  #onWelcome(conn, welcome) {
    this.#state = 'open';
    this.#welcome = welcome;
    this.#backoff.reset();

    // The inbox: resume it from where we were, or start where the server says.
    const previous = this.#inbox ? this.#channels.get(this.#inbox) : undefined;
    const resumeInbox = this.#inbox === welcome.inbox && previous?.position != null;
    if (this.#inbox && this.#inbox !== welcome.inbox) this.#channels.delete(this.#inbox); // another user
    this.#inbox = welcome.inbox;
    if (!resumeInbox) {
      const inbox = this.#channels.get(welcome.inbox) ?? this.#newChannel(welcome.inbox, null);
      inbox.position = { ...welcome.inbox_position };
      this.#channels.set(welcome.inbox, inbox);
    }

    this.#emit('connected', welcome);
    if (this.#conn !== conn) return; // a listener closed the client

    for (const channel of this.#channels.values()) {
      if (channel.name !== welcome.inbox || resumeInbox) this.#sendSubscribe(channel);
    }
    // Results may sit both in the welcome's snapshot and in the resumed stream: both are read,
    // and each request id is delivered once.
    this.#onInboxSnapshot(welcome.inbox_snapshot);
    this.#sendAcks([...this.#unacked]);
    for (const requestId of [...this.#open.keys()]) this.#sendCommand(requestId);
    for (const onsale of [...this.#queues.keys()]) this.#sendJoin(onsale);
    this.#scheduleRefresh(conn, welcome.expires_at);
    this.#startKeepalive(conn, this.#keepaliveMs ?? welcome.heartbeat_ms);

    for (const w of this.#connectWaiters.splice(0)) w.resolve(welcome);
  }

  // -------------------------------------------------------------------------------------------
  // Channels

  /**
   * @param {string} name
   * @param {ChannelHandler | null} handler
   * @returns {Channel}
   */
  #newChannel(name, handler) {
    return {
      name,
      handler,
      position: null,
      inFlight: false,
      requestId: 0,
      fresh: false,
      automatic: false,
      waiters: [],
      retry: new Backoff(this.#backoffOptions, this.#random),
      retryTimer: null,
    };
  }

  /**
   * @param {string} channel
   * @param {ChannelHandler} handler
   * @param {SubscribeOptions} [options]
   * @returns {Promise<Subscribed>}
   */
  subscribe(channel, handler, options = {}) {
    if (this.#state === 'closed') return Promise.reject(clientError('closed', 'the client is closed'));
    if (channel === this.#inbox) {
      return Promise.reject(new TypeError('the inbox is subscribed by the client itself; listen to "result" and "order"'));
    }
    let entry = this.#channels.get(channel);
    if (!entry) {
      entry = this.#newChannel(channel, handler);
      this.#channels.set(channel, entry);
    }
    const ch = entry;
    ch.handler = handler;
    if (options.since) {
      ch.position = { epoch: options.since.epoch, offset: options.since.offset };
      ch.fresh = false;
    } else {
      // A new handler has no state yet: it needs a snapshot, not a resume.
      ch.fresh = true;
    }
    /** @type {Waiter<Subscribed>} */
    const w = waiter(
      this.#requestTimeoutMs,
      () => clientError('timeout', `no reply to subscribe ${channel} within ${this.#requestTimeoutMs} ms`, { channel }),
      (expired) => (ch.waiters = ch.waiters.filter((x) => x !== expired)),
    );
    ch.waiters.push(w);
    this.#sendSubscribe(ch); // while disconnected: sent after the next welcome
    return w.promise;
  }

  /**
   * @param {string} channel
   * @returns {Promise<void>}
   */
  async unsubscribe(channel) {
    if (channel === this.#inbox) throw new TypeError('the inbox cannot be unsubscribed');
    const ch = this.#channels.get(channel);
    if (ch) {
      this.#channels.delete(channel);
      if (ch.retryTimer) clearTimeout(ch.retryTimer);
      for (const w of ch.waiters.splice(0)) w.reject(clientError('closed', `unsubscribed from ${channel}`, { channel }));
    }
    if (!this.#openConn()) return; // a closed connection holds no channel on the server
    try {
      await this.#ask({ type: 'unsubscribe', channel }, undefined, () => undefined);
    } catch (error) {
      // Not held on the server (a subscribe refused `unavailable`, say): the wanted end state.
      if (error instanceof MarqueeError && error.code === 'not_subscribed') return;
      throw error;
    }
  }

  /** @param {string} channel */
  resync(channel) {
    const ch = this.#channels.get(channel);
    if (!ch) return;
    ch.fresh = true;
    this.#sendSubscribe(ch);
  }

  /**
   * @param {string} channel
   * @returns {Position | undefined}
   */
  position(channel) {
    const position = this.#channels.get(channel)?.position;
    return position ? { ...position } : undefined;
  }

  /**
   * Sends a (re)subscribe for `ch` on the open connection; a no-op while disconnected (every
   * channel is resubscribed after the next welcome).
   * @param {Channel} ch
   */
  #sendSubscribe(ch) {
    const conn = this.#openConn();
    if (!conn) return;
    if (ch.retryTimer) clearTimeout(ch.retryTimer);
    ch.retryTimer = null;
    /** @type {{ type: 'subscribe', channel: string, since?: Position }} */
    const message = { type: 'subscribe', channel: ch.name };
    if (!ch.fresh && ch.position) message.since = ch.position;
    ch.inFlight = true;
    ch.automatic = ch.waiters.length === 0;
    const id = this.#request(conn, message, {
      onReply: (reply) => this.#onSubscribed(ch, id, reply),
      onError: (error) => this.#onSubscribeRefused(ch, id, error),
    });
    ch.requestId = id;
  }

  /**
   * @param {Channel} ch
   * @param {number} id
   * @param {any} reply
   */
  #onSubscribed(ch, id, reply) {
    if (this.#channels.get(ch.name) !== ch || ch.requestId !== id) return; // superseded
    ch.inFlight = false;
    ch.fresh = false;
    ch.retry.reset();
    ch.position = { epoch: reply.epoch, offset: reply.offset };
    /** @type {Subscribed} */
    const subscribed = {
      channel: ch.name,
      epoch: reply.epoch,
      offset: reply.offset,
      recovered: reply.recovered === true,
      automatic: ch.automatic,
    };
    if (reply.snapshot != null) subscribed.snapshot = reply.snapshot;
    if (ch.name === this.#inbox) {
      this.#onInboxSnapshot(/** @type {InboxSnapshot | undefined} */ (subscribed.snapshot));
    } else {
      const handler = ch.handler;
      this.#call(() => handler?.onSubscribed?.(subscribed));
    }
    for (const w of ch.waiters.splice(0)) w.resolve(subscribed);
  }

  /**
   * @param {Channel} ch
   * @param {number} id
   * @param {MarqueeError} refusal
   */
  #onSubscribeRefused(ch, id, refusal) {
    if (isConnectionLoss(refusal)) return; // resubscribed after the next welcome
    if (this.#channels.get(ch.name) !== ch || ch.requestId !== id) return;
    ch.inFlight = false;
    const error = new MarqueeError(refusal.kind, refusal.code, `subscribe ${ch.name}: ${refusal.message}`, {
      channel: ch.name,
    });
    const automatic = ch.waiters.length === 0;
    for (const w of ch.waiters.splice(0)) w.reject(error);
    // `unavailable` is a passing state of the node (§9): try again, with backoff, for as long
    // as the channel is wanted. The inbox is never given up, whatever the code.
    if (RETRYABLE_CODES.has(error.code) || error.kind === 'timeout' || ch.name === this.#inbox) {
      ch.retryTimer = setTimeout(() => {
        ch.retryTimer = null;
        if (this.#channels.get(ch.name) === ch && !ch.inFlight) this.#sendSubscribe(ch);
      }, ch.retry.next());
    } else {
      this.#channels.delete(ch.name);
    }
    if (automatic) this.#emit('error', error);
  }

  /** @param {import('./marquee.js').Publication} message */
  #onPublication(message) {
    const ch = this.#channels.get(message.channel);
    if (!ch || ch.inFlight || !ch.position) return;
    const position = ch.position;
    if (message.epoch === position.epoch && message.offset <= position.offset) return; // a repeat
    if (message.epoch === position.epoch && message.offset === position.offset + 1) {
      ch.position = { epoch: message.epoch, offset: message.offset };
      if (ch.name === this.#inbox) {
        this.#onInboxData(message.data);
      } else {
        const { channel, epoch, offset, data } = message;
        const handler = ch.handler;
        this.#call(() => handler?.onPublication?.({ channel, epoch, offset, data }));
      }
      return;
    }
    // A gap or another epoch: ask for what was missed.
    this.#sendSubscribe(ch);
  }

  /** @param {string} channel */
  /**
   * @param {string} channel
   * @param {string} [reason]
   */
  #onResync(channel, reason) {
    // The server sends nothing more on the channel until it is resubscribed (§5).
    const ch = this.#channels.get(channel);
    if (!ch || ch.inFlight) return;
    if (reason === 'stream_interrupted') {
      // The node lost its engine for a while (Redis restarted): every subscriber of every
      // channel on it hears this at once, and all of them resubscribing that instant is a herd
      // the engine cannot serve in time. So after a random wait within RESYNC_SPREAD_MS;
      // publications meanwhile are ignored (in flight) and replayed after the reply.
      ch.inFlight = true;
      if (ch.retryTimer) clearTimeout(ch.retryTimer);
      ch.retryTimer = setTimeout(() => {
        ch.retryTimer = null;
        ch.inFlight = false;
        if (this.#channels.get(channel) === ch) this.#sendSubscribe(ch);
      }, Math.random() * RESYNC_SPREAD_MS);
      return;
    }
    this.#sendSubscribe(ch);
  }

  /**
   * @param {string} event
   * @param {(change: SeatMapChange) => void} onChange
   * @returns {Promise<SeatMap>}
   */
  async subscribeSeatMap(event, onChange) {
    const channel = `seats:${event}`;
    /** @type {SeatMap | null} */
    let map = null;
    await this.subscribe(channel, {
      onSubscribed: (subscribed) => {
        // After a resume the map stays and the replayed deltas follow; otherwise it starts over.
        if (subscribed.recovered && map) return;
        if (!subscribed.snapshot) {
          map = null;
          return;
        }
        map = new SeatMap(/** @type {import('./marquee.js').SeatSnapshot} */ (subscribed.snapshot));
        onChange({ map, delta: null });
      },
      onPublication: (publication) => {
        if (!map) return;
        const delta = /** @type {import('./marquee.js').SeatDelta} */ (publication.data);
        const outcome = map.apply(delta);
        if (outcome === 'applied') onChange({ map, delta });
        // A missed version can only be repaired from a fresh snapshot (§7, "Versions").
        else if (outcome === 'gap') this.resync(channel);
      },
    });
    if (!map) {
      await this.unsubscribe(channel).catch(() => {});
      throw new MarqueeError('server', 'unavailable', `${channel} has no snapshot on this node (no booking engine)`, {
        channel,
      });
    }
    return map;
  }

  // -------------------------------------------------------------------------------------------
  // Inbox

  /** @param {InboxSnapshot | undefined} snapshot */
  #onInboxSnapshot(snapshot) {
    if (!snapshot || typeof snapshot !== 'object') return;
    this.#deliverInbox(Array.isArray(snapshot.pending) ? snapshot.pending : [], Array.isArray(snapshot.orders) ? snapshot.orders : []);
  }

  /** @param {unknown} data an inbox publication's `data` */
  #onInboxData(data) {
    if (!data || typeof data !== 'object') return;
    const { kind, ...item } = /** @type {{ kind?: unknown }} */ (data);
    if (kind === 'result') this.#deliverInbox([/** @type {CommandResult} */ (item)], []);
    else if (kind === 'order') this.#deliverInbox([], [/** @type {OrderUpdate} */ (item)]);
    // Other kinds are for newer clients (§8): ignored.
  }

  /**
   * Hands each new request id over once, settles its command, and acknowledges all of them
   * (repeats too: their earlier acknowledgement may have been lost).
   * @param {CommandResult[]} results
   * @param {OrderUpdate[]} orders
   */
  #deliverInbox(results, orders) {
    /** @type {string[]} */
    const ids = [];
    for (const result of results) {
      if (typeof result?.request_id !== 'string') continue;
      ids.push(result.request_id);
      if (!this.#remember(result.request_id, result)) continue;
      const open = this.#open.get(result.request_id);
      if (open) {
        this.#open.delete(result.request_id);
        if (open.retryTimer) clearTimeout(open.retryTimer);
        for (const w of open.waiters) w.resolve(result);
      }
      this.#emit('result', result);
    }
    for (const order of orders) {
      if (typeof order?.request_id !== 'string') continue;
      ids.push(order.request_id);
      if (this.#remember(order.request_id, order)) this.#emit('order', order);
    }
    for (const id of ids) this.#unacked.add(id);
    this.#sendAcks(ids);
  }

  /**
   * Records a delivery; false when the request id was delivered before.
   * @param {string} requestId
   * @param {CommandResult | OrderUpdate} item
   */
  #remember(requestId, item) {
    if (this.#delivered.has(requestId)) return false;
    this.#delivered.set(requestId, item);
    if (this.#delivered.size > REMEMBERED_RESULTS) {
      const oldest = this.#delivered.keys().next().value;
      if (oldest !== undefined) this.#delivered.delete(oldest);
    }
    return true;
  }

  /**
   * Acknowledges request ids, except those an unanswered `ack` on this connection carries.
   * @param {string[]} ids
   */
  #sendAcks(ids) {
    const conn = this.#openConn();
    if (!conn) return;
    const todo = [...new Set(ids)].filter((id) => !this.#acking.has(id));
    for (let i = 0; i < todo.length; i += MAX_ACK) {
      const chunk = todo.slice(i, i + MAX_ACK);
      for (const id of chunk) this.#acking.add(id);
      this.#request(conn, { type: 'ack', request_ids: chunk }, {
        onReply: () => {
          for (const id of chunk) {
            this.#unacked.delete(id);
            this.#acking.delete(id);
          }
        },
        onError: (error) => {
          // Left unacknowledged: sent again on the next connection.
          for (const id of chunk) this.#acking.delete(id);
          if (!isConnectionLoss(error)) this.#emit('error', error);
        },
      });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Purchase commands

  /**
   * @param {Command} command
   * @param {CommandOptions} [options]
   * @returns {Promise<CommandResult>}
   */
  command(command, options = {}) {
    if (this.#state === 'closed') return Promise.reject(clientError('closed', 'the client is closed'));
    const requestId = options.requestId ?? MarqueeClient.newRequestId();
    const known = this.#delivered.get(requestId);
    if (known && 'outcome' in known) return Promise.resolve(known); // decided already
    let entry = this.#open.get(requestId);
    const isNew = !entry;
    if (!entry) {
      entry = {
        command,
        admission: options.admission,
        waiters: new Set(),
        retry: new Backoff(this.#backoffOptions, this.#random),
        retryTimer: null,
      };
      this.#open.set(requestId, entry);
    }
    const open = entry;
    /** @type {Waiter<CommandResult>} */
    const w = waiter(
      this.#commandTimeoutMs,
      () =>
        clientError('timeout', `no result for ${requestId} within ${this.#commandTimeoutMs} ms; it is still being sent`, {
          requestId,
        }),
      (expired) => open.waiters.delete(expired),
    );
    open.waiters.add(w);
    if (isNew) this.#sendCommand(requestId); // while disconnected: sent after the next welcome
    return w.promise;
  }

  /**
   * @param {string} event
   * @param {number[]} seats
   * @param {CommandOptions} [options]
   */
  holdSeats(event, seats, options) {
    return this.command({ kind: 'hold_seats', event, seats }, options);
  }

  /**
   * @param {string} event
   * @param {string} category
   * @param {number} quantity
   * @param {CommandOptions} [options]
   */
  holdBestAvailable(event, category, quantity, options) {
    return this.command({ kind: 'hold_best_available', event, category, quantity }, options);
  }

  /**
   * @param {string} event
   * @param {string} ticketType
   * @param {number} quantity
   * @param {CommandOptions} [options]
   */
  holdGa(event, ticketType, quantity, options) {
    return this.command({ kind: 'hold_ga', event, ticket_type: ticketType, quantity }, options);
  }

  /**
   * @param {string} event
   * @param {string} hold
   * @param {CommandOptions} [options]
   */
  release(event, hold, options) {
    return this.command({ kind: 'release', event, hold }, options);
  }

  /**
   * @param {string} event
   * @param {string} hold
   * @param {CommandOptions} [options]
   */
  checkout(event, hold, options) {
    return this.command({ kind: 'checkout', event, hold }, options);
  }

  /** @returns {string[]} */
  openCommands() {
    return [...this.#open.keys()];
  }

  /** @param {string} requestId */
  #sendCommand(requestId) {
    const conn = this.#openConn();
    const open = this.#open.get(requestId);
    if (!conn || !open) return;
    if (open.retryTimer) clearTimeout(open.retryTimer);
    open.retryTimer = null;
    /** @type {{ type: 'command', request_id: string, command: Command, admission?: string }} */
    const message = { type: 'command', request_id: requestId, command: open.command };
    if (open.admission !== undefined) message.admission = open.admission;
    this.#request(conn, message, {
      // `accepted`: queued; the result follows on the inbox.
      onReply: () => open.retry.reset(),
      onError: (error) => {
        if (isConnectionLoss(error) || this.#open.get(requestId) !== open) return;
        if (RETRYABLE_CODES.has(error.code) || error.kind === 'timeout') {
          // It may have been queued all the same (§8): the same request id, later.
          open.retryTimer = setTimeout(() => this.#sendCommand(requestId), open.retry.next());
          return;
        }
        // Refused before the queue: nothing happened, and the request id is not used up.
        this.#open.delete(requestId);
        const refusal = new MarqueeError(error.kind, error.code, error.message, { requestId });
        for (const w of open.waiters) w.reject(refusal);
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  /**
   * @param {RequestOptions} [options]
   * @returns {Promise<number>}
   */
  ping(options = {}) {
    const started = performance.now();
    return this.#ask({ type: 'ping' }, options.timeoutMs, () => performance.now() - started);
  }

  /**
   * @param {string} onsale
   * @param {{ intent?: PurchaseIntent } & RequestOptions} [options]
   * @returns {Promise<QueueStatus>}
   */
  joinQueue(onsale, options = {}) {
    // Registered before the reply, so that a join racing a dropped connection is still made
    // again after the reconnect.
    const queue = this.#queues.get(onsale) ?? {
      retry: new Backoff(this.#backoffOptions, this.#random),
      retryTimer: null,
    };
    queue.intent = options.intent;
    this.#queues.set(onsale, queue);
    const promise = this.#ask(this.#joinMessage(onsale), options.timeoutMs, (reply) => {
      this.#onQueueStatus(reply.status);
      return /** @type {QueueStatus} */ (reply.status);
    });
    promise.catch((error) => {
      if (error instanceof MarqueeError && error.kind === 'server' && !RETRYABLE_CODES.has(error.code)) {
        this.#queues.delete(onsale); // refused: there is no place to come back to
      }
    });
    return promise;
  }

  /**
   * @param {string} onsale
   * @param {RequestOptions} [options]
   * @returns {Promise<QueueStatus>}
   */
  leaveQueue(onsale, options = {}) {
    const queue = this.#queues.get(onsale);
    if (queue?.retryTimer) clearTimeout(queue.retryTimer);
    this.#queues.delete(onsale);
    return this.#ask({ type: 'queue.leave', onsale }, options.timeoutMs, (reply) => {
      this.#onQueueStatus(reply.status);
      return /** @type {QueueStatus} */ (reply.status);
    });
  }

  /**
   * @param {string} onsale
   * @returns {QueueStatus | undefined}
   */
  queueStatus(onsale) {
    return this.#queueStatus.get(onsale);
  }

  /** @param {string} onsale */
  #joinMessage(onsale) {
    const intent = this.#queues.get(onsale)?.intent;
    return intent ? { type: 'queue.join', onsale, intent } : { type: 'queue.join', onsale };
  }

  /**
   * Joins again after a reconnect, within the place's grace period (§14).
   * @param {string} onsale
   */
  #sendJoin(onsale) {
    const conn = this.#openConn();
    const queue = this.#queues.get(onsale);
    if (!conn || !queue) return;
    this.#request(conn, this.#joinMessage(onsale), {
      timeoutMs: this.#requestTimeoutMs,
      onReply: (reply) => {
        queue.retry.reset();
        this.#onQueueStatus(reply.status);
      },
      onError: (error) => {
        if (isConnectionLoss(error) || this.#queues.get(onsale) !== queue) return;
        if (RETRYABLE_CODES.has(error.code) || error.kind === 'timeout') {
          queue.retryTimer = setTimeout(() => this.#sendJoin(onsale), queue.retry.next());
        } else {
          this.#queues.delete(onsale);
        }
        this.#emit('error', error);
      },
    });
  }

  /** @param {QueueStatus} status */
  #onQueueStatus(status) {
    if (!status || typeof status.onsale !== 'string') return;
    // The same status can come twice (the reply to queue.leave, then its push; the reply to a
    // join after a reconnect): the listener hears of changes only.
    const previous = this.#queueStatus.get(status.onsale);
    if (previous && canonical(previous) === canonical(status)) return;
    this.#queueStatus.set(status.onsale, status);
    // The place is gone (or the onsale is over): joining again would make a new place at the
    // back, which is the buyer's decision, not the client's.
    if (status.state === 'ended' || status.state === 'closed') this.#queues.delete(status.onsale);
    this.#emit('queue', status);
  }

  /**
   * @param {Scan} scan
   * @param {RequestOptions} [options]
   * @returns {Promise<ScanResult>}
   */
  checkinScan(scan, options = {}) {
    return this.#ask({ ...scan, type: 'checkin.scan' }, options.timeoutMs, (reply) => {
      const { type: _type, id: _id, ...result } = reply;
      return /** @type {ScanResult} */ (result);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Token refresh

  /**
   * Plans the `refresh` for a token that expires at `expiresAt` (unix seconds): a margin before
   * it, at most half its remaining life (§11).
   * @param {Connection} conn
   * @param {number} expiresAt
   */
  #scheduleRefresh(conn, expiresAt) {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    const left = expiresAt * 1000 - Date.now();
    const at = Date.now() + Math.max(0, left - Math.min(this.#refreshBeforeMs, left / 2));
    const step = () => {
      const wait = at - Date.now();
      if (wait > 0) {
        this.#refreshTimer = setTimeout(step, Math.min(wait, MAX_TIMER_MS));
        return;
      }
      this.#refreshTimer = null;
      void this.#refresh(conn, expiresAt);
    };
    step();
  }

  /**
   * @param {Connection} conn
   * @param {number} expiresAt the current token's expiry
   */
  async #refresh(conn, expiresAt) {
    const retryLater = () => {
      // A refused refresh changes nothing (§11): the old token holds until it lapses, so try
      // again half way there; if it does lapse, the server closes with 4001 and the reconnect
      // asks the provider again.
      const left = expiresAt * 1000 - Date.now();
      if (this.#conn === conn && left > 2000) {
        this.#refreshTimer = setTimeout(() => void this.#refresh(conn, expiresAt), Math.min(left / 2, 30_000));
      }
    };
    let token;
    try {
      token = await this.#tokens();
      if (typeof token !== 'string' || token === '') throw new Error('it returned no token');
    } catch (cause) {
      this.#emit('error', clientError('token', `the token provider failed: ${describe(cause)}`));
      retryLater();
      return;
    }
    if (this.#openConn() !== conn) return;
    this.#request(conn, { type: 'refresh', token }, {
      timeoutMs: this.#requestTimeoutMs,
      onReply: (reply) => {
        this.#emit('refreshed', { expiresAt: reply.expires_at });
        this.#scheduleRefresh(conn, reply.expires_at);
      },
      onError: (error) => {
        if (isConnectionLoss(error)) return;
        this.#emit('error', error);
        retryLater();
      },
    });
  }
}

/**
 * JSON with sorted keys, to compare two wire objects whatever their field order.
 * @param {unknown} value
 * @returns {string}
 */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** @param {unknown} cause */
function describe(cause) {
  return cause instanceof Error ? cause.message : String(cause);
}
