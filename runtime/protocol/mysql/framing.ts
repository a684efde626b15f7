/**
 * MySQL packet framing and the protocol's basic data types, built for the hot path
 * ("forward, don't decode"):
 *
 * - `MysqlPacketFramer` cuts a byte stream into packets (int<3> length, int<1> sequence
 *   id, payload) and hands each one out as a position in a buffer — the received chunk
 *   itself, with no copy, unless the packet straddles chunks. No per-packet object is
 *   created on the callback path.
 * - Payloads of 16 MB and more travel as several max-size packets plus a final shorter
 *   (possibly empty) one. The framer reports each physical packet and whether it continues
 *   a previous one; `LogicalPayloadAssembler` joins them for the rare callers that need
 *   the whole payload. Forwarders never need to join.
 * - `framePayload` / `MysqlPacketSequencer` write payloads with correct sequence ids,
 *   splitting ≥ 16 MB payloads without copying them.
 * - `PayloadReader` / `PayloadWriter` read and write the protocol's integer and string
 *   types (fixed, length-encoded, NUL-terminated). Every read is bounds-checked and fails
 *   with `MysqlProtocolError`, never with a RangeError from Buffer.
 */
import { MAX_PACKET_PAYLOAD_LENGTH, PACKET_HEADER_LENGTH } from './constants';
import { MessageAssembler } from '../message-assembler';

/* ------------------------------------------------------------------------------------ */
/* Errors                                                                                */
/* ------------------------------------------------------------------------------------ */

export type MysqlProtocolErrorCode =
  /** The payload ends before a field it announces. */
  | 'truncated'
  /** A field holds a value the protocol does not allow here. */
  | 'malformed'
  /** Valid protocol the proxy does not implement (pre-4.1 handshakes, replication commands…). */
  | 'unsupported'
  /** A packet or logical payload exceeds the configured limit. */
  | 'too-large'
  /** A packet arrived that makes no sense in the current state (response tracker). */
  | 'unexpected-packet';

/** Malformed, truncated or unexpected protocol input. Callers answer with an ERR packet and close that client only. */
export class MysqlProtocolError extends Error {
  readonly code: MysqlProtocolErrorCode;

  constructor(code: MysqlProtocolErrorCode, message: string) {
    super(message);
    this.name = 'MysqlProtocolError';
    this.code = code;
  }
}

/* ------------------------------------------------------------------------------------ */
/* Reading packets from a stream                                                         */
/* ------------------------------------------------------------------------------------ */

/**
 * Called for each complete physical packet. The payload is `source[payloadStart,
 * payloadStart + payloadLength)` and its 4-byte header sits right before it, so the wire
 * bytes are `source[payloadStart − 4, payloadStart + payloadLength)`. `source` is either
 * a chunk passed to `push` or a buffer the framer allocated for a straddling packet; the
 * framer never writes to either afterwards, so views stay valid.
 *
 * `isContinuation` is true when the previous packet had the maximum payload length, i.e.
 * this packet carries the next part of the same logical payload (its first byte is data,
 * not a packet type).
 */
export type PacketCallback = (
  source: Buffer,
  payloadStart: number,
  payloadLength: number,
  sequenceId: number,
  isContinuation: boolean,
) => void;

/** A physical packet as a pair of views, for callers off the hot path. */
export interface MysqlPacket {
  readonly sequenceId: number;
  /** Payload view (no copy). */
  readonly payload: Buffer;
  /** Header + payload view, ready to forward. */
  readonly wire: Buffer;
  /** This packet continues the previous one's logical payload. */
  readonly isContinuation: boolean;
  /** The payload has the maximum length: the next packet continues it. */
  readonly continues: boolean;
}

export interface MysqlPacketFramerOptions {
  /**
   * Largest payload accepted in one physical packet; a larger header makes `push` throw
   * `too-large` before anything is buffered. Default: the protocol maximum (0xFFFFFF).
   * Useful before authentication, where a client has no business sending megabytes.
   */
  maxPayloadLength?: number;
}

/** Splits a byte stream into MySQL packets. One instance per direction of a connection. */
export class MysqlPacketFramer {
  private readonly maxPayloadLength: number;
  /** Header bytes of a packet whose header straddles chunks. */
  private readonly header = Buffer.alloc(PACKET_HEADER_LENGTH);
  private headerFilled = 0;
  /** Header + payload of a packet whose payload straddles chunks, filled as chunks arrive. */
  private readonly partial = new MessageAssembler();
  private previousWasMaxLength = false;

