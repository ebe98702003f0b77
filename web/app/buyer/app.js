// The buyer app's shared parts, built once per page load and handed to every view: the session,
// the SDK client (the only code that speaks the protocol), the journal (what the buyer is in the
// middle of), the catalog and the ticket calls, and the purchase and queue actions every view
// uses the same way.

import { MarqueeClient, MarqueeError } from '../../sdk/marquee.js';
import { catalog, myTickets } from './api.js';
import { Journal } from './journal.js';

/**
 * @typedef {import('../../sdk/marquee.js').Command} Command
 * @typedef {import('../../sdk/marquee.js').CommandResult} CommandResult
 * @typedef {import('../../sdk/marquee.js').QueueStatus} QueueStatus
 * @typedef {import('../../sdk/marquee.js').PurchaseIntent} PurchaseIntent
 */

/**
 * @typedef {object} App
 * @property {{ sub: string, tenant: string, exp: number }} claims
 * @property {() => string} token
 * @property {MarqueeClient} client
 * @property {Journal} journal
 * @property {import('./api.js').Catalog} catalog
 * @property {import('./api.js').MyTickets} tickets
 * @property {(href: string, options?: { replace?: boolean }) => void} navigate
 * @property {(command: Command, options?: { admission?: string }) => Promise<CommandResult>} command
 * @property {(onsale: string, event: string, intent?: PurchaseIntent) => Promise<QueueStatus>} join
 * @property {(onsale: string) => Promise<void>} leave
 * @property {(event: string) => { onsale: string, token: string, expiresAt: number } | null} admission
 */

/**
 * @param {{ sub: string, tenant: string, exp: number }} claims
 * @param {() => string} token
 * @param {(href: string, options?: { replace?: boolean }) => void} navigate
 * @returns {App}
 */
export function createApp(claims, token, navigate) {
  const client = new MarqueeClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
    token,
  });
  const journal = new Journal(claims.tenant, claims.sub);

  // Every result and order update reaches every tab of the account (each has the inbox):
  // the journal records them wherever the command came from.
  client.on('result', (result) => journal.recordResult(result));
  client.on('order', (order) => journal.recordOrder(order));

  /** @type {App} */
  const app = {
    claims,
    token,
    client,
    journal,
    catalog: catalog(claims.tenant),
    tickets: myTickets(token),
    navigate,
    async command(command, options = {}) {
      const requestId = MarqueeClient.newRequestId();
      journal.opened(requestId, command, options.admission);
      try {
        const result = await client.command(command, { requestId, admission: options.admission });
        journal.recordResult(result);
        return result;
      } catch (error) {
        // Refused before the queue (not `unavailable`): it was not queued and never will be.
        if (error instanceof MarqueeError && error.kind === 'server' && error.code !== 'unavailable') {
          journal.recordResult({
            request_id: requestId,
            event: command.event,
            command: command.kind,
            outcome: { status: 'rejected', code: error.code, message: error.message },
          });
        }
        throw error;
      }
    },
    async join(onsale, event, intent) {
      const previous = journal.place(onsale);
      journal.setPlace(onsale, { event, ...(intent ? { intent } : {}) });
      try {
        const status = await client.joinQueue(onsale, intent ? { intent } : {});
        journal.setPlace(onsale, { event, place: status.place });
        return status;
      } catch (error) {
        if (!previous) journal.dropPlace(onsale);
        throw error;
      }
    },
    async leave(onsale) {
      try {
        await client.leaveQueue(onsale);
      } finally {
        journal.dropPlace(onsale);
      }
    },
    admission(event) {
      for (const place of journal.places()) {
        if (place.event !== event) continue;
        const status = client.queueStatus(place.onsale);
        if (status?.state === 'admitted' && status.admission && status.admission.expires_at * 1000 > Date.now()) {
          return { onsale: place.onsale, token: status.admission.token, expiresAt: status.admission.expires_at * 1000 };
        }
      }
      return null;
    },
  };
  return app;
}

/**
 * After the first connection: asks again for the results of commands a previous load of the
 * page sent (same request ids, so nothing happens twice), and attaches to the places in line
 * it held (within the grace period the node keeps them, at their position).
 * @param {App} app
 */
export function resume(app) {
  for (const open of app.journal.openCommands()) {
    app.client
      .command(open.command, { requestId: open.requestId, admission: open.admission })
      .then((result) => app.journal.recordResult(result))
      .catch(() => {
        // Still open: the SDK keeps sending it; its result is recorded when it comes.
      });
  }
  for (const place of app.journal.places()) {
    app.client.joinQueue(place.onsale, place.intent ? { intent: place.intent } : {}).then(
      // Another place id is a new place at the back: the old one ended while the page was away.
      (status) =>
        app.journal.setPlace(place.onsale, {
          event: place.event,
          place: status.place,
          renewed: Boolean(place.place && status.place !== place.place),
        }),
      (error) => {
        // The place cannot come back (the onsale ended, a refusal): forget it.
        if (error instanceof MarqueeError && error.kind === 'server' && error.code !== 'unavailable' && error.code !== 'rate_limited') {
          app.journal.dropPlace(place.onsale);
        }
      },
    );
  }
}
