/**
 * Socket plumbing for the hot path: reads through `onread` into a shared buffer instead of
 * the stream machinery (one allocation and several calls less per read).
 */
import { Socket } from 'node:net';

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
