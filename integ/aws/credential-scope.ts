import type { IncomingMessage } from 'node:http';

/** The access key, region and service a SigV4 `Authorization` header is scoped to. */
export interface CredentialScope {
  readonly accessKeyId: string;
  readonly region: string;
  readonly service: string;
}

/** Reads the credential scope of a SigV4-signed request; null when it carries no SigV4 authorization. */
export function credentialScopeOf(req: IncomingMessage): CredentialScope | null {
  const auth = req.headers.authorization;
  const match = typeof auth === 'string' ? /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/.exec(auth) : null;
  return match === null ? null : { accessKeyId: match[1]!, region: match[2]!, service: match[3]! };
}
