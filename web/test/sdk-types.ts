// Type-checked by `npm run typecheck`, never run. Two jobs:
//
// 1. The implementation agrees with the declarations: every value `sdk/marquee.d.ts` declares
//    is assigned from the module that implements it, so a changed signature on either side
//    fails the check. (`../sdk/marquee.js` resolves to the .d.ts here; the implementation
//    modules have no .d.ts, so they resolve to the JavaScript itself, checked through JSDoc.)
// 2. The README's usage compiles against the declarations, as an application would write it.

import * as declared from '../sdk/marquee.js';
import * as client from '../sdk/client.js';
import * as backoff from '../sdk/backoff.js';
import * as errors from '../sdk/errors.js';
import * as seatmap from '../sdk/seatmap.js';

// --- 1. Implementation ⊆ declarations -------------------------------------------------------

export const implementation: {
  MarqueeClient: typeof declared.MarqueeClient;
  SUBPROTOCOL: typeof declared.SUBPROTOCOL;
  SeatMap: typeof declared.SeatMap;
  SEAT: typeof declared.SEAT;
  Backoff: typeof declared.Backoff;
  backoffCeiling: typeof declared.backoffCeiling;
  fullJitterDelay: typeof declared.fullJitterDelay;
  parseRetryAfter: typeof declared.parseRetryAfter;
  MarqueeError: typeof declared.MarqueeError;
} = {
  MarqueeClient: client.MarqueeClient,
  SUBPROTOCOL: client.SUBPROTOCOL,
  SeatMap: seatmap.SeatMap,
  SEAT: seatmap.SEAT,
  Backoff: backoff.Backoff,
  backoffCeiling: backoff.backoffCeiling,
  fullJitterDelay: backoff.fullJitterDelay,
  parseRetryAfter: backoff.parseRetryAfter,
  MarqueeError: errors.MarqueeError,
};

// ...and the declarations name nothing the implementation lacks: `marquee.js` exports exactly
// these (test/backoff.test.js checks the runtime list).
type Declared = keyof typeof declared;
type Implemented = keyof typeof implementation;
export const sameNames: [Exclude<Declared, Implemented>, Exclude<Implemented, Declared>] extends [never, never]
  ? true
  : false = true;

// --- 2. Usage, as in README.md ---------------------------------------------------------------

import {
  MarqueeClient,
  MarqueeError,
  SEAT,
  type CommandResult,
  type QueueStatus,
  type SeatMapChange,
} from '../sdk/marquee.js';

export async function usage(eventId: string, onsaleId: string): Promise<void> {
  const client = new MarqueeClient({
    url: 'wss://tickets.example.com/ws',
    token: async () => {
      const response = await fetch('/session/token');
      return ((await response.json()) as { token: string }).token;
    },
  });
  client.on('connected', (welcome) => console.log('connected to', welcome.node));
  client.on('disconnected', ({ code, reconnectInMs }) => console.log('lost', code, reconnectInMs));
  client.on('result', (result: CommandResult) => console.log(result.request_id, result.outcome.status));
  client.on('order', (order) => console.log(order.order, order.status, order.tickets?.length));
  client.on('queue', (status: QueueStatus) => console.log(status.state, status.position));
  await client.connect();

  const map = await client.subscribeSeatMap(eventId, ({ map, delta }: SeatMapChange) => {
    console.log('version', map.version, delta ? 'delta' : 'snapshot');
  });
  const free: number[] = map.seatsIn(SEAT.FREE);

  await client.subscribe<{ kind: string }>(`queue:${onsaleId}`, {
    onSubscribed: ({ recovered, snapshot }) => console.log(recovered, snapshot),
    onPublication: ({ offset, data }) => console.log(offset, data.kind),
  });

  const status = await client.joinQueue(onsaleId);
  const admission = status.admission?.token;
  try {
    const result = await client.holdSeats(eventId, free.slice(0, 2), admission ? { admission } : {});
    if (result.outcome.status === 'held') {
      const checkout = await client.checkout(eventId, result.outcome.hold);
      if (checkout.outcome.status === 'checked_out') console.log(checkout.outcome.total_minor);
    } else if (result.outcome.status === 'rejected') {
      console.log(result.outcome.code, result.outcome.alternative);
    }
  } catch (error) {
    if (error instanceof MarqueeError && error.kind === 'server') console.log(error.code);
  }

  const scan = await client.checkinScan({ qr: 'MQ1.x.y', scan_id: 'north-1' });
  if (scan.status === 'already_checked_in') console.log(scan.gate);
  client.close();
}
