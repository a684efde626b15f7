/**
 * Byte framing for the PostgreSQL v3 protocol, built for the hot path: messages are handed
 * out as views into the received chunk (no copy) unless a message straddles two chunks,
 * and backend streams are scanned header by header without decoding bodies that the
 * proxy does not need.
 */

import { MessageAssembler } from '../message-assembler';

/** Why a frontend stream cannot be framed any further. */
export type FramingFailure = 'invalid-length' | 'too-large';

/**
 * Frames frontend (client → server) messages: 1 type byte, Int32 length (including
 * itself), body. Each complete message is delivered once, as `data[start, end)`.
 */
export class FrontendFramer {
  /** A message that straddles chunks. */
  private readonly partial = new MessageAssembler();
  private header = Buffer.alloc(5);
  private headerFilled = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** Bytes held back waiting for the rest of a message; lets callers bound memory. */
  get bufferedBytes(): number {
    return this.headerFilled + this.partial.filledBytes;
  }

  /**
   * Feeds one chunk. `onMessage` gets each complete message; `data` may be the chunk itself
   * (a view is valid only during the call) or a fresh buffer for a message that straddled chunks.
   */
  push(
    chunk: Buffer,
    onMessage: (type: number, data: Buffer, start: number, end: number) => void,
  ): FramingFailure | undefined {
    let offset = 0;
    const length = chunk.length;
    while (offset < length) {
      if (this.partial.active) {
        offset += this.partial.fill(chunk, offset, length);
        if (this.partial.complete) {
          const message = this.partial.finish();
          onMessage(message[0]!, message, 0, message.length);
        }
        continue;
      }
      if (this.headerFilled > 0 || length - offset < 5) {
        const take = Math.min(5 - this.headerFilled, length - offset);
        chunk.copy(this.header, this.headerFilled, offset, offset + take);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < 5) return undefined;
        this.headerFilled = 0;
        const messageLength = this.header.readInt32BE(1);
        const failure = this.checkLength(messageLength);
        if (failure) return failure;
        this.partial.begin(messageLength + 1);
        this.partial.fill(this.header, 0, 5);
        if (this.partial.complete) {
          const message = this.partial.finish();
          onMessage(message[0]!, message, 0, message.length);
        }
        continue;
      }
      const messageLength = chunk.readInt32BE(offset + 1);
      const failure = this.checkLength(messageLength);
      if (failure) return failure;
      const end = offset + 1 + messageLength;
      if (end <= length) {
        onMessage(chunk[offset]!, chunk, offset, end);
        offset = end;
      } else {
        this.partial.begin(messageLength + 1);
        offset += this.partial.fill(chunk, offset, length);
      }
    }
    return undefined;
  }

  private checkLength(messageLength: number): FramingFailure | undefined {
    if (messageLength < 4) return 'invalid-length';
    if (messageLength + 1 > this.maxMessageBytes) return 'too-large';
    return undefined;
  }
}

/**
 * Frames the untyped packets of the startup phase (StartupMessage, SSLRequest,
 * CancelRequest, GSSENCRequest): Int32 length, body.
 */
export class StartupFramer {
  private buffered: Buffer = Buffer.alloc(0);

  constructor(private readonly maxPacketBytes = 10_000) {}

  /** Returns the next complete packet, `null` when more bytes are needed, or a failure. */
  push(chunk: Buffer | null): Buffer | null | FramingFailure {
    // Always a copy: the chunk may be a view of a read buffer that is reused.
    if (chunk !== null) this.buffered = Buffer.concat([this.buffered, chunk]);
    if (this.buffered.length < 4) return null;
    const length = this.buffered.readInt32BE(0);
    if (length < 8) return 'invalid-length';
    if (length > this.maxPacketBytes) return 'too-large';
    if (this.buffered.length < length) return null;
    const packet = this.buffered.subarray(0, length);
    this.buffered = this.buffered.subarray(length);
    return packet;
  }

  /** Bytes received after the last complete packet (e.g. a client that pipelines its first query). */
  takeRemainder(): Buffer {
    const rest = this.buffered;
    this.buffered = Buffer.alloc(0);
    return rest;
  }
}

/** What to do with a backend message, decided when its header is seen. */
export const enum Disposition {
  Forward = 0,
  Swallow = 1,
}

export interface BackendScanHandler {
  /**
   * Called when a message header is complete. Returns whether the message goes to the
   * client. Must not throw.
   */
  onHeader(type: number, bodyLength: number): Disposition;
  /** Called when a message whose type is in `collectBodies` is complete, with its body. */
  onBody(type: number, body: Buffer): void;
  /** Forwarded bytes, in order, as views of the received chunk (valid during the call). */
  emit(data: Buffer, start: number, end: number): void;
}

