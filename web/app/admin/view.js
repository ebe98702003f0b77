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
