/**
 * A certificate authority made in the test: its certificate (to trust through
 * `federation_custom_ca_list`) and server certificates it issues for IP addresses and hostnames.
 * Keys come from node:crypto; node-forge only assembles and signs the X.509 structures.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import forge from "node-forge";

/** A server certificate and its key, PEM. */
export interface IssuedCertificate {
  cert: string;
  key: string;
}

/** A test CA. */
export interface TestCa {
  /** The CA's own certificate, PEM. */
  readonly cert: string;
  /** A server certificate valid for these IP addresses and DNS names. */
  issue(names: { ips?: string[]; dns?: string[] }): IssuedCertificate;
}

function rsaKeys(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  return { privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), pem };
}

function certificate(subject: string, publicKey: forge.pki.PublicKey): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  // A positive serial (leading bit clear) of whole bytes, as DER wants it.
  cert.serialNumber = "01" + randomBytes(8).toString("hex");
  cert.validity.notBefore = new Date(Date.now() - 60 * 60 * 1000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 60 * 60 * 1000);
  cert.setSubject([{ name: "commonName", value: subject }]);
  return cert;
}

/** Makes a new CA (`name` in its subject). */
export function createTestCa(name = "Hyphae Test CA"): TestCa {
  const caKeys = rsaKeys();
  const caCert = certificate(name, caKeys.publicKey);
  caCert.setIssuer(caCert.subject.attributes);
  caCert.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  caCert.sign(caKeys.privateKey, forge.md.sha256.create());
  return {
    cert: forge.pki.certificateToPem(caCert),
    issue({ ips = [], dns = [] }) {
      const keys = rsaKeys();
      const cert = certificate(dns[0] ?? ips[0] ?? "server", keys.publicKey);
      cert.setIssuer(caCert.subject.attributes);
      cert.setExtensions([
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
        { name: "extKeyUsage", serverAuth: true },
        // altNames types: 2 = dNSName, 7 = iPAddress (RFC 5280 GeneralName).
        { name: "subjectAltName", altNames: [...dns.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))] },
      ]);
      cert.sign(caKeys.privateKey, forge.md.sha256.create());
      return { cert: forge.pki.certificateToPem(cert), key: keys.pem };
    },
  };
}
