import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo, Server, Socket, createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecureContext, TLSSocket, connect as tlsConnect, createSecureContext } from 'node:tls';
import { createSelfSignedCert } from '../../integ/harness/processes';
import { SocketWriter, directWritesAvailable } from './socket-writer';

interface Pair {
  server: Server;
  writerSide: Socket;
  readerSide: Socket;
}

async function socketPair(): Promise<Pair> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const writerSide = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  await new Promise<void>((resolve) => writerSide.once('connect', resolve));
  return { server, writerSide, readerSide: await accepted };
}

function collect(socket: Socket): () => Buffer {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return () => Buffer.concat(chunks);
}

async function close(pair: Pair): Promise<void> {
  pair.writerSide.destroy();
  pair.readerSide.destroy();
  await new Promise((resolve) => pair.server.close(resolve));
}

function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

test('the direct path is available on this Node (otherwise every write silently takes the slower stream path)', () => {
  expect(directWritesAvailable).toBe(true);
});

test('small writes, direct and through a corked stream, arrive whole and in order', async () => {
  const pair = await socketPair();
  try {
    const received = collect(pair.readerSide);
    const writer = new SocketWriter(pair.writerSide, () => undefined);
    const parts = Array.from({ length: 200 }, (_, i) => pattern(1 + (i % 37), i));
    parts.forEach((part, i) => {
      // Every tenth write goes while the socket is corked: it must queue behind the direct ones, not overtake them.
      if (i % 10 === 5) {
        pair.writerSide.cork();
        writer.write(part);
        pair.writerSide.uncork();
      } else {
        expect(writer.write(part)).toBe(true);
      }
    });
    const expected = Buffer.concat(parts);
    for (let i = 0; i < 100 && received().length < expected.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received().equals(expected)).toBe(true);
  } finally {
    await close(pair);
  }
});

test('a write the kernel cannot take at once reports backpressure, counts as pending and drains in order', async () => {
  const pair = await socketPair();
  try {
    pair.readerSide.pause();
    let drains = 0;
    const writer = new SocketWriter(pair.writerSide, () => drains++);
    const big = pattern(16 * 1024 * 1024, 7);
    const accepted = writer.write(big);
    expect(accepted).toBe(false);
    expect(writer.retainedBytes).toBeGreaterThan(0);
    const tail = pattern(1000, 3);
    writer.write(tail);
    const received = collect(pair.readerSide);
    pair.readerSide.resume();
    const expected = Buffer.concat([big, tail]);
    for (let i = 0; i < 500 && received().length < expected.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received().length).toBe(expected.length);
    expect(received().equals(expected)).toBe(true);
    expect(writer.retainedBytes).toBe(0);
    expect(drains).toBeGreaterThanOrEqual(1);
  } finally {
    await close(pair);
  }
});

test('through the stream layer (TIDEPOOL_STREAM_WRITES=1) a write the kernel cannot take at once still counts as retained', async () => {
  const previous = process.env.TIDEPOOL_STREAM_WRITES;
  process.env.TIDEPOOL_STREAM_WRITES = '1';
  let streamModule: typeof import('./socket-writer') | undefined;
  jest.isolateModules(() => {
    streamModule = require('./socket-writer') as typeof import('./socket-writer');
  });
  if (previous === undefined) delete process.env.TIDEPOOL_STREAM_WRITES;
  else process.env.TIDEPOOL_STREAM_WRITES = previous;
  expect(streamModule!.directWritesAvailable).toBe(false);
  const pair = await socketPair();
  try {
    pair.readerSide.pause();
    const writer = new streamModule!.SocketWriter(pair.writerSide, () => undefined);
    const big = pattern(16 * 1024 * 1024, 5);
    expect(writer.write(big)).toBe(false);
    // The stream still holds `big` itself: a caller reusing it would corrupt what is sent.
    expect(writer.retainedBytes).toBeGreaterThan(0);
    const received = collect(pair.readerSide);
    pair.readerSide.resume();
    for (let i = 0; i < 500 && received().length < big.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(received().equals(big)).toBe(true);
    expect(writer.retainedBytes).toBe(0);
  } finally {
    await close(pair);
  }
});

test('writing to a destroyed socket is a no-op, not a crash', async () => {
  const pair = await socketPair();
  try {
    const writer = new SocketWriter(pair.writerSide, () => undefined);
    pair.writerSide.destroy();
    expect(writer.write(Buffer.from('late'))).toBe(true);
  } finally {
    await close(pair);
  }
});

describe('TLS sockets', () => {
  let certDir: string;
  let secureContext: SecureContext;

  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'tidepool-socket-writer-test-'));
    const files = await createSelfSignedCert(certDir);
    secureContext = createSecureContext({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) });
  });

  afterAll(() => rmSync(certDir, { recursive: true, force: true }));

  /** A TLS connection over loopback: the writer is the server side, as a client transport's socket is. */
  async function tlsPair(): Promise<{ server: Server; writerSide: TLSSocket; readerSide: TLSSocket }> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const readerSide = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false });
    const writerSide = new TLSSocket(await accepted, { isServer: true, secureContext });
    await new Promise<void>((resolve) => readerSide.once('secureConnect', resolve));
    return { server, writerSide, readerSide };
  }

  test('a buffer reused right after write() still arrives as written, whether the write went out or had to queue', async () => {
    const pair = await tlsPair();
    try {
      const received = collect(pair.readerSide as Socket);
      const writer = new SocketWriter(pair.writerSide, () => undefined);
      // One buffer for every write, overwritten at once, as the proxy reuses its read buffer.
      const reused = Buffer.alloc(3000);
      const expected: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const part = pattern(1 + ((i * 97) % 3000), i);
        part.copy(reused);
        // Back-to-back writes: all but the first find one in flight and queue.
        writer.write(reused.subarray(0, part.length));
        expect(writer.retainedBytes).toBe(0);
        reused.fill(0xee);
        expected.push(part);
      }
      const all = Buffer.concat(expected);
      for (let i = 0; i < 300 && received().length < all.length; i++) await new Promise((r) => setTimeout(r, 10));
      expect(received().equals(all)).toBe(true);
    } finally {
      pair.writerSide.destroy();
      pair.readerSide.destroy();
      await new Promise((resolve) => pair.server.close(resolve));
    }
  });
});