  constructor(options: MysqlPacketFramerOptions = {}) {
    this.maxPayloadLength = options.maxPayloadLength ?? MAX_PACKET_PAYLOAD_LENGTH;
  }

  /** Bytes held back waiting for the rest of a packet. */
  get bufferedBytes(): number {
    return this.headerFilled + this.partial.filledBytes;
  }

  /** True between packets: nothing is held back. */
  get atPacketBoundary(): boolean {
    return this.headerFilled === 0 && !this.partial.active;
  }

  /** True when the last complete packet had the maximum length, so the next one is a continuation. */
  get expectingContinuation(): boolean {
    return this.previousWasMaxLength;
  }

  /**
   * Feeds one chunk and calls `onPacket` for every packet it completes, in order.
   * Throws MysqlProtocolError('too-large') when a header announces more than
   * `maxPayloadLength`; the framer is unusable afterwards (close the connection).
   */
  push(chunk: Buffer, onPacket: PacketCallback): void {
    const length = chunk.length;
    let offset = 0;
    while (offset < length) {
      if (this.partial.active) {
        offset += this.partial.fill(chunk, offset, length);
        if (this.partial.complete) {
          const packet = this.partial.finish();
          this.deliver(packet, PACKET_HEADER_LENGTH, packet.length - PACKET_HEADER_LENGTH, packet[3]!, onPacket);
        }
        continue;
      }
      if (this.headerFilled > 0 || length - offset < PACKET_HEADER_LENGTH) {
        // The header itself straddles chunks: gather it byte-wise (at most 3 bytes copied).
        const take = Math.min(PACKET_HEADER_LENGTH - this.headerFilled, length - offset);
        chunk.copy(this.header, this.headerFilled, offset, offset + take);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < PACKET_HEADER_LENGTH) return;
        this.headerFilled = 0;
        const payloadLength = this.header.readUIntLE(0, 3);
        this.checkLength(payloadLength);
        if (payloadLength === 0) {
          this.deliver(Buffer.from(this.header), PACKET_HEADER_LENGTH, 0, this.header[3]!, onPacket);
        } else {
          this.partial.begin(PACKET_HEADER_LENGTH + payloadLength);
          this.partial.fill(this.header, 0, PACKET_HEADER_LENGTH);
        }
        continue;
      }
      const payloadLength = chunk[offset]! | (chunk[offset + 1]! << 8) | (chunk[offset + 2]! << 16);
      this.checkLength(payloadLength);
      const end = offset + PACKET_HEADER_LENGTH + payloadLength;
      if (end <= length) {
        const sequenceId = chunk[offset + 3]!;
        offset = end;
        this.deliver(chunk, end - payloadLength, payloadLength, sequenceId, onPacket);
      } else {
        this.partial.begin(PACKET_HEADER_LENGTH + payloadLength);
        offset += this.partial.fill(chunk, offset, length);
      }
    }
  }

  /** Convenience form of `push` that returns the completed packets as views. */
  pushPackets(chunk: Buffer): MysqlPacket[] {
    const packets: MysqlPacket[] = [];
    this.push(chunk, (source, payloadStart, payloadLength, sequenceId, isContinuation) => {
      packets.push({
        sequenceId,
        payload: source.subarray(payloadStart, payloadStart + payloadLength),
        wire: source.subarray(payloadStart - PACKET_HEADER_LENGTH, payloadStart + payloadLength),
        isContinuation,
        continues: payloadLength === MAX_PACKET_PAYLOAD_LENGTH,
      });
    });
    return packets;
  }

  private deliver(source: Buffer, payloadStart: number, payloadLength: number, sequenceId: number, onPacket: PacketCallback): void {
    const isContinuation = this.previousWasMaxLength;
    this.previousWasMaxLength = payloadLength === MAX_PACKET_PAYLOAD_LENGTH;
    onPacket(source, payloadStart, payloadLength, sequenceId, isContinuation);
  }

  private checkLength(payloadLength: number): void {
    if (payloadLength > this.maxPayloadLength) {
      throw new MysqlProtocolError('too-large', `packet payload of ${payloadLength} bytes exceeds the limit of ${this.maxPayloadLength}`);
    }
  }
}

