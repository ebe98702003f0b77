// Type declarations of the Marquee browser SDK (`marquee.js`).
//
// This file is the SDK's public contract. The implementation (`client.js`, `backoff.js`,
// `errors.js`, `seatmap.js`, re-exported by `marquee.js`) takes its types from here through
// JSDoc, and `test/sdk-types.ts` asserts that each exported value matches its declaration, so
// `npm run typecheck` fails when the two drift apart.
//
// Wire objects (results, statuses, snapshots) keep the protocol's snake_case field names, exactly
// as `docs/protocol.md` spells them; the SDK's own options and events use camelCase.

// ---------------------------------------------------------------------------------------------
// Wire types (docs/protocol.md)

/** The WebSocket sub-protocol the SDK speaks. */
export declare const SUBPROTOCOL: 'marquee.v1.json';

/** A position in a channel's stream (§5). Compare epochs only for equality. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A message on a channel (`pub`, §2). */
export interface Publication<Data = unknown> {
  channel: string;
  epoch: string;
  offset: number;
  data: Data;
}

/** The first message of every connection (§3). */
export interface Welcome {
  type: 'welcome';
  session: string;
  node: string;
  user: string;
  inbox: string;
  inbox_position: Position;
  /** The inbox's pending results and order updates, on nodes with a booking engine. */
  inbox_snapshot?: InboxSnapshot;
  /** When the access token expires, unix seconds. */
  expires_at: number;
  heartbeat_ms: number;
}

/** An inbox snapshot: results and order updates not acknowledged yet, oldest first (§8). */
export interface InboxSnapshot {
  pending: CommandResult[];
  orders?: OrderUpdate[];
}

/** A purchase command (§8). Every id is a UUID string; seats are indexes in the event's map. */
export type Command =
  | { kind: 'hold_seats'; event: string; seats: number[] }
  | { kind: 'hold_best_available'; event: string; category: string; quantity: number }
  | { kind: 'hold_ga'; event: string; ticket_type: string; quantity: number }
  | { kind: 'release'; event: string; hold: string }
  | { kind: 'checkout'; event: string; hold: string };

/** What became of a command (§8, "Results"). Times are unix milliseconds. */
export type Outcome =
  | {
      status: 'held';
      hold: string;
      seats: number[];
      ticket_type?: string;
      quantity: number;
      expires_at: number;
    }
  | { status: 'released'; hold: string }
  | {
      status: 'checked_out';
      order: string;
      hold: string;
      total_minor: number;
      currency: string;
      payment_due_at: number;
    }
  | { status: 'rejected'; code: string; message: string; alternative?: number[] };

/** A command's durable result, delivered once per `request_id`. */
export interface CommandResult {
  request_id: string;
  event: string;
  /** The command's `kind`. */
  command: Command['kind'];
  outcome: Outcome;
}

/** A ticket of a paid order. */
export interface Ticket {
  ticket: string;
  event: string;
  ticket_type: string;
  /** Seated tickets only. */
  seat?: number;
  version: number;
  /** The signed code a gate scans (`MQ1.…`). */
  qr: string;
}

/** An order moved on (§8, "Order updates"); acknowledged like a result, by `request_id`. */
export interface OrderUpdate {
  request_id: string;
  order: string;
  event: string;
  status: 'pending_payment' | 'paid' | 'failed' | 'expired' | 'cancelled' | 'refunded' | (string & {});
  payment_due_at?: number;
  reason?: string;
  tickets?: Ticket[];
}

/** An admission from the waiting room, for the `admission` option of holds (§14). */
export interface Admission {
  token: string;
  /** Unix seconds. */
  expires_at: number;
}

/** A place's status in an onsale's waiting room (§14, "The status"). */
export interface QueueStatus {
  onsale: string;
  place: string;
  state: 'pre_queue' | 'waiting' | 'admitted' | 'sold_out' | 'closed' | 'ended' | (string & {});
  position?: number;
  ahead?: number;
  /** `[earliest, latest]` seconds. */
  eta_seconds?: [number, number];
  paused?: boolean;
  reason?: string;
  admission?: Admission;
}

/** A purchase staged with `queue.join`, made the instant the place is admitted. */
export interface PurchaseIntent {
  category: string;
  quantity: number;
}

/** One scan at a gate (§15). */
export interface Scan {
  qr: string;
  /** The gate's own id for the scan, 1-128 bytes: resending it returns the first answer. */
  scan_id: string;
  event?: string;
  /** Unix ms, for an offline scan. */
  scanned_at?: number;
}

/** The answer to a scan (`checkin.result` without `type` and `id`). */
export type ScanResult =
  | {
      scan_id: string;
      ticket?: string;
      status: 'admitted';
      event: string;
      seat?: number;
      ticket_type: string;
      at: number;
    }
  | { scan_id: string; ticket?: string; status: 'already_checked_in'; at: number; gate: string }
  | { scan_id: string; ticket?: string; status: 'rejected'; code: string; message: string };

