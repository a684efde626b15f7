/**
 * BENCH_ONLY: a comma-separated list of bench row ids (e.g. `simple,prepared,mysql-failover`)
 * to run only those rows while iterating; unset runs everything. Ids: simple, prepared,
 * extended, churn, latency, tls, idle, failover, mysql-point-select, mysql-point-select-text,
 * mysql-read-only, mysql-failover.
 */
const only = (process.env.BENCH_ONLY ?? '')
  .split(',')
  .map((id) => id.trim())
  .filter((id) => id !== '');

export function benchSelected(id: string): boolean {
  return only.length === 0 || only.includes(id);
}