/**
 * Joins the physical packets of one logical payload (≥ 16 MB payloads are split). Zero-copy
 * when the payload fits one packet — the common case — and one copy otherwise.
 */
export class LogicalPayloadAssembler {
  private readonly parts: Buffer[] = [];
  private partsLength = 0;

  /** @param maxLogicalLength the largest joined payload accepted (the proxy's max_allowed_packet). */
  constructor(private readonly maxLogicalLength = Number.MAX_SAFE_INTEGER) {}

  /** True while a split payload is being collected. */
  get inProgress(): boolean {
    return this.parts.length > 0;
  }

  /**
   * Adds one physical payload. Returns the whole logical payload once its last packet
   * arrived, otherwise undefined. Throws MysqlProtocolError('too-large') past the limit
   * (the assembler is reset, so the caller may skip the rest of the packet and go on).
   */
  push(payload: Buffer): Buffer | undefined {
    const continues = payload.length === MAX_PACKET_PAYLOAD_LENGTH;
    if (this.parts.length === 0 && !continues) {
      if (payload.length > this.maxLogicalLength) throw this.tooLarge(payload.length);
      return payload;
    }
    this.partsLength += payload.length;
    if (this.partsLength > this.maxLogicalLength) {
      const total = this.partsLength;
      this.reset();
      throw this.tooLarge(total);
    }
    this.parts.push(payload);
    if (continues) return undefined;
    const joined = Buffer.concat(this.parts, this.partsLength);
    this.reset();
    return joined;
  }

  reset(): void {
    this.parts.length = 0;
    this.partsLength = 0;
  }

  private tooLarge(length: number): MysqlProtocolError {
    return new MysqlProtocolError('too-large', `logical payload of at least ${length} bytes exceeds the limit of ${this.maxLogicalLength}`);
  }
}

/* ------------------------------------------------------------------------------------ */
/* Writing packets                                                                       */
/* ------------------------------------------------------------------------------------ */

/** Sequence ids count modulo 256 within one command exchange. */
export function nextSequenceId(sequenceId: number): number {
  return (sequenceId + 1) & 0xff;
}

/** Writes a 4-byte packet header at `offset`. */
export function writePacketHeader(target: Buffer, offset: number, payloadLength: number, sequenceId: number): void {
  target[offset] = payloadLength & 0xff;
  target[offset + 1] = (payloadLength >>> 8) & 0xff;
  target[offset + 2] = (payloadLength >>> 16) & 0xff;
  target[offset + 3] = sequenceId & 0xff;
}

/** Rewrites the sequence id of a packet in place (`headerOffset` is where its 4-byte header starts). */
export function setSequenceId(wire: Buffer, headerOffset: number, sequenceId: number): void {
  wire[headerOffset + 3] = sequenceId & 0xff;
}

/** Number of physical packets a payload of this length takes (a multiple of 0xFFFFFF needs a trailing empty packet). */
export function physicalPacketCount(payloadLength: number): number {
  return Math.floor(payloadLength / MAX_PACKET_PAYLOAD_LENGTH) + 1;
}

export interface FramedPayload {
  /** Wire bytes in order; write them all (e.g. with cork/uncork or writev). */
  readonly chunks: Buffer[];
  /** Sequence id the next packet in this exchange must carry. */
  readonly nextSequenceId: number;
}

/** Payloads up to this size are copied behind their header into one buffer; larger ones are sent as header + view pairs. */
const COPY_THRESHOLD = 64 * 1024;

/**
 * Frames one logical payload starting at `firstSequenceId`. Below 16 MB this is one packet;
 * from 16 MB on, max-size packets plus a final shorter (possibly empty) one, each with the
 * next sequence id. Large payloads are not copied: chunks are header buffers and views.
 */
