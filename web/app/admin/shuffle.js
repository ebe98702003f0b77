// The verifiable pre-queue shuffle, checked in the page (docs/waiting-room.md, "A fair order
// anyone can check"; the server's reference is server/src/waiting_room/shuffle.rs).
//
// The seed is 32 bytes; the commitment is SHA-256(seed) in lowercase hex. The order is the
// entrants sorted by HMAC-SHA256(key = seed, message = UTF-8 bytes of the id), byte by byte,
// ties broken by the id's UTF-8 bytes. Everything runs on WebCrypto (`crypto.subtle`), which
// browsers and Node.js 20 both have, so the dashboard and the unit tests share this file.

/**
 * What a draw record holds (`GET /v1/tenants/{tenant}/onsales/{onsale}/draw` after the start,
 * or a `draw` message of `queue:{onsale}`).
 * @typedef {object} DrawRecord
 * @property {string} seed_sha256 the commitment, hex
 * @property {string} seed the revealed seed, 64 hex digits
 * @property {string[]} order the pre-queue's place ids, first admitted first
 */

/**
 * Why a draw does not check out; `null` fields do not apply to that reason.
 * @typedef {object} ShuffleFailure
 * @property {false} ok
 * @property {'bad_seed' | 'seed_mismatch' | 'commitment_mismatch' | 'duplicate' | 'order_mismatch'} reason
 * @property {string} message for people
 * @property {number | null} position the first position that differs (0-based), for `order_mismatch`
 * @property {string | null} expected who the seed puts there
 * @property {string | null} published who the published order puts there (or the repeated id)
 */

/**
 * @typedef {{ ok: true, commitment: string, entrants: number } | ShuffleFailure} ShuffleVerdict
 */

const encoder = new TextEncoder();

/** @returns {SubtleCrypto} */
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto (crypto.subtle) is not available here; it needs a secure context');
  return s;
}

/**
 * Lowercase hex of bytes.
 * @param {ArrayBuffer | Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let out = '';
  for (const b of view) out += b.toString(16).padStart(2, '0');
  return out;
}

/**
 * Bytes of a hex string; `null` unless it is an even number of hex digits (either case).
 * @param {string} hex
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
export function fromHex(hex) {
  const s = hex.trim();
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) return null;
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * The commitment to a seed: SHA-256 of its bytes, lowercase hex.
 * @param {Uint8Array<ArrayBuffer>} seed
 * @returns {Promise<string>}
 */
export async function commitment(seed) {
  return toHex(await subtle().digest('SHA-256', seed));
}

/**
 * Byte-by-byte comparison, shorter first on a common prefix (Rust's slice order).
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 * @returns {number}
 */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * The entrants in the seed's order.
 * @param {Uint8Array<ArrayBuffer>} seed 32 bytes
 * @param {readonly string[]} entrants place ids, in any order
 * @returns {Promise<string[]>}
 */
export async function shuffle(seed, entrants) {
  const key = await subtle().importKey('raw', seed, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const keyed = await Promise.all(
    entrants.map(async (id) => {
      const bytes = encoder.encode(id);
      return { id, bytes, key: new Uint8Array(await subtle().sign('HMAC', key, bytes)) };
    }),
  );
  // Ties of the key go by the id's UTF-8 bytes, as Rust orders `(key, &str)`: JavaScript's own
  // string order (UTF-16 code units) differs from it for some characters.
  keyed.sort((a, b) => compareBytes(a.key, b.key) || compareBytes(a.bytes, b.bytes));
  return keyed.map((k) => k.id);
}

/**
 * Checks a draw: the seed is 32 bytes of hex, its SHA-256 is the record's `seed_sha256` (and the
 * commitment seen when the pre-queue opened, when `committed` is given), no entrant appears
 * twice, and the order is exactly the seed's order of its entrants. The same checks, in the same
 * order, as `marquee verify-shuffle`.
 * @param {DrawRecord} record
 * @param {{ committed?: string | null }} [options] a commitment published earlier
 * @returns {Promise<ShuffleVerdict>}
 */
export async function verifyDraw(record, { committed = null } = {}) {
  /**
   * @param {ShuffleFailure['reason']} reason
   * @param {string} message
   * @param {Partial<Pick<ShuffleFailure, 'position' | 'expected' | 'published'>>} [detail]
   * @returns {ShuffleFailure}
   */
  const fail = (reason, message, detail = {}) => ({
    ok: false,
    reason,
    message,
    position: detail.position ?? null,
    expected: detail.expected ?? null,
    published: detail.published ?? null,
  });
  const seed = typeof record.seed === 'string' ? fromHex(record.seed) : null;
  if (!seed || seed.length !== 32) return fail('bad_seed', 'the seed is not 32 bytes of hex');
  const actual = await commitment(seed);
  const claimed = String(record.seed_sha256 ?? '').trim().toLowerCase();
  if (actual !== claimed) {
    return fail('seed_mismatch', `SHA-256 of the seed is ${actual}, but ${claimed || 'nothing'} was published`);
  }
  if (committed != null && committed.trim().toLowerCase() !== actual) {
    return fail(
      'commitment_mismatch',
      `the draw's seed hashes to ${actual}, but the commitment published when the pre-queue opened was ${committed}`,
    );
  }
  const order = Array.isArray(record.order) ? record.order : [];
  const seen = new Set();
  for (const id of order) {
    if (seen.has(id)) return fail('duplicate', `${id} appears more than once`, { published: id });
    seen.add(id);
  }
  const expected = await shuffle(seed, order);
  const position = expected.findIndex((id, i) => id !== order[i]);
  if (position >= 0) {
    return fail(
      'order_mismatch',
      `position ${position + 1}: the seed puts ${expected[position]} there, the published order ${order[position]}`,
      { position, expected: expected[position], published: order[position] },
    );
  }
  return { ok: true, commitment: actual, entrants: order.length };
}
