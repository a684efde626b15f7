/**
 * Socket plumbing for the hot path: reads through `onread` into a shared buffer instead of
 * the stream machinery (one allocation and several calls less per read).
 */
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { SecureContext, TLSSocket } from 'node:tls';
import { SocketWriter, writeEncrypted } from '../session/socket-writer';
import type { ClientTransport } from '../session/pg/client';

/**
 * One read buffer shared by many sockets. Reads run one at a time on the event loop, so
 * sharing is safe as long as nothing keeps a view of the bytes after its read callback;
 * whoever does (a write still queued in another socket) calls `retire`, and later reads go
 * to a fresh buffer.
 */
export class SharedReadBuffer {
  private current: Buffer;

  constructor(private readonly bytes = 64 * 1024) {
    this.current = Buffer.allocUnsafe(bytes);
  }

  get buffer(): Buffer {
    return this.current;
  }

  retire(): void {
    this.current = Buffer.allocUnsafe(this.bytes);
  }
}

type HandleCarrier = Socket & { _handle?: unknown };

/**
 * Re-wraps a socket accepted with `pauseOnConnect` so that its reads arrive through
 * `onread` into `reader`'s buffer. Node offers onread only for sockets it connects, so this
 * moves the accepted handle into a new Socket; if Node's internals ever differ, the
 * accepted socket is returned unchanged (and resumed) with `onData` on its 'data' events.
 */
export function adoptAcceptedSocket(accepted: Socket, reader: SharedReadBuffer, onData: (chunk: Buffer) => void): Socket {
  const carrier = accepted as HandleCarrier;
  const handle = carrier._handle;
  if (handle !== null && handle !== undefined) {
    try {
      carrier._handle = null;
      // `handle` is an undocumented constructor option (how Node itself wraps accepted handles).
      const options = {
        handle,
        onread: {
          buffer: () => reader.buffer,
          callback: (bytes: number, buffer: Uint8Array) => {
            const chunk = buffer as Buffer;
            onData(bytes === chunk.length ? chunk : chunk.subarray(0, bytes));
            return true;
          },
        },
      } as unknown as ConstructorParameters<typeof Socket>[0];
      const adopted = new Socket(options);
      adopted.setNoDelay(true);
      adopted.resume();
      return adopted;
    } catch {
      carrier._handle = handle;
    }
  }
  accepted.on('data', onData);
  accepted.resume();
  return accepted;
}

/**
 * What a session needs from its client socket (the sessions' ClientTransport; both engines'
 * sessions take this shape), with the TLS upgrade's full signature.
 */
export interface SocketTransport extends Omit<ClientTransport, 'startTls'> {
  /**
   * Switches to TLS; `alreadyReceived` is TLS data that arrived in the same read as the upgrade
   * request. `underlying` replaces the socket as the TLS layer's byte stream (PostgreSQL direct TLS).
   */
  startTls(alreadyReceived?: Buffer, underlying?: Duplex): TLSSocket;
}

export interface TransportHandlers {
  /** Decrypted bytes, once TLS is on (plaintext bytes arrive through the socket's own reader). */
  onTlsData(chunk: Buffer): void;
  onDrain(): void;
  onClosed(): void;
  /** The certificate to present, read at each upgrade (it may have been rotated). */
  secureContext(): SecureContext;
  onTlsUpgrade?(): void;
  onTlsError?(error: Error): void;
  /** ALPN protocols the server side offers (PostgreSQL: `postgresql`). */
  alpnProtocols?: string[];
  /**
   * When given, decrypted bytes are read into this shared buffer (as plaintext reads are)
   * instead of a fresh Buffer per read, and `onTlsData` gets views of it: the handler must then
   * `retire` the buffer when it keeps a view beyond the call.
   */
  tlsReader?: SharedReadBuffer;
}

/** The client transport of a socket: writes go to the TLS layer once the client upgraded. */
export function createSocketTransport(socket: Socket, handlers: TransportHandlers): SocketTransport {
  return new ClientSocketTransport(socket, handlers);
}

/**
 * A class rather than an object literal with closures: sessions call it for every message,
 * and one shape with prototype methods and getters keeps those calls monomorphic.
 */
class ClientSocketTransport implements SocketTransport {
  private output: Socket | TLSSocket;
  private tlsEstablished = false;
  /** Plain TCP writes skip the stream layer; once on TLS, writes go through the TLS socket. */
  private readonly plainWriter: SocketWriter;
  readonly tlsAvailable = true;

  constructor(
    private readonly socket: Socket,
    private readonly handlers: TransportHandlers,
  ) {
    this.output = socket;
    this.plainWriter = new SocketWriter(socket, () => handlers.onDrain());
    socket.on('drain', () => handlers.onDrain());
    socket.on('error', () => socket.destroy());
  }

