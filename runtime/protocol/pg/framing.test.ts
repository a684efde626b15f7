import { BackendScanHandler, BackendScanner, Disposition, FramingFailure, FrontendFramer, StartupFramer } from './framing';

// ---------- helpers ----------

/** Small seeded PRNG (mulberry32) so random splits are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** A typed message: type byte, Int32 length (including itself), body. */
function typedMessage(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** A raw 5-byte header with an arbitrary (possibly bogus) length. */
function rawHeader(type: string, length: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(length | 0, 1);
  return out;
}

function randomBody(rand: () => number, maxLength: number): Buffer {
  const length = randInt(rand, 0, maxLength);
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = randInt(rand, 0, 255);
  return b;
}

/** Splits `data` at the given (sorted, in-range) cut points. */
function splitAt(data: Buffer, cuts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const cut of cuts) {
    chunks.push(data.subarray(prev, cut));
    prev = cut;
  }
  chunks.push(data.subarray(prev));
  // Copy each chunk into its own buffer so views into one chunk can't alias another.
  return chunks.map((c) => Buffer.from(c));
}

function randomSplit(data: Buffer, rand: () => number, maxChunk: number): Buffer[] {
  const cuts: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    pos += randInt(rand, 1, maxChunk);
    if (pos < data.length) cuts.push(pos);
  }
  return splitAt(data, cuts);
}

function byteByByte(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i++) chunks.push(Buffer.from([data[i]!]));
  return chunks;
}

// ---------- FrontendFramer ----------

interface Delivered {
  type: number;
  bytes: Buffer;
  /** The `data` argument was the pushed chunk itself (a zero-copy view). */
  isView: boolean;
  start: number;
  end: number;
}

function feedFrontend(
  framer: FrontendFramer,
  chunks: readonly Buffer[],
): { delivered: Delivered[]; failure: FramingFailure | undefined; failedAtChunk: number } {
  const delivered: Delivered[] = [];
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i]!;
    const failure = framer.push(chunk, (type, data, start, end) => {
      if (start < 0 || end > data.length || end - start < 5) throw new Error(`bad message range [${start}, ${end}) of ${data.length}`);
      // A view is only valid during the call: copy now.
      delivered.push({ type, bytes: Buffer.from(data.subarray(start, end)), isView: data === chunk, start, end });
    });
    if (failure !== undefined) return { delivered, failure, failedAtChunk: i };
  }
  return { delivered, failure: undefined, failedAtChunk: -1 };
}

function frontendStream(rand: () => number, count: number, maxBody: number): Buffer[] {
  const types = 'QPBDESCHXdfcp';
  const messages: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const type = types[randInt(rand, 0, types.length - 1)]!;
    // Some empty bodies (Sync, Flush, Terminate…) to exercise 5-byte messages.
    const body = rand() < 0.2 ? Buffer.alloc(0) : randomBody(rand, maxBody);
    messages.push(typedMessage(type, body));
  }
  return messages;
}

function expectSameMessages(delivered: readonly Delivered[], messages: readonly Buffer[]): void {
  const got = delivered.map((d) => `${d.type}:${d.bytes.toString('hex')}`).join(' ');
  const want = messages.map((m) => `${m[0]}:${m.toString('hex')}`).join(' ');
  // Plain comparison first: this runs thousands of times and expect() is slow.
  if (got !== want) expect(got).toBe(want);
}