/** The live seat map's snapshot (§7). */
export interface SeatSnapshot {
  v: number;
  seats: number;
  /** Two bits per seat, base64. */
  state: string;
  ga: { ticket_type: string; available: number }[];
}

/** A seat map delta (§7, "Deltas"). */
export interface SeatDelta {
  v: number;
  free?: number[];
  held?: number[];
  sold?: number[];
  ga?: { ticket_type: string; available: number }[];
}

// ---------------------------------------------------------------------------------------------
// Errors

/** What kind of failure a {@link MarqueeError} is. */
export type ErrorKind =
  /** The server answered with an `error`; `code` is its stable code. */
  | 'server'
  /** The server refused the token (HTTP 401 on the upgrade, seen by the SDK's probe). */
  | 'unauthorized'
  /** The node refused the connection for now (HTTP 503 `over_capacity`). */
  | 'over_capacity'
  /** The connection could not be opened, or closed before the welcome. */
  | 'connect'
  /** The token provider threw or returned no token. */
  | 'token'
  /** No reply within the timeout. */
  | 'timeout'
  /** The connection dropped before the reply. */
  | 'disconnected'
  /** The client was closed. */
  | 'closed';

/** Every failure the SDK reports: a rejected promise or an `error` event. */
export declare class MarqueeError extends Error {
  constructor(
    kind: ErrorKind,
    code: string,
    message: string,
    details?: { retryAfterMs?: number; channel?: string; requestId?: string },
  );
  readonly name: 'MarqueeError';
  readonly kind: ErrorKind;
  /**
   * The server's stable error code (`forbidden`, `not_found`, `token_expired`, ...) for `server`,
   * `unauthorized` and `over_capacity` errors; for the others the kind itself (`timeout`, ...).
   */
  readonly code: string;
  /** For `over_capacity`: the server's `Retry-After`, in milliseconds. */
  readonly retryAfterMs?: number;
  /** The channel concerned, for failures of (automatic) subscriptions. */
  readonly channel?: string;
  /** The command concerned, for failures of purchase commands. */
  readonly requestId?: string;
}

// ---------------------------------------------------------------------------------------------
// Backoff

/** Exponential backoff bounds. */
export interface BackoffOptions {
  /** The first ceiling (default 250 ms). */
  baseMs?: number;
  /** The largest ceiling (default 20 s). */
  capMs?: number;
}

/**
 * The ceiling of the `attempt`-th delay (counting from 0): `min(capMs, baseMs × 2^attempt)`.
 */
export declare function backoffCeiling(attempt: number, options?: BackoffOptions): number;

/**
 * A full-jitter delay: uniform in `[0, backoffCeiling(attempt)]`, whole milliseconds.
 * `random` (default `Math.random`) returns numbers in `[0, 1)`.
 */
export declare function fullJitterDelay(
  attempt: number,
  options?: BackoffOptions,
  random?: () => number,
): number;

/** A backoff policy with its attempt counter (protocol §12). */
export declare class Backoff {
  constructor(options?: BackoffOptions, random?: () => number);
  /** Failed attempts counted since the last reset. */
  readonly attempt: number;
  /** The ceiling of the next delay. */
  ceiling(): number;
  /** The next delay, counting one more failed attempt. */
  next(): number;
  /** Starts over (after a successful connection). */
  reset(): void;
}

/**
 * Reads an HTTP `Retry-After` value (delta seconds or an HTTP date) as milliseconds from `now`;
 * `undefined` when absent or unreadable.
 */
export declare function parseRetryAfter(value: string | null | undefined, now?: number): number | undefined;

// ---------------------------------------------------------------------------------------------
// Seat map

/** A seat's state in the live map (§7): `0` free, `1` held, `2` sold, `3` unused. */
export type SeatState = 0 | 1 | 2 | 3;

/** The seat states by name. */
export declare const SEAT: { readonly FREE: 0; readonly HELD: 1; readonly SOLD: 2; readonly UNUSED: 3 };

/** The live seat map of one event, built from a snapshot and kept current with deltas (§7). */
export declare class SeatMap {
  constructor(snapshot: SeatSnapshot);
  /** The inventory version the map is at. */
  readonly version: number;
  /** How many seats the map has. */
  readonly size: number;
  /** General admission: ticket type id → how many can still be held. */
  readonly ga: Map<string, number>;
  /** Seat `index`'s state. */
  state(index: number): SeatState;
  /** The indexes of the seats in `state`, ascending. */
  seatsIn(state: SeatState): number[];
  /**
   * Applies a delta: `'applied'` when it was the next version, `'stale'` for a repeat (ignored),
   * `'gap'` when a delta was missed (the map is unchanged; start again from a fresh snapshot).
   */
  apply(delta: SeatDelta): 'applied' | 'stale' | 'gap';
}

