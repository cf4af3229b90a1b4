import { assert, assertEquals } from "../tests/support/assert.ts";
import { skipUnlessRoot } from "../tests/support/skip.ts";
import { parseCapEff, readHostFacts, tunDeviceState } from "./host_facts.ts";
import { IS_ROOT } from "../ffi/_testing.ts";

Deno.test("parseCapEff() reads the effective set from /proc/self/status text", () => {
  const status = "Name:\tdeno\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n" +
    "CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
  assertEquals(parseCapEff(status), 0x1ffffffffffn);
  assertEquals(parseCapEff("CapEff:\t0000000000001000\n"), 0x1000n);
  assertEquals(parseCapEff("CapEff:\tzz\n"), undefined);
  assertEquals(parseCapEff("Name:\tdeno\n"), undefined);
});

Deno.test("readHostFacts() reads this process's capabilities and the sysctls", () => {
  const facts = readHostFacts();
  assert(facts.effectiveCapabilities !== undefined, "CapEff read through libc");
  assert(facts.unprivilegedPortStart !== undefined && facts.unprivilegedPortStart >= 0);
  assert(facts.forwarding !== undefined);
});

Deno.test({
  name: "as root, /dev/net/tun opens and CAP_NET_ADMIN is in the effective set",
  ...await skipUnlessRoot(IS_ROOT),
  fn() {
    assertEquals(tunDeviceState(), "ok");
    const caps = readHostFacts().effectiveCapabilities!;
    assertEquals((caps >> 12n) & 1n, 1n);
  },
});
