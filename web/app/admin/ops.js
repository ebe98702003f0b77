// What the two staff pages (`/admin`, `/gate`) share: the signed-in session and the HTTP calls.
//
// The token arrives in the URL fragment (`#token=<jwt>`, docs/web.md), is kept for the tab in
// sessionStorage and removed from the address bar at once. Its payload is read, not verified
// (the node verifies it on every call): the page only needs `sub`, `tenant` and `roles` to say
// who is signed in and to refuse early when the role is missing.

/**
 * @typedef {object} Claims
 * @property {string} sub
 * @property {string} tenant
 * @property {string[]} roles
 * @property {number} exp unix seconds
 */

/**
 * @typedef {{ ok: true, role: string, token: () => string, claims: Claims,
 *   tokenProvider: () => string } | { ok: false, role: string, error: string }} OpsSession
 */

/** An HTTP answer that was not 2xx, with the server's `{code, message}`. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

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
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/**
 * The tab's session for a page that needs `role`.
 * @param {string} role `admin` or `gate`
 * @returns {OpsSession}
 */
export function opsSession(role) {
  const key = `marquee.${role}.token`;
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fresh = fragment.get('token');
  if (fresh) {
    sessionStorage.setItem(key, fresh);
    fragment.delete('token');
    const rest = fragment.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  const token = sessionStorage.getItem(key);
  if (!token) return { ok: false, role, error: `Sign in first: open this page with a link carrying a ${role} token (#token=…).` };
  const raw = decodeClaims(token);
  if (!raw) return { ok: false, role, error: 'The sign-in token cannot be read. Sign in again.' };
  const claims = {
    sub: String(raw.sub ?? ''),
    tenant: String(raw.tenant ?? ''),
    roles: Array.isArray(raw.roles) ? raw.roles.map(String) : [],
    exp: Number(raw.exp ?? 0),
  };
  if (!claims.roles.includes(role)) return { ok: false, role, error: `This token lacks the ${role} role. Sign in with ${/^[aeiou]/.test(role) ? 'an' : 'a'} ${role} account.` };
  if (!claims.tenant) return { ok: false, role, error: 'This token names no tenant. Sign in again.' };
  const current = () => {
    if (claims.exp * 1000 <= Date.now()) throw new Error('the sign-in token has expired: sign in again');
    return token;
  };
  return { ok: true, role, token: current, claims, tokenProvider: current };
}

/**
 * Calls the node's HTTP API and answers the JSON body; throws an {@link ApiError} with the
 * server's code for anything but 2xx (or `network` when the node cannot be reached).
 * @param {OpsSession} session
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {{ auth?: boolean, timeoutMs?: number }} [options]
 * @returns {Promise<unknown>}
 */
export async function apiRequest(session, method, path, body, { auth = true, timeoutMs = 10_000 } = {}) {
  const response = await send(session, method, path, { accept: 'application/json', body, auth, timeoutMs });
  const text = await response.text();
  if (!response.ok) throw refusal(response, text);
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/**
 * Reads a file the API renders (a report's `?format=csv`) with the session's bearer token, as
 * a Blob the page can save: the API takes `Authorization`, never cookies, so a plain link to
 * it cannot work. Throws an {@link ApiError} as {@link apiRequest} does.
 * @param {OpsSession} session
 * @param {string} path
 * @param {{ accept?: string, timeoutMs?: number }} [options]
 * @returns {Promise<Blob>}
 */
export async function apiDownload(session, path, { accept = 'text/csv', timeoutMs = 30_000 } = {}) {
  const response = await send(session, 'GET', path, { accept, body: undefined, auth: true, timeoutMs });
  if (!response.ok) throw refusal(response, await response.text());
  return response.blob();
}

/**
 * One HTTP call; throws `network` when the node cannot be reached.
 * @param {OpsSession} session
 * @param {string} method
 * @param {string} path
 * @param {{ accept: string, body: unknown, auth: boolean, timeoutMs: number }} options
 * @returns {Promise<Response>}
 */
async function send(session, method, path, { accept, body, auth, timeoutMs }) {
  /** @type {Record<string, string>} */
  const headers = { accept };
  if (auth && session.ok) headers.authorization = `Bearer ${session.token()}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    throw new ApiError(0, 'network', `the node cannot be reached (${/** @type {Error} */ (error).message})`);
  }
}

/**
 * The error of a refused call: the server's `{code, message}` when the body is one.
 * @param {Response} response
 * @param {string} text its body
 */
function refusal(response, text) {
  /** @type {any} */
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return new ApiError(response.status, json?.code ?? `http_${response.status}`, json?.message ?? (text || response.statusText));
}

/**
 * An error as a person reads it: the server's stable code, then its message.
 * @param {unknown} error
 */
export function describeError(error) {
  if (error && typeof error === 'object' && 'code' in error && 'message' in error) {
    return `${String(error.code)}: ${String(error.message)}`;
  }
  return error instanceof Error ? error.message : String(error);
}
