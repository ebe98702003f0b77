// Money as every page shows it: one formatter for the buyer app and the dashboard.

/**
 * An amount in the viewer's locale.
 * @param {number} minor an amount in the currency's minor units
 * @param {string} currency ISO 4217
 */
export function formatMoney(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
    return format.format(minor / 10 ** digits);
  } catch {
    return `${minor} ${currency}`;
  }
}