/**
 * Scans backend (server → client) messages header by header ("skip left" streaming):
 * bodies are only assembled for the types that drive pooling (ReadyForQuery,
 * ParameterStatus, ErrorResponse…); everything else is forwarded as contiguous views.
 */
export class BackendScanner {
  private header = Buffer.alloc(5);
  private headerFilled = 0;
  private type = 0;
  private bodyLeft = 0;
  private swallowing = false;
  private body: Buffer | null = null;
  private bodyFilled = 0;
  private readonly collect = new Uint8Array(256);

  constructor(collectBodies: string, private readonly handler: BackendScanHandler) {
    for (const ch of collectBodies) this.collect[ch.charCodeAt(0)] = 1;
  }

  setCollected(types: string, collected: boolean): void {
    for (const ch of types) this.collect[ch.charCodeAt(0)] = collected ? 1 : 0;
  }

  /** True between messages: nothing held back. */
  get atMessageBoundary(): boolean {
    return this.headerFilled === 0 && this.bodyLeft === 0 && this.body === null;
  }

  /** Body bytes still owed of a message whose header was already forwarded (what a lost server leaves cut off). */
  get forwardedBodyLeft(): number {
    return this.swallowing ? 0 : this.bodyLeft;
  }

  push(chunk: Buffer): void {
    const handler = this.handler;
    const length = chunk.length;
    let offset = 0;
    // Start of the run of bytes to forward that has not been emitted yet.
    let runStart = 0;
    while (offset < length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, length - offset);
        if (this.body !== null) {
          chunk.copy(this.body, this.bodyFilled, offset, offset + take);
          this.bodyFilled += take;
        }
        if (this.swallowing) {
          if (offset > runStart) handler.emit(chunk, runStart, offset);
          runStart = offset + take;
        }
        offset += take;
        this.bodyLeft -= take;
        if (this.bodyLeft === 0) this.finishMessage();
        continue;
      }
      let type: number;
      let bodyLength: number;
      const headerStart = offset;
      if (this.headerFilled === 0 && length - offset >= 5) {
        type = chunk[offset]!;
        bodyLength = chunk.readInt32BE(offset + 1) - 4;
        offset += 5;
      } else {
        const take = Math.min(5 - this.headerFilled, length - offset);
        chunk.copy(this.header, this.headerFilled, offset, offset + take);
        const hadPartialHeader = this.headerFilled > 0;
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < 5) {
          // Hold the partial header back until its type is known.
          if (offset - take > runStart) handler.emit(chunk, runStart, offset - take);
          runStart = offset;
          return;
        }
        this.headerFilled = 0;
        type = this.header[0]!;
        // A length below 4 is a broken peer; treat it as an empty body, as the whole-header path does.
        bodyLength = Math.max(0, this.header.readInt32BE(1) - 4);
        if (hadPartialHeader) {
          // The header began in an earlier chunk: decide now, then emit the held bytes.
          const disposition = handler.onHeader(type, bodyLength);
          this.swallowing = disposition === Disposition.Swallow;
          if (!this.swallowing) {
            if (headerStart > runStart) handler.emit(chunk, runStart, headerStart);
            handler.emit(this.header, 0, 5 - take);
            runStart = headerStart;
          } else {
            if (headerStart > runStart) handler.emit(chunk, runStart, headerStart);
            runStart = offset;
          }
          this.startBody(type, bodyLength);
          continue;
        }
      }
      if (bodyLength < 0) bodyLength = 0;
      const disposition = handler.onHeader(type, bodyLength);
      this.swallowing = disposition === Disposition.Swallow;
      if (this.swallowing) {
        if (headerStart > runStart) handler.emit(chunk, runStart, headerStart);
        runStart = offset;
      }
      if (this.collect[type] === 1 && length - offset >= bodyLength) {
        // Fast path: the whole body is in this chunk; hand out a view.
        const bodyEnd = offset + bodyLength;
        handler.onBody(type, chunk.subarray(offset, bodyEnd));
        if (this.swallowing) runStart = bodyEnd;
        offset = bodyEnd;
        this.swallowing = false;
        continue;
      }
      this.startBody(type, bodyLength);
    }
    if (length > runStart) handler.emit(chunk, runStart, length);
  }

  private startBody(type: number, bodyLength: number): void {
    this.type = type;
    this.bodyLeft = bodyLength;
    this.body = this.collect[type] === 1 ? Buffer.allocUnsafe(bodyLength) : null;
    this.bodyFilled = 0;
    if (bodyLength === 0) this.finishMessage();
  }

  private finishMessage(): void {
    const body = this.body;
    this.body = null;
    this.swallowing = false;
    if (body !== null) this.handler.onBody(this.type, body);
  }
}
