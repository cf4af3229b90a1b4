import { assertEquals } from "../tests/support/assert.ts";
import { formatPrefix, parsePrefix } from "../shared/ip/ip_address.ts";
import type { IpPrefix } from "../shared/ip/ip_address.ts";
import { bringUpLink } from "./link.ts";

Deno.test("bringUpLink() sets the MTU and queue, adds the addresses, then sets the link up", () => {
  const calls: string[] = [];
  bringUpLink(
    {
      setLinkMtu: (name, mtu) => calls.push(`mtu ${name} ${mtu}`),
      setLinkTxQueueLength: (name, packets) => calls.push(`txqueuelen ${name} ${packets}`),
      addAddress: (name, prefix: IpPrefix) => calls.push(`address ${name} ${formatPrefix(prefix)}`),
      setLinkUp: (name) => calls.push(`up ${name}`),
    },
    "mvpn-relay",
    1400,
    ["198.18.100.2/32", "fd00:100::2/128"].map(parsePrefix),
  );
  assertEquals(calls, [
    "mtu mvpn-relay 1400",
    "txqueuelen mvpn-relay 2000",
    "address mvpn-relay 198.18.100.2/32",
    "address mvpn-relay fd00:100::2/128",
    "up mvpn-relay",
  ]);
});
