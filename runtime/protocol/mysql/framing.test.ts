import { MAX_PACKET_PAYLOAD_LENGTH } from './constants';
import {
  LogicalPayloadAssembler,
  MysqlPacketFramer,
  MysqlPacketSequencer,
  MysqlProtocolError,
  MysqlProtocolErrorCode,
  PayloadReader,
  PayloadWriter,
  encodeLenencInt,
  encodeLenencString,
  encodePacket,
  framePayload,
  lenencIntLength,
  lenencIntSize,
  nextSequenceId,
  physicalPacketCount,
  readLenencIntAt,
  setSequenceId,
  writeLenencInt,
} from './framing';

function expectProtocolError(action: () => unknown, code: MysqlProtocolErrorCode): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(MysqlProtocolError);
  expect((caught as MysqlProtocolError).code).toBe(code);
}

/** Hand-built wire bytes: int<3> length, int<1> sequence id, payload. */
function wire(sequenceId: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  const header = Buffer.from([body.length & 0xff, (body.length >> 8) & 0xff, (body.length >> 16) & 0xff, sequenceId]);
  return Buffer.concat([header, body]);
}

interface Seen {
  sequenceId: number;
  payload: string;
  isContinuation: boolean;
}

function collect(framer: MysqlPacketFramer, chunks: Buffer[]): Seen[] {
  const seen: Seen[] = [];
  for (const chunk of chunks) {
    for (const packet of framer.pushPackets(chunk)) {
      seen.push({ sequenceId: packet.sequenceId, payload: packet.payload.toString('latin1'), isContinuation: packet.isContinuation });
    }
  }
  return seen;
}

