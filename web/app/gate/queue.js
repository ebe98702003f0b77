// Scans made while the gate is offline, kept until the node has answered them.
//
// localStorage rather than IndexedDB: a write is synchronous, so a scan is on disk before its
// result is on the screen, and a reload or a crash of the tab loses nothing. A queue holds at
// most a few thousand small scans, far inside localStorage's quota. Each scan keeps its own
// `scan_id`, so uploading it twice (a batch whose answer was lost) answers the same and
// changes nothing on the server.

/** @typedef {import('../../sdk/marquee.js').Scan} Scan */

/**
 * What the page told the person at the gate when it decided a scan without the node:
 * `admitted` (let in on the page's word), `refused` (the page knew the ticket had gone in),
 * `unverified` (the signature could not be checked here). Kept beside the scan, never sent,
 * so the upload can point out an offline admission the node overturns.
 * @typedef {'admitted' | 'refused' | 'unverified'} OfflineDecision
 */

/** @typedef {Scan & { offline?: OfflineDecision }} QueuedScan */

/** The most scans `POST /v1/checkin/batch` takes at once. */
export const BATCH_LIMIT = 1000;

/** A queue of scans in one localStorage key. */
export class ScanQueue {
  /**
   * @param {string} key the localStorage key (one per tenant and gate)
   * @param {Storage} [storage]
   */
  constructor(key, storage = localStorage) {
    this.key = key;
    this.storage = storage;
  }

  /** @returns {QueuedScan[]} every queued scan, oldest first */
  all() {
    try {
      const value = JSON.parse(this.storage.getItem(this.key) ?? '[]');
      return Array.isArray(value) ? value : [];
    } catch {
      return [];
    }
  }

  /** How many scans wait. */
  get size() {
    return this.all().length;
  }

  /**
   * Adds a scan (again: a scan id already queued is not added twice).
   * @param {Scan} scan
   * @param {OfflineDecision} [offline] what the page decided, if it decided
   */
  push(scan, offline) {
    const scans = this.all();
    if (!scans.some((s) => s.scan_id === scan.scan_id)) scans.push(offline ? { ...scan, offline } : scan);
    this.storage.setItem(this.key, JSON.stringify(scans));
  }

  /** The next batch to upload, oldest first, as the node takes it (the page's notes left out). */
  batch() {
    return this.all()
      .slice(0, BATCH_LIMIT)
      .map(({ offline: _offline, ...scan }) => /** @type {Scan} */ (scan));
  }

  /**
   * What the page decided about each queued scan, by scan id.
   * @returns {Map<string, OfflineDecision>}
   */
  decisions() {
    return new Map(this.all().flatMap((s) => (s.offline ? [[s.scan_id, s.offline]] : [])));
  }

  /**
   * Drops scans the node has answered.
   * @param {Iterable<string>} scanIds
   */
  remove(scanIds) {
    const done = new Set(scanIds);
    const left = this.all().filter((s) => !done.has(s.scan_id));
    if (left.length) this.storage.setItem(this.key, JSON.stringify(left));
    else this.storage.removeItem(this.key);
  }
}
