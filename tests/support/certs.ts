/**
 * Development certificates for tests, made once per test process in memory
 * by the same code the relay uses (shared/dev_ca.ts): a CA and a server
 * certificate for `localhost`, `127.0.0.1` and `::1`.
 *
 * @module
 */
import { createDevCa, issueServerCert } from "../../shared/dev_ca.ts";

/** PEM strings for a QUIC server (`certPem`, `keyPem`) and its client (`caPem` as `caCerts`). */
export interface TestCerts {
  /** The CA certificate a client passes in `caCerts`. */
  readonly caPem: string;
  /** The server certificate for `localhost`, `127.0.0.1` and `::1`. */
  readonly certPem: string;
  /** The server's PKCS#8 private key. */
  readonly keyPem: string;
}

/** The names the test server certificate covers. */
export const TEST_CERT_NAMES = {
  dnsNames: ["localhost"],
  ipAddresses: ["127.0.0.1", "::1"],
} as const;

let cached: Promise<TestCerts> | undefined;

/** Returns the same certificates on every call; the first call creates them (ECDSA P-256). */
export function testCerts(): Promise<TestCerts> {
  cached ??= create().catch((error) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

async function create(): Promise<TestCerts> {
  const ca = await createDevCa({ commonName: "MASQUE VPN test CA" });
  const server = await issueServerCert(ca, {
    dnsNames: [...TEST_CERT_NAMES.dnsNames],
    ipAddresses: [...TEST_CERT_NAMES.ipAddresses],
  });
  return Object.freeze({ caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem });
}

/**
 * A QUIC connection (ALPN h3) to a test server on 127.0.0.1 that uses
 * {@linkcode testCerts}, trusting the test CA. `endpoint` makes the
 * connection leave from a known local port.
 */
export async function dialTestServer(
  port: number,
  endpoint?: Deno.QuicEndpoint,
): Promise<Deno.QuicConn> {
  const { caPem } = await testCerts();
  return await Deno.connectQuic({
    hostname: "127.0.0.1",
    port,
    alpnProtocols: ["h3"],
    caCerts: [caPem],
    serverName: "localhost",
    ...(endpoint ? { endpoint } : {}),
  });
}
