/**
 * PostgreSQL v3 message codecs: encoders for what the proxy itself says, and decoders for
 * the few messages it must read. Pure functions over Buffers; no sockets.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

export const PROTOCOL_3_0 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** Builds a typed message: 1 type byte, Int32 length, body. */
function typed(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstring(value: string): Buffer {
  return Buffer.from(value + '\0', 'utf8');
}

function int32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(value, 0);
  return b;
}

/** SSLRequest, as the proxy sends it to servers (before a startup or a cancel request). */
export const SSL_REQUEST = Buffer.concat([int32(8), int32(SSL_REQUEST_CODE)]);

// ---- backend messages the proxy sends to clients ----

export const AUTHENTICATION_OK = typed('R', int32(0));

export function authenticationMd5(salt: Buffer): Buffer {
  return typed('R', Buffer.concat([int32(5), salt]));
}

export function authenticationCleartext(): Buffer {
  return typed('R', int32(3));
}

export function authenticationSasl(mechanisms: readonly string[]): Buffer {
  return typed('R', Buffer.concat([int32(10), ...mechanisms.map(cstring), Buffer.from([0])]));
}

export function authenticationSaslContinue(data: Buffer): Buffer {
  return typed('R', Buffer.concat([int32(11), data]));
}

export function authenticationSaslFinal(data: Buffer): Buffer {
  return typed('R', Buffer.concat([int32(12), data]));
}

export function parameterStatus(name: string, value: string): Buffer {
  return typed('S', Buffer.concat([cstring(name), cstring(value)]));
}

export function backendKeyData(processId: number, secretKey: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(processId, 0);
  body.writeInt32BE(secretKey, 4);
  return typed('K', body);
}

export type TransactionStatus = 'I' | 'T' | 'E';

const READY_FOR_QUERY: Record<TransactionStatus, Buffer> = {
  I: typed('Z', Buffer.from('I')),
  T: typed('Z', Buffer.from('T')),
  E: typed('Z', Buffer.from('E')),
};

export function readyForQuery(status: TransactionStatus): Buffer {
  return READY_FOR_QUERY[status];
}

