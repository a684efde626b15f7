/**
 * Writes to a plain TCP socket straight through its libuv handle when nothing is queued in
 * the stream, skipping the Writable machinery (state checks, a callback, buffering
 * bookkeeping and an `afterWrite` tick per call). On the proxy's hot path every forwarded
 * message is one such write, and the stream layer cost about as much CPU as the system call.
 *
 * Order and backpressure are kept: the direct path is taken only while the stream holds
 * nothing (its writes and ours then share libuv's one ordered queue), a write the kernel could
 * not take at once keeps its buffer alive until libuv reports it done, and such bytes count in
 * `retainedBytes` until then. When Node's internals are not what this expects, every write
 * goes through `socket.write`.
 *
 * TLS sockets go through their stream (it encrypts). The TLS layer encrypts a chunk, copying
 * it, as soon as the chunk reaches it; only a chunk the stream has to queue (a write still in
 * flight, or corked) would keep referring to the caller's buffer, so such a chunk is queued as
 * a copy: callers forward views of a reused read buffer and must be free to reuse it. (Before,
 * every write to a TLS socket counted as retained, because its completion is always reported a
 * tick later, and every response read for a TLS client took a fresh 64 KiB read buffer.)
 */
import type { Socket } from 'node:net';

interface WriteRequest {
  handle: unknown;
  buffer: Buffer | null;
  bytes: number;
  oncomplete: (status: number) => void;
}

interface StreamHandle {
  writeBuffer(request: WriteRequest, data: Buffer): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteRequest;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

function loadStreamWrap(): StreamWrapBinding | null {
  try {
    // `process.binding` is deprecated in documentation only; Node's own net module uses these same objects.
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    // ArrayBuffer.isView, not instanceof: under a test runner's vm context Int32Array is another realm's.
    if (typeof binding.WriteWrap !== 'function' || !ArrayBuffer.isView(binding.streamBaseState) || typeof binding.kLastWriteWasAsync !== 'number') {
      return null;
    }
    return binding as StreamWrapBinding;
  } catch {
    return null;
  }
}

const streamWrap = process.env.TIDEPOOL_STREAM_WRITES === '1' ? null : loadStreamWrap();

/** Whether writes skip the stream layer in this process (false: Node's internals differ, or TIDEPOOL_STREAM_WRITES=1). */
export const directWritesAvailable = streamWrap !== null;

/**
 * Writes to a TLS socket without leaving it a reference to `data` (see the module comment): a
 * chunk that reaches the TLS layer at once is encrypted (copied) there; one the stream must
 * queue is queued as a copy. Returns false when the stream's buffer is full.
 */
export function writeEncrypted(socket: Socket, data: Buffer): boolean {
  // A socket still connecting would keep the chunk as pending data, too.
  const queued = socket.writableLength > 0 || socket.writableCorked > 0 || socket.connecting;
  return socket.write(queued ? Buffer.from(data) : data);
}

export class SocketWriter {
  /** Bytes handed to libuv directly that the kernel has not taken yet. */
  private directPendingBytes = 0;
  /** TLS sockets encrypt in their stream layer: their writes always go through it. */
  private readonly direct: boolean;
  private readonly encrypted: boolean;

  /** `onDrain` is called when directly written bytes that had to wait are all sent. */
  constructor(
    private readonly socket: Socket,
    private readonly onDrain: () => void,
  ) {
    this.encrypted = (socket as Socket & { encrypted?: boolean }).encrypted === true;
    this.direct = streamWrap !== null && !this.encrypted;
  }

  /** Bytes of buffers passed to write() that are still referred to (waiting for the kernel): while above 0 they must not be reused. */
  get retainedBytes(): number {
    // Plain sockets written through the stream (direct writes unavailable) do queue views.
    return this.encrypted ? 0 : this.directPendingBytes + this.socket.writableLength;
  }

  /** Returns false when bytes wait for the kernel: the caller should stop producing until `onDrain` (or the socket's 'drain'). */
  write(data: Buffer): boolean {
    const socket = this.socket;
    if (socket.destroyed) return true;
    if (this.encrypted) return writeEncrypted(socket, data);
    const handle = (socket as Socket & { _handle?: StreamHandle | null })._handle;
    if (
      !this.direct ||
      handle === null ||
      handle === undefined ||
      socket.connecting ||
      socket.writableLength > 0 ||
      socket.writableCorked > 0 ||
      socket.writableEnded ||
      data.length === 0
    ) {
      return socket.write(data) && this.directPendingBytes === 0;
    }
    const binding = streamWrap!;
    const request = new binding.WriteWrap();
    request.handle = handle;
    request.buffer = null;
    request.bytes = data.length;
    request.oncomplete = (status: number) => this.onWriteComplete(request, status);
    const error = handle.writeBuffer(request, data);
    if (error !== 0) {
      socket.destroy(new Error(`write failed (${error})`));
      return true;
    }
    if (binding.streamBaseState[binding.kLastWriteWasAsync] === 0) return true;
    // libuv still points into `data`: keep it alive (and count it) until the write completes.
    request.buffer = data;
    this.directPendingBytes += data.length;
    return false;
  }

  private onWriteComplete(request: WriteRequest, status: number): void {
    if (request.buffer === null) return;
    this.directPendingBytes -= request.bytes;
    request.buffer = null;
    if (status < 0) {
      if (!this.socket.destroyed) this.socket.destroy(new Error(`write failed (${status})`));
      return;
    }
    if (this.directPendingBytes === 0) this.onDrain();
  }
}