export function framePayload(payload: Buffer, firstSequenceId: number): FramedPayload {
  const length = payload.length;
  if (length < MAX_PACKET_PAYLOAD_LENGTH) {
    if (length <= COPY_THRESHOLD) {
      const wire = Buffer.allocUnsafe(PACKET_HEADER_LENGTH + length);
      writePacketHeader(wire, 0, length, firstSequenceId);
      payload.copy(wire, PACKET_HEADER_LENGTH);
      return { chunks: [wire], nextSequenceId: nextSequenceId(firstSequenceId) };
    }
    const header = Buffer.allocUnsafe(PACKET_HEADER_LENGTH);
    writePacketHeader(header, 0, length, firstSequenceId);
    return { chunks: [header, payload], nextSequenceId: nextSequenceId(firstSequenceId) };
  }
  const chunks: Buffer[] = [];
  let sequenceId = firstSequenceId & 0xff;
  let offset = 0;
  for (;;) {
    const partLength = Math.min(MAX_PACKET_PAYLOAD_LENGTH, length - offset);
    const header = Buffer.allocUnsafe(PACKET_HEADER_LENGTH);
    writePacketHeader(header, 0, partLength, sequenceId);
    chunks.push(header);
    if (partLength > 0) chunks.push(payload.subarray(offset, offset + partLength));
    offset += partLength;
    sequenceId = nextSequenceId(sequenceId);
    if (partLength < MAX_PACKET_PAYLOAD_LENGTH) break;
  }
  return { chunks, nextSequenceId: sequenceId };
}

/**
 * Frames a payload known to be below 16 MB as one contiguous buffer (header + copy).
 * For the proxy's own small packets (OK, ERR, handshake…).
 */
export function encodePacket(payload: Buffer, sequenceId: number): Buffer {
  if (payload.length >= MAX_PACKET_PAYLOAD_LENGTH) {
    throw new RangeError(`payload of ${payload.length} bytes needs splitting; use framePayload`);
  }
  const wire = Buffer.allocUnsafe(PACKET_HEADER_LENGTH + payload.length);
  writePacketHeader(wire, 0, payload.length, sequenceId);
  payload.copy(wire, PACKET_HEADER_LENGTH);
  return wire;
}

/**
 * Keeps the sequence id of one direction of an exchange: `reset()` at each new command
 * (the client's command is 0, so the first response packet is 1), then `frame()` each
 * payload the proxy writes.
 */
export class MysqlPacketSequencer {
  private nextId: number;

  constructor(firstSequenceId = 0) {
    this.nextId = firstSequenceId & 0xff;
  }

  /** The id the next framed packet will carry. */
  get sequenceId(): number {
    return this.nextId;
  }

  /** Sets the id the next packet carries (e.g. 1 for the first packet of a response). */
  reset(nextSequenceId = 0): void {
    this.nextId = nextSequenceId & 0xff;
  }

  /** Counts a packet the proxy forwarded rather than framed itself. */
  advance(packets = 1): void {
    this.nextId = (this.nextId + packets) & 0xff;
  }

  frame(payload: Buffer): Buffer[] {
    const framed = framePayload(payload, this.nextId);
    this.nextId = framed.nextSequenceId;
    return framed.chunks;
  }
}

/* ------------------------------------------------------------------------------------ */
/* Length-encoded integers and strings                                                   */
/* ------------------------------------------------------------------------------------ */

/** Prefix byte of a length-encoded NULL (text rows only). */
export const LENENC_NULL = 0xfb;

/**
 * Total bytes (prefix included) of the length-encoded integer whose first byte is given:
 * 1 for values < 251, 3 for 0xFC, 4 for 0xFD, 9 for 0xFE. 0xFB (NULL) counts 1 byte;
 * 0xFF is not a length-encoded integer and gives 0.
 */
export function lenencIntSize(firstByte: number): number {
  if (firstByte < 0xfb) return 1;
  switch (firstByte) {
    case 0xfb:
      return 1;
    case 0xfc:
      return 3;
    case 0xfd:
      return 4;
    case 0xfe:
      return 9;
    default:
      return 0;
  }
}

/** Bytes needed to length-encode `value`. */
export function lenencIntLength(value: number | bigint): number {
  const n = typeof value === 'bigint' ? value : BigInt(value);
  if (n < 0n) throw new RangeError('length-encoded integers are unsigned');
  if (n < 251n) return 1;
  if (n < 0x10000n) return 3;
  if (n < 0x1000000n) return 4;
  if (n <= 0xffffffffffffffffn) return 9;
  throw new RangeError('value does not fit 8 bytes');
}

