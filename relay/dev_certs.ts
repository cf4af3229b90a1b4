/**
 * Development certificates on disk: a local CA and a server certificate it
 * signed, so a client can be told to trust `ca.pem` while the real product
 * uses `--cert`/`--key`.
 *
 * Files in `dir`: `ca.pem`, `ca-key.pem` (0600), `server.pem`,
 * `server-key.pem` (0600). The CA is created once and never replaced, because
 * clients trust it; the server certificate is reissued by that CA when it is
 * missing, expiring, lacks a requested name, was not issued by the CA, or does
 * not match its key.
 *
 * @module
 */
import { errorMessage } from "../shared/errors.ts";
import {
  certificateMatchesKey,
  createDevCa,
  decodePem,
  type DevCa,
  importDevCa,
  issueServerCert,
  parseCertificate,
} from "../shared/dev_ca.ts";
import { formatIp, parseIp } from "../shared/ip/ip_address.ts";

/** The names a server certificate must cover (subjectAltName, RFC 5280 §4.2.1.6). */
export interface DevCertNames {
  /** DNS names, e.g. `localhost`. */
  readonly dnsNames: readonly string[];
  /** IPv4 or IPv6 addresses in text form, e.g. `127.0.0.1`, `::1`. */
  readonly ipAddresses: readonly string[];
}

/** What {@linkcode loadOrCreateDevCerts} found or made. */
export interface DevCerts {
  /** Server certificate PEM, for `Deno.QuicEndpoint.listen({ cert })`. */
  readonly certPem: string;
  /** Server PKCS#8 private key PEM, for `listen({ key })`. */
  readonly keyPem: string;
  /** The CA certificate PEM a client passes as `caCerts`. */
  readonly caPem: string;
  /** Absolute path of `ca.pem`, to tell the user which file to trust. */
  readonly caPath: string;
  /** Whether any file was written by this call. */
  readonly created: boolean;
}

/** Options for {@linkcode loadOrCreateDevCerts}. */
export interface DevCertsOptions {
  /** The current time; default `new Date()`. */
  readonly now?: Date;
}

/** The CA certificate file name inside the directory. */
export const CA_CERT_FILE = "ca.pem";
/** The CA private key file name (mode 0600). */
export const CA_KEY_FILE = "ca-key.pem";
/** The server certificate file name. */
export const SERVER_CERT_FILE = "server.pem";
/** The server private key file name (mode 0600). */
export const SERVER_KEY_FILE = "server-key.pem";
/** A server certificate that expires within this many milliseconds is reissued. */
export const SERVER_RENEW_BEFORE_MS = 24 * 60 * 60 * 1000;

const PRIVATE_FILE_MODE = 0o600;
const PRIVATE_DIR_MODE = 0o700;

/**
 * Loads the development CA and server certificate from `dir`, creating
 * whatever is missing (the directory too, mode 0700). Throws when only one of
 * `ca.pem`/`ca-key.pem` exists, when they do not match, or when the CA has
 * expired: replacing a CA silently would break every client that trusts it.
 */
export async function loadOrCreateDevCerts(
  dir: string,
  names: DevCertNames,
  options: DevCertsOptions = {},
): Promise<DevCerts> {
  const now = options.now ?? new Date();
  await Deno.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const base = await Deno.realPath(dir);
  const caPath = `${base}/${CA_CERT_FILE}`;
  const caKeyPath = `${base}/${CA_KEY_FILE}`;
  const certPath = `${base}/${SERVER_CERT_FILE}`;
  const keyPath = `${base}/${SERVER_KEY_FILE}`;

  let created = false;
  let ca: DevCa;
  const [caPem, caKeyPem] = await Promise.all([readIfExists(caPath), readIfExists(caKeyPath)]);
  if (caPem !== undefined && caKeyPem !== undefined) {
    try {
      ca = await importDevCa(caPem, caKeyPem);
    } catch (error) {
      const reason = errorMessage(error);
      throw new Error(`Cannot load development CA from ${base}: ${reason}`);
    }
    const notAfter = parseCertificate(decodePem(caPem, "CERTIFICATE")).notAfter;
    if (notAfter <= now) {
      throw new Error(
        `Cannot use development CA ${caPath}: it expired on ${notAfter.toISOString()}; ` +
          `delete ${caPath} and ${caKeyPath} to create a new one, and trust the new ${CA_CERT_FILE}`,
      );
    }
  } else if (caPem === undefined && caKeyPem === undefined) {
    ca = await createDevCa({ now });
    await writePrivate(caKeyPath, ca.keyPem);
    await Deno.writeTextFile(caPath, ca.certPem);
    created = true;
  } else {
    const [present, missing] = caPem === undefined ? [caKeyPath, caPath] : [caPath, caKeyPath];
    throw new Error(`Cannot load development CA: ${present} exists but ${missing} is missing`);
  }

  const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if (
    !created && certPem !== undefined && keyPem !== undefined &&
    await serverCertUsable(ca, certPem, keyPem, names, now)
  ) {
    return { certPem, keyPem, caPem: ca.certPem, caPath, created };
  }
  const server = await issueServerCert(ca, {
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    now,
  });
  await writePrivate(keyPath, server.keyPem);
  await Deno.writeTextFile(certPath, server.certPem);
  return {
    certPem: server.certPem,
    keyPem: server.keyPem,
    caPem: ca.certPem,
    caPath,
    created: true,
  };
}

async function serverCertUsable(
  ca: DevCa,
  certPem: string,
  keyPem: string,
  names: DevCertNames,
  now: Date,
): Promise<boolean> {
  try {
    const info = parseCertificate(decodePem(certPem, "CERTIFICATE"));
    const caInfo = parseCertificate(decodePem(ca.certPem, "CERTIFICATE"));
    const dnsNames = new Set(info.dnsNames.map((name) => name.toLowerCase()));
    const ipAddresses = new Set(info.ipAddresses);
    return sameBytes(info.issuer, caInfo.subject) &&
      sameBytes(info.authorityKeyIdentifier, caInfo.subjectKeyIdentifier) &&
      info.notBefore <= now &&
      info.notAfter.getTime() - now.getTime() > SERVER_RENEW_BEFORE_MS &&
      names.dnsNames.every((name) => dnsNames.has(name.toLowerCase())) &&
      names.ipAddresses.every((address) => ipAddresses.has(canonicalIp(address))) &&
      await certificateMatchesKey(certPem, keyPem);
  } catch {
    return false; // unreadable or foreign files are replaced, as if missing
  }
}

/** RFC 5952 text for an address, to compare with the certificate's; unparsable text as it is. */
function canonicalIp(text: string): string {
  const address = parseIp(text);
  return address === undefined ? text : formatIp(address);
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && a.length === b.length &&
    a.every((byte, i) => byte === b[i]);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Writes a key file readable only by its owner, narrowing an existing file's mode first. */
async function writePrivate(path: string, text: string): Promise<void> {
  try {
    await Deno.chmod(path, PRIVATE_FILE_MODE);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.writeTextFile(path, text, { mode: PRIVATE_FILE_MODE });
}
