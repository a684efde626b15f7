import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { AddressInfo, Server, Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket, connect as tlsConnect, createSecureContext } from 'node:tls';
import { createSelfSignedCert } from '../../integ/harness/processes';
import { SharedReadBuffer, SocketTransport, adoptAcceptedSocket, createSocketTransport } from './sockets';

/**
 * A real TLS connection over loopback: the client sends one plaintext byte, the server answers
 * one and upgrades (as after a PostgreSQL SSLRequest) and echoes every decrypted chunk back through the transport.
 */
interface EchoServer {
  server: Server;
  port: number;
  /** Per accepted connection: whether decrypted chunks were views of the shared buffer. */
  sharedViews: boolean[];
  /** Times the echo had to give up the shared buffer because its write still referred to it. */
  retired: number;
  transports: SocketTransport[];
  closed: number;
}

let certDir: string;
let cert: string;
let key: string;

beforeAll(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'tidepool-sockets-test-'));
  const files = await createSelfSignedCert(certDir);
  cert = readFileSync(files.certFile, 'utf8');
  key = readFileSync(files.keyFile, 'utf8');
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

async function startEchoServer(readerBytes: number, useSharedReader: boolean): Promise<EchoServer> {
  const state: EchoServer = { server: null as unknown as Server, port: 0, sharedViews: [], retired: 0, transports: [], closed: 0 };
  const reader = new SharedReadBuffer(readerBytes);
  const server = createServer({ pauseOnConnect: true }, (accepted: Socket) => {
    let upgraded = false;
    const socket = adoptAcceptedSocket(accepted, reader, () => {
      if (upgraded) return;
      upgraded = true;
      transport.write(Buffer.from('S'));
      transport.startTls();
    });
    const transport = createSocketTransport(socket, {
      onTlsData: (chunk) => {
        state.sharedViews.push(chunk.buffer === reader.buffer.buffer);
        transport.write(chunk);
        // The echo may still point into the shared buffer: later reads must go elsewhere.
        if (transport.retainedBytes > 0) {
          state.retired++;
          reader.retire();
        }
      },
      onDrain: () => undefined,
      onClosed: () => {
        state.closed++;
      },
      secureContext: () => createSecureContext({ cert, key }),
      ...(useSharedReader ? { tlsReader: reader } : {}),
    });
    state.transports.push(transport);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.server = server;
  state.port = (server.address() as AddressInfo).port;
  return state;
}

async function connectTls(port: number): Promise<TLSSocket> {
  const plain = await new Promise<Socket>((resolve, reject) => {
    const socket = new Socket();
    socket.once('error', reject);
    socket.connect(port, '127.0.0.1', () => resolve(socket));
  });
  // Like a PostgreSQL SSLRequest: the handshake starts only after the server's answer.
  await new Promise<void>((resolve) => {
    plain.once('data', () => resolve());
    plain.write('T');
  });
  return new Promise<TLSSocket>((resolve, reject) => {
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false }, () => resolve(secure));
    secure.once('error', reject);
  });
}

/** Sends `payload` in uneven pieces and resolves with everything echoed back. */
async function roundTrip(secure: TLSSocket, payload: Buffer): Promise<Buffer> {
  const received: Buffer[] = [];
  let receivedBytes = 0;
  const done = new Promise<Buffer>((resolve) => {
    secure.on('data', (chunk: Buffer) => {
      received.push(chunk);
      receivedBytes += chunk.length;
      if (receivedBytes >= payload.length) resolve(Buffer.concat(received));
    });
  });
  for (let offset = 0, piece = 1; offset < payload.length; piece = (piece * 7 + 13) % 40_000) {
    secure.write(payload.subarray(offset, offset + piece + 1));
    offset += piece + 1;
  }
  return done;
}

describe('TLS client reads into the shared read buffer', () => {
  test.each([
    ['the shared buffer', true],
    ['stream data events', false],
  ])('decrypted bytes arrive complete and in order through %s', async (_name, useSharedReader) => {
    // A small buffer: one TLS record (up to 16 KB) spans several reads.
    const echo = await startEchoServer(1000, useSharedReader);
    try {
      const secure = await connectTls(echo.port);
      const payload = randomBytes(600_000);
      const echoed = await roundTrip(secure, payload);
      expect(echoed.equals(payload)).toBe(true);
      expect(echo.sharedViews.length).toBeGreaterThan(0);
      expect(echo.sharedViews.every((shared) => shared === useSharedReader)).toBe(true);
      // Echoes overwrite the buffer they came from with the next read, yet arrive intact: the TLS
      // layer copies what it encrypts and a queued echo is a copy, so the buffer is never given up.
      expect(echo.retired).toBe(0);
      secure.end();
      await new Promise<void>((resolve) => secure.once('close', () => resolve()));
      for (let waited = 0; echo.closed === 0 && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10));
      expect(echo.closed).toBeGreaterThan(0);
    } finally {
      echo.server.close();
    }
  });

  test('pausing the transport stops reads until it resumes', async () => {
    const echo = await startEchoServer(64 * 1024, true);
    try {
      const secure = await connectTls(echo.port);
      const first = roundTrip(secure, Buffer.from('hello'));
      expect((await first).toString()).toBe('hello');
      secure.removeAllListeners('data');
      const transport = echo.transports[0]!;
      transport.pause();
      const chunksBefore = echo.sharedViews.length;
      const later = roundTrip(secure, Buffer.from('after the pause'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(echo.sharedViews.length).toBe(chunksBefore);
      transport.resume();
      expect((await later).toString()).toBe('after the pause');
      secure.destroy();
    } finally {
      echo.server.close();
    }
  });
});
