// DOM and formatting helpers of the buyer app. No state lives here.

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
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
export function byIdAs(id, type) {
  const element = byId(id);
  if (!(element instanceof type)) throw new Error(`#${id} is not a ${type.name}`);
  return element;
}

/**
 * Sets a node's text only when it changed (no needless layout, no repeated announcements).
 * @param {Element | string} target
 * @param {string} text
 */
export function setText(target, text) {
  const element = typeof target === 'string' ? byId(target) : target;
  if (element.textContent !== text) element.textContent = text;
}

/**
 * Creates an element: `h('li', { class: 'x', 'data-id': id }, 'text', child)`.
 * Attributes whose value is `false`, `null` or `undefined` are left out; `true` sets them empty.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | number | boolean | null | undefined>} [attributes]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/**
 * An inline SVG swatch (presentation attributes only: the page's CSP allows no inline style).
 * @param {string} fill
 * @param {{ shape?: 'circle' | 'square' | 'ring' | 'dot', stroke?: string, slash?: boolean }} [options]
 */
export function swatch(fill, { shape = 'circle', stroke, slash = false } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('width', '16');
  svg.setAttribute('height', '16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'swatch');
  /** @type {SVGElement} */
  let mark;
  if (shape === 'square') {
    mark = document.createElementNS(ns, 'rect');
    mark.setAttribute('x', '2');
    mark.setAttribute('y', '2');
    mark.setAttribute('width', '12');
    mark.setAttribute('height', '12');
    mark.setAttribute('rx', '2');
  } else {
    mark = document.createElementNS(ns, 'circle');
    mark.setAttribute('cx', '8');
    mark.setAttribute('cy', '8');
    mark.setAttribute('r', shape === 'dot' ? '3.5' : shape === 'ring' ? '5.5' : '6');
  }
  mark.setAttribute('fill', shape === 'ring' ? '#ffffff' : fill);
  if (shape === 'ring' || stroke) {
    mark.setAttribute('stroke', stroke ?? fill);
    mark.setAttribute('stroke-width', '2');
  }
  svg.append(mark);
  if (slash) {
    const line = document.createElementNS(ns, 'line');
    line.setAttribute('x1', '4');
    line.setAttribute('y1', '12');
    line.setAttribute('x2', '12');
    line.setAttribute('y2', '4');
    line.setAttribute('stroke', '#ffffff');
    line.setAttribute('stroke-width', '2');
    svg.append(line);
  }
  return svg;
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** @param {number} n */
export function formatCount(n) {
  return Number.isFinite(n) ? numbers.format(n) : '–';
}

export { formatMoney } from '../common/money.js';

/**
 * A date and time for people, e.g. "Sat 1 Jan 2030, 20:00".
 * @param {string | number} when an RFC 3339 string or unix ms
 */
export function formatWhen(when) {
  const date = new Date(when);
  if (Number.isNaN(date.getTime())) return '–';
  return date.toLocaleString(undefined, {
    weekday: 'short',
    day: 'numeric',
    month: 'short',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

/**
 * A time of day with seconds.
 * @param {number} ms unix ms
 */
export function formatClock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/**
 * A countdown: "9:05", "1:02:03"; never negative.
 * @param {number} ms
 */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

/**
 * A countdown as words for screen readers: "9 minutes 5 seconds".
 * @param {number} ms
 */
export function spokenDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = total % 60;
  const parts = [];
  if (minutes) parts.push(`${minutes} minute${minutes === 1 ? '' : 's'}`);
  if (seconds || !minutes) parts.push(`${seconds} second${seconds === 1 ? '' : 's'}`);
  return parts.join(' ');
}

/**
 * An estimated wait range as words: "20–45 seconds", "about 2–3 minutes".
 * @param {[number, number]} range seconds
 */
export function formatEta([low, high]) {
  if (high < 60) return low === high ? `about ${high} seconds` : `${Math.round(low)}–${Math.round(high)} seconds`;
  const lo = Math.max(1, Math.round(low / 60));
  const hi = Math.max(lo, Math.round(high / 60));
  return lo === hi ? `about ${hi} minute${hi === 1 ? '' : 's'}` : `about ${lo}–${hi} minutes`;
}

/**
 * Says something to screen readers through the page's polite live region.
 * @param {string} text
 */
export function announce(text) {
  const region = byId('announcer');
  // Cleared first, so the same words said twice are announced twice.
  region.textContent = '';
  setTimeout(() => {
    region.textContent = text;
  }, 30);
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
