// Small DOM and formatting helpers of the staff pages.

/**
 * The element with this id; throws when the page lacks it (a page and its script disagree).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

/**
 * @param {string} id
 * @param {string} text
 */
export function setText(id, text) {
  const element = byId(id);
  if (element.textContent !== text) element.textContent = text;
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** @param {number} n */
export function formatNumber(n) {
  return Number.isFinite(n) ? numbers.format(n) : '–';
}

export { formatMoney } from '../common/money.js';

/**
 * A time of day (`time`, with seconds) or a date (`date`).
 * @param {number} ms unix ms
 * @param {'time' | 'date'} [style]
 */
export function formatTime(ms, style = 'time') {
  if (!Number.isFinite(ms)) return '–';
  const date = new Date(ms);
  return style === 'date'
    ? date.toLocaleDateString(undefined, { year: 'numeric', month: 'short', day: 'numeric' })
    : date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

const shares = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

/**
 * A share (0 to 1) as a percentage.
 * @param {number} share
 */
export function formatShare(share) {
  return Number.isFinite(share) ? shares.format(share) : '–';
}

/**
 * A span of seconds as a person reads it: `< 0.1 s`, `0.4 s`, `42 s`, `3 min 05 s`, `1 h 02 min`.
 * @param {number} seconds
 */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds > 0 && seconds < 0.05) return '< 0.1 s';
  if (seconds < 10) return `${(Math.round(seconds * 10) / 10).toString()} s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  const minutes = Math.round(whole / 60);
  return `${Math.floor(minutes / 60)} h ${pad(minutes % 60)} min`;
}

/**
 * A name as a piece of a file name: lower-case ASCII letters and digits joined by dashes.
 * @param {string} name
 * @param {string} fallback when nothing of the name is left
 */
export function fileSlug(name, fallback) {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  return slug || fallback;
}

/**
 * Saves a Blob as a file named `fileName`, through a `blob:` URL and a download link, as a
 * person's click on a link would. The URL is let go of once the browser has taken the file.
 * @param {Blob} blob
 * @param {string} fileName
 */
export function saveBlob(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download starts from the URL after this task; a minute is ample, and the Blob is small.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
