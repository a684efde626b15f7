const INITIAL_CAPACITY = 16 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * A message assembled across chunks. Its buffer grows toward the declared size as bytes
 * arrive (doubling from 16 KiB) instead of being allocated at the declared size up front, so
 * a header that declares a huge length and sends no body costs only what was actually sent.
 */
export class MessageAssembler {
  private buffer: Buffer = EMPTY;
  private filled = 0;
  private total = 0;

  /** True while a message is being assembled. */
  get active(): boolean {
    return this.total > 0;
  }

  /** Bytes of the current message received so far. */
  get filledBytes(): number {
    return this.filled;
  }

  /** Bytes the current message still needs. */
  get missingBytes(): number {
    return this.total - this.filled;
  }

  /** Starts a message of `totalBytes` (header included); `totalBytes` must be at least 1. */
  begin(totalBytes: number): void {
    this.total = totalBytes;
    this.filled = 0;
    this.buffer = Buffer.allocUnsafe(Math.min(totalBytes, INITIAL_CAPACITY));
  }

  /** Copies `source[from, to)` (at most what the message still needs); returns the bytes taken. */
  fill(source: Buffer, from: number, to: number): number {
    const take = Math.min(this.total - this.filled, to - from);
    const needed = this.filled + take;
    if (needed > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.total, Math.max(needed, this.buffer.length * 2)));
      this.buffer.copy(grown, 0, 0, this.filled);
      this.buffer = grown;
    }
    source.copy(this.buffer, this.filled, from, from + take);
    this.filled = needed;
    return take;
  }

  /** True once every declared byte has arrived. */
  get complete(): boolean {
    return this.total > 0 && this.filled === this.total;
  }

  /** Hands over the finished message and empties the assembler. */
  finish(): Buffer {
    const message = this.buffer;
    this.buffer = EMPTY;
    this.filled = 0;
    this.total = 0;
    return message;
  }
}