// ---------------------------------------------------------------------------------------------
// The client

/**
 * Supplies access tokens (JWTs). Called for every connection attempt (the first and each
 * reconnect) and before the current token expires.
 */
export type TokenProvider = () => string | Promise<string>;

/**
 * The part of the WebSocket API the SDK uses: the browser's `WebSocket` or the `ws` package's.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'message' | 'close' | 'error', listener: (event: any) => void): void;
}

/** A WebSocket constructor: `new (url, protocols)`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** How a {@link MarqueeClient} connects and behaves. */
export interface ClientOptions {
  /** The node's WebSocket URL, e.g. `wss://tickets.example.com/ws`. */
  url?: string;
  /** Several node URLs: each reconnect moves on to the next one. */
  urls?: string[];
  /** Supplies access tokens. */
  token: TokenProvider;
  /** The WebSocket constructor (default: the global `WebSocket`; in Node.js pass `ws`'s). */
  WebSocket?: WebSocketConstructor;
  /** `fetch` for the refusal probe (default: the global `fetch`; `null` disables the probe). */
  fetch?: typeof fetch | null;
  /** How long a request waits for its reply (default 10 s). */
  requestTimeoutMs?: number;
  /** How long a connection attempt may take, welcome included (default 10 s). */
  connectTimeoutMs?: number;
  /** How long a purchase command's promise waits for the result (default 30 s). */
  commandTimeoutMs?: number;
  /** Refresh the token this long before it expires, at most half its remaining life (default 60 s). */
  refreshBeforeMs?: number;
  /**
   * Ping the node after this long without a message from it, and reconnect when the ping goes
   * unanswered within the request timeout (default: the welcome's `heartbeat_ms`; 0: never).
   */
  keepaliveMs?: number;
  /** Reconnect backoff (default 250 ms to 20 s); also paces retries after `unavailable`. */
  backoff?: BackoffOptions;
  /** Random numbers in `[0, 1)` for jitter (default `Math.random`). */
  random?: () => number;
}

/** A (re)subscription's outcome, handed to the channel's handler. */
export interface Subscribed {
  channel: string;
  /** Every later publication follows this position without a gap. */
  epoch: string;
  offset: number;
  /**
   * `true`: the missed messages follow as publications, keep your state. `false`: start again
   * from `snapshot` (or reload the state by other means if the channel has none).
   */
  recovered: boolean;
  /** The channel's state at `(epoch, offset)`, for channels that have one. */
  snapshot?: unknown;
  /** `true` when the SDK resubscribed by itself (reconnect, resync, gap, retry). */
  automatic: boolean;
}

/** Receives one channel: every (re)subscription, then every publication exactly once, in order. */
export interface ChannelHandler<Data = unknown> {
  /** Called on every (re)subscription, before the publications that follow it. */
  onSubscribed?(subscribed: Subscribed): void;
  /** Called with every publication, in stream order, without gaps or repeats. */
  onPublication?(publication: Publication<Data>): void;
}

/** Options of {@link MarqueeClient.subscribe}. */
export interface SubscribeOptions {
  /** Resume after a position the application saved itself (otherwise: a fresh snapshot). */
  since?: Position;
}

/** Options of purchase commands. */
export interface CommandOptions {
  /** The idempotency key (default: a fresh one). Reuse it only to retry the same command. */
  requestId?: string;
  /** The waiting room's admission token (`QueueStatus.admission.token`). */
  admission?: string;
}

/** Options of single requests. */
export interface RequestOptions {
  /** Overrides the client's request timeout. */
  timeoutMs?: number;
}

/** `disconnected` event: the connection (or an attempt) ended. */
export interface Disconnected {
  /** The close code (1006 when the connection dropped without one). */
  code: number;
  reason: string;
  /** When the next attempt starts, or `null` when the client does not reconnect. */
  reconnectInMs: number | null;
  /** Why an attempt failed, when the SDK knows. */
  error?: MarqueeError;
}

/** Events of a {@link MarqueeClient}, by name. */
export interface ClientEvents {
  /** A connection was established (the first or a reconnect): its welcome. */
  connected: Welcome;
  /** A connection or an attempt ended. */
  disconnected: Disconnected;
  /** A command's result, once per `request_id`, then acknowledged to the server. */
  result: CommandResult;
  /** An order update, once per `request_id`, then acknowledged. */
  order: OrderUpdate;
  /** A waiting-room status: `queue.joined` replies and `queue.status` pushes, in order. */
  queue: QueueStatus;
  /** The token was refreshed; `expiresAt` in unix seconds. */
  refreshed: { expiresAt: number };
  /** A failure not tied to a promise: an automatic resubscribe refused, a server push, ... */
  error: MarqueeError;
}

