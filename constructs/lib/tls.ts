import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';

/**
 * Where the proxy gets the certificate it presents to clients.
 *
 * TLS ends in the proxy, not the load balancer: PostgreSQL and MySQL both start in plaintext and upgrade
 * in-band, which an NLB TLS listener cannot do.
 */
export abstract class ProxyTlsCertificate {
  /**
   * Each task generates a self-signed certificate at start. Traffic is encrypted but clients cannot verify
   * the proxy, so they must use `sslmode=require` (PostgreSQL) or `--ssl-mode=REQUIRED` (MySQL), not the
   * verifying modes.
   */
  public static selfSigned(): ProxyTlsCertificate {
    return new SelfSignedCertificate();
  }

  /**
   * A certificate and key kept in Secrets Manager, with SecretString
   * `{"certificate": "<PEM chain, leaf first>", "privateKey": "<PEM key>"}`. Clients can then verify the
   * proxy (`sslmode=verify-full`) against the issuing CA. Issue the certificate for the proxy's DNS name:
   * the load balancer's name, or a Route 53 alias you point at it.
   */
  public static fromSecret(secret: secretsmanager.ISecret): ProxyTlsCertificate {
    return new SecretCertificate(secret);
  }

  /**
   * The secret holding the certificate; the proxy's task role may read it.
   *
   * @default - none: the certificate is generated at start
   */
  public abstract readonly secret?: secretsmanager.ISecret;
}

class SelfSignedCertificate extends ProxyTlsCertificate {
  public readonly secret = undefined;
}

class SecretCertificate extends ProxyTlsCertificate {
  constructor(public readonly secret: secretsmanager.ISecret) {
    super();
  }
}

/**
 * TLS protocol versions, as the runtime names them.
 */
export enum TlsVersion {
  /** TLS 1.0: deprecated (RFC 8996); only for clients that cannot do better. */
  TLS_V1 = 'TLSv1',
  /** TLS 1.1: deprecated (RFC 8996); only for clients that cannot do better. */
  TLS_V1_1 = 'TLSv1.1',
  /** TLS 1.2. */
  TLS_V1_2 = 'TLSv1.2',
  /** TLS 1.3. */
  TLS_V1_3 = 'TLSv1.3',
}

/**
 * Whether the proxy's connections to the database use TLS.
 */
export enum TargetTlsMode {
  /**
   * A client that connected with TLS is served over TLS to the database, a plaintext client in plaintext
   * (RDS Proxy's rule). A database that offers no TLS is then used in plaintext, unless a certificate
   * authority is configured.
   */
  FOLLOW_CLIENT = 'FOLLOW_CLIENT',
  /** Every database connection uses TLS; a database without TLS is refused. */
  REQUIRED = 'REQUIRED',
  /** Database connections never use TLS. */
  DISABLED = 'DISABLED',
}

/** Where the default image keeps the Amazon RDS certificate bundle (see constructs/image/Dockerfile). */
export const RDS_GLOBAL_BUNDLE_PATH = '/etc/tidepool/rds-global-bundle.pem';

/**
 * The certificate authorities a database's certificate must chain to, as a PEM file inside the proxy's
 * container. The runtime reads a file path (`targetTls.caFile`) rather than the PEM itself: the Amazon RDS
 * bundle (about 100 certificates) would not fit the 64 KiB a task definition may hold.
 */
export abstract class TargetCertificateAuthority {
  /**
   * The Amazon RDS global bundle, which every RDS and Aurora certificate in every commercial region chains
   * to. The default image downloads it from `truststore.pki.rds.amazonaws.com` when it is built (during
   * `cdk deploy`), never at run time; a custom `image` must hold it at the same path,
   * `/etc/tidepool/rds-global-bundle.pem`.
   */
  public static rdsGlobalBundle(): TargetCertificateAuthority {
    return new FileCertificateAuthority(RDS_GLOBAL_BUNDLE_PATH);
  }

  /**
   * A PEM bundle at an absolute path inside a custom image, for example the CA of self-managed servers
   * (`COPY my-ca.pem /etc/tidepool/my-ca.pem` in a Dockerfile `FROM` this package's image).
   */
  public static fromFile(path: string): TargetCertificateAuthority {
    return new FileCertificateAuthority(path);
  }

  /** The PEM file's path inside the container. */
  public abstract readonly caFile: string;
}

class FileCertificateAuthority extends TargetCertificateAuthority {
  constructor(public readonly caFile: string) {
    super();
  }
}
