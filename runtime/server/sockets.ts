/**
 * Socket plumbing for the hot path: reads through `onread` into a shared buffer instead of
 * the stream machinery (one allocation and several calls less per read).
 */
import { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { SecureContext, TLSSocket } from 'node:tls';

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

/** What a session needs from its client socket; both engines' sessions take this shape. */
export interface SocketTransport {
  write(data: Buffer): boolean;
  readonly pendingBytes: number;
  pause(): void;
  resume(): void;
  cork(): void;
  uncork(): void;
  end(): void;
  readonly isTls: boolean;
  readonly tlsAvailable: boolean;
  /** Switches to TLS; `alreadyReceived` is TLS data that arrived in the same read as the upgrade request. */
  startTls(alreadyReceived?: Buffer): void;
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
}

/** The client transport of a socket: writes go to the TLS layer once the client upgraded. */
export function createSocketTransport(socket: Socket, handlers: TransportHandlers): SocketTransport {
  let output: Socket | TLSSocket = socket;
  socket.on('drain', () => handlers.onDrain());
  socket.on('error', () => socket.destroy());
  return {
    write: (data) => (output.destroyed ? true : output.write(data)),
    get pendingBytes() {
      return output.writableLength;
    },
    pause: () => output.pause(),
    resume: () => output.resume(),
    cork: () => output.cork(),
    uncork: () => output.uncork(),
    end: () => {
      if (!output.destroyed) output.end();
    },
    get isTls() {
      return output !== socket;
    },
    tlsAvailable: true,
    startTls: (alreadyReceived?: Buffer) => {
      socket.removeAllListeners('data');
      const underlying = alreadyReceived !== undefined && alreadyReceived.length > 0 ? replayingStream(socket, alreadyReceived) : socket;
      const secure = new TLSSocket(underlying, { isServer: true, secureContext: handlers.secureContext() });
      output = secure;
      handlers.onTlsUpgrade?.();
      secure.on('data', (chunk: Buffer) => handlers.onTlsData(chunk));
      secure.on('drain', () => handlers.onDrain());
      secure.on('error', (error) => {
        handlers.onTlsError?.(error);
        secure.destroy();
        socket.destroy();
      });
      secure.on('close', () => handlers.onClosed());
    },
  };
}

/**
 * A stream that yields `alreadyReceived` and then the socket's bytes: the start of a TLS
 * handshake that arrived in the same read as the plaintext upgrade request.
 */
function replayingStream(socket: Socket, alreadyReceived: Buffer): Duplex {
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
  stream.push(alreadyReceived);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.on('end', () => stream.push(null));
  return stream;
}
