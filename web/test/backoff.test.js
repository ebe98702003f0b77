// Unit tests of the reconnect delay policy (docs/protocol.md §12) and of Retry-After parsing.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Backoff, backoffCeiling, fullJitterDelay, parseRetryAfter } from '../sdk/marquee.js';

describe('backoff', () => {
  test('the ceiling doubles from 250 ms up to the 20 s cap', () => {
    const ceilings = Array.from({ length: 10 }, (_, attempt) => backoffCeiling(attempt));
    assert.deepEqual(ceilings, [250, 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]);
    // Far-out attempts stay at the cap rather than overflowing.
    assert.equal(backoffCeiling(5000), 20000);
    assert.equal(backoffCeiling(3, { baseMs: 10, capMs: 1000 }), 80);
  });

  test('a delay is a whole number of milliseconds from zero to the ceiling, both included', () => {
    assert.equal(fullJitterDelay(0, {}, () => 0), 0);
    assert.equal(fullJitterDelay(0, {}, () => 0.9999999), 250);
    assert.equal(fullJitterDelay(7, {}, () => 0.9999999), 20000);
    assert.equal(fullJitterDelay(2, {}, () => 0.5), 500);
    for (let attempt = 0; attempt < 12; attempt += 1) {
      for (let i = 0; i < 200; i += 1) {
        const delay = fullJitterDelay(attempt);
        assert.ok(Number.isInteger(delay), `${delay} is not whole`);
        assert.ok(delay >= 0 && delay <= backoffCeiling(attempt), `${delay} outside [0, ${backoffCeiling(attempt)}]`);
      }
    }
  });

  test('delays are spread over the whole range (full jitter, not equal jitter)', () => {
    const delays = Array.from({ length: 400 }, () => fullJitterDelay(0, { baseMs: 1000, capMs: 1000 }));
    assert.ok(delays.some((d) => d < 250), 'no delay in the lowest quarter');
    assert.ok(delays.some((d) => d > 750), 'no delay in the highest quarter');
    // Equal jitter would never go below half the ceiling.
    assert.ok(delays.filter((d) => d < 500).length > 100);
  });

  test('Backoff counts attempts, bounds each delay by its ceiling, and resets', () => {
    const backoff = new Backoff({ baseMs: 100, capMs: 1000 }, () => 0.9999999);
    assert.deepEqual(
      Array.from({ length: 6 }, () => backoff.next()),
      [100, 200, 400, 800, 1000, 1000],
    );
    assert.equal(backoff.attempt, 6);
    assert.equal(backoff.ceiling(), 1000);
    backoff.reset();
    assert.equal(backoff.attempt, 0);
    assert.equal(backoff.ceiling(), 100);
    assert.equal(new Backoff({}, () => 0).next(), 0);
  });
});

describe('Retry-After', () => {
  test('delta seconds become milliseconds', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(' 1 '), 1000);
    assert.equal(parseRetryAfter('0'), 0);
  });

  test('an HTTP date counts from now, never below zero', () => {
    const now = Date.parse('Wed, 02 Dec 2026 08:00:00 GMT');
    assert.equal(parseRetryAfter('Wed, 02 Dec 2026 08:00:04 GMT', now), 4000);
    assert.equal(parseRetryAfter('Wed, 02 Dec 2026 07:00:00 GMT', now), 0);
  });

  test('an absent or unreadable header gives no delay', () => {
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter('-1'), undefined);
  });
});
