/**
 * Server-side names for protocol-level prepared statements. Clients keep their own names;
 * every distinct (query, parameter types) gets one proxy-wide server name, so a statement
 * prepared on a server connection by one client is reused by every other client that
 * prepares the same text.
 */
export class StatementRegistry {
  private readonly names = new Map<string, string>();
  private counter = 0;

  /** `parseBody` is a Parse message after its name: query, parameter count and type OIDs. */
  nameFor(parseBody: Buffer): string {
    const key = parseBody.toString('latin1');
    let name = this.names.get(key);
    if (name === undefined) {
      name = `tidepool_s${++this.counter}`;
      // Bounded: past the cap new texts still get fresh names, only deduplication stops.
      if (this.names.size < 100_000) this.names.set(key, name);
    }
    return name;
  }

  get size(): number {
    return this.names.size;
  }
}
