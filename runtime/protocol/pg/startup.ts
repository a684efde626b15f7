/**
 * Decoding of the untyped startup-phase packets, and of the `options` startup parameter.
 */
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, readCString } from './messages';

export type StartupPacket =
  | { kind: 'ssl-request' }
  | { kind: 'gssenc-request' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | { kind: 'startup'; majorVersion: number; minorVersion: number; params: Map<string, string> }
  | { kind: 'invalid'; reason: string };

export function decodeStartupPacket(packet: Buffer): StartupPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE) return packet.length === 8 ? { kind: 'ssl-request' } : { kind: 'invalid', reason: 'bad SSLRequest length' };
  if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc-request' };
  if (code === CANCEL_REQUEST_CODE) {
    if (packet.length !== 16) return { kind: 'invalid', reason: 'bad CancelRequest length' };
    return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: packet.readInt32BE(12) };
  }
  const majorVersion = code >>> 16;
  const minorVersion = code & 0xffff;
  const params = new Map<string, string>();
  let offset = 8;
  while (offset < packet.length && packet[offset] !== 0) {
    const key = readCString(packet, offset);
    if (!key) return { kind: 'invalid', reason: 'unterminated startup parameter name' };
    const value = readCString(packet, key.next);
    if (!value) return { kind: 'invalid', reason: `startup parameter "${key.value}" has no value` };
    params.set(key.value, value.value);
    offset = value.next;
  }
  if (offset >= packet.length) return { kind: 'invalid', reason: 'startup packet is not terminated' };
  return { kind: 'startup', majorVersion, minorVersion, params };
}

/**
 * Splits the libpq `options` parameter ("-c a=b --c=d -c e=f\ g") into settings, as the
 * backend does: whitespace separates arguments, backslash escapes the next character.
 * Returns undefined when it holds anything but -c/-- settings.
 */
export function parseOptionsParameter(options: string): Map<string, string> | undefined {
  const args: string[] = [];
  let current = '';
  let inArg = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\') {
      // A lone trailing backslash is dropped, as pg_split_opts does.
      if (i + 1 < options.length) {
        current += options[++i];
        inArg = true;
      }
    } else if (/\s/.test(ch)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += ch;
      inArg = true;
    }
  }
  if (inArg) args.push(current);
  const settings = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    let setting: string | undefined;
    const arg = args[i]!;
    if (arg === '-c') setting = args[++i];
    else if (arg.startsWith('-c')) setting = arg.slice(2);
    else if (arg.startsWith('--')) setting = arg.slice(2);
    if (setting === undefined) return undefined;
    const eq = setting.indexOf('=');
    if (eq <= 0) return undefined;
    settings.set(setting.slice(0, eq).replace(/-/g, '_'), setting.slice(eq + 1));
  }
  return settings;
}
