// Ticket codes checked in the page, before (or without) the network: docs/payments.md,
// "Tickets". A code is `MQ1.<payload>.<signature>`, both base64url without padding; the
// payload is the ticket id (16 bytes), the event id (16 bytes) and the ticket's version
// (4 bytes, big-endian), and the signature is Ed25519 over those 36 bytes under the
// deployment's ticket key, whose public half `GET /v1/tickets/public-key` serves.
//
// A signature that verifies proves the code was issued by Marquee; it cannot show that the
// ticket is still valid (a refund, a transfer) or not checked in yet. Only the server knows
// that, so an offline verdict of "valid" is provisional until the scan is uploaded.

/**
 * A code's readable parts.
 * @typedef {object} TicketCode
 * @property {string} ticket the ticket id, a lowercase hyphenated UUID
 * @property {string} event the event id
 * @property {number} version the ticket's version (a transfer increments it)
 * @property {Uint8Array<ArrayBuffer>} payload the 36 signed bytes
 * @property {Uint8Array<ArrayBuffer>} signature 64 bytes
 */

/**
 * What the page can say about a code by itself.
 * @typedef {{ verdict: 'valid', code: TicketCode }
 *   | { verdict: 'wrong_event', code: TicketCode }
 *   | { verdict: 'invalid', reason: string, code?: TicketCode }
 *   | { verdict: 'unchecked', reason: string, code?: TicketCode }} OfflineVerdict
 */

/** The most bytes a scan's `qr` may have (docs/protocol.md §15). */
export const MAX_CODE_BYTES = 1024;

/**
 * Decodes base64url without padding; `null` if it is not that.
 * @param {string} text
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
export function fromBase64Url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  try {
    const binary = atob(padded);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/**
 * A UUID's 16 bytes as its lowercase hyphenated text.
 * @param {Uint8Array} bytes
 */
function uuidOf(bytes) {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Bytes of a hex string, or `null`.
 * @param {string} hex
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
function fromHex(hex) {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Reads a code's parts without checking its signature; `null` with a reason when it is not a
 * Marquee code at all.
 * @param {string} text what was scanned or typed (surrounding blanks are ignored)
 * @returns {{ code: TicketCode } | { code: null, reason: string }}
 */
export function parseCode(text) {
  const trimmed = text.trim();
  if (new TextEncoder().encode(trimmed).length > MAX_CODE_BYTES) {
    return { code: null, reason: 'the code is too long to be a ticket' };
  }
  const parts = trimmed.split('.');
  if (parts.length !== 3 || parts[0] !== 'MQ1') return { code: null, reason: 'not a Marquee ticket code' };
  const payload = fromBase64Url(parts[1]);
  const signature = fromBase64Url(parts[2]);
  if (!payload || payload.length !== 36) return { code: null, reason: 'the code is damaged (payload)' };
  if (!signature || signature.length !== 64) return { code: null, reason: 'the code is damaged (signature)' };
  const version = new DataView(payload.buffer, payload.byteOffset + 32, 4).getUint32(0, false);
  return {
    code: {
      ticket: uuidOf(payload.subarray(0, 16)),
      event: uuidOf(payload.subarray(16, 32)),
      version,
      payload,
      signature,
    },
  };
}

/**
 * Whether this browser's WebCrypto verifies Ed25519 (Chromium does, from version 137; Firefox
 * from 129; Safari from 17). Imports a known public key to find out.
 * @returns {Promise<boolean>}
 */
export async function ed25519Supported() {
  if (!globalThis.crypto?.subtle) return false;
  try {
    await crypto.subtle.importKey('raw', new Uint8Array(32).fill(1), { name: 'Ed25519' }, false, ['verify']);
    return true;
  } catch {
    return false;
  }
}

/**
 * Imports the deployment's ticket public key (64 hex digits) for `verify`.
 * @param {string} hex
 * @returns {Promise<CryptoKey>}
 */
export async function importPublicKey(hex) {
  const raw = fromHex(hex.trim());
  if (!raw || raw.length !== 32) throw new Error('the ticket public key is not 32 bytes of hex');
  return crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
}

/**
 * Checks a code in the page: its shape, its Ed25519 signature under `key`, and its event.
 * @param {string} text the scanned code
 * @param {{ key: CryptoKey | null, event: string | null, unavailable?: string }} options
 *   `key` null: the signature cannot be checked here (`unchecked`, with `unavailable` as the
 *   reason); `event` null: any event
 * @returns {Promise<OfflineVerdict>}
 */
export async function checkOffline(text, { key, event, unavailable = 'the ticket key is not loaded' }) {
  const parsed = parseCode(text);
  if (!parsed.code) return { verdict: 'invalid', reason: parsed.reason };
  const { code } = parsed;
  if (!key) return { verdict: 'unchecked', reason: unavailable, code };
  const genuine = await crypto.subtle.verify({ name: 'Ed25519' }, key, code.signature, code.payload);
  if (!genuine) return { verdict: 'invalid', reason: 'the signature does not verify: not a genuine ticket', code };
  if (event && code.event !== event.toLowerCase()) return { verdict: 'wrong_event', code };
  return { verdict: 'valid', code };
}