export const PARSE_COMPLETE = typed('1', Buffer.alloc(0));
export const CLOSE_COMPLETE = typed('3', Buffer.alloc(0));

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'WARNING' | 'NOTICE' | 'LOG';
  sqlState: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsBody(fields: ErrorFields): Buffer {
  const parts: Buffer[] = [
    Buffer.from('S'),
    cstring(fields.severity),
    Buffer.from('V'),
    cstring(fields.severity),
    Buffer.from('C'),
    cstring(fields.sqlState),
    Buffer.from('M'),
    cstring(fields.message),
  ];
  if (fields.detail !== undefined) parts.push(Buffer.from('D'), cstring(fields.detail));
  if (fields.hint !== undefined) parts.push(Buffer.from('H'), cstring(fields.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function errorResponse(fields: ErrorFields): Buffer {
  return typed('E', fieldsBody(fields));
}

export function noticeResponse(fields: ErrorFields): Buffer {
  return typed('N', fieldsBody(fields));
}

export function negotiateProtocolVersion(newestMinor: number, unrecognized: readonly string[]): Buffer {
  return typed('v', Buffer.concat([int32(newestMinor), int32(unrecognized.length), ...unrecognized.map(cstring)]));
}

// ---- frontend messages the proxy sends to servers ----

export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [int32(PROTOCOL_3_0)];
  for (const [key, value] of Object.entries(params)) parts.push(cstring(key), cstring(value));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function cancelRequest(processId: number, secretKey: number): Buffer {
  const out = Buffer.allocUnsafe(16);
  out.writeInt32BE(16, 0);
  out.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  out.writeInt32BE(secretKey, 12);
  return out;
}

export function passwordMessage(password: string): Buffer {
  return typed('p', cstring(password));
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return typed('p', Buffer.concat([cstring(mechanism), int32(data.length), data]));
}

export function saslResponse(data: Buffer): Buffer {
  return typed('p', data);
}

export function query(sql: string): Buffer {
  return typed('Q', cstring(sql));
}

export const TERMINATE = typed('X', Buffer.alloc(0));
export const SYNC = typed('S', Buffer.alloc(0));

/** Parse message with an explicit statement name and the client's original query + parameter types. */
export function parse(statementName: string, queryAndParamTypes: Buffer): Buffer {
  return typed('P', Buffer.concat([cstring(statementName), queryAndParamTypes]));
}

export function closeStatement(statementName: string): Buffer {
  return typed('C', Buffer.concat([Buffer.from('S'), cstring(statementName)]));
}

/** Rewrites the leading name of a Bind/Describe/Close-style body: `prefix` bytes kept, then the new cstring, then `rest`. */
export function withName(type: number, prefix: Buffer, name: string, rest: Buffer): Buffer {
  const nameBytes = Buffer.byteLength(name) + 1;
  const out = Buffer.allocUnsafe(5 + prefix.length + nameBytes + rest.length);
  out[0] = type;
  out.writeInt32BE(4 + prefix.length + nameBytes + rest.length, 1);
  let offset = 5 + prefix.copy(out, 5);
  offset += out.write(name, offset, 'utf8');
  out[offset++] = 0;
  rest.copy(out, offset);
  return out;
}

// ---- decoding helpers ----

/** Reads a NUL-terminated UTF-8 string; returns it and the offset after the NUL, or undefined when unterminated. */
export function readCString(buf: Buffer, offset: number, end = buf.length): { value: string; next: number } | undefined {
  const nul = buf.indexOf(0, offset);
  if (nul < 0 || nul >= end) return undefined;
  return { value: buf.toString('utf8', offset, nul), next: nul + 1 };
}

/** Offset just past the NUL that ends the cstring starting at `offset`, or -1. */
export function skipCString(buf: Buffer, offset: number, end = buf.length): number {
  const nul = buf.indexOf(0, offset);
  return nul < 0 || nul >= end ? -1 : nul + 1;
}

export interface DecodedErrorFields {
  severity?: string;
  sqlState?: string;
  message?: string;
  detail?: string;
}

/** Decodes an ErrorResponse/NoticeResponse body (without the 5-byte header). */
export function decodeErrorFields(body: Buffer): DecodedErrorFields {
  const out: DecodedErrorFields = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const code = String.fromCharCode(body[offset]!);
    const str = readCString(body, offset + 1);
    if (!str) break;
    if (code === 'V' || (code === 'S' && out.severity === undefined)) out.severity = str.value;
    else if (code === 'C') out.sqlState = str.value;
    else if (code === 'M') out.message = str.value;
    else if (code === 'D') out.detail = str.value;
    offset = str.next;
  }
  return out;
}

/** Decodes a ParameterStatus body into name and value. */
export function decodeParameterStatus(body: Buffer): { name: string; value: string } | undefined {
  const name = readCString(body, 0);
  if (!name) return undefined;
  const value = readCString(body, name.next);
  if (!value) return undefined;
  return { name: name.value, value: value.value };
}

/**
 * Decodes a DataRow body into text columns (null for SQL NULL). Only for the proxy's own queries.
 * A row cut short (a broken server or anything between) yields the columns that are complete
 * instead of reading past the buffer, which would throw inside a socket callback.
 */
export function decodeDataRow(body: Buffer): (string | null)[] {
  const values: (string | null)[] = [];
  if (body.length < 2) return values;
  const count = body.readInt16BE(0);
  let offset = 2;
  for (let i = 0; i < count && offset + 4 <= body.length; i++) {
    const length = body.readInt32BE(offset);
    offset += 4;
    if (length < 0) {
      values.push(null);
    } else {
      if (offset + length > body.length) break;
      values.push(body.toString('utf8', offset, offset + length));
      offset += length;
    }
  }
  return values;
}