  write(data: Buffer): boolean {
    const output = this.output;
    if (output === this.socket) return this.plainWriter.write(data);
    return output.destroyed ? true : writeEncrypted(output, data);
  }

  /** Over TLS nothing written is retained: the TLS layer copies what it encrypts, and queued chunks are copies. */
  get retainedBytes(): number {
    return this.output === this.socket ? this.plainWriter.retainedBytes : 0;
  }

  pause(): void {
    this.output.pause();
  }

  resume(): void {
    this.output.resume();
  }

  cork(): void {
    this.output.cork();
  }

  uncork(): void {
    this.output.uncork();
  }

  end(): void {
    // A TLS socket whose handshake never finished cannot flush a goodbye: end() would wait forever.
    if (this.output !== this.socket && !this.tlsEstablished) {
      this.output.destroy();
      this.socket.destroy();
      return;
    }
    if (!this.output.destroyed) this.output.end();
  }

  get isTls(): boolean {
    return this.output !== this.socket;
  }

  startTls(alreadyReceived?: Buffer, stream?: Duplex): TLSSocket {
    const { socket, handlers } = this;
    socket.removeAllListeners('data');
    const underlying = stream ?? (alreadyReceived !== undefined && alreadyReceived.length > 0 ? replayingStream(socket, alreadyReceived) : socket);
    const secure = new TLSSocket(underlying, {
      isServer: true,
      secureContext: handlers.secureContext(),
      ...(handlers.alpnProtocols !== undefined ? { ALPNProtocols: handlers.alpnProtocols } : {}),
    });
    this.output = secure;
    secure.once('secure', () => (this.tlsEstablished = true));
    handlers.onTlsUpgrade?.();
    const reader = handlers.tlsReader;
    if (reader !== undefined && readIntoSharedBuffer(secure, reader, (chunk) => handlers.onTlsData(chunk))) secure.resume();
    else secure.on('data', (chunk: Buffer) => handlers.onTlsData(chunk));
    secure.on('drain', () => handlers.onDrain());
    secure.on('error', (error) => {
      handlers.onTlsError?.(error);
      secure.destroy();
      socket.destroy();
    });
    secure.on('close', () => handlers.onClosed());
    return secure;
  }
}

type UserBufferSocket = TLSSocket & { _handle?: { useUserBuffer?(buffer: Uint8Array): void } | null } & Record<symbol, unknown>;

/**
 * Makes a TLS socket deliver its decrypted bytes the way `onread` does for plain sockets: into
 * `reader`'s buffer, to `onData`, without a Buffer and a stream push per read (the TLS layer
 * copies each decrypted record into the buffer its consumer supplies). Node offers `onread` only
 * for TLS sockets it connects itself, so this sets the same (internal) fields the Socket
 * constructor sets for it; returns false, changing nothing, when Node's internals differ.
 */
function readIntoSharedBuffer(secure: TLSSocket, reader: SharedReadBuffer, onData: (chunk: Buffer) => void): boolean {
  const socket = secure as UserBufferSocket;
  const handle = socket._handle;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function') return false;
  const symbols = Object.getOwnPropertySymbols(socket);
  const symbolNamed = (name: string) => symbols.find((symbol) => symbol.description === name);
  const kBuffer = symbolNamed('kBuffer');
  const kBufferCb = symbolNamed('kBufferCb');
  const kBufferGen = symbolNamed('kBufferGen');
  if (kBuffer === undefined || kBufferCb === undefined || kBufferGen === undefined) return false;
  if (socket[kBuffer] !== null || socket[kBufferCb] !== null || socket[kBufferGen] !== null) return false;
  const first = reader.buffer;
  try {
    handle.useUserBuffer(first);
  } catch {
    return false;
  }
  socket[kBuffer] = first;
  socket[kBufferGen] = () => reader.buffer;
  socket[kBufferCb] = (bytes: number, buffer: Uint8Array) => {
    const chunk = buffer as Buffer;
    onData(bytes === chunk.length ? chunk : chunk.subarray(0, bytes));
    return true;
  };
  return true;
}

/**
 * A stream that yields `firstBytes` and then whatever is pushed into it (reads resume the socket,
 * writes go straight to the socket): what a TLS layer runs over when part of its input was
 * already taken off the socket. Ends when the socket ends.
 */
export function socketStreamStartingWith(socket: Socket, firstBytes: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  stream.push(firstBytes);
  socket.on('end', () => stream.push(null));
  return stream;
}

/**
 * A stream that yields `alreadyReceived` and then the socket's bytes: the start of a TLS
 * handshake that arrived in the same read as the plaintext upgrade request.
 */
function replayingStream(socket: Socket, alreadyReceived: Buffer): Duplex {
  const stream = socketStreamStartingWith(socket, alreadyReceived);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  return stream;
}
