/**
 * The application-side API of IAM authentication, like @aws-sdk/rds-signer: mint a token to
 * use as the password for a database user whose secret has iamAuth REQUIRED.
 *   import { generateAuthToken } from 'tidepool/auth';
 */
export { generateAuthToken } from './secrets/iam-token';
export type { GenerateAuthTokenOptions } from './secrets/iam-token';