describe('MysqlPacketFramer', () => {
  const stream = Buffer.concat([wire(0, '\x03SELECT 1'), wire(1, ''), wire(2, 'abc'), wire(3, 'x'.repeat(300))]);
  const expected: Seen[] = [
    { sequenceId: 0, payload: '\x03SELECT 1', isContinuation: false },
    { sequenceId: 1, payload: '', isContinuation: false },
    { sequenceId: 2, payload: 'abc', isContinuation: false },
    { sequenceId: 3, payload: 'x'.repeat(300), isContinuation: false },
  ];

  it('hands out packets of one chunk as views of that chunk (no copy)', () => {
    const framer = new MysqlPacketFramer();
    const packets = framer.pushPackets(stream);
    expect(packets.map((p) => p.payload.toString('latin1'))).toEqual(expected.map((e) => e.payload));
    for (const packet of packets) {
      expect(packet.payload.buffer).toBe(stream.buffer);
      expect(packet.wire.length).toBe(packet.payload.length + 4);
      expect(packet.wire.subarray(4).equals(packet.payload)).toBe(true);
    }
    expect(framer.atPacketBoundary).toBe(true);
  });

  it('reassembles packets split at every possible chunk boundary', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const framer = new MysqlPacketFramer();
      expect(collect(framer, [stream.subarray(0, cut), stream.subarray(cut)])).toEqual(expected);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  it('reassembles a stream fed one byte at a time, including split headers', () => {
    const framer = new MysqlPacketFramer();
    const chunks = Array.from(stream, (byte) => Buffer.from([byte]));
    expect(collect(framer, chunks)).toEqual(expected);
  });

  it('reports bytes held back while a packet is incomplete', () => {
    const framer = new MysqlPacketFramer();
    framer.push(stream.subarray(0, 2), () => undefined);
    expect(framer.bufferedBytes).toBe(2);
    expect(framer.atPacketBoundary).toBe(false);
    framer.push(stream.subarray(2, 8), () => undefined);
    expect(framer.bufferedBytes).toBe(8); // header included
  });

  it('passes the callback the source buffer, payload position and sequence id without creating objects', () => {
    const framer = new MysqlPacketFramer();
    const positions: Array<[number, number, number]> = [];
    framer.push(stream, (source, payloadStart, payloadLength, sequenceId) => {
      expect(source).toBe(stream);
      positions.push([payloadStart, payloadLength, sequenceId]);
    });
    expect(positions.slice(0, 3)).toEqual([
      [4, 9, 0],
      [17, 0, 1],
      [21, 3, 2],
    ]);
  });

  it('refuses a header announcing more than the configured maximum', () => {
    const framer = new MysqlPacketFramer({ maxPayloadLength: 1024 });
    expectProtocolError(() => framer.push(wire(0, 'y'.repeat(2000)), () => undefined), 'too-large');
    const splitHeader = new MysqlPacketFramer({ maxPayloadLength: 1024 });
    splitHeader.push(Buffer.from([0xd0, 0x07]), () => undefined);
    expectProtocolError(() => splitHeader.push(Buffer.from([0x00, 0x00]), () => undefined), 'too-large');
  });
});

describe('16 MB payloads (continuation packets)', () => {
  function bigPayload(length: number): Buffer {
    const payload = Buffer.alloc(length);
    for (let i = 0; i < length; i += 4096) payload[i] = (i / 4096) & 0xff;
    payload[length - 1] = 0x7e;
    return payload;
  }

  it('counts physical packets: a multiple of 0xFFFFFF needs a trailing empty packet', () => {
    expect(physicalPacketCount(0)).toBe(1);
    expect(physicalPacketCount(MAX_PACKET_PAYLOAD_LENGTH - 1)).toBe(1);
    expect(physicalPacketCount(MAX_PACKET_PAYLOAD_LENGTH)).toBe(2);
    expect(physicalPacketCount(MAX_PACKET_PAYLOAD_LENGTH + 1)).toBe(2);
    expect(physicalPacketCount(2 * MAX_PACKET_PAYLOAD_LENGTH)).toBe(3);
  });

  it('splits exactly 0xFFFFFF bytes into a max-size packet and an empty one, with consecutive ids', () => {
    const payload = bigPayload(MAX_PACKET_PAYLOAD_LENGTH);
    const framed = framePayload(payload, 7);
    const bytes = Buffer.concat(framed.chunks);
    expect(bytes.length).toBe(payload.length + 8);
    expect(bytes.subarray(0, 4)).toEqual(Buffer.from([0xff, 0xff, 0xff, 7]));
    expect(bytes.subarray(bytes.length - 4)).toEqual(Buffer.from([0, 0, 0, 8]));
    expect(framed.nextSequenceId).toBe(9);
    // No copy of the big payload: the data chunk is a view of it.
    expect(framed.chunks.some((chunk) => chunk.buffer === payload.buffer)).toBe(true);
  });

  it('round-trips 2×0xFFFFFF + 5 bytes through the framer in 64 KB chunks and joins them', () => {
    const length = 2 * MAX_PACKET_PAYLOAD_LENGTH + 5;
    const payload = bigPayload(length);
    const framed = framePayload(payload, 254);
    expect(framed.nextSequenceId).toBe(1); // 254, 255, 0 → next 1 (ids wrap at 256)
    const bytes = Buffer.concat(framed.chunks);

    const framer = new MysqlPacketFramer();
    const assembler = new LogicalPayloadAssembler();
    const physical: Array<{ sequenceId: number; length: number; isContinuation: boolean; continues: boolean }> = [];
    let joined: Buffer | undefined;
    for (let offset = 0; offset < bytes.length; offset += 65536) {
      for (const packet of framer.pushPackets(bytes.subarray(offset, offset + 65536))) {
        physical.push({ sequenceId: packet.sequenceId, length: packet.payload.length, isContinuation: packet.isContinuation, continues: packet.continues });
        const result = assembler.push(packet.payload);
        if (result !== undefined) joined = result;
      }
    }
    expect(physical).toEqual([
      { sequenceId: 254, length: MAX_PACKET_PAYLOAD_LENGTH, isContinuation: false, continues: true },
      { sequenceId: 255, length: MAX_PACKET_PAYLOAD_LENGTH, isContinuation: true, continues: true },
      { sequenceId: 0, length: 5, isContinuation: true, continues: false },
    ]);
    expect(assembler.inProgress).toBe(false);
    expect(joined).toBeDefined();
    expect(joined!.equals(payload)).toBe(true);
  });

  it('joins a max-size packet followed by an empty one into exactly 0xFFFFFF bytes', () => {
    const payload = bigPayload(MAX_PACKET_PAYLOAD_LENGTH);
    const framer = new MysqlPacketFramer();
    const assembler = new LogicalPayloadAssembler();
    const results: Buffer[] = [];
    for (const chunk of framePayload(payload, 0).chunks) {
      for (const packet of framer.pushPackets(chunk)) {
        const result = assembler.push(packet.payload);
        if (result !== undefined) results.push(result);
      }
    }
    expect(results).toHaveLength(1);
    expect(results[0]!.equals(payload)).toBe(true);
    // After the logical payload, the next packet starts fresh.
    expect(framer.expectingContinuation).toBe(false);
  });

  it('returns small payloads unchanged (zero-copy) and enforces the logical limit', () => {
    const assembler = new LogicalPayloadAssembler(10);
    const small = Buffer.from('hello');
    expect(assembler.push(small)).toBe(small);
    expectProtocolError(() => assembler.push(Buffer.alloc(11)), 'too-large');
    expectProtocolError(() => assembler.push(Buffer.alloc(MAX_PACKET_PAYLOAD_LENGTH)), 'too-large');
    expect(assembler.inProgress).toBe(false);
  });
});

describe('writing packets', () => {
  it('encodes one packet with its header', () => {
    expect(encodePacket(Buffer.from([0x0e]), 0)).toEqual(Buffer.from([1, 0, 0, 0, 0x0e]));
    expect(() => encodePacket(Buffer.alloc(MAX_PACKET_PAYLOAD_LENGTH), 0)).toThrow(RangeError);
  });

  it('frames medium payloads as header + view', () => {
    const payload = Buffer.alloc(100_000, 1);
    const framed = framePayload(payload, 3);
    expect(framed.chunks).toHaveLength(2);
    expect(framed.chunks[0]).toEqual(Buffer.from([0xa0, 0x86, 0x01, 3]));
    expect(framed.chunks[1]).toBe(payload);
  });

  it('keeps sequence ids across an exchange with a sequencer', () => {
    const sequencer = new MysqlPacketSequencer();
    sequencer.reset(1);
    const first = sequencer.frame(Buffer.from('a'));
    sequencer.advance(3); // three packets forwarded untouched
    const second = sequencer.frame(Buffer.from('b'));
    expect(first[0]![3]).toBe(1);
    expect(second[0]![3]).toBe(5);
    expect(sequencer.sequenceId).toBe(6);
    expect(nextSequenceId(255)).toBe(0);
  });

  it('rewrites a sequence id in place', () => {
    const packet = wire(9, 'abc');
    setSequenceId(packet, 0, 2);
    expect(packet[3]).toBe(2);
  });
});

describe('length-encoded integers and strings', () => {
  const cases: Array<[number | bigint, number[]]> = [
    [0, [0x00]],
    [250, [0xfa]],
    [251, [0xfc, 0xfb, 0x00]],
    [0xffff, [0xfc, 0xff, 0xff]],
    [0x10000, [0xfd, 0x00, 0x00, 0x01]],
    [0xffffff, [0xfd, 0xff, 0xff, 0xff]],
    [0x1000000, [0xfe, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]],
    [0xffffffffffffffffn, [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
  ];

  it.each(cases)('encodes %p as the documented bytes and reads it back', (value, bytes) => {
    const encoded = encodeLenencInt(value);
    expect([...encoded]).toEqual(bytes);
    expect(lenencIntLength(value)).toBe(bytes.length);
    expect(lenencIntSize(encoded[0]!)).toBe(bytes.length);
    const reader = new PayloadReader(encoded);
    expect(reader.lenencBigInt()).toBe(BigInt(value));
    expect(reader.atEnd).toBe(true);
    if (typeof value === 'number') expect(readLenencIntAt(encoded, 0)).toBe(value);
  });

  it('writes at an offset and returns the next offset', () => {
    const target = Buffer.alloc(12);
    expect(writeLenencInt(target, 2, 300)).toBe(5);
    expect(readLenencIntAt(target, 2)).toBe(300);
  });

  it('rejects NULL, 0xFF, truncation and unsafe numbers with typed errors', () => {
    expectProtocolError(() => readLenencIntAt(Buffer.from([0xfb]), 0), 'malformed');
    expectProtocolError(() => readLenencIntAt(Buffer.from([0xff]), 0), 'malformed');
    expectProtocolError(() => readLenencIntAt(Buffer.from([0xfc, 0x01]), 0), 'truncated');
    expectProtocolError(() => readLenencIntAt(Buffer.alloc(0), 0), 'truncated');
    expectProtocolError(() => readLenencIntAt(encodeLenencInt(0xffffffffffffffffn), 0), 'malformed');
    expect(() => encodeLenencInt(-1)).toThrow(RangeError);
  });

  it('reads and writes length-encoded strings', () => {
    const encoded = encodeLenencString('héllo');
    expect(encoded[0]).toBe(6);
    expect(new PayloadReader(encoded).lenencString()).toBe('héllo');
    const long = 'z'.repeat(300);
    expect(new PayloadReader(encodeLenencString(long)).lenencString()).toBe(long);
    expectProtocolError(() => new PayloadReader(Buffer.from([5, 0x61])).lenencString(), 'truncated');
  });
});

describe('PayloadReader / PayloadWriter', () => {
  it('round-trips every field type', () => {
    const payload = new PayloadWriter(4)
      .u8(1)
      .u16(0xbeef)
      .u24(0x123456)
      .u32(0xdeadbeef)
      .u64(0x0102030405060708n)
      .lenencInt(70000)
      .lenencString('name')
      .nulString('db')
      .zeros(2)
      .bytes('rest')
      .finish();
    const reader = new PayloadReader(payload);
    expect(reader.u8()).toBe(1);
    expect(reader.u16()).toBe(0xbeef);
    expect(reader.u24()).toBe(0x123456);
    expect(reader.u32()).toBe(0xdeadbeef);
    expect(reader.u64()).toBe(0x0102030405060708n);
    expect(reader.lenencInt()).toBe(70000);
    expect(reader.lenencString()).toBe('name');
    expect(reader.nulString()).toBe('db');
    reader.skip(2);
    expect(reader.peek()).toBe(0x72);
    expect(reader.restString()).toBe('rest');
    expect(reader.atEnd).toBe(true);
    expect(reader.peek()).toBe(-1);
  });

  it('fails with typed errors past the end, and reads an unterminated last string only when allowed', () => {
    expectProtocolError(() => new PayloadReader(Buffer.from([1, 2, 3])).u32(), 'truncated');
    expectProtocolError(() => new PayloadReader(Buffer.from('abc')).nulString(), 'truncated');
    expect(new PayloadReader(Buffer.from('abc')).nulString('utf8', true)).toBe('abc');
    expectProtocolError(() => new PayloadReader(Buffer.from([1])).skip(2), 'truncated');
    // A reader over a range does not read past its end.
    expectProtocolError(() => new PayloadReader(Buffer.from('ab\0cd'), 0, 2).nulString(), 'truncated');
  });

  it('refuses NUL inside a NUL-terminated string', () => {
    expect(() => new PayloadWriter().nulString('a\0b')).toThrow(RangeError);
  });
});
