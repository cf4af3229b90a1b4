/**
 * One-shot certificate set-up for the compose project (the first step of its `init` service):
 * keeps a development CA in `--ca-dir` (created once, reused after), issues
 * or renews the relay's server certificate, and hands out copies so that
 * each container mounts only what it needs:
 *
 * - `--relay-dir`: `server.pem` and `server-key.pem` (0600), for the relay's
 *   `--cert` and `--key`;
 * - `--client-dir`: `ca.pem`, for the client's `--ca`.
 *
 * ```
 * deno run --allow-read=DIRS --allow-write=DIRS dev_certs.ts \
 *   --ca-dir /var/lib/masque-vpn/dev-ca --relay-dir /out/relay \
 *   --client-dir /out/client --name relay [--name 198.19.1.2 ...]
 * ```
 *
 * The CA's key never leaves `--ca-dir`. For a relay on the Internet use a
 * certificate from a public CA instead (docs/deploy.md).
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  CA_CERT_FILE,
  loadOrCreateDevCerts,
  SERVER_CERT_FILE,
  SERVER_KEY_FILE,
} from "../../relay/dev_certs.ts";

/** Splits certificate names into DNS names and IP addresses (an IP has a colon or only digits and dots). */
export function splitNames(
  names: readonly string[],
): { dnsNames: string[]; ipAddresses: string[] } {
  const isIp = (name: string) => name.includes(":") || /^[0-9.]+$/.test(name);
  return { dnsNames: names.filter((n) => !isIp(n)), ipAddresses: names.filter(isIp) };
}

/** Copies `text` to `path` through a temporary file and a rename, with `mode`. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.tmp`;
  await Deno.writeTextFile(temporary, text, { mode });
  await Deno.chmod(temporary, mode);
  await Deno.rename(temporary, path);
}

/**
 * Creates or reuses the CA and server certificate in `caDir` and writes the
 * relay's and the client's copies. Returns whether anything was created.
 */
export async function setUpDevCerts(options: {
  caDir: string;
  relayDir: string;
  clientDir: string;
  names: readonly string[];
}): Promise<{ created: boolean }> {
  if (options.names.length === 0) throw new Error("Cannot issue a certificate: give --name");
  const certs = await loadOrCreateDevCerts(options.caDir, splitNames(options.names));
  await Deno.mkdir(options.relayDir, { recursive: true, mode: 0o700 });
  await Deno.mkdir(options.clientDir, { recursive: true, mode: 0o755 });
  await writeAtomically(`${options.relayDir}/${SERVER_CERT_FILE}`, certs.certPem, 0o644);
  await writeAtomically(`${options.relayDir}/${SERVER_KEY_FILE}`, certs.keyPem, 0o600);
  await writeAtomically(`${options.clientDir}/${CA_CERT_FILE}`, certs.caPem, 0o644);
  return { created: certs.created };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "ca-dir": { type: "string" },
      "relay-dir": { type: "string" },
      "client-dir": { type: "string" },
      name: { type: "string", multiple: true, default: [] },
    },
  });
  const missing = ["ca-dir", "relay-dir", "client-dir"].filter((key) =>
    values[key as "ca-dir"] === undefined
  );
  if (missing.length > 0) {
    console.error(`dev_certs: missing ${missing.map((key) => `--${key}`).join(", ")}`);
    Deno.exit(2);
  }
  try {
    const { created } = await setUpDevCerts({
      caDir: values["ca-dir"]!,
      relayDir: values["relay-dir"]!,
      clientDir: values["client-dir"]!,
      names: values.name,
    });
    console.log(
      `dev_certs: ${created ? "created" : "reused"} the development CA and server certificate ` +
        `for ${values.name.join(", ")}`,
    );
  } catch (error) {
    console.error(`dev_certs: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