describe('FrontendFramer', () => {
  const MAX = 1 << 20;

  test('delivers messages wholly inside one chunk as views of that chunk', () => {
    const messages = [typedMessage('Q', 'SELECT 1\0'), typedMessage('S'), typedMessage('P', Buffer.from([0, 1, 2, 3]))];
    const chunk = Buffer.concat(messages);
    const framer = new FrontendFramer(MAX);
    const { delivered, failure } = feedFrontend(framer, [chunk]);
    expect(failure).toBeUndefined();
    expectSameMessages(delivered, messages);
    expect(delivered.every((d) => d.isView)).toBe(true);
    expect(delivered.map((d) => [d.start, d.end])).toEqual([
      [0, messages[0]!.length],
      [messages[0]!.length, messages[0]!.length + 5],
      [messages[0]!.length + 5, chunk.length],
    ]);
    expect(framer.bufferedBytes).toBe(0);
  });

  test('a message that straddles chunks is delivered once, as a fresh buffer from 0', () => {
    const message = typedMessage('Q', 'SELECT 42\0');
    const framer = new FrontendFramer(MAX);
    const seen: { data: Buffer; start: number; end: number }[] = [];
    const first = message.subarray(0, 8);
    const second = message.subarray(8);
    expect(framer.push(first, (_t, data, start, end) => seen.push({ data, start, end }))).toBeUndefined();
    expect(seen).toHaveLength(0);
    expect(framer.bufferedBytes).toBe(8);
    expect(framer.push(second, (_t, data, start, end) => seen.push({ data, start, end }))).toBeUndefined();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.data).not.toBe(first);
    expect(seen[0]!.data).not.toBe(second);
    expect(seen[0]!.start).toBe(0);
    expect(seen[0]!.end).toBe(message.length);
    expect(seen[0]!.data.subarray(seen[0]!.start, seen[0]!.end).equals(message)).toBe(true);
    expect(framer.bufferedBytes).toBe(0);
  });

  test('bufferedBytes counts a partial header and a partial body', () => {
    const message = typedMessage('Q', 'abcdef\0');
    const framer = new FrontendFramer(MAX);
    const noop = (): void => undefined;
    framer.push(message.subarray(0, 3), noop);
    expect(framer.bufferedBytes).toBe(3);
    framer.push(message.subarray(3, 7), noop);
    expect(framer.bufferedBytes).toBe(7);
    framer.push(message.subarray(7, 9), noop);
    expect(framer.bufferedBytes).toBe(9);
    framer.push(message.subarray(9), noop);
    expect(framer.bufferedBytes).toBe(0);
  });

  test('a zero-body message whose header straddles chunks is delivered', () => {
    const sync = typedMessage('S');
    for (let cut = 1; cut < 5; cut++) {
      const framer = new FrontendFramer(MAX);
      const { delivered, failure } = feedFrontend(framer, splitAt(sync, [cut]));
      expect(failure).toBeUndefined();
      expectSameMessages(delivered, [sync]);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  test('every single split point, including inside the 5-byte headers', () => {
    const rand = prng(1);
    const messages = frontendStream(rand, 8, 12);
    const stream = Buffer.concat(messages);
    for (let cut = 0; cut <= stream.length; cut++) {
      const framer = new FrontendFramer(MAX);
      const { delivered, failure } = feedFrontend(framer, splitAt(stream, [cut]));
      expect(failure).toBeUndefined();
      expectSameMessages(delivered, messages);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  test('every pair of split points', () => {
    const rand = prng(2);
    const messages = frontendStream(rand, 5, 8);
    const stream = Buffer.concat(messages);
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const framer = new FrontendFramer(MAX);
        const { delivered, failure } = feedFrontend(framer, splitAt(stream, [a, b]));
        if (failure !== undefined) expect(failure).toBeUndefined();
        expectSameMessages(delivered, messages);
      }
    }
  });

  test('byte by byte', () => {
    const rand = prng(3);
    const messages = frontendStream(rand, 40, 30);
    const stream = Buffer.concat(messages);
    const framer = new FrontendFramer(MAX);
    const { delivered, failure } = feedFrontend(framer, byteByByte(stream));
    expect(failure).toBeUndefined();
    expectSameMessages(delivered, messages);
    expect(delivered.some((d) => d.isView)).toBe(false);
    expect(framer.bufferedBytes).toBe(0);
  });

  test('random splits (seeded) deliver the same messages in order', () => {
    for (let seed = 100; seed < 400; seed++) {
      const rand = prng(seed);
      const messages = frontendStream(rand, randInt(rand, 1, 30), randInt(rand, 0, 200));
      const stream = Buffer.concat(messages);
      const framer = new FrontendFramer(MAX);
      const { delivered, failure } = feedFrontend(framer, randomSplit(stream, rand, randInt(rand, 1, 64)));
      expect(failure).toBeUndefined();
      expectSameMessages(delivered, messages);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  test('a chunk holding one whole message is delivered as a view even after straddling ones', () => {
    const a = typedMessage('Q', 'x\0');
    const b = typedMessage('Q', 'yy\0');
    const framer = new FrontendFramer(MAX);
    const first = feedFrontend(framer, [a.subarray(0, 2), Buffer.concat([a.subarray(2), b])]);
    expectSameMessages(first.delivered, [a, b]);
    expect(first.delivered[0]!.isView).toBe(false);
    expect(first.delivered[1]!.isView).toBe(true);
  });

  describe('invalid-length', () => {
    test.each([
      ['length 3', 3],
      ['length 0', 0],
      ['length -1', -1],
      ['length INT32_MIN', -0x80000000],
    ])('%s in a whole header', (_name, length) => {
      const good = typedMessage('Q', 'ok\0');
      const framer = new FrontendFramer(MAX);
      const { delivered, failure } = feedFrontend(framer, [Buffer.concat([good, rawHeader('Q', length), Buffer.alloc(8)])]);
      expect(failure).toBe('invalid-length');
      expectSameMessages(delivered, [good]);
    });

    test.each([0, 1, 3])('length %d in a header split byte by byte', (length) => {
      const good = typedMessage('S');
      const framer = new FrontendFramer(MAX);
      const stream = Buffer.concat([good, rawHeader('X', length)]);
      const { delivered, failure, failedAtChunk } = feedFrontend(framer, byteByByte(stream));
      expect(failure).toBe('invalid-length');
      expect(failedAtChunk).toBe(stream.length - 1);
      expectSameMessages(delivered, [good]);
    });

    test('length exactly 4 (empty body) is valid', () => {
      const framer = new FrontendFramer(MAX);
      const { failure, delivered } = feedFrontend(framer, [rawHeader('H', 4)]);
      expect(failure).toBeUndefined();
      expect(delivered).toHaveLength(1);
    });
  });

  describe('too-large', () => {
    // maxMessageBytes bounds the whole message: type byte + length field + body.
    const max = 100;

    test('a message of exactly maxMessageBytes is accepted', () => {
      const message = typedMessage('Q', Buffer.alloc(max - 5, 0x61));
      expect(message.length).toBe(max);
      const framer = new FrontendFramer(max);
      const { failure, delivered } = feedFrontend(framer, [message]);
      expect(failure).toBeUndefined();
      expectSameMessages(delivered, [message]);
    });

    test('one byte more is too-large, detected from the header alone', () => {
      const framer = new FrontendFramer(max);
      const { failure } = feedFrontend(framer, [Buffer.concat([rawHeader('Q', max), Buffer.alloc(3)])]);
      expect(failure).toBe('too-large');
    });

    test('too-large with the header split across chunks', () => {
      for (let cut = 1; cut < 5; cut++) {
        const framer = new FrontendFramer(max);
        const { failure, failedAtChunk } = feedFrontend(framer, splitAt(rawHeader('Q', 0x7fffffff), [cut]));
        expect(failure).toBe('too-large');
        expect(failedAtChunk).toBe(1);
      }
    });

    test('messages before the oversized one are delivered', () => {
      const good = typedMessage('Q', 'SELECT 1\0');
      const framer = new FrontendFramer(max);
      const { failure, delivered } = feedFrontend(framer, [Buffer.concat([good, rawHeader('Q', 1_000_000)])]);
      expect(failure).toBe('too-large');
      expectSameMessages(delivered, [good]);
    });
  });
});

// ---------- StartupFramer ----------

function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(80877103, 4);
  return b;
}

function startupPacket(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeInt32BE(196608, 0);
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4, 0);
  return Buffer.concat([len, body]);
}

describe('StartupFramer', () => {
  test('an SSLRequest then a StartupMessage in one chunk', () => {
    const ssl = sslRequest();
    const startup = startupPacket({ user: 'alice', database: 'app' });
    const framer = new StartupFramer();
    const first = framer.push(Buffer.concat([ssl, startup]));
    expect(Buffer.isBuffer(first) && first.equals(ssl)).toBe(true);
    const second = framer.push(null);
    expect(Buffer.isBuffer(second) && second.equals(startup)).toBe(true);
    expect(framer.push(null)).toBeNull();
    expect(framer.takeRemainder().length).toBe(0);
  });

  test('a packet split at every point, including inside the length', () => {
    const startup = startupPacket({ user: 'bob', options: '-c search_path=x' });
    for (let cut = 0; cut <= startup.length; cut++) {
      const framer = new StartupFramer();
      const first = framer.push(Buffer.from(startup.subarray(0, cut)));
      if (cut < startup.length) {
        expect(first).toBeNull();
        const second = framer.push(Buffer.from(startup.subarray(cut)));
        expect(Buffer.isBuffer(second) && second.equals(startup)).toBe(true);
      } else {
        expect(Buffer.isBuffer(first) && first.equals(startup)).toBe(true);
      }
    }
  });

  test('byte by byte: null until the last byte', () => {
    const ssl = sslRequest();
    const framer = new StartupFramer();
    for (let i = 0; i < ssl.length - 1; i++) expect(framer.push(Buffer.from([ssl[i]!]))).toBeNull();
    const packet = framer.push(Buffer.from([ssl[ssl.length - 1]!]));
    expect(Buffer.isBuffer(packet) && packet.equals(ssl)).toBe(true);
  });

  test('takeRemainder returns the bytes pipelined after the packet', () => {
    const startup = startupPacket({ user: 'carol' });
    const query = typedMessage('Q', 'SELECT 1\0');
    const framer = new StartupFramer();
    const packet = framer.push(Buffer.concat([startup, query]));
    expect(Buffer.isBuffer(packet) && packet.equals(startup)).toBe(true);
    expect(framer.takeRemainder().equals(query)).toBe(true);
    expect(framer.takeRemainder().length).toBe(0);
    expect(framer.push(null)).toBeNull();
  });

  test.each([0, 4, 7, -1, -0x80000000])('length %d is invalid-length', (length) => {
    const b = Buffer.alloc(8);
    b.writeInt32BE(length, 0);
    expect(new StartupFramer().push(b)).toBe('invalid-length');
    // Detected as soon as the length is known.
    expect(new StartupFramer().push(b.subarray(0, 4))).toBe('invalid-length');
  });

  test('length 8 is the smallest valid packet', () => {
    const framer = new StartupFramer();
    const b = Buffer.alloc(8);
    b.writeInt32BE(8, 0);
    const packet = framer.push(b);
    expect(Buffer.isBuffer(packet) && packet.length === 8).toBe(true);
  });

  test('too-large above maxPacketBytes, detected from the length alone', () => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(10_001, 0);
    expect(new StartupFramer().push(len)).toBe('too-large');
    len.writeInt32BE(10_000, 0);
    expect(new StartupFramer().push(len)).toBeNull();
    len.writeInt32BE(65, 0);
    expect(new StartupFramer(64).push(len)).toBe('too-large');
    const exact = Buffer.alloc(64);
    exact.writeInt32BE(64, 0);
    const packet = new StartupFramer(64).push(exact);
    expect(Buffer.isBuffer(packet) && packet.length === 64).toBe(true);
  });

  test('length split across two chunks, then too-large', () => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(1_000_000, 0);
    const framer = new StartupFramer();
    expect(framer.push(len.subarray(0, 2))).toBeNull();
    expect(framer.push(len.subarray(2))).toBe('too-large');
  });
});

// ---------- BackendScanner ----------

type ScanEvent = { kind: 'header'; type: number; bodyLength: number } | { kind: 'body'; type: number; body: Buffer };

class Recorder implements BackendScanHandler {
  readonly events: ScanEvent[] = [];
  readonly emitted: Buffer[] = [];
  private headerIndex = 0;

  /** Decides per message index (counted across onHeader calls) whether to swallow it. */
  constructor(private readonly swallow: (index: number, type: number) => boolean = () => false) {}

  onHeader(type: number, bodyLength: number): Disposition {
    this.events.push({ kind: 'header', type, bodyLength });
    const index = this.headerIndex++;
    return this.swallow(index, type) ? Disposition.Swallow : Disposition.Forward;
  }

  onBody(type: number, body: Buffer): void {
    this.events.push({ kind: 'body', type, body: Buffer.from(body) });
  }

  emit(data: Buffer, start: number, end: number): void {
    // Never an empty or out-of-range emit.
    if (start < 0 || end > data.length || end <= start) throw new Error(`bad emit range [${start}, ${end}) of ${data.length}`);
    this.emitted.push(Buffer.from(data.subarray(start, end)));
  }

  get output(): Buffer {
    return Buffer.concat(this.emitted);
  }
}

const COLLECTED = 'ZSE13RK';

function backendStream(rand: () => number, count: number, maxBody: number): Buffer[] {
  // Mix of collected types and forwarded-only types (DataRow, CommandComplete, RowDescription, NoData, BindComplete…).
  const types = 'ZSE13RKDCTn2NAs';
  const messages: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const type = types[randInt(rand, 0, types.length - 1)]!;
    const body = rand() < 0.2 ? Buffer.alloc(0) : randomBody(rand, maxBody);
    messages.push(typedMessage(type, body));
  }
  return messages;
}

/** The events a correct scanner produces for `messages`: a header each, then the body for collected types. */
function expectedEvents(messages: readonly Buffer[], collected: string): ScanEvent[] {
  const events: ScanEvent[] = [];
  for (const m of messages) {
    const type = m[0]!;
    events.push({ kind: 'header', type, bodyLength: m.length - 5 });
    if (collected.includes(String.fromCharCode(type))) events.push({ kind: 'body', type, body: Buffer.from(m.subarray(5)) });
  }
  return events;
}

function runScanner(
  chunks: readonly Buffer[],
  swallow: (index: number, type: number) => boolean = () => false,
  collected = COLLECTED,
): { recorder: Recorder; scanner: BackendScanner } {
  const recorder = new Recorder(swallow);
  const scanner = new BackendScanner(collected, recorder);
  for (const chunk of chunks) scanner.push(chunk);
  return { recorder, scanner };
}

function normalize(events: readonly ScanEvent[]): string {
  return events.map((e) => (e.kind === 'header' ? `h${e.type}/${e.bodyLength}` : `b${e.type}:${e.body.toString('hex')}`)).join(' ');
}

function expectEvents(got: readonly ScanEvent[], want: readonly ScanEvent[]): void {
  const a = normalize(got);
  const b = normalize(want);
  if (a !== b) expect(a).toBe(b);
}

describe('BackendScanner', () => {
  test('only headers for uncollected types; bodies for collected ones', () => {
    const messages = [
      typedMessage('T', Buffer.alloc(10, 1)),
      typedMessage('D', Buffer.alloc(7, 2)),
      typedMessage('C', 'SELECT 1\0'),
      typedMessage('Z', 'I'),
    ];
    const input = Buffer.concat(messages);
    const { recorder, scanner } = runScanner([input]);
    expectEvents(recorder.events, expectedEvents(messages, COLLECTED));
    expect(recorder.events.filter((e) => e.kind === 'body').map((e) => String.fromCharCode(e.type))).toEqual(['Z']);
    expect(recorder.output.equals(input)).toBe(true);
    // Forwarded as one contiguous view of the chunk.
    expect(recorder.emitted).toHaveLength(1);
    expect(scanner.atMessageBoundary).toBe(true);
  });

  test('a collected body split across chunks is delivered complete, once', () => {
    const status = typedMessage('S', 'TimeZone\0UTC\0');
    for (let cut = 1; cut < status.length; cut++) {
      const { recorder, scanner } = runScanner(splitAt(status, [cut]));
      const bodies = recorder.events.filter((e): e is Extract<ScanEvent, { kind: 'body' }> => e.kind === 'body');
      expect(bodies).toHaveLength(1);
      expect(bodies[0]!.body.toString()).toBe('TimeZone\0UTC\0');
      expect(recorder.output.equals(status)).toBe(true);
      expect(scanner.atMessageBoundary).toBe(true);
    }
  });

  test('zero-length collected and uncollected bodies', () => {
    const messages = [typedMessage('1'), typedMessage('2'), typedMessage('3'), typedMessage('n')];
    const input = Buffer.concat(messages);
    for (const chunks of [[input], byteByByte(input)]) {
      const { recorder } = runScanner(chunks);
      expectEvents(recorder.events, expectedEvents(messages, COLLECTED));
      expect(recorder.output.equals(input)).toBe(true);
    }
  });

  test('atMessageBoundary is false while a header or a body is held back', () => {
    const z = typedMessage('Z', 'I');
    const d = typedMessage('D', Buffer.alloc(6));
    const recorder = new Recorder();
    const scanner = new BackendScanner(COLLECTED, recorder);
    expect(scanner.atMessageBoundary).toBe(true);
    scanner.push(z.subarray(0, 3));
    expect(scanner.atMessageBoundary).toBe(false);
    scanner.push(z.subarray(3));
    expect(scanner.atMessageBoundary).toBe(true);
    scanner.push(d.subarray(0, 7));
    expect(scanner.atMessageBoundary).toBe(false);
    scanner.push(d.subarray(7));
    expect(scanner.atMessageBoundary).toBe(true);
  });

  test('setCollected adds and removes collected types', () => {
    const d = typedMessage('D', Buffer.from([0, 1, 0, 0, 0, 1, 0x41]));
    const recorder = new Recorder();
    const scanner = new BackendScanner('Z', recorder);
    scanner.push(d);
    expect(recorder.events.filter((e) => e.kind === 'body')).toHaveLength(0);
    scanner.setCollected('D', true);
    scanner.push(d.subarray(0, 6));
    scanner.push(d.subarray(6));
    expect(recorder.events.filter((e) => e.kind === 'body')).toHaveLength(1);
    scanner.setCollected('DZ', false);
    scanner.push(Buffer.concat([d, typedMessage('Z', 'I')]));
    expect(recorder.events.filter((e) => e.kind === 'body')).toHaveLength(1);
  });

  test('forward-only: every split point and every pair reproduce the input exactly', () => {
    const rand = prng(7);
    const messages = backendStream(rand, 6, 6);
    const input = Buffer.concat(messages);
    const expected = expectedEvents(messages, COLLECTED);
    for (let a = 0; a <= input.length; a++) {
      for (let b = a; b <= input.length; b++) {
        const { recorder, scanner } = runScanner(splitAt(input, [a, b]));
        if (!recorder.output.equals(input)) expect(recorder.output.toString('hex')).toBe(input.toString('hex'));
        expectEvents(recorder.events, expected);
        if (!scanner.atMessageBoundary) expect(scanner.atMessageBoundary).toBe(true);
      }
    }
  });

  describe('Disposition.Swallow', () => {
    function expectedOutput(messages: readonly Buffer[], swallowed: ReadonlySet<number>): Buffer {
      return Buffer.concat(messages.filter((_m, i) => !swallowed.has(i)));
    }

    function check(messages: readonly Buffer[], swallowed: ReadonlySet<number>, chunks: readonly Buffer[]): void {
      const { recorder, scanner } = runScanner(chunks, (index) => swallowed.has(index));
      const want = expectedOutput(messages, swallowed);
      if (!recorder.output.equals(want)) {
        throw new Error(
          `output mismatch for chunks [${chunks.map((c) => c.length).join(',')}], swallowed {${[...swallowed].join(',')}}:\n` +
            ` got  ${recorder.output.toString('hex')}\n want ${want.toString('hex')}`,
        );
      }
      // Bodies of collected types are delivered whether the message is forwarded or swallowed.
      expectEvents(recorder.events, expectedEvents(messages, COLLECTED));
      if (!scanner.atMessageBoundary) expect(scanner.atMessageBoundary).toBe(true);
    }

    test('swallowing a collected message in a single chunk (fast path)', () => {
      const messages = [typedMessage('C', 'SET\0'), typedMessage('Z', 'I'), typedMessage('D', Buffer.alloc(3, 9))];
      check(messages, new Set([1]), [Buffer.concat(messages)]);
    });

    test('swallowing an uncollected message in a single chunk', () => {
      const messages = [typedMessage('T', Buffer.alloc(4, 1)), typedMessage('C', 'SET\0'), typedMessage('Z', 'I')];
      check(messages, new Set([1]), [Buffer.concat(messages)]);
    });

    test('swallowing the first, the last and consecutive messages', () => {
      const messages = [
        typedMessage('C', 'SET\0'),
        typedMessage('Z', 'I'),
        typedMessage('D', Buffer.alloc(5, 3)),
        typedMessage('n'),
        typedMessage('E', 'SERROR\0\0'),
        typedMessage('Z', 'T'),
      ];
      const input = Buffer.concat(messages);
      for (const swallowed of [new Set([0]), new Set([5]), new Set([0, 1]), new Set([2, 3, 4]), new Set([0, 1, 2, 3, 4, 5])]) {
        check(messages, swallowed, [input]);
        check(messages, swallowed, byteByByte(input));
      }
    });

    test('a swallowed message whose header straddles chunks, at every split point', () => {
      const messages = [typedMessage('D', Buffer.alloc(4, 7)), typedMessage('C', 'SET\0'), typedMessage('Z', 'I')];
      const input = Buffer.concat(messages);
      const headerStart = messages[0]!.length;
      for (const swallowed of [new Set([1]), new Set([2]), new Set([1, 2])]) {
        for (let cut = headerStart; cut <= headerStart + 5; cut++) check(messages, swallowed, splitAt(input, [cut]));
        // Header split in three.
        check(messages, swallowed, splitAt(input, [headerStart + 1, headerStart + 3]));
      }
    });

    test('a swallowed message whose body straddles chunks', () => {
      const messages = [typedMessage('T', Buffer.alloc(3, 1)), typedMessage('D', Buffer.alloc(20, 2)), typedMessage('C', 'OK\0')];
      const input = Buffer.concat(messages);
      const bodyStart = messages[0]!.length + 5;
      for (let cut = bodyStart; cut < bodyStart + 20; cut++) {
        check(messages, new Set([1]), splitAt(input, [cut]));
        check(messages, new Set([1]), splitAt(input, [cut, cut + 3]));
      }
    });

    test('every single split point and every pair, for several swallow patterns', () => {
      const rand = prng(11);
      const messages = backendStream(rand, 7, 5);
      const input = Buffer.concat(messages);
      const patterns = [new Set<number>(), new Set([0]), new Set([3]), new Set([6]), new Set([1, 2]), new Set([0, 2, 4, 6])];
      for (const swallowed of patterns) {
        for (let a = 0; a <= input.length; a++) {
          for (let b = a; b <= input.length; b++) check(messages, swallowed, splitAt(input, [a, b]));
        }
      }
    });

    test('random streams, random swallows, random splits (seeded)', () => {
      for (let seed = 1000; seed < 1600; seed++) {
        const rand = prng(seed);
        const messages = backendStream(rand, randInt(rand, 1, 25), randInt(rand, 0, 40));
        const swallowed = new Set<number>();
        const p = rand();
        for (let i = 0; i < messages.length; i++) if (rand() < p) swallowed.add(i);
        const input = Buffer.concat(messages);
        const maxChunk = randInt(rand, 1, 48);
        check(messages, swallowed, randomSplit(input, rand, maxChunk));
      }
    });

    test('byte by byte with random swallows', () => {
      for (let seed = 5; seed < 40; seed++) {
        const rand = prng(seed);
        const messages = backendStream(rand, 20, 12);
        const swallowed = new Set<number>();
        for (let i = 0; i < messages.length; i++) if (rand() < 0.4) swallowed.add(i);
        check(messages, swallowed, byteByByte(Buffer.concat(messages)));
      }
    });

    test('swallow by type (the proxy swallowing its own ReadyForQuery)', () => {
      const messages = [typedMessage('C', 'SET\0'), typedMessage('Z', 'I'), typedMessage('T', Buffer.alloc(2)), typedMessage('Z', 'I')];
      const input = Buffer.concat(messages);
      for (let cut = 0; cut <= input.length; cut++) {
        const { recorder } = runScanner(splitAt(input, [cut]), (_i, type) => type === 0x43 /* C */);
        expect(recorder.output.equals(Buffer.concat(messages.slice(1)))).toBe(true);
      }
    });
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('a header with length < 4 is handled the same whether or not it straddles chunks', () => {
    const bogus = rawHeader('Z', 0); // collected type, length 0 → bodyLength -4
    const whole = runScanner([bogus]);
    expect(whole.recorder.events).toEqual([
      { kind: 'header', type: 0x5a, bodyLength: 0 },
      { kind: 'body', type: 0x5a, body: Buffer.alloc(0) },
    ]);
    expect(whole.scanner.atMessageBoundary).toBe(true);
    const split = runScanner(splitAt(bogus, [2])); // throws RangeError today
    expectEvents(split.recorder.events, whole.recorder.events);
    expect(split.scanner.atMessageBoundary).toBe(true);
  });

  test('an uncollected header with length < 4 split across chunks leaves the scanner at a message boundary', () => {
    const bogus = rawHeader('C', 2);
    const split = runScanner(splitAt(bogus, [3]));
    expect(split.recorder.events).toEqual([{ kind: 'header', type: 0x43, bodyLength: 0 }]); // actual bodyLength: -2
    expect(split.scanner.atMessageBoundary).toBe(true);
  });
});
