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
