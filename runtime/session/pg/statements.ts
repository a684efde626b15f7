/**
 * Server-side names for protocol-level prepared statements. Clients keep their own names;
 * every distinct (query, parameter types) gets one proxy-wide server name, so a statement
 * prepared on a server connection by one client is reused by every other client that
 * prepares the same text.
 */
/** Deduplication stops past either bound; new texts still get fresh names. */
const MAX_ENTRIES = 100_000;
/** Statement texts are the keys: a count alone would let big distinct texts hold gigabytes. */
const MAX_KEY_BYTES = 16 * 1024 * 1024;

export class StatementRegistry {
  private readonly names = new Map<string, string>();
  private counter = 0;
  private keyBytes = 0;

  /** `parseBody` is a Parse message after its name: query, parameter count and type OIDs. */
  nameFor(parseBody: Buffer): string {
    const key = parseBody.toString('latin1');
    let name = this.names.get(key);
    if (name === undefined) {
      name = `tidepool_s${++this.counter}`;
      if (this.names.size < MAX_ENTRIES && this.keyBytes + key.length <= MAX_KEY_BYTES) {
        this.names.set(key, name);
        this.keyBytes += key.length;
      }
    }
    return name;
  }

  get size(): number {
    return this.names.size;
  }

  /** Bytes of statement text held as keys. */
  get bytes(): number {
    return this.keyBytes;
  }
}
