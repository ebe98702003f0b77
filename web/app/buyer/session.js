// The buyer's sign-in for this tab (docs/web.md, "Signing in").
//
// The token arrives in the URL fragment (`/#token=<jwt>`), is kept in sessionStorage for the tab
// and removed from the address bar at once, so it never reaches history, bookmarks or a
// `Referer`. Its payload is read, not verified: the node verifies it on every connection and
// call; the page only needs `sub` and `tenant` (whose events to show).

const KEY = 'marquee.buyer.token';

/**
 * @typedef {object} BuyerClaims
 * @property {string} sub
 * @property {string} tenant
 * @property {number} exp unix seconds
 */

/**
 * @typedef {{ ok: true, claims: BuyerClaims, token: () => string }
 *   | { ok: false, error: string }} BuyerSession
 */

/**
 * Decodes a JWT's payload (no verification).
 * @param {string} token
 * @returns {Record<string, unknown> | null}
 */
export function decodeClaims(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Takes a token from the fragment (and removes it from the address bar), else the tab's.
 * @returns {BuyerSession}
 */
export function buyerSession() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fresh = fragment.get('token');
  if (fresh) {
    sessionStorage.setItem(KEY, fresh);
    fragment.delete('token');
    const rest = fragment.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  const token = sessionStorage.getItem(KEY);
  if (!token) return { ok: false, error: 'Sign in first: open this page with your sign-in link.' };
  const raw = decodeClaims(token);
  if (!raw) return { ok: false, error: 'Your sign-in link cannot be read. Sign in again.' };
  const claims = { sub: String(raw.sub ?? ''), tenant: String(raw.tenant ?? ''), exp: Number(raw.exp ?? 0) };
  if (!claims.sub || !claims.tenant) return { ok: false, error: 'Your sign-in names no box office. Sign in again.' };
  return {
    ok: true,
    claims,
    token() {
      if (claims.exp * 1000 <= Date.now()) throw new Error('your sign-in has lapsed: sign in again');
      return token;
    },
  };
}