/** Writes `value` length-encoded at `offset`; returns the offset after it. */
export function writeLenencInt(target: Buffer, offset: number, value: number | bigint): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a length-encodable integer: ${value}`);
    if (value < 251) {
      target[offset] = value;
      return offset + 1;
    }
    if (value < 0x10000) {
      target[offset] = 0xfc;
      target.writeUInt16LE(value, offset + 1);
      return offset + 3;
    }
    if (value < 0x1000000) {
      target[offset] = 0xfd;
      target.writeUIntLE(value, offset + 1, 3);
      return offset + 4;
    }
    target[offset] = 0xfe;
    target.writeBigUInt64LE(BigInt(value), offset + 1);
    return offset + 9;
  }
  if (value < 0n || value > 0xffffffffffffffffn) throw new RangeError(`not a length-encodable integer: ${value}`);
  if (value < 0x1000000n) return writeLenencInt(target, offset, Number(value));
  target[offset] = 0xfe;
  target.writeBigUInt64LE(value, offset + 1);
  return offset + 9;
}

/** A length-encoded integer as its own buffer. */
export function encodeLenencInt(value: number | bigint): Buffer {
  const out = Buffer.allocUnsafe(lenencIntLength(value));
  writeLenencInt(out, 0, value);
  return out;
}

/** A length-encoded string (length prefix + bytes). Strings are encoded as UTF-8. */
export function encodeLenencString(value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const out = Buffer.allocUnsafe(lenencIntLength(bytes.length) + bytes.length);
  bytes.copy(out, writeLenencInt(out, 0, bytes.length));
  return out;
}

/**
 * Reads a length-encoded integer at `offset` without allocating; throws on truncation,
 * on NULL/0xFF, and on 8-byte values beyond Number.MAX_SAFE_INTEGER (use PayloadReader
 * .lenencBigInt for those). Hot-path helper for skipping fields.
 */
export function readLenencIntAt(source: Buffer, offset: number, end = source.length): number {
  if (offset >= end) throw truncated('length-encoded integer');
  const first = source[offset]!;
  if (first < 0xfb) return first;
  const size = lenencIntSize(first);
  if (size <= 1) throw new MysqlProtocolError('malformed', `0x${first.toString(16)} does not start a length-encoded integer`);
  if (offset + size > end) throw truncated('length-encoded integer');
  if (size === 3) return source[offset + 1]! | (source[offset + 2]! << 8);
  if (size === 4) return source[offset + 1]! | (source[offset + 2]! << 8) | (source[offset + 3]! << 16);
  const value = source.readBigUInt64LE(offset + 1);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new MysqlProtocolError('malformed', `length-encoded integer ${value} is too large`);
  return Number(value);
}

function truncated(what: string): MysqlProtocolError {
  return new MysqlProtocolError('truncated', `payload ends inside a ${what}`);
}

/* ------------------------------------------------------------------------------------ */
/* Payload reader / writer                                                               */
/* ------------------------------------------------------------------------------------ */

/**
 * Cursor over a payload (or a range of one) for the few packets the proxy decodes.
 * Byte-string results are views into the payload (no copy).
 */
export class PayloadReader {
  offset: number;
  readonly end: number;

  constructor(
    readonly source: Buffer,
    start = 0,
    end = source.length,
  ) {
    this.offset = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  get atEnd(): boolean {
    return this.offset >= this.end;
  }

  /** The next byte without consuming it, or −1 at the end. */
  peek(): number {
    return this.offset < this.end ? this.source[this.offset]! : -1;
  }

  skip(count: number): void {
    this.need(count, 'field');
    this.offset += count;
  }

  u8(): number {
    this.need(1, 'int<1>');
    return this.source[this.offset++]!;
  }

  u16(): number {
    this.need(2, 'int<2>');
    const value = this.source.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  }

  u24(): number {
    this.need(3, 'int<3>');
    const value = this.source.readUIntLE(this.offset, 3);
    this.offset += 3;
    return value;
  }

  u32(): number {
    this.need(4, 'int<4>');
    const value = this.source.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  }

  u64(): bigint {
    this.need(8, 'int<8>');
    const value = this.source.readBigUInt64LE(this.offset);
    this.offset += 8;
    return value;
  }

  /** A length-encoded integer as a number; throws beyond Number.MAX_SAFE_INTEGER. */
  lenencInt(): number {
    const value = readLenencIntAt(this.source, this.offset, this.end);
    this.offset += lenencIntSize(this.source[this.offset]!);
    return value;
  }

  /** A length-encoded integer as a bigint (affected rows, insert ids). */
  lenencBigInt(): bigint {
    this.need(1, 'length-encoded integer');
    const first = this.source[this.offset]!;
    if (first !== 0xfe) return BigInt(this.lenencInt());
    this.need(9, 'length-encoded integer');
    const value = this.source.readBigUInt64LE(this.offset + 1);
    this.offset += 9;
    return value;
  }

  /** Length-encoded string as a view. */
  lenencBytes(): Buffer {
    const length = this.lenencInt();
    return this.bytes(length);
  }

  lenencString(encoding: BufferEncoding = 'utf8'): string {
    const length = this.lenencInt();
    this.need(length, 'length-encoded string');
    const value = this.source.toString(encoding, this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** Fixed-length bytes as a view. */
  bytes(length: number): Buffer {
    this.need(length, 'string');
    const view = this.source.subarray(this.offset, this.offset + length);
    this.offset += length;
    return view;
  }

  /**
   * NUL-terminated bytes as a view (terminator consumed, not included). With
   * `allowUnterminated`, the end of the payload also ends the string — some clients omit
   * the NUL of the last field.
   */
  nulBytes(allowUnterminated = false): Buffer {
    const nul = this.source.indexOf(0, this.offset);
    if (nul === -1 || nul >= this.end) {
      if (!allowUnterminated) throw truncated('NUL-terminated string');
      return this.restBytes();
    }
    const view = this.source.subarray(this.offset, nul);
    this.offset = nul + 1;
    return view;
  }

  nulString(encoding: BufferEncoding = 'utf8', allowUnterminated = false): string {
    return this.nulBytes(allowUnterminated).toString(encoding);
  }

  /** Everything up to the end, as a view. */
  restBytes(): Buffer {
    const view = this.source.subarray(this.offset, this.end);
    this.offset = this.end;
    return view;
  }

  restString(encoding: BufferEncoding = 'utf8'): string {
    return this.restBytes().toString(encoding);
  }

  private need(count: number, what: string): void {
    if (count < 0 || this.offset + count > this.end) throw truncated(what);
  }
}

/**
 * Growable payload builder for the packets the proxy writes itself. `finish()` returns a
 * view of exactly the bytes written.
 */
export class PayloadWriter {
  private buffer: Buffer;
  private length = 0;

  constructor(initialCapacity = 128) {
    this.buffer = Buffer.allocUnsafe(initialCapacity);
  }

  get byteLength(): number {
    return this.length;
  }

  u8(value: number): this {
    this.ensure(1);
    this.buffer[this.length++] = value & 0xff;
    return this;
  }

  u16(value: number): this {
    this.ensure(2);
    this.buffer.writeUInt16LE(value & 0xffff, this.length);
    this.length += 2;
    return this;
  }

  u24(value: number): this {
    this.ensure(3);
    this.buffer.writeUIntLE(value & 0xffffff, this.length, 3);
    this.length += 3;
    return this;
  }

  u32(value: number): this {
    this.ensure(4);
    this.buffer.writeUInt32LE(value >>> 0, this.length);
    this.length += 4;
    return this;
  }

  u64(value: bigint): this {
    this.ensure(8);
    this.buffer.writeBigUInt64LE(value, this.length);
    this.length += 8;
    return this;
  }

  lenencInt(value: number | bigint): this {
    this.ensure(9);
    this.length = writeLenencInt(this.buffer, this.length, value);
    return this;
  }

  lenencString(value: string | Buffer): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    this.lenencInt(bytes.length);
    return this.bytes(bytes);
  }

  /** Bytes followed by a NUL. The value must not contain NUL itself. */
  nulString(value: string | Buffer): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (bytes.includes(0)) throw new RangeError('a NUL-terminated string cannot contain NUL');
    this.bytes(bytes);
    return this.u8(0);
  }

  bytes(value: Buffer | string): this {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    this.ensure(bytes.length);
    bytes.copy(this.buffer, this.length);
    this.length += bytes.length;
    return this;
  }

  zeros(count: number): this {
    this.ensure(count);
    this.buffer.fill(0, this.length, this.length + count);
    this.length += count;
    return this;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  private ensure(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}
