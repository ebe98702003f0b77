// Unit tests of the seat map decoding (docs/protocol.md §7) and of the SDK's export list.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as sdk from '../sdk/marquee.js';
import { SEAT, SeatMap } from '../sdk/marquee.js';

/** The snapshot of protocol.md §7: seats 0-3 and 150-159 sold, 7 and 40-45 held. */
const EXAMPLE = {
  ga: [{ available: 180, ticket_type: '9c4b2a10-3e5f-4a6b-8c7d-0e1f2a3b4c5d' }],
  seats: 200,
  state: 'qkAAAAAAAAAAAFUFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAKCqqgAAAAAAAAAAAAA=',
  v: 1041,
};

/** @param {number} from @param {number} to */
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('SeatMap', () => {
  test('decodes the documented example snapshot', () => {
    const map = new SeatMap(EXAMPLE);
    assert.equal(map.size, 200);
    assert.equal(map.version, 1041);
    assert.deepEqual(map.seatsIn(SEAT.SOLD), [...range(0, 3), ...range(150, 159)]);
    assert.deepEqual(map.seatsIn(SEAT.HELD), [7, ...range(40, 45)]);
    assert.equal(map.seatsIn(SEAT.FREE).length, 200 - 14 - 7);
    assert.deepEqual(map.seatsIn(SEAT.UNUSED), []);
    assert.equal(map.ga.get('9c4b2a10-3e5f-4a6b-8c7d-0e1f2a3b4c5d'), 180);
  });

  test('free, held, sold, free make the byte 0x24', () => {
    const map = new SeatMap({ ga: [], seats: 4, state: btoa(String.fromCharCode(0x24)), v: 0 });
    assert.deepEqual([0, 1, 2, 3].map((i) => map.state(i)), [SEAT.FREE, SEAT.HELD, SEAT.SOLD, SEAT.FREE]);
    assert.throws(() => map.state(4), RangeError);
  });

  test('applies the next version, ignores repeats, and reports a gap without applying it', () => {
    const map = new SeatMap(EXAMPLE);
    assert.equal(map.apply({ free: [7], held: [118, 119], v: 1042 }), 'applied');
    assert.equal(map.state(7), SEAT.FREE);
    assert.deepEqual(map.seatsIn(SEAT.HELD), [...range(40, 45), 118, 119]);
    assert.equal(map.apply({ free: [118], v: 1042 }), 'stale');
    assert.equal(map.state(118), SEAT.HELD);
    const ga = '9c4b2a10-3e5f-4a6b-8c7d-0e1f2a3b4c5d';
    assert.equal(map.apply({ ga: [{ available: 176, ticket_type: ga }], v: 1043 }), 'applied');
    assert.equal(map.ga.get(ga), 176);
    assert.equal(map.apply({ sold: [118, 119], v: 1045 }), 'gap');
    assert.equal(map.version, 1043);
    assert.equal(map.state(118), SEAT.HELD);
    assert.equal(map.apply({ sold: [118, 119], v: 1044 }), 'applied');
    assert.equal(map.state(119), SEAT.SOLD);
  });

  test('an event without a map is an empty map', () => {
    const map = new SeatMap({ ga: [], seats: 0, state: '', v: 0 });
    assert.equal(map.size, 0);
    assert.deepEqual(map.seatsIn(SEAT.FREE), []);
  });
});

test('marquee.js exports exactly what marquee.d.ts declares', () => {
  // test/sdk-types.ts checks each declaration's type; this checks the runtime list.
  assert.deepEqual(Object.keys(sdk).sort(), [
    'Backoff',
    'MarqueeClient',
    'MarqueeError',
    'SEAT',
    'SUBPROTOCOL',
    'SeatMap',
    'backoffCeiling',
    'fullJitterDelay',
    'parseRetryAfter',
  ]);
  assert.equal(sdk.SUBPROTOCOL, 'marquee.v1.json');
  assert.match(sdk.MarqueeClient.newRequestId(), /^[0-9a-f]{32}$/);
});
