/**
 * The client's WebTransport dialer: a WebTransport session over HTTP/2
 * (`@fails-components/webtransport`, loaded by `host/webtransport_lib.ts`)
 * to the relay's TCP listener. `client/transports.ts` opens the CONNECT-IP
 * session's two streams on it.
 *
 * The library checks the relay's certificate against the system roots and
 * cannot be given a CA per connection; `--ca` is therefore made the
 * process's default CAs (`tls.setDefaultCACertificates`, which Deno adds to
 * the system roots and which only this library uses here: HTTP/2 passes its
 * own `ca`, QUIC its `caCerts`). It
 * also checks the certificate against the URL's host: `--server-name`
 * cannot differ from it. It sends no request headers of ours.
 *
 * @module
 */

import tls from "node:tls";
import dns from "node:dns/promises";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { parseIp } from "../shared/ip/ip_address.ts";
import { loadWebTransportLib } from "../host/webtransport_lib.ts";
import type { WebTransportDialed } from "./transports.ts";

/** Options of {@linkcode dialWebTransport}. */
export interface WebTransportDialOptions {
  readonly hostname: string;
  readonly port: number;
  /** Extra CAs to trust beside the system roots, PEM. */
  readonly caCerts?: readonly string[];
  /** How long the connection and the session's setup may take, milliseconds. */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

const trusted = new Set<string>();

/** Adds `caCerts` to the process's default CAs, once each. */
function trust(caCerts: readonly string[] | undefined): void {
  const added = (caCerts ?? []).filter((pem) => !trusted.has(pem));
  if (added.length === 0) return;
  for (const pem of added) trusted.add(pem);
  // Deno 2.9 has it; its bundled Node types do not declare it yet.
  const setDefault = (tls as unknown as {
    setDefaultCACertificates(certs: string[]): void;
  }).setDefaultCACertificates;
  // Deno's TLS adds these to the system roots, as it does with `ca`.
  setDefault([...trusted]);
}

/**
 * Opens a WebTransport session (reliable only: over HTTP/2) to
 * `https://HOST:PORT` + `path`, the relay's connect-ip path. Throws a clear
 * error when it does not become ready in time.
 */
export async function dialWebTransport(
  options: WebTransportDialOptions,
  path: string,
): Promise<WebTransportDialed> {
  const lib = await loadWebTransportLib(options.log);
  trust(options.caCerts);
  const host = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
  const url = `https://${host}:${options.port}${path}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let relayAddress: string | undefined = parseIp(options.hostname) ? options.hostname : undefined;
  if (relayAddress === undefined) {
    relayAddress = await dns.lookup(options.hostname).then((a) => a.address, () => undefined);
  }
  const session = new lib.WebTransport(url, { forceReliable: true } as never);
  session.closed.catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      session.ready,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not ready within ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    try {
      session.close();
    } catch {
      // never opened
    }
    throw new Error(
      `Cannot open a WebTransport session to ${url}: ${errorMessage(error)}`,
    );
  } finally {
    clearTimeout(timer);
  }
  return { session, relayAddress, relayPort: options.port };
}
