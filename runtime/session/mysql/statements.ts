/**
 * Binary-protocol prepared statements, multiplexed: clients see proxy-side statement ids;
 * each server connection prepares a statement lazily the first time a client runs it
 * there, and the prepare response (metadata) is cached per (user, schema, SQL) so later
 * COM_STMT_PREPAREs of the same text are answered without a server round trip.
 */

/** A statement as one client knows it. */
export interface ClientStatement {
  /** Key of the server-side statement on any connection: schema at prepare time + SQL. */
  readonly serverKey: string;
  /** The schema when the client prepared it: unqualified names resolve there on every connection. */
  readonly schema: string | null;
  readonly sql: string;
  readonly parameterCount: number;
  readonly columnCount: number;
  /** Parameter types from the client's last COM_STMT_EXECUTE that sent them (2 bytes per parameter). */
  parameterTypes: Buffer | null;
}

export function statementServerKey(schema: string | null, sql: string): string {
  return `${schema ?? ''}\u0000${sql}`;
}

const MAX_CACHED_PREPARES = 10_000;

/** The payloads of successful COM_STMT_PREPARE responses, by (user, schema, SQL). */
export class PrepareMetadataCache {
  private readonly entries = new Map<string, readonly Buffer[]>();

  get(user: string, serverKey: string): readonly Buffer[] | undefined {
    return this.entries.get(`${user}\u0000${serverKey}`);
  }

  set(user: string, serverKey: string, payloads: readonly Buffer[]): void {
    if (this.entries.size >= MAX_CACHED_PREPARES) this.entries.clear();
    this.entries.set(`${user}\u0000${serverKey}`, payloads);
  }

  /** Schema changes (DDL) can change a statement's metadata: forget what a user's statements looked like. */
  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
