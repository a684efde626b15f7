import * as net from 'node:net';

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago.
 *
 * The kernel hands out an unused ephemeral port for port 0; we release it right away so a
 * server can bind it. Fixed ports would collide between parallel jest workers and CI jobs.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = probe.address();
      if (address === null || typeof address === 'string') {
        probe.close();
        reject(new Error('could not read the port of a probe socket'));
        return;
      }
      probe.close((closeError) => (closeError ? reject(closeError) : resolve(address.port)));
    });
  });
}
