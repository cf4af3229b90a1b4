/**
 * `deno task status`: the state of a relay or a client, like `wg show`,
 * from its admin endpoint (`--admin`, here `--admin ADDR:PORT`, default
 * 127.0.0.1:9464): the relay's sessions (user, endpoint, addresses, mode,
 * age, last packet received, transfer, packets, drops) or the client's
 * state (relay, connection, addresses, routes, transfer, reconnects, last
 * error), in 80 columns; `--json` prints the `/status` JSON for scripts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { errorMessage } from "../shared/errors.ts";
import { HOST_PORT } from "../shared/options.ts";
import { renderStatus } from "../shared/status_view.ts";

/** The admin endpoint `deno task status` asks when given none. */
export const DEFAULT_ADMIN = "127.0.0.1:9464";

const HELP = `masque-vpn status: a relay's sessions or a client's state, from its admin endpoint.

Usage: deno task status [--admin ADDR:PORT] [--json]

  --admin ADDR:PORT    the relay's or client's --admin (default ${DEFAULT_ADMIN})
  --json               print the /status JSON instead
  -h, --help           show this help
`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        admin: { type: "string", default: DEFAULT_ADMIN },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`error: ${errorMessage(error)}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const errors: string[] = [];
  const admin = HOST_PORT.parse(values.admin, "--admin", errors);
  if (admin === undefined) {
    console.error(`error: ${errors[0]}`);
    return 2;
  }
  const host = admin.hostname.includes(":") ? `[${admin.hostname}]` : admin.hostname;
  const url = `http://${host}:${admin.port}/status`;
  let status: unknown;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    status = await response.json();
  } catch (error) {
    console.error(
      `Cannot read ${url}: ${errorMessage(error)}\n` +
        `Is the relay or client running with --admin ${values.admin}?`,
    );
    return 1;
  }
  console.log(
    values.json ? JSON.stringify(status, null, 2) : renderStatus(status, Date.now()).trimEnd(),
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