/** What {@link MarqueeClient.subscribeSeatMap} reports on every change. */
export interface SeatMapChange {
  map: SeatMap;
  /** The delta just applied, or `null` after a (re)subscription replaced the map. */
  delta: SeatDelta | null;
}

/**
 * A connection to a Marquee node that stays up: it reconnects with backoff, resumes every
 * channel, refreshes the token, delivers inbox results once and acknowledges them, and resends
 * purchase commands until their results arrive.
 */
export declare class MarqueeClient {
  constructor(options: ClientOptions);

  /** A fresh request id: 128 random bits in hex. */
  static newRequestId(): string;

  /** `'idle'` (not started), `'connecting'`, `'open'`, `'waiting'` (to reconnect), `'closed'`. */
  readonly state: 'idle' | 'connecting' | 'open' | 'waiting' | 'closed';
  /** The current connection's welcome, while open. */
  readonly welcome: Welcome | null;

  /**
   * Opens the connection; resolves with the first welcome. A failure of this first attempt
   * rejects (a refused token, an unreachable node) and leaves the client idle; later drops are
   * reconnected in the background.
   */
  connect(): Promise<Welcome>;
  /** Closes the connection (code 1000) and stops reconnecting. Pending promises reject `closed`; no `disconnected` event follows. */
  close(): void;

  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): () => void;
  /** Stops a listener. */
  off<K extends keyof ClientEvents>(type: K, listener: (event: ClientEvents[K]) => void): void;

  /**
   * Subscribes to a channel and keeps it subscribed across reconnects and resyncs; the handler
   * receives each (re)subscription and every publication. Resolves with the first subscription.
   * A rejection with code `unavailable` or a timeout keeps the channel registered (the SDK
   * retries); any other refusal drops it. Subscribing a channel again replaces its handler and
   * starts from a fresh snapshot.
   */
  subscribe<Data = unknown>(
    channel: string,
    handler: ChannelHandler<Data>,
    options?: SubscribeOptions,
  ): Promise<Subscribed>;
  /** Stops a channel (also stops its automatic resubscription). */
  unsubscribe(channel: string): Promise<void>;
  /** Resubscribes a channel without `since`, for a fresh snapshot. */
  resync(channel: string): void;
  /** The position of the last publication delivered on a channel (or where it started). */
  position(channel: string): Position | undefined;
  /**
   * Subscribes to `seats:{event}` and keeps a {@link SeatMap}: replaced on every snapshot,
   * updated by every delta, rebuilt from a fresh snapshot when a version is missed.
   */
  subscribeSeatMap(event: string, onChange: (change: SeatMapChange) => void): Promise<SeatMap>;

  /** Round-trips a `ping`; resolves with the round trip in milliseconds. */
  ping(options?: RequestOptions): Promise<number>;

  /**
   * Sends a purchase command and resolves with its result (even a rejected one); rejects on a
   * refusal before the queue (`not_found`, `forbidden`, ...). The command is resent with the
   * same request id after every reconnect (and after `unavailable`) until its result arrives,
   * even after this promise timed out; the result is also emitted as a `result` event.
   */
  command(command: Command, options?: CommandOptions): Promise<CommandResult>;
  holdSeats(event: string, seats: number[], options?: CommandOptions): Promise<CommandResult>;
  holdBestAvailable(
    event: string,
    category: string,
    quantity: number,
    options?: CommandOptions,
  ): Promise<CommandResult>;
  holdGa(event: string, ticketType: string, quantity: number, options?: CommandOptions): Promise<CommandResult>;
  release(event: string, hold: string, options?: CommandOptions): Promise<CommandResult>;
  checkout(event: string, hold: string, options?: CommandOptions): Promise<CommandResult>;
  /** Request ids of commands whose results have not arrived yet. */
  openCommands(): string[];

  /**
   * Joins (or attaches to) an onsale's waiting room; resolves with the place's status. The SDK
   * joins again after every reconnect until the place ends, is closed, or you leave.
   */
  joinQueue(onsale: string, options?: { intent?: PurchaseIntent } & RequestOptions): Promise<QueueStatus>;
  /** Gives the place up; resolves with its final status (`ended`, reason `left`). */
  leaveQueue(onsale: string, options?: RequestOptions): Promise<QueueStatus>;
  /** The latest status of the buyer's place in an onsale's queue. */
  queueStatus(onsale: string): QueueStatus | undefined;

  /** Scans a ticket at a gate (token role `gate`). */
  checkinScan(scan: Scan, options?: RequestOptions): Promise<ScanResult>;
}
