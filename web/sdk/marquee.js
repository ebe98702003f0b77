// The Marquee browser SDK: import this module, nothing else.
//
//   import { MarqueeClient } from './sdk/marquee.js';
//
// - `client.js`: `MarqueeClient`, the connection that stays up (reconnects, resumes channels,
//   refreshes the token, delivers and acknowledges inbox results, resends commands).
// - `seatmap.js`: `SeatMap`, the live seat map decoded from snapshots and deltas.
// - `backoff.js`: the reconnect delay policy and `Retry-After` parsing.
// - `errors.js`: `MarqueeError`, the one error type, with the server's code.
//
// Types are declared in `marquee.d.ts`; README.md shows how to use it.

export { MarqueeClient, SUBPROTOCOL } from './client.js';
export { SeatMap, SEAT } from './seatmap.js';
export { Backoff, backoffCeiling, fullJitterDelay, parseRetryAfter } from './backoff.js';
export { MarqueeError } from './errors.js';
